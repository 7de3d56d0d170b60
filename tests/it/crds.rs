//! The committed CRDs are exactly what the Rust types generate.

use crate::support::{repo, servicehub, stdout};
use servicehub_operator::api;

#[test]
fn committed_crds_match_the_rust_types() {
    for crd in api::crds() {
        let file = repo("crds").join(api::crd_file_name(&crd));
        let committed = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let generated = serde_yaml::to_string(&crd).expect("serialize");
        assert!(
            committed == generated,
            "{} drifted from the Rust types: run `cargo run --release -- crd --out-dir crds` and commit",
            file.display()
        );
    }
    let files = std::fs::read_dir(repo("crds")).expect("crds/").count();
    assert_eq!(files, api::crds().len(), "crds/ holds exactly one file per kind");
}

#[test]
fn crd_command_prints_all_four_as_multi_document_yaml() {
    let out = servicehub(&["crd"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde::Deserialize::deserialize(doc).expect("a CRD");
        let on_disk = std::fs::read_to_string(repo("crds").join(api::crd_file_name(&crd))).expect("file");
        assert_eq!(serde_yaml::to_string(&crd).expect("yaml"), on_disk);
        kinds.push(crd.spec.names.kind);
    }
    assert_eq!(kinds, api::KINDS);
}

/// The rules the API server applies to a CRD before accepting it (a structural schema), so
/// `kubectl apply -f crds/` is accepted: every node typed, no `$ref` or combinators, list
/// types consistent with their items, every `default` valid for its own node.
#[test]
fn crd_schemas_are_structural() {
    fn walk(path: &str, node: &serde_json::Value, problems: &mut Vec<String>) {
        let obj = node.as_object().expect("schema node is an object");
        for bad in ["$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "$schema"] {
            if obj.contains_key(bad) {
                problems.push(format!("{path}: has {bad}"));
            }
        }
        let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&serde_json::Value::Bool(true));
        let ty = obj.get("type").and_then(|t| t.as_str());
        if ty.is_none() && !preserve && !obj.contains_key("x-kubernetes-int-or-string") {
            problems.push(format!("{path}: no type"));
        }
        if obj.get("x-kubernetes-validations").is_some() {
            for rule in obj["x-kubernetes-validations"].as_array().expect("list") {
                if rule.get("rule").and_then(|r| r.as_str()).is_none_or(str::is_empty) {
                    problems.push(format!("{path}: validation without a rule"));
                }
            }
        }
        if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                walk(&format!("{path}.{k}"), v, problems);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(&format!("{path}[]"), items, problems);
            match obj.get("x-kubernetes-list-type").and_then(|t| t.as_str()) {
                Some("set") if items.get("type").and_then(|t| t.as_str()) == Some("object") => {
                    problems.push(format!("{path}: listType set needs scalar items"));
                }
                Some("map") => {
                    let required: Vec<&str> =
                        items["required"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
                    for key in
                        obj["x-kubernetes-list-map-keys"].as_array().into_iter().flatten().filter_map(|k| k.as_str())
                    {
                        if !required.contains(&key) {
                            problems.push(format!("{path}: list-map key {key} must be required"));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(default) = obj.get("default") {
            let mut wrapped =
                serde_json::json!({ "apiVersion": "x/v1", "kind": "X", "metadata": { "name": "x" }, "v": default });
            let holder = serde_json::json!({ "type": "object", "properties": { "v": node } });
            for e in servicehub_operator::validate::schema::check_object(&holder, &mut wrapped) {
                problems.push(format!("{path}: default is invalid: {}: {}", e.field, e.message));
            }
        }
    }
    let mut problems = Vec::new();
    for crd in api::crds() {
        let v = serde_json::to_value(&crd).expect("json");
        assert_eq!(v["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(crd.spec.versions.len(), 1);
        let version = &v["spec"]["versions"][0];
        assert_eq!((version["served"].as_bool(), version["storage"].as_bool()), (Some(true), Some(true)));
        walk(crd.spec.names.kind.as_str(), &version["schema"]["openAPIV3Schema"], &mut problems);
    }
    assert!(problems.is_empty(), "not structural:\n{}", problems.join("\n"));
}

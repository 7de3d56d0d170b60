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
            "{} drifted from the Rust types: run `cargo run -- crd --out-dir crds` and commit",
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

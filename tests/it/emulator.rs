//! Conformance of the API server emulation's registry with the Kubernetes API rules the
//! operator depends on (issue 5, first slice).

use crate::apiserver::registry::{EventType, FieldValidation, Kind, Part, Registry, Resource};

const PRUNE: FieldValidation = FieldValidation::Prune;
use serde_json::json;

fn customers() -> Resource {
    Resource { group: "servicehub.io".into(), version: "v1alpha1".into(), plural: "customers".into() }
}

fn leases() -> Resource {
    Resource { group: "coordination.k8s.io".into(), version: "v1".into(), plural: "leases".into() }
}

fn registry(history: usize) -> Registry {
    let r = Registry::new(history);
    r.register(
        customers(),
        Kind {
            kind: "Customer".into(),
            namespaced: true,
            status_subresource: true,
            short_names: vec![],
            categories: vec![],
        },
    );
    r.register(
        leases(),
        Kind {
            kind: "Lease".into(),
            namespaced: true,
            status_subresource: false,
            short_names: vec![],
            categories: vec![],
        },
    );
    r
}

fn obj(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({ "apiVersion": "servicehub.io/v1alpha1", "kind": "Customer", "metadata": { "name": name }, "spec": spec })
}

fn rv(o: &serde_json::Value) -> u64 {
    o["metadata"]["resourceVersion"].as_str().expect("rv").parse().expect("number")
}

#[test]
fn create_sets_server_fields_and_refuses_duplicates() {
    let r = registry(100);
    let c = r.create(&customers(), Some("ns"), obj("a", json!({"x": 1})), PRUNE).expect("create");
    assert_eq!(c["metadata"]["generation"], 1);
    assert_eq!(c["metadata"]["namespace"], "ns");
    assert!(c["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(c["metadata"]["creationTimestamp"].is_string());
    let err = r.create(&customers(), Some("ns"), obj("a", json!({})), PRUNE).expect_err("duplicate");
    assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
    assert_eq!(r.get(&customers(), Some("other"), "a").expect_err("namespaced").code, 404);
}

#[test]
fn resource_versions_increase_across_all_resources() {
    let r = registry(100);
    let a = rv(&r.create(&customers(), Some("ns"), obj("a", json!({})), PRUNE).expect("a"));
    let l =
        rv(&r.create(&leases(), Some("ns"), json!({"metadata": {"name": "lease"}, "spec": {}}), PRUNE).expect("lease"));
    let b = rv(&r.create(&customers(), Some("ns"), obj("b", json!({})), PRUNE).expect("b"));
    assert!(a < l && l < b);
    assert_eq!(r.resource_version(), b);
}

#[test]
fn generation_moves_on_spec_changes_only() {
    let r = registry(100);
    let c = r.create(&customers(), Some("ns"), obj("a", json!({"x": 1})), PRUNE).expect("create");
    let mut labelled = c.clone();
    labelled["metadata"]["labels"] = json!({"team": "support"});
    let c = r.update(&customers(), Some("ns"), "a", labelled, Part::Main, PRUNE).expect("labels");
    assert_eq!(c["metadata"]["generation"], 1, "metadata changes keep the generation");
    let c = r
        .merge_patch(&customers(), Some("ns"), "a", &json!({"status": {"phase": "Active"}}), Part::Status, PRUNE)
        .expect("status");
    assert_eq!(c["metadata"]["generation"], 1, "status changes keep the generation");
    let c = r.merge_patch(&customers(), Some("ns"), "a", &json!({"spec": {"x": 2}}), Part::Main, PRUNE).expect("spec");
    assert_eq!(c["metadata"]["generation"], 2);
}

#[test]
fn the_status_subresource_and_the_main_resource_write_only_their_part() {
    let r = registry(100);
    r.create(&customers(), Some("ns"), obj("a", json!({"x": 1})), PRUNE).expect("create");
    // Status given on the main resource is ignored.
    let c = r
        .merge_patch(&customers(), Some("ns"), "a", &json!({"status": {"phase": "Active"}}), Part::Main, PRUNE)
        .expect("main");
    assert!(c.get("status").is_none(), "{c}");
    // Spec given on the status subresource is ignored.
    let c = r
        .merge_patch(
            &customers(),
            Some("ns"),
            "a",
            &json!({"spec": {"x": 9}, "status": {"phase": "Active"}}),
            Part::Status,
            PRUNE,
        )
        .expect("status");
    assert_eq!((c["spec"]["x"].as_i64(), c["status"]["phase"].as_str()), (Some(1), Some("Active")));
}

#[test]
fn a_stale_update_is_a_conflict() {
    let r = registry(100);
    let c = r.create(&customers(), Some("ns"), obj("a", json!({"x": 1})), PRUNE).expect("create");
    let mut first = c.clone();
    first["spec"]["x"] = json!(2);
    r.update(&customers(), Some("ns"), "a", first, Part::Main, PRUNE).expect("first writer");
    let mut stale = c.clone();
    stale["spec"]["x"] = json!(3);
    let err = r.update(&customers(), Some("ns"), "a", stale, Part::Main, PRUNE).expect_err("stale");
    assert_eq!((err.code, err.reason), (409, "Conflict"));
    assert!(err.message.contains("the object has been modified"));
}

#[test]
fn a_no_op_write_produces_no_new_version() {
    let r = registry(100);
    let c = r.create(&customers(), Some("ns"), obj("a", json!({"x": 1})), PRUNE).expect("create");
    let same = r.update(&customers(), Some("ns"), "a", c.clone(), Part::Main, PRUNE).expect("same");
    assert_eq!(rv(&same), rv(&c));
    assert_eq!(r.resource_version(), rv(&c));
}

#[test]
fn finalizers_hold_a_deleted_object_until_removed() {
    let r = registry(100);
    let mut o = obj("a", json!({}));
    o["metadata"]["finalizers"] = json!(["servicehub.io/cleanup"]);
    r.create(&customers(), Some("ns"), o, PRUNE).expect("create");
    let marked = r.delete(&customers(), Some("ns"), "a").expect("delete");
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(marked["metadata"]["generation"], 2);
    assert!(r.get(&customers(), Some("ns"), "a").is_ok(), "still there while finalized");
    let (_, mut rx) = r.watch_from(r.resource_version()).expect("watch");
    r.merge_patch(&customers(), Some("ns"), "a", &json!({"metadata": {"finalizers": null}}), Part::Main, PRUNE)
        .expect("clear");
    assert_eq!(r.get(&customers(), Some("ns"), "a").expect_err("gone").code, 404);
    let e = rx.try_recv().expect("event");
    assert_eq!(e.kind, EventType::Deleted);
}

#[test]
fn watches_resume_from_a_version_or_get_410_when_it_is_compacted() {
    let r = registry(3);
    let a = rv(&r.create(&customers(), Some("ns"), obj("a", json!({})), PRUNE).expect("a"));
    for name in ["b", "c", "d"] {
        r.create(&customers(), Some("ns"), obj(name, json!({})), PRUNE).expect("create");
    }
    let (past, _rx) = r.watch_from(a + 1).expect("kept");
    let names: Vec<&str> = past.iter().map(|e| e.object["metadata"]["name"].as_str().expect("name")).collect();
    assert_eq!(names, vec!["c", "d"], "events after the given version, in order");
    let err = r.watch_from(a - 1).expect_err("compacted");
    assert_eq!((err.code, err.reason), (410, "Expired"));
    assert_eq!(err.status()["code"], 410);
}

#[test]
fn lists_are_scoped_by_namespace_and_carry_the_list_version() {
    let r = registry(100);
    r.create(&customers(), Some("a"), obj("x", json!({})), PRUNE).expect("x");
    r.create(&customers(), Some("b"), obj("y", json!({})), PRUNE).expect("y");
    let (all, version) = r.list(&customers(), None).expect("all");
    assert_eq!((all.len(), version), (2, r.resource_version()));
    let (one, _) = r.list(&customers(), Some("b")).expect("b");
    assert_eq!(one[0]["metadata"]["name"], "y");
    let kinds: Vec<String> = r.kinds().into_iter().map(|(_, k)| k.kind).collect();
    assert_eq!(kinds, vec!["Lease", "Customer"], "ordered by group");
    let (events, _) = r.watch_from(1).expect("from the first version");
    assert!(events.iter().all(|e| e.resource == customers()));
    assert_eq!(r.list(&Resource { plural: "nope".into(), ..customers() }, None).expect_err("unknown").code, 404);
}

#[test]
fn objects_carry_managed_fields_as_a_real_server_keeps_them() {
    let r = registry(100);
    let spec = json!({ "roles": ["User"], "subject": { "email": "a@b.co" } });
    let mut o = obj("a", spec);
    o["metadata"]["finalizers"] = json!(["servicehub.io/cleanup"]);
    r.create(&customers(), Some("ns"), o, PRUNE).expect("create");
    let status = json!({ "status": { "conditions": [{ "type": "Ready", "status": "True" }] } });
    let c = r.merge_patch(&customers(), Some("ns"), "a", &status, Part::Status, PRUNE).expect("status");
    let entries = c["metadata"]["managedFields"].as_array().expect("managedFields");
    let shape: Vec<(&str, &str, Option<&str>)> = entries
        .iter()
        .map(|e| {
            (e["manager"].as_str().unwrap_or(""), e["operation"].as_str().unwrap_or(""), e["subresource"].as_str())
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("kubectl-client-side-apply", "Update", None),
            ("servicehub", "Update", None),
            ("servicehub-operator", "Apply", Some("status"))
        ]
    );
    assert!(entries[0]["fieldsV1"]["f:spec"]["f:roles"].get("v:\"User\"").is_some(), "{}", entries[0]);
    assert!(
        entries[2]["fieldsV1"]["f:status"]["f:conditions"].get("k:{\"type\":\"Ready\"}").is_some(),
        "{}",
        entries[2]
    );
    // A no-op write still changes nothing (managedFields are the server's).
    let again = r.merge_patch(&customers(), Some("ns"), "a", &status, Part::Status, PRUNE).expect("again");
    assert_eq!(rv(&again), rv(&c));
}

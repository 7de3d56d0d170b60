//! The Helm chart: its values against its schema, its CRDs against `crds/`, its README
//! against its values, and its RBAC against the API calls the controller really makes.
//! (The templates themselves are rendered by the real Helm CLI in tests/it/helm.rs.)

use crate::apiserver::http::ApiServer;
use crate::apiserver::registry::{FieldValidation, Part, Resource};
use crate::cluster::{Operator, examples};
use crate::support::repo;
use serde_json::{Value, json};
use servicehub_operator::validate::Object;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn chart(path: &str) -> std::path::PathBuf {
    repo("charts/servicehub-operator").join(path)
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(chart(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(chart("values.schema.json")).expect("values.schema.json");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

/// `values.yaml` with `patch` merged in (JSON merge patch semantics).
fn values_with(patch: Value) -> Value {
    let mut values = yaml("values.yaml");
    json_patch::merge(&mut values, &patch);
    values
}

#[test]
fn the_default_values_satisfy_the_schema() {
    let errors: Vec<String> = schema().iter_errors(&yaml("values.yaml")).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn the_schema_rejects_wrong_values() {
    let schema = schema();
    let ok = [
        json!({ "replicaCount": 3, "store": { "type": "postgres", "postgres": { "existingSecret": "db" } } }),
        json!({ "watchNamespace": "team-a" }),
        json!({ "controller": { "resync": "1h30m" } }),
        json!({ "notifications": { "transport": "smtp", "smtp": { "host": "smtp.example.com", "existingSecret": "s" } } }),
        json!({ "notifications": { "transport": "webhook", "webhook": { "url": "https://h.example/x", "existingSecret": "w" } } }),
        json!({ "notifications": { "transport": "none", "invitationValidity": "30d" } }),
        json!({ "console": { "enabled": true, "emailSignIn": true } }),
        json!({ "console": { "enabled": true, "oidc": { "issuer": "https://id.example/v2.0", "clientId": "a", "existingSecret": "s" } } }),
    ];
    for patch in ok {
        let v = values_with(patch.clone());
        assert!(
            schema.is_valid(&v),
            "{patch} should be accepted: {:?}",
            schema.iter_errors(&v).map(|e| e.to_string()).collect::<Vec<_>>()
        );
    }
    let bad = [
        (json!({ "replicaCount": 0 }), "no replicas"),
        (json!({ "replicaCount": "two" }), "a string count"),
        (json!({ "replicaCount": 2 }), "several replicas on SQLite"),
        (json!({ "store": { "type": "mysql" } }), "an unknown store"),
        (json!({ "store": { "type": "postgres" } }), "PostgreSQL without its Secret"),
        (json!({ "image": { "pullPolicy": "Sometimes" } }), "an unknown pull policy"),
        (json!({ "controller": { "resync": "ten minutes" } }), "a duration in words"),
        (json!({ "controller": { "concurrency": 0 } }), "no concurrency"),
        (json!({ "watchNamespace": "Team_A" }), "an invalid namespace name"),
        (json!({ "httpPort": 80 }), "a privileged port"),
        (json!({ "console": { "enabled": true } }), "a console without a sign-in method"),
        (
            json!({ "console": { "enabled": true, "oidc": { "issuer": "https://id.example" } } }),
            "OIDC without its client",
        ),
        (json!({ "console": { "baseUrl": "hub.contoso.com" } }), "a base URL without a scheme"),
        (json!({ "console": { "sessionIdle": "an hour" } }), "a session lifetime in words"),
        (json!({ "replicas": 2 }), "an unknown key (a typo of replicaCount)"),
        (json!({ "serviceAccount": { "create": "yes" } }), "a string for a boolean"),
        (json!({ "notifications": { "transport": "smtp" } }), "SMTP without a host"),
        (
            json!({ "notifications": { "transport": "webhook", "webhook": { "url": "https://h.example/x" } } }),
            "a webhook without its signing Secret",
        ),
        (json!({ "notifications": { "transport": "pigeon" } }), "an unknown transport"),
        (json!({ "notifications": { "smtp": { "tls": "ssl" } } }), "an unknown SMTP security mode"),
        (json!({ "notifications": { "maxAttempts": 0 } }), "no delivery attempts"),
    ];
    for (patch, what) in bad {
        assert!(!schema.is_valid(&values_with(patch.clone())), "{what} ({patch}) must be rejected");
    }
}

#[test]
fn the_chart_crds_are_the_repository_crds() {
    let mut repo_files: Vec<String> = std::fs::read_dir(repo("crds"))
        .expect("crds/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    repo_files.sort();
    let mut chart_files: Vec<String> = std::fs::read_dir(chart("crds"))
        .expect("chart crds/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    chart_files.sort();
    assert_eq!(
        chart_files, repo_files,
        "the chart's crds/ holds the same files (cp crds/*.yaml charts/servicehub-operator/crds/)"
    );
    for f in repo_files {
        let a = std::fs::read_to_string(repo("crds").join(&f)).expect("read");
        let b = std::fs::read_to_string(chart("crds").join(&f)).expect("read");
        assert!(
            a == b,
            "charts/servicehub-operator/crds/{f} differs from crds/{f}: cp crds/*.yaml charts/servicehub-operator/crds/"
        );
    }
}

/// Leaf paths of a values document (`store.postgres.existingSecret`); an empty map or list is
/// a leaf (a value users fill in).
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() && prefix != "resources" => {
            for (k, child) in m {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(child, &path, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_chart_readme_describes_every_value() {
    let readme = std::fs::read_to_string(chart("README.md")).expect("README");
    let mut paths = Vec::new();
    leaves(&yaml("values.yaml"), "", &mut paths);
    let missing: Vec<&String> = paths.iter().filter(|p| !readme.contains(&format!("`{p}`"))).collect();
    assert!(missing.is_empty(), "charts/servicehub-operator/README.md does not describe {missing:?}");
    // And the README names no value that does not exist.
    let documented: BTreeSet<&str> =
        readme.lines().filter(|l| l.starts_with("| `")).filter_map(|l| l.split('`').nth(1)).collect();
    let stale: Vec<&&str> = documented.iter().filter(|d| !paths.iter().any(|p| p == **d)).collect();
    assert!(stale.is_empty(), "the chart README describes values that do not exist: {stale:?}");
}

/// An RBAC rule from the chart's rule files.
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

fn rules(path: &str) -> Vec<Rule> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    yaml(path)
        .as_array()
        .expect("a list of rules")
        .iter()
        .map(|r| Rule {
            groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]),
        })
        .collect()
}

fn grants(rules: &[Rule], verb: &str, group: &str, resource: &str) -> bool {
    rules.iter().any(|r| {
        r.groups.iter().any(|g| g == group)
            && r.resources.iter().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn the_rbac_rules_are_least_privilege() {
    let all: Vec<Rule> = [rules("files/rbac-operator-rules.yaml"), rules("files/rbac-leader-election-rules.yaml")]
        .into_iter()
        .flatten()
        .collect();
    for r in &all {
        for field in [&r.groups, &r.resources, &r.verbs] {
            assert!(!field.iter().any(|x| x.contains('*')), "no wildcards: {field:?}");
        }
        assert!(
            !r.resources.iter().any(|x| x == "secrets"),
            "no Secrets: the PostgreSQL URL reaches the pod as an env var"
        );
        for v in ["escalate", "bind", "impersonate", "delete", "deletecollection"] {
            assert!(!r.verbs.iter().any(|x| x == v), "no {v}");
        }
    }
    let templates = std::fs::read_to_string(chart("templates/rbac.yaml")).expect("rbac.yaml");
    assert!(
        templates.contains("files/rbac-operator-rules.yaml")
            && templates.contains("files/rbac-leader-election-rules.yaml")
    );
}

fn resource(plural: &str) -> Resource {
    Resource { group: "servicehub.io".into(), version: "v1alpha1".into(), plural: plural.into() }
}

fn plural(o: &Object) -> &'static str {
    match o {
        Object::Customer(_) => "customers",
        Object::Workspace(_) => "workspaces",
        Object::Membership(_) => "memberships",
        Object::LockboxPolicy(_) => "lockboxpolicies",
    }
}

fn to_json(o: &Object) -> Value {
    match o {
        Object::Customer(x) => serde_json::to_value(x),
        Object::Workspace(x) => serde_json::to_value(x),
        Object::Membership(x) => serde_json::to_value(x),
        Object::LockboxPolicy(x) => serde_json::to_value(x),
    }
    .expect("json")
}

/// Whether every object in the registry is Ready for its generation (read behind the API,
/// so that the test's own reads are not counted as the operator's calls).
fn all_ready(api: &ApiServer) -> bool {
    ["customers", "workspaces", "memberships", "lockboxpolicies"].iter().all(|p| {
        let (items, _) = api.registry.list(&resource(p), None).expect("list");
        items.iter().all(|o| {
            let generation = o.pointer("/metadata/generation").and_then(Value::as_i64);
            o.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "Ready" && c["status"] == "True" && c["observedGeneration"].as_i64() == generation
                })
            })
        })
    })
}

async fn until(what: &str, op: &Operator, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}; logs:\n{}", op.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_chart_grants_every_call_the_controller_makes() {
    let s = crate::support::sqlite_unmigrated().await;
    let api = ApiServer::start().await;
    // The test works behind the API (the registry), so every request the server sees is
    // the operator's.
    let objects = examples();
    for o in &objects {
        let r = resource(plural(&o.object));
        api.registry
            .create(&r, Some(o.object.namespace()), to_json(&o.object), FieldValidation::Prune)
            .expect("create");
    }
    let op = Operator::start(
        &api,
        &s.url,
        &["--lease-duration=3s", "--lease-renew-deadline=2s", "--lease-retry-period=500ms"],
    );
    until("all Ready", &op, || all_ready(&api)).await;
    // An update, a stalled object and deletions: every path of the reconcile.
    let patch = json!({ "spec": { "permissions": ["ViewOpenCanvas"] } });
    api.registry
        .merge_patch(
            &resource("memberships"),
            Some("contoso"),
            "diego-open-canvas",
            &patch,
            Part::Main,
            FieldValidation::Prune,
        )
        .expect("patch");
    let stalled = json!({ "apiVersion": "servicehub.io/v1alpha1", "kind": "Membership",
        "metadata": { "name": "kim", "namespace": "contoso" },
        "spec": { "customerRef": { "name": "contoso" }, "workspaceRef": { "name": "contoso-emea" },
                  "subject": { "kind": "User", "email": "kim@outlook.com", "accountType": "Personal" } } });
    api.registry.create(&resource("memberships"), Some("contoso"), stalled, FieldValidation::Prune).expect("create");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for o in objects.iter().rev() {
        let _ = api.registry.delete(&resource(plural(&o.object)), Some(o.object.namespace()), o.object.name());
    }
    let _ = api.registry.delete(&resource("memberships"), Some("contoso"), "kim");
    until("every object gone", &op, || {
        ["customers", "workspaces", "memberships", "lockboxpolicies"]
            .iter()
            .all(|p| api.registry.list(&resource(p), None).expect("list").0.is_empty())
    })
    .await;

    let operator_rules = rules("files/rbac-operator-rules.yaml");
    let lease_rules = rules("files/rbac-leader-election-rules.yaml");
    let calls = api.stats().calls;
    let mut missing = Vec::new();
    for (verb, group, res, namespace) in &calls {
        let granted = if res == "leases" {
            // The lease lives in the operator's own namespace (here `default`), and only there.
            namespace.as_deref() == Some("default") && grants(&lease_rules, verb, group, res)
        } else {
            grants(&operator_rules, verb, group, res)
        };
        if !granted {
            missing.push(format!("{verb} {group}/{res} in {namespace:?}"));
        }
    }
    assert!(missing.is_empty(), "the chart does not grant calls the controller makes: {missing:#?}");
    // The calls cover the kinds' status, events and leases: the check saw a real run.
    let seen: BTreeSet<&str> = calls.iter().map(|(_, _, r, _)| r.as_str()).collect();
    for r in ["memberships", "memberships/status", "events", "leases", "customers/status"] {
        assert!(seen.contains(r), "no call on {r}: {calls:?}");
    }
}

#[test]
fn every_environment_variable_the_deployment_sets_is_one_the_binary_reads() {
    let deployment = std::fs::read_to_string(chart("templates/deployment.yaml")).expect("deployment");
    let help = crate::support::stdout(&crate::support::servicehub(&["run", "--help"]));
    let sources: String = ["src/cli/notify.rs", "src/cli/mod.rs", "src/cli/run.rs", "src/cli/console.rs"]
        .iter()
        .map(|p| std::fs::read_to_string(crate::support::repo(p)).expect("source"))
        .collect();
    let names: BTreeSet<&str> = deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|n| n.starts_with("SERVICEHUB_"))
        .collect();
    assert!(names.len() > 20, "{names:?}");
    for name in names {
        // Flags show their variable in --help; the secrets are read from the environment only.
        let shown = help.contains(&format!("env: {name}=")) || help.contains(&format!("env: {name}]"));
        let read = shown || sources.contains(&format!("std::env::var(\"{name}\")"));
        assert!(read, "the chart sets {name}, which servicehub run does not read");
    }
}

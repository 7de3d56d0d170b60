//! Engine benchmark: 1 customer, 100 workspaces, 10,000 memberships applied to a fresh SQLite
//! store, then applied again (a no-op that must write nothing).
//!
//!     cargo bench --bench apply
//!
//! Targets on a 2-core machine: first apply under 5 s; no-op apply under 1 s with zero writes.

use servicehub_operator::engine::{self, Options};
use servicehub_operator::plan::Context;
use servicehub_operator::validate::{self, Document, References};
use std::time::Instant;

const WORKSPACES: usize = 100;
const MEMBERSHIPS: usize = 10_000;

fn scenario() -> Vec<Document> {
    let doc = |value: serde_json::Value| Document { file: "generated".into(), index: 1, value };
    let mut docs = vec![doc(serde_json::json!({
        "apiVersion": "servicehub.io/v1alpha1", "kind": "Customer",
        "metadata": { "name": "bench", "namespace": "bench" },
        "spec": {
            "displayName": "Bench Corp",
            "agreement": { "kind": "Unified", "id": "U-1", "startDate": "2025-01-01" },
            "serviceAdministrator": { "email": "sa@bench.example" },
            "supportContacts": [{ "email": "help@bench.example" }],
        }
    }))];
    for w in 0..WORKSPACES {
        docs.push(doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Workspace",
            "metadata": { "name": format!("ws-{w}"), "namespace": "bench" },
            "spec": {
                "customerRef": { "name": "bench" }, "displayName": format!("Workspace {w}"), "default": w == 0,
                "administrators": [{ "email": format!("admin{w}@bench.example") }],
            }
        })));
    }
    for m in 0..MEMBERSHIPS {
        let roles = if m % 10 == 0 { vec!["WorkspaceAdministrator"] } else { vec!["User"] };
        docs.push(doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Membership",
            "metadata": { "name": format!("m-{m}"), "namespace": "bench" },
            "spec": {
                "customerRef": { "name": "bench" }, "workspaceRef": { "name": format!("ws-{}", m % WORKSPACES) },
                "subject": { "kind": "User", "email": format!("user{m}@bench.example") },
                "roles": roles, "permissions": ["Learning", "Programs", "SupportContact"],
            }
        })));
    }
    docs
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = servicehub_operator::store::open(&url).await.expect("store");
    let start = Instant::now();
    let report = validate::validate_documents(scenario(), References::InSet);
    assert!(!report.has_errors(), "{:?}", report.problems.first());
    let validated = start.elapsed();
    let opts = Options {
        dry_run: false,
        ctx: Context {
            now: jiff::Timestamp::now(),
            actor: servicehub_operator::domain::actor::Actor::cli(None, "bench", "host"),
        },
    };

    let start = Instant::now();
    let dry = Options { dry_run: true, ..opts.clone() };
    let planned = engine::run(store.as_ref(), &report.objects, &dry).await.expect("dry run");
    let dry_time = start.elapsed();
    assert_eq!(planned.rows_written, 0);

    let start = Instant::now();
    let first = engine::run(store.as_ref(), &report.objects, &opts).await.expect("first apply");
    let first_time = start.elapsed();
    assert!(!first.has_failures());
    let start = Instant::now();
    let second = engine::run(store.as_ref(), &report.objects, &opts).await.expect("second apply");
    let second_time = start.elapsed();
    let changes: usize = second.objects.iter().map(|o| o.changes.len()).sum();
    println!(
        "apply of 1 customer, {WORKSPACES} workspaces, {MEMBERSHIPS} memberships (validation {:.2}s, not included):",
        validated.as_secs_f64()
    );
    println!("  dry run (planning only):    {:>6.2}s", dry_time.as_secs_f64());
    println!("  first apply (fresh SQLite): {:>6.2}s, {} rows written", first_time.as_secs_f64(), first.rows_written);
    println!(
        "  no-op apply:                {:>6.2}s, {} rows written, {changes} changes planned",
        second_time.as_secs_f64(),
        second.rows_written
    );
}

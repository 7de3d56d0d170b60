//! The `/api/v1` OpenAPI document: generated from the code, listing exactly the routes the
//! router serves, and every operation tested by `schemathesis` (PyPI; `.ci/run` installs
//! it) against a running server seeded with the examples, signed in as a Global
//! Administrator: 0 server errors, 0 responses outside the documented statuses, content
//! types and schemas.

use crate::console::{Browser, Served, apply_examples};
use crate::support::{repo, stderr, stdout};
use std::collections::BTreeSet;
use std::process::Command;

/// The `/api/v1` routes of the router, read from its source (`.route("/api/v1/…", get(…)
/// .post(…))`), as `(METHOD, path)`.
fn routed() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(repo("src/web/mod.rs")).expect("router source");
    let mut out = BTreeSet::new();
    for line in src.lines().map(str::trim).filter(|l| l.starts_with(".route(\"/api/v1/")) {
        let path = line.split('"').nth(1).expect("a path").to_owned();
        for method in ["get", "post", "put", "patch", "delete"] {
            if line.contains(&format!("{method}(")) {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_serves() {
    let documented: BTreeSet<(String, String)> = servicehub_operator::web::openapi::operations()
        .into_iter()
        .filter(|(_, p)| p != "/api/v1/openapi.json")
        .collect();
    let mut routed = routed();
    routed.remove(&("GET".to_owned(), "/api/v1/openapi.json".to_owned()));
    assert_eq!(documented, routed, "the OpenAPI document and the router differ");
    assert!(documented.len() >= 12, "{documented:?}");
    let doc = servicehub_operator::web::openapi::document();
    assert_eq!(doc["openapi"], "3.0.3");
    // Every schema a body refers to is defined.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().expect("name");
        assert!(doc["components"]["schemas"][name].is_object(), "{name} is referred to and not defined");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_document() {
    let st = std::env::var("SERVICEHUB_SCHEMATHESIS").unwrap_or_else(|_| "st".into());
    let version = Command::new(&st).arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "schemathesis is not installed: pip install schemathesis (.ci/run does), or set SERVICEHUB_SCHEMATHESIS"
    );
    let s = crate::support::sqlite_unmigrated().await;
    servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    let invites = tempfile::tempdir().expect("tempdir");
    apply_examples(&s, invites.path(), &[]);
    let served = Served::start(&s.url, &[]).await;
    let doc = reqwest::get(format!("{}/api/v1/openapi.json", served.base)).await.expect("document");
    assert_eq!(doc.status(), 200);
    assert_eq!(doc.headers()["content-type"], "application/json");
    let mut b = Browser::new(&served.base);
    b.sign_in_by_email(&served.outbox, "nestor.wilke@contoso.com").await;
    let csrf = b.get("/").await.csrf();
    let session = b.cookies.get("servicehub-session").expect("a session cookie").clone();
    // A request for the Lockbox operations to find (id 1).
    let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["lockbox", "request", "--customer", "contoso/contoso", "--workload", "ExchangeOnline", "--case", "1"])
        .args(["--reason", "repair", "--duration", "1h", "--as", "eng@microsoft.com", "--store", &s.url])
        .output()
        .expect("request");
    assert!(out.status.success(), "{}", stderr(&out));

    let report = tempfile::tempdir().expect("tempdir");
    let out = Command::new(&st)
        // Its caches land in the working directory: a scratch one, not the checkout.
        .current_dir(report.path())
        .args(["run", &format!("{}/api/v1/openapi.json", served.base)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "60", "--seed", "1", "--workers", "2"])
        .args(["--request-timeout", "10", "--no-color", "--generation-database", "none"])
        // The session is the credential; a generated Authorization header would replace it.
        .args(["--generation-with-security-parameters", "false"])
        .args(["-H", &format!("Cookie: servicehub-session={session}"), "-H", &format!("X-CSRF-Token: {csrf}")])
        .args(["--report", "junit", "--report-dir"])
        .arg(report.path())
        .output()
        .expect("run schemathesis");
    let text = format!("{}\n{}", stdout(&out), stderr(&out));
    let _ = std::fs::create_dir_all(repo("target/schemathesis"));
    let _ = std::fs::write(repo("target/schemathesis/output.txt"), &text);
    assert!(out.status.success(), "schemathesis found failures:\n{text}\nserver log:\n{}", served.log());
    assert!(!served.log().contains("panicked"), "{}", served.log());
}

//! Apply benchmark: 1 customer, 100 workspaces, 10,000 memberships.
//!
//!     SERVICEHUB_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench apply
//!
//! Part 1, the engine in process on a fresh SQLite store: validation, a dry run, the first
//! apply and a no-op re-apply (which must write nothing), each timed on its own.
//!
//! Part 2, `servicehub` itself, as a user runs it, from YAML files (one per workspace) on each
//! store: the first apply with `--deliver=false` and, on another fresh store, with the 10,102
//! invitations delivered as `.eml` files; then the no-change re-apply and `plan`. Each line
//! gives the wall time and the process's peak RSS (issue 18, goal 5: under 3 s, 6 s, 0.5 s,
//! 0.5 s and 100 MB on SQLite; PostgreSQL printed beside, no goal yet).

mod support;

// The engine in process runs on the allocator the binary uses (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use servicehub_operator::engine::{self, Options};
use servicehub_operator::plan::Context;
use servicehub_operator::validate::{self, Document, References};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    engine_in_process().await;
    cli().await;
}

async fn engine_in_process() {
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
        summaries: true,
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

/// The scenario as YAML files: the customer in one, each workspace with its memberships in
/// another (as a team keeps them in Git).
fn write_files(dir: &Path) {
    let mut files: std::collections::BTreeMap<String, String> = Default::default();
    for doc in scenario() {
        let kind = doc.value["kind"].as_str().expect("kind").to_owned();
        let file = match kind.as_str() {
            "Customer" => "customer.yaml".to_owned(),
            "Workspace" => format!("{}.yaml", doc.value["metadata"]["name"].as_str().expect("name")),
            _ => format!("{}.yaml", doc.value["spec"]["workspaceRef"]["name"].as_str().expect("workspace")),
        };
        let text = files.entry(file).or_default();
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(&doc.value).expect("yaml"));
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
}

/// One run of the binary: its wall time and peak RSS.
struct Run {
    time: Duration,
    peak_kib: u64,
    stdout: String,
}

/// Run `servicehub ARGS` to completion. The peak RSS is the kernel's high-water mark
/// (`VmHWM`), read every 2 ms while the process runs: it only grows, so the last reading
/// before exit is the peak but for growth in the final 2 ms. (`wait4`'s rusage would be
/// exact, but the crate forbids unsafe code.)
fn servicehub(store: &str, args: &[&str]) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(args)
        .env("SERVICEHUB_STORE", store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn servicehub");
    let status_file = format!("/proc/{}/status", child.id());
    // Both pipes are read while it runs: one left full would stop it.
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().as_deref().and_then(vm_hwm_kib) {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let time = start.elapsed();
    let (stdout, stderr) = (stdout.join().expect("stdout"), stderr.join().expect("stderr"));
    assert!(status.success(), "servicehub {args:?}: {status}\n{stdout}\n{stderr}");
    Run { time, peak_kib, stdout }
}

/// Read a child's pipe to its end on a thread of its own.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    let mut pipe = pipe.expect("piped");
    std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut s).expect("read pipe");
        s
    })
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Issue 18's goal for a figure, which is set for SQLite only.
fn goal(backend: &str, goal: &'static str) -> &'static str {
    if backend == "sqlite" { goal } else { "" }
}

fn line(label: &str, run: &Run, goal: &str) {
    println!(
        "  {label:<32} {:>6.2}s  peak RSS {:>4} MB   {goal}",
        run.time.as_secs_f64(),
        run.peak_kib * 1024 / 1_000_000
    );
}

async fn cli() {
    let files = tempfile::tempdir().expect("tempdir");
    write_files(files.path());
    let dir = files.path().to_str().expect("utf-8").to_owned();
    println!(
        "servicehub from {} YAML files (1 customer, {WORKSPACES} workspaces, {MEMBERSHIPS} memberships):",
        WORKSPACES + 1
    );
    let validate = servicehub("", &["validate", "-f", &dir]);
    line("validate", &validate, "");
    support::each_store(|backend, url| {
        let dir = dir.clone();
        async move {
            println!("{backend}:");
            let first = servicehub(&url, &["apply", "-f", &dir, "--deliver=false", "-q"]);
            line("first apply, --deliver=false", &first, goal(backend, "(goal < 3 s, < 100 MB)"));
            let again = servicehub(&url, &["apply", "-f", &dir, "--deliver=false", "-q"]);
            assert!(
                again.stdout.contains(" 0 with changes (0 change(s))") && again.stdout.contains(" 0 row(s) written."),
                "a no-change re-apply writes nothing: {}",
                again.stdout.lines().last().unwrap_or_default()
            );
            line("re-apply, no change (0 rows)", &again, goal(backend, "(goal < 0.5 s)"));
            let plan = servicehub(&url, &["plan", "-f", &dir, "-q"]);
            line("plan", &plan, goal(backend, "(goal < 0.5 s)"));
        }
    })
    .await;
    support::each_store(|backend, url| {
        let dir = dir.clone();
        async move {
            let outbox = tempfile::tempdir().expect("outbox");
            let out = outbox.path().to_str().expect("utf-8");
            let run = servicehub(&url, &["apply", "-f", &dir, "-q", "--notify-transport", "file", "--notify-dir", out]);
            let sent = std::fs::read_dir(outbox.path()).expect("outbox").count();
            assert!(sent > MEMBERSHIPS + WORKSPACES, "one invitation per person: {sent} files");
            line(&format!("{backend}: first apply, {sent} .eml"), &run, goal(backend, "(goal < 6 s)"));
        }
    })
    .await;
}

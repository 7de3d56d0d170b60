//! The console at scale: the approver's inbox and the access look-up, over HTTP on loopback
//! against the real router, with 10,000 memberships and 1,000,000 stored Lockbox requests
//! (200 of them pending for the approver, the rest closed history). Prints p50, p95 and p99
//! of 300 sequential requests per endpoint, after 20 to warm up, on SQLite and (with
//! `SERVICEHUB_TEST_DATABASE_URL`) PostgreSQL. Goal (issue 16): p95 under 50 ms.
//!
//!     SERVICEHUB_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench console

mod support;

use servicehub_operator::engine::{self, Options};
use servicehub_operator::plan::Context;
use servicehub_operator::store::sql::SqlStore;
use servicehub_operator::store::{Session, Store};
use servicehub_operator::validate::{self, Document, References};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MEMBERSHIPS: usize = 10_000;
const REQUESTS: i64 = 1_000_000;
const PENDING: i64 = 200;
const SAMPLES: usize = 300;

/// The examples plus 10,000 memberships spread over Contoso's three workspaces.
fn scenario() -> Vec<Document> {
    let mut docs = validate::load::load_paths(&["examples".into()]).0;
    let workspaces = ["contoso-hq", "contoso-emea", "contoso-labs"];
    for m in 0..MEMBERSHIPS {
        docs.push(Document {
            file: "generated".into(),
            index: m + 1,
            value: serde_json::json!({
                "apiVersion": "servicehub.io/v1alpha1", "kind": "Membership",
                "metadata": { "name": format!("m-{m}"), "namespace": "contoso" },
                "spec": {
                    "customerRef": { "name": "contoso" }, "workspaceRef": { "name": workspaces[m % 3] },
                    "subject": { "kind": "User", "email": format!("user{m}@contoso.com") },
                    "roles": ["User"], "permissions": ["Learning", "SupportContact"],
                }
            }),
        });
    }
    docs
}

/// Requests `from..=to`: the first `PENDING` waiting for megan.bowen@contoso.com (their
/// deadline a day ahead), the rest completed long ago.
fn requests(pg: bool, customer: &str, from: i64, to: i64, now: i64) -> String {
    let series = if pg {
        format!("SELECT generate_series({from}, {to}) AS x")
    } else {
        format!(
            "WITH RECURSIVE seq(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM seq WHERE x < {to}) SELECT x FROM seq"
        )
    };
    let due = format!("(CASE WHEN x <= {PENDING} THEN {now} + 86400 ELSE NULL END)");
    format!(
        "INSERT INTO lockbox_requests (customer_uid, requester, workload, case_id, reason, requested_seconds, approvers, \
         state, created_at, pending_deadline, access_deadline, closed_at, due_at) \
         SELECT '{customer}', 'eng' || (x % 500) || '@microsoft.com', 'ExchangeOnline', 'case-' || x, 'bench', 3600, \
         '[\"joni.sherman@contoso.com\",\"megan.bowen@contoso.com\",\"nestor.wilke@contoso.com\"]', \
         CASE WHEN {due} IS NULL THEN 'Completed' ELSE 'Pending' END, {now} - 86400 * 30 + x, {due}, NULL, \
         CASE WHEN {due} IS NULL THEN {now} - 86400 ELSE NULL END, {due} FROM ({series}) s"
    )
}

async fn session(store: &dyn Store, email: &str, now: i64) -> String {
    let token = servicehub_operator::notify::token::Token::generate().secret;
    let s = Session {
        id_hash: servicehub_operator::notify::token::hash(&token),
        email: email.into(),
        account_type: "WorkOrSchool".into(),
        method: "email".into(),
        subject: email.into(),
        groups: Vec::new(),
        csrf: "bench".into(),
        address: "127.0.0.1".into(),
        created_at: now,
        seen_at: now,
        expires_at: now + 86_400,
        revoked_at: None,
    };
    let by = servicehub_operator::domain::actor::Actor::cli(None, "bench", "host");
    store.session_insert(&s, &by).await.expect("session");
    format!("servicehub-session={token}")
}

/// The `p` quantile of `sorted`, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    support::percentile(sorted, p).as_secs_f64() * 1000.0
}

async fn run(label: &str, url: String) {
    let store = SqlStore::connect(url.parse().expect("url")).await.expect("connect");
    store.migrate().await.expect("migrate");
    let now = jiff::Timestamp::now().as_second();
    let report = validate::validate_documents(scenario(), References::InSet);
    assert!(!report.has_errors(), "{:?}", report.problems.first());
    let ctx = Context {
        now: jiff::Timestamp::from_second(now).expect("t"),
        actor: servicehub_operator::domain::actor::Actor::cli(None, "bench", "host"),
    };
    let started = Instant::now();
    engine::run(&store, &report.objects, &Options { dry_run: false, ctx, summaries: true }).await.expect("apply");
    let (uid, _) = store.lockbox_policy("contoso", "contoso").await.expect("policy").expect("customer");
    let pg = label == "postgres";
    let mut from = 1;
    while from <= REQUESTS {
        let to = (from + 99_999).min(REQUESTS);
        store.execute_raw(&requests(pg, &uid, from, to, now)).await.expect("insert");
        from = to + 1;
    }
    store.execute_raw("ANALYZE").await.expect("analyze");
    let memberships = store.count("SELECT COUNT(*) FROM memberships").await.expect("count");
    let stored = store.count("SELECT COUNT(*) FROM lockbox_requests").await.expect("count");
    println!(
        "console [{label}]: {memberships} memberships, {stored} Lockbox requests stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let store: Arc<dyn Store> = Arc::new(store);
    let megan = session(store.as_ref(), "megan.bowen@contoso.com", now).await;
    let nestor = session(store.as_ref(), "nestor.wilke@contoso.com", now).await;
    let adele = session(store.as_ref(), "adele.vance@contoso.com", now).await;
    let config = servicehub_operator::web::Config {
        base_url: "http://127.0.0.1".parse().expect("url"),
        email_link: true,
        consumer_domains: Vec::new(),
        lifetimes: servicehub_operator::auth::session::Lifetimes {
            idle: Duration::from_secs(3600),
            absolute: Duration::from_secs(86_400),
        },
        limits: servicehub_operator::web::RateLimits::default(),
        oidc_name: "bench".into(),
        requesters: servicehub_operator::lockbox::Requesters::default(),
        invitation_reissues: 2,
    };
    let metrics = Arc::new(servicehub_operator::controller::metrics::Metrics::default());
    let clock = servicehub_operator::web::Clock::system();
    let console =
        servicehub_operator::web::Console::new(store.clone(), config, None, clock, metrics, None).expect("console");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(servicehub_operator::web::serve(listener, Arc::new(console), stop.clone()));
    let http = reqwest::Client::new();
    let lookup = "customer=contoso/contoso&subject=lee.gu@contoso.com&workspace=contoso-emea";
    let cases = [
        ("inbox page (approver)", "/lockbox", &megan),
        ("inbox API (approver)", "/api/v1/lockbox/inbox", &megan),
        ("look-up page (GA)", &*format!("/access/lookup?{lookup}"), &nestor),
        ("look-up API (WA)", &*format!("/api/v1/access/lookup?{lookup}"), &adele),
        (
            "holders API (GA)",
            "/api/v1/access/holders?customer=contoso/contoso&workspace=contoso-emea&permission=ManageUsers",
            &nestor,
        ),
    ];
    for (name, path, cookie) in cases {
        let url = format!("http://{addr}{path}");
        let mut times = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES + 20 {
            let t = Instant::now();
            let res = http.get(&url).header("cookie", cookie.as_str()).send().await.expect("get");
            let status = res.status();
            let body = res.bytes().await.expect("body");
            assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
            if i >= 20 {
                times.push(t.elapsed());
            }
        }
        times.sort();
        let p95 = percentile(&times, 0.95);
        println!(
            "  {name:<24} p50 {:>6.1} ms  p95 {p95:>6.1} ms  p99 {:>6.1} ms  {}",
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            if p95 < 50.0 { "(goal p95 < 50 ms: met)" } else { "(goal p95 < 50 ms: NOT met)" }
        );
    }
    stop.cancel();
    let _ = server.await;
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    support::each_store(run).await;
}

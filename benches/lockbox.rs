//! The Lockbox expiry sweep at scale: 1,000,000 requests in the store, of which 10,000 are
//! due. A sweep reads due requests through the `due_at` partial index, so its time follows
//! what is due, not what is stored: the benchmark sweeps the 10,000, then 100 more that fall
//! due a second later in the same million-row table, and prints both.
//!
//!     SERVICEHUB_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench lockbox

mod support;

use servicehub_operator::engine::{self, Options};
use servicehub_operator::plan::Context;
use servicehub_operator::store::Store;
use servicehub_operator::store::sql::SqlStore;
use servicehub_operator::validate::{self, References};
use std::time::Instant;

const TOTAL: i64 = 1_000_000;
const DUE: i64 = 10_000;
const LATER: i64 = 100;
/// 2026-11-22T10:00:00Z.
const T: i64 = 1_795_341_600;

/// Rows `from..=to` of a generated request table: `due` of them Pending and overdue at `T`,
/// the rest closed (most of any real history) or pending far in the future.
fn generate(backend_pg: bool, customer: &str, from: i64, to: i64, due_at: impl Fn(&str) -> String) -> String {
    let series = if backend_pg {
        format!("SELECT generate_series({from}, {to}) AS x")
    } else {
        format!(
            "WITH RECURSIVE seq(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM seq WHERE x < {to}) SELECT x FROM seq"
        )
    };
    let due = due_at("x");
    format!(
        "INSERT INTO lockbox_requests (customer_uid, requester, workload, case_id, reason, requested_seconds, approvers, \
         state, created_at, pending_deadline, access_deadline, closed_at, due_at) \
         SELECT '{customer}', 'eng' || x || '@microsoft.com', 'ExchangeOnline', 'case-' || x, 'bench', 3600, \
         '[\"megan.bowen@contoso.com\"]', \
         CASE WHEN {due} IS NULL THEN 'Completed' ELSE 'Pending' END, {T} - 86400, \
         {due}, NULL, CASE WHEN {due} IS NULL THEN {T} - 3600 ELSE NULL END, {due} FROM ({series}) s"
    )
}

async fn run(label: &str, url: &str) {
    let store = SqlStore::connect(url.parse().expect("url")).await.expect("connect");
    store.migrate().await.expect("migrate");
    let report = validate::validate_paths(&["examples".into()], References::InSet);
    let ctx = Context {
        now: jiff::Timestamp::from_second(T).expect("t"),
        actor: servicehub_operator::domain::actor::Actor::cli(None, "bench", "host"),
    };
    engine::run(&store, &report.objects, &Options { dry_run: false, ctx, summaries: true }).await.expect("apply");
    let (uid, _) = store.lockbox_policy("contoso", "contoso").await.expect("policy").expect("customer");
    let pg = label == "postgres";

    let started = Instant::now();
    // 1..=10,000 due at T - 60; the next 90,000 pending until next week; the rest closed.
    let chunk = 100_000;
    let mut from = 1;
    while from <= TOTAL {
        let to = (from + chunk - 1).min(TOTAL);
        let sql = generate(pg, &uid, from, to, |x| {
            format!(
                "(CASE WHEN {x} <= {DUE} THEN {T} - 60 WHEN {x} <= {} THEN {T} + 604800 ELSE NULL END)",
                DUE + 90_000
            )
        });
        store.execute_raw(&sql).await.expect("insert");
        from = to + 1;
    }
    store.execute_raw(if pg { "ANALYZE lockbox_requests" } else { "ANALYZE" }).await.expect("analyze");
    let stored = store.count("SELECT COUNT(*) FROM lockbox_requests").await.expect("count");
    println!("lockbox [{label}]: {stored} requests stored in {:.1} s", started.elapsed().as_secs_f64());

    let dry = Instant::now();
    let preview = servicehub_operator::lockbox::sweep(&store, T, None, true).await.expect("dry run");
    let dry = dry.elapsed();
    let swept_at = Instant::now();
    let swept = servicehub_operator::lockbox::sweep(&store, T, None, false).await.expect("sweep");
    let big = swept_at.elapsed();
    assert_eq!((preview.len() as i64, swept.len() as i64), (DUE, DUE));

    // 100 more fall due a second later, in the same million-row table.
    let sql = generate(pg, &uid, TOTAL + 1, TOTAL + LATER, |_| format!("({T} + 1)"));
    store.execute_raw(&sql).await.expect("insert");
    let small_at = Instant::now();
    let small = servicehub_operator::lockbox::sweep(&store, T + 1, None, false).await.expect("sweep");
    let small_t = small_at.elapsed();
    assert_eq!(small.len() as i64, LATER);
    let idle_at = Instant::now();
    let none = servicehub_operator::lockbox::sweep(&store, T + 1, None, false).await.expect("sweep");
    let idle = idle_at.elapsed();
    assert!(none.is_empty());

    println!("  dry run, {DUE} due:         {:>8.1} ms", dry.as_secs_f64() * 1e3);
    println!(
        "  sweep, {DUE} due:           {:>8.1} ms ({:.0} transitions/s, each its own transaction with audit and notification)",
        big.as_secs_f64() * 1e3,
        DUE as f64 / big.as_secs_f64()
    );
    println!("  sweep, {LATER} due:             {:>8.1} ms", small_t.as_secs_f64() * 1e3);
    println!("  sweep, nothing due:         {:>8.2} ms", idle.as_secs_f64() * 1e3);
    println!(
        "  per due request: {:.3} ms (10,000) vs {:.3} ms (100): the cost follows what is due",
        big.as_secs_f64() * 1e3 / DUE as f64,
        small_t.as_secs_f64() * 1e3 / LATER as f64
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    support::each_store(|label, url| async move { run(label, &url).await }).await;
}

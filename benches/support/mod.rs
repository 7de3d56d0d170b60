//! What the benchmarks share: the stores they run on. (A folder without `main.rs`, so Cargo
//! does not take it for a benchmark of its own.)

use servicehub_operator::store::sql::SqlStore;
use std::future::Future;
use std::time::Duration;

/// Run `bench(label, url)` on a fresh SQLite file, then, when `SERVICEHUB_TEST_DATABASE_URL`
/// is set, on a fresh PostgreSQL schema of that database, dropped afterwards.
/// `SERVICEHUB_BENCH_STORE=sqlite` or `=postgres` runs on that store only (to profile one).
pub async fn each_store<F, Fut>(mut bench: F)
where
    F: FnMut(&'static str, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let only = std::env::var("SERVICEHUB_BENCH_STORE").ok();
    let wanted = |label: &str| only.as_deref().is_none_or(|o| o == label);
    let dir = tempfile::tempdir().expect("tempdir");
    if wanted("sqlite") {
        bench("sqlite", format!("sqlite://{}", dir.path().join("bench.db").display())).await;
    }
    if !wanted("postgres") {
        return;
    }
    let Ok(base) = std::env::var("SERVICEHUB_TEST_DATABASE_URL") else {
        println!("postgres: skipped (set SERVICEHUB_TEST_DATABASE_URL to include it)");
        return;
    };
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin = SqlStore::connect(base.parse().expect("url")).await.expect("postgres");
    admin.execute_raw(&format!("CREATE SCHEMA {schema}")).await.expect("schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    bench("postgres", format!("{base}{sep}options=-c%20search_path%3D{schema}")).await;
    admin.execute_raw(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("drop");
}

/// The `p` quantile (0..=1) of `sorted` durations: the smallest one at least that share of
/// them does not exceed.
#[allow(dead_code)] // not every benchmark reports quantiles
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

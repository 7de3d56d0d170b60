//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path under the repository root.
pub fn repo(path: &str) -> PathBuf {
    root().join(path)
}

/// Run the real `servicehub` binary with `args`, from the repository root.
pub fn servicehub(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(args)
        .current_dir(root())
        .env_remove("SERVICEHUB_STORE")
        .output()
        .expect("run servicehub")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A store under test and what keeps it alive (a temp dir, a PostgreSQL schema).
pub struct TestStore {
    /// Backend label for messages.
    pub name: &'static str,
    /// The store, migrated.
    pub store: std::sync::Arc<servicehub_operator::store::sql::SqlStore>,
    /// The URL it was opened with.
    #[allow(dead_code)]
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh SQLite store in a temp file, not yet migrated.
pub async fn sqlite_unmigrated() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("servicehub.db").display());
    let store = servicehub_operator::store::sql::SqlStore::connect(url.parse().expect("url")).await.expect("sqlite");
    TestStore { name: "sqlite", store: std::sync::Arc::new(store), url, _dir: Some(dir) }
}

/// The PostgreSQL URL for tests, when `SERVICEHUB_TEST_DATABASE_URL` is set.
pub fn postgres_url() -> Option<String> {
    std::env::var("SERVICEHUB_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// A fresh PostgreSQL schema of its own, not yet migrated. Panics (fails the test) when the
/// variable is set and the server cannot be reached: a configured database is never skipped.
pub async fn postgres_unmigrated() -> Option<TestStore> {
    let base = postgres_url()?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = servicehub_operator::store::sql::SqlStore::connect(base.parse().expect("url"))
        .await
        .unwrap_or_else(|e| panic!("SERVICEHUB_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
    admin.execute_raw(&format!("CREATE SCHEMA {schema}")).await.expect("create schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let store = servicehub_operator::store::sql::SqlStore::connect(url.parse().expect("url")).await.expect("postgres");
    Some(TestStore { name: "postgres", store: std::sync::Arc::new(store), url, _dir: None })
}

/// Every configured backend, migrated: SQLite always, PostgreSQL when configured.
pub async fn stores() -> Vec<TestStore> {
    let mut out = vec![sqlite_unmigrated().await];
    out.extend(postgres_unmigrated().await);
    for s in &out {
        servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    }
    out
}

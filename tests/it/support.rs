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
        .env("SERVICEHUB_NOTIFY_DIR", outbox_of("support"))
        .output()
        .expect("run servicehub")
}

/// Run the binary in `dir` (so the default store and outbox land there, the outbox as
/// `dir/outbox`), with no store from the environment and no injected clock.
pub fn servicehub_in(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(args)
        .current_dir(dir)
        .env_remove("SERVICEHUB_STORE")
        .env_remove("SERVICEHUB_UNSAFE_TEST_CLOCK")
        .env("SERVICEHUB_NOTIFY_DIR", dir.join("outbox"))
        .output()
        .expect("run servicehub")
}

/// A copy of the example files `names` in `home/files` (to edit in a test), and its path.
pub fn example_files(home: &Path, names: &[&str]) -> PathBuf {
    let files = home.join("files");
    std::fs::create_dir_all(&files).expect("dir");
    for f in names {
        std::fs::copy(repo("examples").join(f), files.join(f)).expect("copy");
    }
    files
}

/// The customer, workspace and membership examples, without the Lockbox policy.
pub const WITHOUT_LOCKBOX: [&str; 3] = ["01-customer.yaml", "02-workspaces.yaml", "03-memberships.yaml"];

/// A directory for the file transport of CLI runs against the store at `url` (outside the
/// repository; one per store, so a test can count what it delivered).
pub fn outbox_of(url: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut h);
    std::env::temp_dir().join(format!("servicehub-test-outbox-{}-{:x}", std::process::id(), h.finish()))
}

/// The `.eml` files in `dir`, decoded from quoted-printable when a body is (soft breaks
/// joined, `=3D` as `=`).
pub fn eml_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect()
        })
        .unwrap_or_else(|_| Vec::new())
        .into_iter()
        .map(|p| {
            let raw = std::fs::read_to_string(&p).expect("eml");
            (p, unquote(&raw))
        })
        .collect();
    out.sort();
    out
}

/// Undo quoted-printable soft line breaks and `=3D` (enough for links and tokens).
pub fn unquote(raw: &str) -> String {
    // Only a quoted-printable message is decoded: in a 7bit body `token=3D…` is a token that
    // starts with "3D", which decoding would cut short.
    if !raw.contains("Content-Transfer-Encoding: quoted-printable") {
        return raw.to_owned();
    }
    raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
}

/// The token of an invitation message (after `token=`).
pub fn token_in(text: &str) -> String {
    let at = text.find("token=").expect("a link with a token") + "token=".len();
    text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
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

/// The SQLite store at `url`, which a run of the binary created.
pub async fn sqlite_file(url: &str) -> TestStore {
    let store = servicehub_operator::store::sql::SqlStore::connect(url.parse().expect("url")).await.expect("sqlite");
    TestStore { name: "sqlite", store: std::sync::Arc::new(store), url: url.to_owned(), _dir: None }
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

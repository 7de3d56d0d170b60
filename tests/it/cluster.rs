//! A cluster for controller tests: the API server emulation, the real `servicehub run`
//! binary pointed at it, and helpers to create objects, wait for them and compare stores.

use crate::apiserver::http::ApiServer;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, PostParams};
use servicehub_operator::api::{Customer, LockboxPolicy, Membership, Workspace};
use servicehub_operator::store::sql::SqlStore;
use servicehub_operator::validate::{self, Object, References, Sourced};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `servicehub run` process.
pub struct Operator {
    child: Option<Child>,
    /// Where its HTTP server listens.
    pub http: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl Operator {
    /// Start the binary against `api` and the store at `store_url`, with extra flags.
    pub fn start(api: &ApiServer, store_url: &str, extra: &[&str]) -> Operator {
        Operator::start_with_env(api, store_url, extra, &[])
    }

    /// [`Operator::start`] with extra environment variables (secrets are environment-only).
    pub fn start_with_env(api: &ApiServer, store_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        Operator::start_with_kubeconfig(&api.kubeconfig(), store_url, extra, env)
    }

    /// [`Operator::start_with_env`] with a kubeconfig of the caller's (an API server that is
    /// not there, say).
    pub fn start_with_kubeconfig(config: &str, store_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, config).expect("kubeconfig");
        let log = dir.path().join("operator.log");
        let http = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_servicehub"))
            .args(["run", "--store", store_url, "--http-addr", &http.to_string()])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("SERVICEHUB_LOG", "info,servicehub_operator=debug")
            .env("SERVICEHUB_LOG_FORMAT", "text")
            .env("SERVICEHUB_NOTIFY_DIR", dir.path().join("outbox"))
            .envs(env.iter().copied())
            .env_remove("SERVICEHUB_STORE")
            .env_remove("POD_NAME")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start servicehub run");
        Operator { child: Some(child), http, log, _dir: dir }
    }

    /// Where its file transport writes invitations (`.eml`).
    pub fn outbox(&self) -> PathBuf {
        self._dir.path().join("outbox")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// What it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no cleanup, no lease release.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit (at most `timeout`); the exit code. Async: the
    /// emulation runs on the test's runtime and must keep answering while the process shuts
    /// down (it releases its lease through it).
    pub async fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET a path on its HTTP server: status code and body.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.http).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        let code = buf.split(' ').nth(1)?.parse().ok()?;
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Some((code, body))
    }

    /// The sum of a metric's samples whose line starts with `prefix` (name and labels).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let Some((_, body)) = self.get("/metrics").await else { return f64::NAN };
        body.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }

    /// Wait until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            assert!(Instant::now() < deadline, "the operator never became ready; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The example scenario, validated (schema defaults applied), in dependency order.
pub fn examples() -> Vec<Sourced> {
    let report = validate::validate_paths(&[crate::support::repo("examples")], References::InSet);
    assert!(!report.has_errors(), "{:?}", report.problems);
    report.objects
}

/// Create objects through the API (and their namespaces).
pub async fn create(client: &kube::Client, objects: &[Sourced]) {
    let namespaces: std::collections::BTreeSet<String> =
        objects.iter().map(|o| o.object.namespace().to_owned()).collect();
    for ns in namespaces {
        let n = Namespace { metadata: ObjectMeta { name: Some(ns), ..Default::default() }, ..Default::default() };
        let _ = Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &n).await;
    }
    for s in objects {
        create_one(client, &s.object).await;
    }
}

/// Create one object through the API.
pub async fn create_one(client: &kube::Client, o: &Object) {
    let pp = PostParams::default();
    let ns = o.namespace();
    let r = match o {
        Object::Customer(x) => Api::<Customer>::namespaced(client.clone(), ns).create(&pp, x).await.map(|_| ()),
        Object::Workspace(x) => Api::<Workspace>::namespaced(client.clone(), ns).create(&pp, x).await.map(|_| ()),
        Object::Membership(x) => Api::<Membership>::namespaced(client.clone(), ns).create(&pp, x).await.map(|_| ()),
        Object::LockboxPolicy(x) => {
            Api::<LockboxPolicy>::namespaced(client.clone(), ns).create(&pp, x).await.map(|_| ())
        }
    };
    r.unwrap_or_else(|e| panic!("create {} {}: {e}", o.kind(), o.name()));
}

/// The four kinds, for untyped listing.
pub fn kinds() -> [ApiResource; 4] {
    [
        ApiResource::erase::<Customer>(&()),
        ApiResource::erase::<Workspace>(&()),
        ApiResource::erase::<Membership>(&()),
        ApiResource::erase::<LockboxPolicy>(&()),
    ]
}

/// Every servicehub object in the cluster.
pub async fn all_objects(client: &kube::Client) -> Vec<DynamicObject> {
    let mut out = Vec::new();
    for ar in kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        // Tests inject API failures; the test's own reads retry through them.
        let mut tries = 0;
        let mut list = loop {
            match api.list(&Default::default()).await {
                Ok(l) => break l.items,
                Err(e) if tries < 100 => {
                    tries += 1;
                    tracing::debug!(error = %e, "list failed; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("list {}: {e}", ar.kind),
            }
        };
        for o in &mut list {
            o.types = Some(kube::api::TypeMeta { api_version: ar.api_version.clone(), kind: ar.kind.clone() });
        }
        out.extend(list);
    }
    out
}

/// A condition of an untyped object: (status, reason, message, observedGeneration).
pub fn condition(o: &DynamicObject, type_: &str) -> Option<(String, String, String, Option<i64>)> {
    let conds = o.data.pointer("/status/conditions")?.as_array()?;
    let c = conds.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
        c["message"].as_str().unwrap_or_default().to_owned(),
        c["observedGeneration"].as_i64(),
    ))
}

/// Whether an object is Ready for its current generation.
pub fn is_ready(o: &DynamicObject) -> bool {
    let generation = o.metadata.generation;
    let observed = o.data.pointer("/status/observedGeneration").and_then(|v| v.as_i64());
    matches!(condition(o, "Ready"), Some((s, _, _, g)) if s == "True" && g == generation) && observed == generation
}

fn describe(o: &DynamicObject) -> String {
    let kind = o.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("?");
    format!("{kind} {}: {:?}", o.metadata.name.as_deref().unwrap_or("?"), condition(o, "Ready"))
}

/// Wait until every servicehub object is Ready for its generation; panics with the laggards
/// (and the operator's logs) after `timeout`.
pub async fn wait_all_ready(client: &kube::Client, op: &Operator, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let all = all_objects(client).await;
        let waiting: Vec<String> = all.iter().filter(|o| !is_ready(o)).map(describe).collect();
        if waiting.is_empty() && !all.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("not Ready after {timeout:?}:\n{}\noperator logs:\n{}", waiting.join("\n"), op.logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until `check` holds, polling; panics with `what` and the logs after `timeout`.
pub async fn eventually<F, Fut>(op: &Operator, timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}; operator logs:\n{}", op.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a store holds, by names rather than uids (which differ between a cluster and a local
/// apply): one sorted line per row of each table the operator provisions.
pub async fn store_contents(store: &SqlStore) -> Vec<String> {
    let queries = [
        "SELECT 'customer ' || namespace || '/' || name || ' ' || phase FROM customers WHERE managed",
        "SELECT 'workspace ' || namespace || '/' || name || ' default=' || CASE WHEN is_default THEN 1 ELSE 0 END \
         || ' personal=' || CASE WHEN personal_allowed THEN 1 ELSE 0 END FROM workspaces WHERE managed",
        "SELECT 'user ' || email || ' ' || account_type FROM users",
        "SELECT 'membership ' || m.namespace || ' ' || m.origin || ' ' || m.name || ' ' || m.subject_key || ' in ' \
         || COALESCE(w.name, '(customer)') FROM memberships m LEFT JOIN workspaces w ON w.id = m.workspace_id",
        "SELECT 'role ' || m.subject_key || ' ' || COALESCE(w.name, '(customer)') || ' ' || r.role FROM role_assignments r \
         JOIN memberships m ON m.id = r.membership_id LEFT JOIN workspaces w ON w.id = m.workspace_id",
        "SELECT 'grant ' || m.subject_key || ' ' || COALESCE(w.name, '(customer)') || ' ' || g.permission || ' ' || g.source \
         FROM grants g JOIN memberships m ON m.id = g.membership_id LEFT JOIN workspaces w ON w.id = m.workspace_id",
        "SELECT 'invitation ' || i.subject_key || ' ' || COALESCE(w.name, '(customer)') || ' ' || i.state || ' #' \
         || CAST(i.issue AS TEXT) FROM invitations i LEFT JOIN workspaces w ON w.id = i.scope_key",
        "SELECT 'policy ' || namespace || '/' || name || ' enabled=' || CASE WHEN enabled THEN 1 ELSE 0 END \
         FROM lockbox_policies WHERE managed",
    ];
    let mut out = Vec::new();
    for q in queries {
        out.extend(store.strings(q).await.unwrap_or_else(|e| panic!("{q}: {e}")));
    }
    out.sort();
    out
}

/// The usual start of a controller test on `store`: the emulation holding the example
/// scenario, and the operator started with `args` and waited for until every object is Ready.
pub async fn ready_scenario_on(store: &crate::support::TestStore, args: &[&str]) -> (ApiServer, Operator) {
    let api = ApiServer::start().await;
    create(&api.client(), &examples()).await;
    let op = Operator::start(&api, &store.url, args);
    wait_all_ready(&api.client(), &op, Duration::from_secs(60)).await;
    (api, op)
}

/// [`ready_scenario_on`] a fresh SQLite store.
pub async fn ready_scenario(args: &[&str]) -> (crate::support::TestStore, ApiServer, Operator) {
    let s = crate::support::sqlite_unmigrated().await;
    let (api, op) = ready_scenario_on(&s, args).await;
    (s, api, op)
}

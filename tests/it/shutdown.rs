//! `servicehub run` stops on SIGTERM within a bounded time in every state, also while the
//! API server is unreachable (refusing, or accepting connections and never answering): in a
//! pod the kubelet SIGKILLs it after the grace period otherwise, without a lease release.

use crate::apiserver::http::ApiServer;
use crate::cluster::Operator;
use std::time::{Duration, Instant};

/// What `--shutdown-timeout` is set to here; the chart's grace period is 30 s.
const GRACE: &str = "2s";
/// The test's allowance: the grace period, plus starting up and the lease release (bounded).
const WITHIN: Duration = Duration::from_secs(12);

fn kubeconfig(server: &str) -> String {
    crate::apiserver::http::kubeconfig_for(server)
}

/// A loopback port that accepts connections and never answers (a black-holed API server).
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (format!("http://{addr}"), task)
}

/// A loopback port nobody listens on.
fn refused_api() -> String {
    format!("http://{}", crate::cluster::free_addr())
}

/// SIGTERM, a clean exit in time; what it logged.
async fn stops_in_time(mut op: Operator, what: &str) -> String {
    let started = Instant::now();
    let code = op.terminate(WITHIN).await;
    let took = started.elapsed();
    let logs = op.logs();
    assert_eq!(code, Some(0), "{what}: no clean exit within {WITHIN:?} of SIGTERM (took {took:?})\n{logs}");
    assert!(logs.contains("SIGTERM: shutting down"), "{what}: {logs}");
    logs
}

fn store_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("servicehub.db").display())
}

/// Start the operator against the API server at `server` for 3 s, then SIGTERM it; its logs.
async fn run_against(server: &str, election: &str, what: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let op = Operator::start_with_kubeconfig(
        &kubeconfig(server),
        &store_url(&dir),
        &["--leader-elect", election, "--shutdown-timeout", GRACE],
        &[],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    stops_in_time(op, &format!("{what}, leader election {election}")).await
}

#[tokio::test]
async fn sigterm_stops_the_operator_while_the_api_server_refuses_connections() {
    for election in ["true", "false"] {
        let api = refused_api();
        let logs = run_against(&api, election, "refused").await;
        if election == "true" {
            // The warnings say which server did not answer.
            let failed = logs.lines().find(|l| l.contains("lease request failed")).unwrap_or_else(|| panic!("{logs}"));
            assert!(failed.contains(&format!("api_server={api}")), "{failed}");
        }
    }
}

#[tokio::test]
async fn sigterm_stops_the_operator_while_the_api_server_never_answers() {
    let (server, hole) = black_hole().await;
    for election in ["true", "false"] {
        run_against(&server, election, "black hole").await;
    }
    hole.abort();
}

#[tokio::test]
async fn sigterm_stops_a_leader_whose_api_server_went_away_mid_work() {
    for gone in ["stopped", "hanging"] {
        let api = ApiServer::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let op = Operator::start(&api, &store_url(&dir), &["--shutdown-timeout", GRACE]);
        op.wait_ready(Duration::from_secs(20)).await;
        // Work in flight: the example scenario arrives, then the API server goes.
        crate::cluster::create(&api.client(), &crate::cluster::examples()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let kept = match gone {
            "stopped" => {
                api.stop().await;
                None
            }
            _ => {
                api.set_latency(Duration::from_secs(3600));
                api.drop_watches();
                Some(api)
            }
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        stops_in_time(op, &format!("leader, API server {gone}")).await;
        drop(kept);
    }
}

/// A password given as a URL parameter (`?password=`) is as secret as one before the host:
/// neither the "store open" log line nor a store error prints it.
#[tokio::test]
async fn a_password_given_as_a_url_parameter_is_never_printed() {
    const SECRET: &str = "pw-9f83c1-not-shown";
    // An error: a server that refuses, reported at once.
    let refused = format!("postgres://svc@{}/db?sslmode=disable&password={SECRET}", crate::cluster::free_addr());
    let started = Instant::now();
    let out = crate::support::servicehub(&["get", "customers", "--store", &refused]);
    assert!(!out.status.success());
    let err = crate::support::stderr(&out);
    assert!(!err.contains(SECRET), "{err}");
    assert!(err.contains("password=***") && err.contains("Connection refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "a refused connection is reported at once");

    // The log line of a store that opens (PostgreSQL trusts this machine, so the password
    // parameter is carried but not needed).
    let Some(s) = crate::support::postgres_unmigrated().await else { return };
    let url = format!("{}&password={SECRET}", s.url);
    let op = Operator::start_with_kubeconfig(&kubeconfig(&refused_api()), &url, &["--shutdown-timeout", GRACE], &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !op.logs().contains("store open") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = op.logs();
    assert!(logs.contains("store open"), "{logs}");
    assert!(!logs.contains(SECRET), "{logs}");
    stops_in_time(op, "after the store opened").await;
}

//! `servicehub run` against the API server emulation, with the real binary and real stores.

use crate::apiserver::http::ApiServer;
use crate::cluster::{Operator, all_objects, create, examples, is_ready, store_contents, wait_all_ready};
use crate::support::{TestStore, stores};
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

/// The same files applied locally to a fresh store of the same backend.
async fn locally_applied(s: &TestStore) -> Vec<String> {
    let local = match s.name {
        "postgres" => crate::support::postgres_unmigrated().await.expect("postgres"),
        _ => crate::support::sqlite_unmigrated().await,
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["apply", "-f", "examples/", "--store", &local.url])
        .current_dir(crate::support::root())
        .output()
        .expect("servicehub apply");
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    store_contents(&local.store).await
}

#[tokio::test]
async fn the_examples_become_ready_and_the_store_matches_a_local_apply() {
    for s in stores().await {
        let api = ApiServer::start().await;
        let client = api.client();
        create(&client, &examples()).await;
        let op = Operator::start(&api, &s.url, &["--leader-elect=false"]);
        wait_all_ready(&client, &op, CONVERGE).await;
        for o in all_objects(&client).await {
            assert!(is_ready(&o), "{}: {:?}", s.name, o.metadata.name);
            assert_eq!(o.metadata.finalizers.as_deref(), Some(&["servicehub.io/cleanup".to_owned()][..]));
        }
        assert_eq!(
            store_contents(&s.store).await,
            locally_applied(&s).await,
            "{}: cluster and local apply differ",
            s.name
        );
        op.wait_ready(Duration::from_secs(10)).await;
    }
}

//! API server emulation at scale: 50,000 Memberships served to a kube-rs reflector (paged
//! list, then watch), and the delay until a change made afterwards reaches it.
//!
//!     cargo bench --bench emulator

#[path = "../tests/apiserver/mod.rs"]
#[allow(dead_code)]
mod apiserver;

use apiserver::registry::{FieldValidation, Resource};
use futures::StreamExt;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use servicehub_operator::api::Membership;
use std::time::{Duration, Instant};

const OBJECTS: usize = 50_000;

fn membership(i: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "servicehub.io/v1alpha1", "kind": "Membership",
        "metadata": { "name": format!("m-{i}"), "namespace": "bench" },
        "spec": {
            "customerRef": { "name": "bench" }, "workspaceRef": { "name": format!("ws-{}", i % 100) },
            "subject": { "kind": "User", "email": format!("user{i}@bench.example") },
            "permissions": ["Learning", "Programs"],
        }
    })
}

#[tokio::main]
async fn main() {
    let server = apiserver::http::ApiServer::start_with_history(100_000).await;
    let r = Resource { group: "servicehub.io".into(), version: "v1alpha1".into(), plural: "memberships".into() };
    let start = Instant::now();
    for i in 0..OBJECTS {
        server.registry.create(&r, Some("bench"), membership(i), FieldValidation::Prune).expect("create");
    }
    let load = start.elapsed();

    let api: Api<Membership> = Api::all(server.client());
    let (store, writer) = reflector::store();
    let start = Instant::now();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let mut stream = Box::pin(stream);
    let driver = tokio::spawn(async move { while stream.next().await.is_some() {} });
    store.wait_until_ready().await.expect("reflector ready");
    let synced = start.elapsed();
    assert_eq!(store.state().len(), OBJECTS);

    let api_ns: Api<Membership> = Api::namespaced(server.client(), "bench");
    let new: Membership = serde_json::from_value(membership(OBJECTS)).expect("membership");
    let start = Instant::now();
    api_ns.create(&PostParams::default(), &new).await.expect("create");
    while store.state().len() < OBJECTS + 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let latency = start.elapsed();
    println!("emulator with {OBJECTS} Memberships (created with schema and CEL checks in {:.2}s):", load.as_secs_f64());
    println!("  kube-rs reflector list (pages of 500) + watch start: {:>6.2}s", synced.as_secs_f64());
    println!("  a new object reaches the reflector in:             {:>6.1}ms", latency.as_secs_f64() * 1000.0);
    driver.abort();
    server.stop().await;
}

//! The emulated API server over HTTP, driven by kube-rs as the operator will drive a real one.

use crate::apiserver::http::ApiServer;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use servicehub_operator::api::Customer;
use std::time::Duration;

fn contoso() -> Customer {
    let text = std::fs::read_to_string(crate::support::repo("examples/01-customer.yaml")).expect("example");
    let mut c: Customer = serde_yaml::from_str(&text).expect("customer");
    c.metadata.namespace = None;
    c
}

#[tokio::test]
async fn kube_rs_creates_reads_lists_and_patches_status() {
    let server = ApiServer::start().await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    let created = api.create(&PostParams::default(), &contoso()).await.expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    let got = api.get("contoso").await.expect("get");
    assert_eq!(got.spec, created.spec);
    assert_eq!(api.list(&ListParams::default()).await.expect("list").items.len(), 1);

    let status = serde_json::json!({ "status": { "phase": "Active", "observedGeneration": 1 } });
    let patched = api.patch_status("contoso", &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
    assert_eq!(patched.metadata.generation, Some(1), "status writes keep the generation");
    assert!(patched.status.is_some());
    let spec = serde_json::json!({ "spec": { "displayName": "Contoso Group" } });
    let patched = api.patch("contoso", &PatchParams::default(), &Patch::Merge(&spec)).await.expect("spec");
    assert_eq!(patched.metadata.generation, Some(2));
    assert!(patched.status.is_some(), "the main resource keeps the status");

    let mut stale = created.clone();
    stale.spec.display_name = "stale".into();
    let err = api.replace("contoso", &PostParams::default(), &stale).await.expect_err("stale");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err:?}");
    let missing = api.get("nope").await.expect_err("missing");
    assert!(matches!(missing, kube::Error::Api(ref s) if s.code == 404), "{missing:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_kube_runtime_watcher_sees_every_change() {
    let server = ApiServer::start().await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    // The initial list (empty) completes first.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.expect("in time").expect("ok") {
            Some(watcher::Event::InitDone) => break,
            Some(_) => continue,
            None => panic!("watch ended"),
        }
    }
    let mut c = contoso();
    c.metadata.finalizers = Some(vec!["servicehub.io/cleanup".into()]);
    api.create(&PostParams::default(), &c).await.expect("create");
    api.delete("contoso", &DeleteParams::default()).await.expect("delete marks");
    let clear = serde_json::json!({ "metadata": { "finalizers": null } });
    api.patch("contoso", &PatchParams::default(), &Patch::Merge(&clear)).await.expect("finalizer removed");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.expect("in time").expect("ok");
        match e {
            Some(watcher::Event::Apply(c)) => {
                seen.push(if c.metadata.deletion_timestamp.is_some() { "marked" } else { "applied" })
            }
            Some(watcher::Event::Delete(_)) => seen.push("deleted"),
            Some(_) => {}
            None => panic!("watch ended"),
        }
    }
    assert_eq!(seen, vec!["applied", "marked", "deleted"]);
    server.stop().await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_gets_410() {
    let server = ApiServer::start_with_history(2).await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    api.create(&PostParams::default(), &contoso()).await.expect("create");
    for name in ["b", "c", "d"] {
        let mut c = contoso();
        c.metadata.name = Some(name.into());
        api.create(&PostParams::default(), &c).await.expect("create");
    }
    // Version 1 predates everything the server still keeps.
    let mut stream = api.watch(&WatchParams::default().timeout(5), "1").await.expect("watch").boxed();
    match stream.next().await.expect("an event").expect("decoded") {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    server.stop().await;
}

/// Run kubectl against the emulator; `None` (with the reason printed) when kubectl is not
/// installed, which CI does not accept.
pub(crate) fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> Option<std::process::Output> {
    match std::process::Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output() {
        Ok(out) => Some(out),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: kubectl is not available ({e})");
            None
        }
        Err(e) => panic!("kubectl is required in CI: {e}"),
    }
}

#[tokio::test]
async fn kubectl_applies_lists_and_deletes_through_the_emulator() {
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubeconfig");
    std::fs::write(&config, server.kubeconfig()).expect("kubeconfig");
    let examples = crate::support::repo("examples");
    let ex = examples.to_str().expect("utf-8");
    let run = |args: Vec<String>| {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                kubectl(&config, &args)
            })
            .await
            .expect("join")
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let crds = crate::support::repo("crds");
    let crds = crds.to_str().expect("utf-8");
    let Some(out) = run(s(&["apply", "--dry-run=client", "--validate=false", "-f", crds])).await else { return };
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl apply --dry-run=client -f crds/: {text}");
    assert!(
        text.contains("customresourcedefinition.apiextensions.k8s.io/customers.servicehub.io created (dry run)"),
        "{text}"
    );
    let out = run(s(&["apply", "--validate=false", "-f", ex])).await.expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl apply: {text}");
    assert!(text.contains("customer.servicehub.io/contoso created"), "{text}");
    let objects = server.registry.list(
        &crate::apiserver::registry::Resource {
            group: "servicehub.io".into(),
            version: "v1alpha1".into(),
            plural: "memberships".into(),
        },
        Some("contoso"),
    );
    assert_eq!(objects.expect("list").0.len(), 8, "every Membership of the example reached the server");
    let out = run(s(&["get", "servicehub", "-n", "contoso", "-o", "name"])).await.expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().count(), 13, "all four kinds through the category: {text}");
    let out = run(s(&["delete", "-f", &format!("{ex}/03-memberships.yaml")])).await.expect("kubectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(s(&["get", "mbr", "-n", "contoso", "-o", "name"])).await.expect("kubectl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await;
}

#[tokio::test]
async fn injected_failures_dropped_watches_and_restarts_are_survivable() {
    let mut server = ApiServer::start().await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    api.create(&PostParams::default(), &contoso()).await.expect("create");
    let before = server.stats();
    assert_eq!(before.writes, 1);

    server.fail_next(2, 500);
    for _ in 0..2 {
        let err = api.get("contoso").await.expect_err("injected");
        assert!(matches!(err, kube::Error::Api(ref s) if s.code == 500), "{err:?}");
    }
    assert!(api.get("contoso").await.is_ok(), "the third request goes through");

    // A watcher keeps seeing changes across dropped watches and a restart.
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    next_apply(&mut events).await.expect("initial object");
    server.drop_watches();
    let patch = serde_json::json!({ "spec": { "displayName": "After drop" } });
    api.patch("contoso", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    let c = loop {
        let c = next_apply(&mut events).await.expect("after the drop");
        if c.spec.display_name == "After drop" {
            break c;
        }
    };
    assert_eq!(c.metadata.generation, Some(2));
    server.restart().await;
    let patch = serde_json::json!({ "spec": { "displayName": "After restart" } });
    api.patch("contoso", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch after restart");
    loop {
        let c = next_apply(&mut events).await.expect("after the restart");
        if c.spec.display_name == "After restart" {
            break;
        }
    }
    server.set_latency(Duration::from_millis(50));
    let started = std::time::Instant::now();
    api.get("contoso").await.expect("slow get");
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(server.stats().watches >= 2, "the watcher watched again: {:?}", server.stats());
    server.stop().await;
}

type Events = futures::stream::BoxStream<'static, Result<watcher::Event<Customer>, watcher::Error>>;

/// The next object a watcher applies, skipping errors (it retries by itself), within 20 s.
async fn next_apply(events: &mut Events) -> Result<Customer, tokio::time::error::Elapsed> {
    let fut = async {
        loop {
            match events.try_next().await {
                Ok(Some(watcher::Event::Apply(c) | watcher::Event::InitApply(c))) => return c,
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) => panic!("watch stream ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), fut).await
}

#[tokio::test]
async fn writes_are_validated_against_the_crd_schema_and_cel_rules() {
    use kube::api::{ApiResource, DynamicObject};
    use kube::core::GroupVersionKind;
    let server = ApiServer::start().await;
    let gvk = GroupVersionKind::gvk("servicehub.io", "v1alpha1", "Customer");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "customers");
    let api: Api<DynamicObject> = Api::namespaced_with(server.client(), "contoso", &ar);
    let customer = |spec: serde_json::Value| -> DynamicObject {
        let mut base = serde_json::to_value(contoso()).expect("json");
        json_patch::merge(&mut base["spec"], &spec);
        serde_json::from_value(base).expect("dynamic")
    };
    let invalid = |e: kube::Error| match e {
        kube::Error::Api(s) if s.code == 422 => s.message,
        other => panic!("expected 422, got {other:?}"),
    };
    let msg = invalid(
        api.create(&PostParams::default(), &customer(serde_json::json!({"displayName": 42}))).await.expect_err("type"),
    );
    assert!(
        msg.contains(
            "Customer.servicehub.io \"contoso\" is invalid: spec.displayName: Invalid value: 42: must be of type string"
        ),
        "{msg}"
    );
    let dates = serde_json::json!({"agreement": {"startDate": "2026-01-01", "endDate": "2025-01-01"}});
    let msg = invalid(api.create(&PostParams::default(), &customer(dates)).await.expect_err("cel"));
    assert!(msg.contains("endDate must be after startDate"), "{msg}");

    // Unknown fields are pruned for clients that do not ask for strict validation.
    let created =
        api.create(&PostParams::default(), &customer(serde_json::json!({"bogus": true}))).await.expect("pruned");
    assert!(created.data["spec"].get("bogus").is_none());
    assert_eq!(created.data["spec"]["settings"]["inProductFeedback"], true, "schema defaults are applied");
    // With ?fieldValidation=Strict, as kubectl asks, they are rejected.
    let url =
        format!("{}/apis/servicehub.io/v1alpha1/namespaces/contoso/customers?fieldValidation=Strict", server.url());
    let mut body = serde_json::to_value(customer(serde_json::json!({"bogus": true}))).expect("json");
    body["metadata"]["name"] = "strict".into();
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .expect("request");
    let err = server.client().request::<serde_json::Value>(req).await.expect_err("strict");
    assert!(invalid(err).contains("spec.bogus: unknown field"));

    // Transition rules see the old object: references are immutable.
    let ws_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("servicehub.io", "v1alpha1", "Workspace"),
        "workspaces",
    );
    let ws_api: Api<DynamicObject> = Api::namespaced_with(server.client(), "contoso", &ws_ar);
    let ws: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "servicehub.io/v1alpha1", "kind": "Workspace", "metadata": { "name": "ops" },
        "spec": { "customerRef": { "name": "contoso" }, "displayName": "Ops", "administrators": [{ "email": "a@contoso.com" }] }
    }))
    .expect("workspace");
    ws_api.create(&PostParams::default(), &ws).await.expect("workspace");
    let moved = serde_json::json!({ "spec": { "customerRef": { "name": "fabrikam" } } });
    let msg =
        invalid(ws_api.patch("ops", &PatchParams::default(), &Patch::Merge(&moved)).await.expect_err("immutable"));
    assert!(msg.contains("spec.customerRef: is immutable"), "{msg}");
    server.stop().await;
}

#[tokio::test]
async fn lists_filter_by_label_and_paginate() {
    let server = ApiServer::start().await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    for i in 0..7 {
        let mut c = contoso();
        c.metadata.name = Some(format!("c{i}"));
        let tier = if i % 2 == 0 { "gold" } else { "silver" };
        c.metadata.labels = Some([("tier".to_owned(), tier.to_owned())].into());
        api.create(&PostParams::default(), &c).await.expect("create");
    }
    let names = |l: kube::core::ObjectList<Customer>| -> Vec<String> {
        l.items.into_iter().map(|c| c.metadata.name.expect("name")).collect()
    };
    let gold = api.list(&ListParams::default().labels("tier=gold")).await.expect("gold");
    assert_eq!(names(gold), vec!["c0", "c2", "c4", "c6"]);
    let not_gold = api.list(&ListParams::default().labels("tier notin (gold)")).await.expect("silver");
    assert_eq!(names(not_gold), vec!["c1", "c3", "c5"]);
    assert!(api.list(&ListParams::default().labels("!tier")).await.expect("none").items.is_empty());
    // Pages of 3: the client follows `continue` until it is empty.
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(3);
    loop {
        let page = api.list(&params).await.expect("page");
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        seen.extend(names(page));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    // A label-filtered watcher sees only matching objects.
    let mut events = watcher(api.clone(), watcher::Config::default().labels("tier=silver")).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.expect("in time").expect("ok") {
            Some(watcher::Event::InitApply(c)) => initial.push(c.metadata.name.expect("name")),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("ended"),
        }
    }
    assert_eq!(initial, vec!["c1", "c3", "c5"]);
    server.stop().await;
}

#[tokio::test]
async fn server_side_apply_records_owners_refuses_conflicts_and_honours_force() {
    let server = ApiServer::start().await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    let gitops = PatchParams::apply("argocd");
    let mut c = contoso();
    c.metadata.managed_fields = None;
    let created = api.patch("contoso", &gitops, &Patch::Apply(&c)).await.expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));

    // Another manager may not silently take over a field the first one applied...
    let other = PatchParams::apply("someone-else");
    let change = serde_json::json!({
        "apiVersion": "servicehub.io/v1alpha1", "kind": "Customer", "metadata": { "name": "contoso" },
        "spec": { "displayName": "Taken over" }
    });
    let err = api.patch("contoso", &other, &Patch::Apply(&change)).await.expect_err("conflict");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains("conflict with \"argocd\": .spec.displayName"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    // ...unless it forces.
    let forced = api.patch("contoso", &other.clone().force(), &Patch::Apply(&change)).await.expect("forced");
    assert_eq!(forced.spec.display_name, "Taken over");

    // The operator's status: applying the same status twice writes nothing; a field no
    // longer applied is removed.
    let status_pp = PatchParams::apply("servicehub-operator");
    let status = |default_ws: Option<&str>| {
        let mut s = serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Customer", "metadata": { "name": "contoso" },
            "status": { "phase": "Active", "observedGeneration": 2 }
        });
        if let Some(w) = default_ws {
            s["status"]["defaultWorkspace"] = w.into();
        }
        s
    };
    let first =
        api.patch_status("contoso", &status_pp, &Patch::Apply(&status(Some("contoso-hq")))).await.expect("status");
    let again =
        api.patch_status("contoso", &status_pp, &Patch::Apply(&status(Some("contoso-hq")))).await.expect("again");
    assert_eq!(first.metadata.resource_version, again.metadata.resource_version, "a no-op apply writes nothing");
    let dropped = api.patch_status("contoso", &status_pp, &Patch::Apply(&status(None))).await.expect("drop a field");
    let st = dropped.status.expect("status");
    assert_eq!(st.default_workspace, None);
    assert!(st.phase.is_some());
    assert_eq!(dropped.metadata.generation, Some(2), "status applies keep the generation");
    // A nested map no longer applied goes as a whole, not leaf by leaf (an empty
    // `counts: {}` left behind would not even deserialize for required fields).
    let mut with_counts = status(None);
    with_counts["status"]["counts"] = serde_json::json!({ "workspaces": 1, "users": 2, "pendingInvitations": 0 });
    let counted = api.patch_status("contoso", &status_pp, &Patch::Apply(&with_counts)).await.expect("counts");
    assert!(counted.status.expect("status").counts.is_some());
    let raw: Api<kube::api::DynamicObject> =
        Api::namespaced_with(server.client(), "contoso", &kube::api::ApiResource::erase::<Customer>(&()));
    api.patch_status("contoso", &status_pp, &Patch::Apply(&status(None))).await.expect("drop the map");
    let obj = raw.get("contoso").await.expect("get");
    assert_eq!(obj.data.pointer("/status/counts"), None, "{:?}", obj.data["status"]);
    assert!(obj.data.pointer("/status/phase").is_some());
    let err =
        api.patch("contoso", &PatchParams::default(), &Patch::Apply(&change)).await.expect_err("manager required");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn kubectl_describes_and_waits_for_a_condition() {
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubeconfig");
    std::fs::write(&config, server.kubeconfig()).expect("kubeconfig");
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    api.create(&PostParams::default(), &contoso()).await.expect("create");
    let mut other = contoso();
    other.metadata.name = Some("other".into());
    api.create(&PostParams::default(), &other).await.expect("create");
    let cfg = config.clone();
    let wait = tokio::task::spawn_blocking(move || {
        kubectl(&cfg, &["wait", "--for=condition=Ready", "--timeout=20s", "-n", "contoso", "customer/contoso"])
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = serde_json::json!({ "status": { "conditions": [{
        "type": "Ready", "status": "True", "reason": "Provisioned", "message": "ok",
        "lastTransitionTime": "2026-11-22T00:00:00Z", "observedGeneration": 1 }] } });
    api.patch_status("contoso", &PatchParams::default(), &Patch::Merge(&ready)).await.expect("ready");
    let Some(out) = wait.await.expect("join") else { return };
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("customer.servicehub.io/contoso condition met"));
    let cfg = config.clone();
    let out = tokio::task::spawn_blocking(move || kubectl(&cfg, &["describe", "-n", "contoso", "customer", "contoso"]))
        .await
        .expect("join")
        .expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Name:") && text.contains("contoso") && text.contains("Provisioned"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn field_selectors_pick_one_object() {
    let server = ApiServer::start().await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    for name in ["a", "b"] {
        let mut c = contoso();
        c.metadata.name = Some(name.into());
        api.create(&PostParams::default(), &c).await.expect("create");
    }
    let one = api.list(&ListParams::default().fields("metadata.name=b")).await.expect("list");
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].metadata.name.as_deref(), Some("b"));
    let mut events = watcher(api.clone(), watcher::Config::default().fields("metadata.name=a")).boxed();
    let first = next_apply(&mut events).await.expect("in time");
    assert_eq!(first.metadata.name.as_deref(), Some("a"));
    server.stop().await;
}

#[tokio::test]
async fn a_kube_runtime_reflector_mirrors_the_server() {
    use kube::runtime::{WatchStreamExt, reflector};
    let server = ApiServer::start().await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    for name in ["a", "b", "c"] {
        let mut c = contoso();
        c.metadata.name = Some(name.into());
        api.create(&PostParams::default(), &c).await.expect("create");
    }
    let (store, writer) = reflector::store();
    let mut stream = Box::pin(reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects());
    let driver = tokio::spawn(async move { while stream.next().await.is_some() {} });
    tokio::time::timeout(Duration::from_secs(5), store.wait_until_ready()).await.expect("in time").expect("ready");
    assert_eq!(store.state().len(), 3);
    api.delete("b", &DeleteParams::default()).await.expect("delete");
    let patch = serde_json::json!({ "spec": { "displayName": "Changed" } });
    api.patch("c", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let names: Vec<String> = store.state().iter().filter_map(|c| c.metadata.name.clone()).collect();
        let changed = store.state().iter().any(|c| c.spec.display_name == "Changed");
        if names.len() == 2 && changed {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reflector did not converge: {names:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    driver.abort();
    server.stop().await;
}

#[tokio::test]
async fn bookmarks_json_patches_leases_and_events() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    let server = ApiServer::start().await;
    let api: Api<Customer> = Api::namespaced(server.client(), "contoso");
    api.create(&PostParams::default(), &contoso()).await.expect("create");

    // JSON patch (RFC 6902), as kube-runtime's finalizer helper sends it.
    let ops: json_patch::Patch = serde_json::from_value(serde_json::json!([
        { "op": "test", "path": "/metadata/finalizers", "value": null },
        { "op": "add", "path": "/metadata/finalizers", "value": ["servicehub.io/cleanup"] }
    ]))
    .expect("ops");
    let patched = api.patch("contoso", &PatchParams::default(), &Patch::<()>::Json(ops)).await.expect("json patch");
    assert_eq!(patched.metadata.finalizers, Some(vec!["servicehub.io/cleanup".to_owned()]));

    // A watch that allows bookmarks gets one, carrying the current resource version.
    let rv = patched.metadata.resource_version.clone().expect("rv");
    let mut stream = api.watch(&WatchParams::default().timeout(10), &rv).await.expect("watch").boxed();
    let bookmark = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match stream.next().await.expect("event").expect("decoded") {
                WatchEvent::Bookmark(b) => return b,
                _ => continue,
            }
        }
    })
    .await
    .expect("a bookmark in time");
    assert!(bookmark.metadata.resource_version.parse::<u64>().expect("number") >= rv.parse::<u64>().expect("number"));

    // The built-in kinds the operator uses.
    let leases: Api<Lease> = Api::namespaced(server.client(), "servicehub-system");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "servicehub-operator" },
        "spec": { "holderIdentity": "pod-a", "leaseDurationSeconds": 15 }
    }))
    .expect("lease");
    leases.create(&PostParams::default(), &lease).await.expect("lease");
    assert_eq!(
        leases.get("servicehub-operator").await.expect("get").spec.and_then(|s| s.holder_identity),
        Some("pod-a".into())
    );
    let events: Api<K8sEvent> = Api::namespaced(server.client(), "contoso");
    let event: K8sEvent = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "contoso.1" }, "eventTime": "2026-11-22T00:00:00.000000Z",
        "reason": "Invited", "action": "Reconcile", "type": "Normal", "reportingController": "servicehub.io/operator",
        "reportingInstance": "pod-a", "note": "invited megan.bowen@contoso.com"
    }))
    .expect("event");
    events.create(&PostParams::default(), &event).await.expect("event");
    assert_eq!(events.list(&ListParams::default()).await.expect("list").items.len(), 1);
    server.stop().await;
}

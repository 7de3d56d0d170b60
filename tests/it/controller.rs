//! `servicehub run` against the API server emulation, with the real binary and real stores.

use crate::apiserver::http::ApiServer;
use crate::cluster::{
    self, Operator, all_objects, create, create_one, eventually, examples, is_ready, store_contents, wait_all_ready,
};
use crate::support::{TestStore, stores};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use servicehub_operator::api::{Customer, Membership, Workspace, conditions};
use servicehub_operator::validate::Object;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

/// The same files applied locally to a fresh store of the same backend.
async fn locally_applied(s: &TestStore) -> Vec<String> {
    let local = match s.name {
        "postgres" => crate::support::postgres_unmigrated().await.expect("postgres"),
        _ => crate::support::sqlite_unmigrated().await,
    };
    let outbox = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["apply", "-f", "examples/", "--store", &local.url])
        .current_dir(crate::support::root())
        .env("SERVICEHUB_NOTIFY_DIR", outbox.path())
        .output()
        .expect("servicehub apply");
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    store_contents(&local.store).await
}

#[tokio::test]
async fn the_examples_become_ready_and_the_store_matches_a_local_apply() {
    for s in stores().await {
        let (api, op) = cluster::ready_scenario_on(&s, &["--leader-elect=false"]).await;
        let client = api.client();
        for o in all_objects(&client).await {
            assert!(is_ready(&o), "{}: {:?}", s.name, o.metadata.name);
            assert_eq!(o.metadata.finalizers.as_deref(), Some(&["servicehub.io/cleanup".to_owned()][..]));
        }
        // The leader delivers what the reconciles queued: 13 people, one message each.
        let pending = "SELECT COUNT(*) FROM invitations WHERE state <> 'Sent'";
        cluster::eventually(&op, Duration::from_secs(30), "every invitation sent", || async {
            s.store.count(pending).await.unwrap_or(-1) == 0
        })
        .await;
        assert_eq!(crate::support::eml_files(&op.outbox()).len(), 13, "{}", s.name);
        // A Membership's status shows its invitation as sent, with a condition, without a resync.
        let shown = |m: &Membership| {
            let st = m.status.as_ref();
            st.and_then(|s| s.invitation.as_ref()).map(|i| i.state.clone()) == Some("Sent".into())
                && st.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Invited" && c.status == "True"))
        };
        let api_m = memberships(&client);
        cluster::eventually(&op, Duration::from_secs(20), "Membership status shows Sent", || async {
            let list = api_m.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
            let invited: Vec<_> =
                list.iter().filter(|m| m.status.as_ref().is_some_and(|s| s.invitation.is_some())).collect();
            !invited.is_empty() && invited.iter().all(|m| shown(m))
        })
        .await;
        assert_eq!(
            store_contents(&s.store).await,
            locally_applied(&s).await,
            "{}: cluster and local apply differ",
            s.name
        );
        // Created before the operator started, each Membership's status is written once:
        // not Pending first and Sent a moment later.
        let n = api_m.list(&Default::default()).await.expect("list").items.len() as u64;
        let stats = api.stats();
        let writes = stats.writes_to(&["memberships/status"]);
        let twice: Vec<_> =
            stats.writes_by_object.iter().filter(|(k, n)| k.starts_with("memberships/status") && **n > 1).collect();
        let logs = op.logs();
        let written: Vec<&str> = logs
            .lines()
            .filter(|l| {
                l.contains("status written")
                    && twice.iter().any(|(k, _)| l.contains(k.rsplit('/').next().unwrap_or("-")))
            })
            .collect();
        assert!(
            writes <= n,
            "{}: {writes} status writes for {n} Memberships: {twice:?}\n{}",
            s.name,
            written.join("\n")
        );
        op.wait_ready(Duration::from_secs(10)).await;
    }
}

fn membership(name: &str, workspace: Option<&str>, email: &str, roles: &[&str], permissions: &[&str]) -> Object {
    let mut spec = serde_json::json!({
        "customerRef": { "name": "contoso" },
        "subject": { "kind": "User", "email": email },
        "roles": roles,
        "permissions": permissions,
    });
    if let Some(w) = workspace {
        spec["workspaceRef"] = serde_json::json!({ "name": w });
    }
    let m: Membership = serde_json::from_value(serde_json::json!({
        "apiVersion": "servicehub.io/v1alpha1",
        "kind": "Membership",
        "metadata": { "name": name, "namespace": "contoso" },
        "spec": spec,
    }))
    .expect("membership");
    Object::Membership(Box::new(m))
}

async fn count(s: &TestStore, sql: &str) -> i64 {
    s.store.count(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn memberships(client: &kube::Client) -> Api<Membership> {
    Api::namespaced(client.clone(), "contoso")
}

#[tokio::test]
async fn updates_follow_deletes_clean_up_and_orphan_keeps_rows() {
    for s in stores().await {
        let (api, op) = cluster::ready_scenario_on(&s, &["--leader-elect=false"]).await;
        let client = api.client();
        let individual = "SELECT COUNT(*) FROM grants g JOIN memberships m ON m.id = g.membership_id \
                          WHERE m.name = 'diego-open-canvas' AND g.permission = 'ViewEngagements' AND g.source = 'individual'";
        assert_eq!(count(&s, individual).await, 1, "{}", s.name);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = api.stats();

        // Drop one individually granted permission: the grant goes, the status moves once.
        let patch = serde_json::json!({ "spec": { "permissions": ["ViewOpenCanvas"] } });
        memberships(&client)
            .patch("diego-open-canvas", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch");
        eventually(&op, CONVERGE, "diego's status at generation 2", || async {
            let m = memberships(&client).get("diego-open-canvas").await.expect("get");
            m.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
                && conditions::is_true(&m.status.as_ref().expect("status").conditions, conditions::READY)
        })
        .await;
        assert_eq!(count(&s, individual).await, 0, "{}: the revoked grant is gone", s.name);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = api.stats();
        let status_writes = after.writes_to(&["memberships/status"]) - before.writes_to(&["memberships/status"]);
        assert_eq!(status_writes, 1, "{}: one status patch for one change", s.name);
        assert_eq!(after.writes_to(&["memberships"]), before.writes_to(&["memberships"]) + 1, "only the user's patch");
        assert_eq!(
            after.writes_to(&["customers/status", "workspaces/status"]),
            before.writes_to(&["customers/status", "workspaces/status"])
        );

        // Delete a Membership (deletionPolicy: Delete): its rows go, then the object.
        memberships(&client).delete("lee-emea-support", &Default::default()).await.expect("delete");
        eventually(&op, CONVERGE, "lee-emea-support to disappear", || async {
            memberships(&client).get_opt("lee-emea-support").await.expect("get").is_none()
        })
        .await;
        assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE name = 'lee-emea-support'").await, 0);

        // Delete the Customer (deletionPolicy: Orphan): it goes, its rows stay, unmanaged.
        Api::<Customer>::namespaced(client.clone(), "contoso")
            .delete("contoso", &Default::default())
            .await
            .expect("delete");
        eventually(&op, CONVERGE, "the Customer to disappear", || async {
            Api::<Customer>::namespaced(client.clone(), "contoso").get_opt("contoso").await.expect("get").is_none()
        })
        .await;
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM customers WHERE name = 'contoso' AND NOT managed").await,
            1,
            "{}",
            s.name
        );
        assert!(count(&s, "SELECT COUNT(*) FROM grants").await > 0, "{}: orphaned rows stay", s.name);

        // Everything else goes too, although its Customer is gone: a missing parent never
        // blocks a deletion.
        for o in all_objects(&client).await {
            let ar = cluster::kinds()
                .into_iter()
                .find(|k| Some(&k.kind) == o.types.as_ref().map(|t| &t.kind))
                .expect("kind");
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), "contoso", &ar);
            api.delete(o.metadata.name.as_deref().expect("name"), &Default::default()).await.expect("delete");
        }
        eventually(&op, CONVERGE, "every object to disappear", || async { all_objects(&client).await.is_empty() })
            .await;
    }
}

#[tokio::test]
async fn an_invalid_spec_stalls_with_the_rule_and_leaves_the_store_untouched() {
    let (s, api, op) = cluster::ready_scenario(&["--leader-elect=false"]).await;
    let client = api.client();
    let rows = count(&s, "SELECT COUNT(*) FROM audit").await;
    // What one object shows is refused by the API server itself (CEL): a permission the
    // matrix does not let a User hold never reaches the operator.
    let refused = memberships(&client)
        .create(
            &PostParams::default(),
            &match membership("kim", Some("contoso-emea"), "kim@contoso.com", &["User"], &["ManageUsers"]) {
                Object::Membership(m) => *m,
                _ => unreachable!(),
            },
        )
        .await;
    match refused {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert!(
                e.message.contains("a permission is not grantable to a member holding these roles"),
                "{}",
                e.message
            );
        }
        other => panic!("the API server accepted a permission the matrix refuses: {other:?}"),
    }
    // Valid for the schema and CEL; refused by a rule between objects: contoso-emea takes
    // work or school accounts only.
    let mut kim = membership("kim", Some("contoso-emea"), "kim@outlook.com", &["User"], &["Learning"]);
    if let Object::Membership(m) = &mut kim {
        m.spec.subject.account_type = Some(servicehub_operator::api::AccountType::Personal);
    }
    create_one(&client, &kim).await;
    eventually(&op, CONVERGE, "kim to stall", || async {
        let m = memberships(&client).get("kim").await.expect("get");
        m.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::STALLED))
    })
    .await;
    let m = memberships(&client).get("kim").await.expect("get");
    let status = m.status.expect("status");
    let stalled = conditions::get(&status.conditions, conditions::STALLED).expect("stalled");
    assert_eq!(stalled.reason, "PersonalAccountNotAllowed");
    assert!(stalled.message.contains("spec.subject.accountType"), "{}", stalled.message);
    let ready = conditions::get(&status.conditions, conditions::READY).expect("ready");
    assert_eq!((ready.status.as_str(), status.observed_generation), ("False", Some(1)));
    assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE name = 'kim'").await, 0);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM users WHERE email = 'kim@outlook.com'").await, 0);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM audit").await, rows, "nothing written");
    // A Warning Event names the rule.
    let events: Api<Event> = Api::namespaced(client.clone(), "contoso");
    let list = events.list(&Default::default()).await.expect("events").items;
    assert!(
        list.iter().any(|e| e.reason.as_deref() == Some("PersonalAccountNotAllowed")
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("kim")),
        "no Warning Event for kim"
    );
    // No hot retry: a stalled object waits for a change.
    let reconciles = op.metric("servicehub_reconciles_total{kind=\"Membership\"}").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(op.metric("servicehub_reconciles_total{kind=\"Membership\"}").await, reconciles);
    // Fixing what it depends on makes it Ready: the workspace takes personal accounts now.
    let patch = serde_json::json!({ "spec": { "allowPersonalAccounts": true } });
    let workspaces: Api<Workspace> = Api::namespaced(client.clone(), "contoso");
    workspaces.patch("contoso-emea", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    wait_all_ready(&client, &op, CONVERGE).await;
}

#[tokio::test]
async fn an_idle_controller_writes_nothing_for_a_minute() {
    // A short resync, so the minute holds several full passes over every object.
    let (s, api, op) = cluster::ready_scenario(&["--leader-elect=false", "--resync=10s"]).await;
    let client = api.client();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (writes, audit) = (api.stats().writes, count(&s, "SELECT COUNT(*) FROM audit").await);
    let applies = op.metric("servicehub_store_latency_seconds_count{operation=\"apply\"}").await;
    let reconciles = op.metric("servicehub_reconciles_total").await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(api.stats().writes, writes, "API writes while idle: {:?}", api.stats().writes_by_resource);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM audit").await, audit, "store writes while idle");
    assert_eq!(op.metric("servicehub_store_latency_seconds_count{operation=\"apply\"}").await, applies);
    let passes = op.metric("servicehub_reconciles_total").await - reconciles;
    let objects = all_objects(&client).await.len() as f64;
    assert!(passes >= objects * 4.0, "the resync ran ({passes} reconciles of {objects} objects in a minute)");
}

/// `n` extra Memberships in workspace contoso-emea, to make a rollout take a while.
fn extra_memberships(n: usize) -> Vec<Object> {
    (0..n)
        .map(|i| {
            membership(
                &format!("member-{i:04}"),
                Some("contoso-emea"),
                &format!("member{i}@contoso.com"),
                &["User"],
                &["Learning"],
            )
        })
        .collect()
}

/// Invariants of a converged store after any interruption: one row per Membership object
/// (none missing, none orphaned), one invitation per subject and scope, each issued (and
/// audited) once, each with one outbox message.
async fn assert_consistent(s: &TestStore, client: &kube::Client) {
    let mut uids: Vec<String> = memberships(client)
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|m| m.metadata.uid)
        .collect();
    uids.sort();
    let mut rows =
        s.store.strings("SELECT id FROM memberships WHERE origin = 'Membership' ORDER BY id").await.expect("ids");
    rows.sort();
    assert_eq!(rows, uids, "{}: membership rows are exactly the Membership objects", s.name);
    let invitations = count(s, "SELECT COUNT(*) FROM invitations").await;
    let distinct = count(s, "SELECT COUNT(*) FROM (SELECT DISTINCT scope_key, subject_key FROM invitations) d").await;
    assert_eq!(invitations, distinct, "{}: no duplicate invitations", s.name);
    assert_eq!(
        count(s, "SELECT COUNT(*) FROM audit WHERE action = 'invitation.issue'").await,
        invitations,
        "{}",
        s.name
    );
    assert_eq!(count(s, "SELECT COUNT(*) FROM outbox WHERE kind = 'invitation'").await, invitations, "{}", s.name);
}

#[tokio::test]
async fn sigkill_mid_rollout_then_restart_converges_without_duplicates() {
    for s in stores().await {
        let api = ApiServer::start().await;
        let client = api.client();
        create(&client, &examples()).await;
        for m in extra_memberships(300) {
            create_one(&client, &m).await;
        }
        let mut op = Operator::start(&api, &s.url, &["--leader-elect=false"]);
        // Kill it once part of the rollout is in the store.
        eventually(&op, CONVERGE, "the rollout to start", || async {
            count(&s, "SELECT COUNT(*) FROM memberships WHERE origin = 'Membership'").await >= 30
        })
        .await;
        op.kill();
        let provisioned = count(&s, "SELECT COUNT(*) FROM memberships WHERE origin = 'Membership'").await;
        assert!(provisioned < 308, "{}: killed mid-rollout ({provisioned} of 308 provisioned)", s.name);
        let op = Operator::start(&api, &s.url, &["--leader-elect=false"]);
        wait_all_ready(&client, &op, Duration::from_secs(120)).await;
        assert_consistent(&s, &client).await;
        assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE origin = 'Membership'").await, 308);
    }
}

fn leases(client: &kube::Client) -> Api<Lease> {
    Api::namespaced(client.clone(), "default")
}

async fn holder(client: &kube::Client) -> Option<String> {
    let lease = leases(client).get_opt("servicehub-operator").await.ok().flatten()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_standby_takes_over() {
    let s = crate::support::sqlite_unmigrated().await;
    let api = ApiServer::start().await;
    let client = api.client();
    let lease = ["--lease-duration=3s", "--lease-renew-deadline=2s", "--lease-retry-period=500ms"];
    fn with<'a>(lease: &[&'a str], id: &'a str) -> Vec<&'a str> {
        [lease, &["--identity", id]].concat()
    }
    let mut a = Operator::start(&api, &s.url, &with(&lease, "replica-a"));
    eventually(&a, CONVERGE, "replica-a to lead", || async { holder(&client).await.as_deref() == Some("replica-a") })
        .await;
    let mut b = Operator::start(&api, &s.url, &with(&lease, "replica-b"));
    b.wait_ready(CONVERGE).await;
    create(&client, &examples()).await;
    wait_all_ready(&client, &a, CONVERGE).await;
    assert_eq!(a.metric("servicehub_leader").await, 1.0);
    assert_eq!(b.metric("servicehub_leader").await, 0.0);
    assert_eq!(b.metric("servicehub_reconciles_total").await, 0.0, "the standby reconciles nothing");

    // The leader dies without releasing: the standby takes over within the lease duration
    // (plus one retry period to notice).
    a.kill();
    let killed = std::time::Instant::now();
    eventually(&b, CONVERGE, "replica-b to lead", || async { holder(&client).await.as_deref() == Some("replica-b") })
        .await;
    let took = killed.elapsed();
    // Lease duration + one retry period, with 1.5 s of slack for a loaded CI machine.
    assert!(took <= Duration::from_millis(3000 + 500 + 1500), "took over after {took:?}");
    create_one(&client, &membership("after-failover", Some("contoso-emea"), "new@contoso.com", &["User"], &[])).await;
    wait_all_ready(&client, &b, CONVERGE).await;

    // A graceful stop releases the lease: a new standby takes over at once, not after the
    // lease duration.
    let c = Operator::start(&api, &s.url, &with(&lease, "replica-c"));
    c.wait_ready(CONVERGE).await;
    let stopping = std::time::Instant::now();
    assert_eq!(b.terminate(Duration::from_secs(20)).await, Some(0), "SIGTERM exits 0; logs:\n{}", b.logs());
    eventually(&c, CONVERGE, "replica-c to lead", || async { holder(&client).await.as_deref() == Some("replica-c") })
        .await;
    assert!(stopping.elapsed() < Duration::from_secs(3), "released, not expired: {:?}", stopping.elapsed());
    assert!(b.logs().contains("released the lease"), "{}", b.logs());
}

#[tokio::test]
async fn api_server_failures_and_dropped_watches_are_survived() {
    let (s, api, op) = cluster::ready_scenario(&["--leader-elect=false"]).await;
    let client = api.client();
    let pid = op.pid();

    // New work, then a burst of 500s (which the operator's requests meet) and every watch
    // cut: the work still gets done.
    create_one(&client, &membership("after-500s", Some("contoso-emea"), "a@contoso.com", &["User"], &[])).await;
    api.fail_next(40, 500);
    api.drop_watches();
    wait_all_ready(&client, &op, CONVERGE).await;
    assert!(op.metric("servicehub_reconcile_errors_total").await >= 1.0, "the 500s were met");

    // The API server restarts (watches end, connections drop): the same.
    let mut api = api;
    api.restart().await;
    create_one(&client, &membership("after-restart", Some("contoso-emea"), "b@contoso.com", &["User"], &[])).await;
    wait_all_ready(&client, &op, CONVERGE).await;
    assert_eq!(op.pid(), pid, "same process throughout");
    assert_consistent(&s, &client).await;
    op.wait_ready(Duration::from_secs(10)).await;

    // While the API server fails every request, /readyz says so; it recovers by itself.
    api.fail_next(1_000_000, 503);
    eventually(&op, Duration::from_secs(15), "/readyz to turn false", || async {
        matches!(op.get("/readyz").await, Some((503, body)) if body.contains("API server"))
    })
    .await;
    assert_eq!(op.get("/healthz").await.map(|(c, _)| c), Some(200), "alive all along");
    api.fail_next(0, 503);
    op.wait_ready(Duration::from_secs(15)).await;
    assert_eq!(op.pid(), pid);
}

#[tokio::test]
async fn kubectl_apply_wait_and_get_with_the_operator_running() {
    let s = crate::support::sqlite_unmigrated().await;
    let api = ApiServer::start().await;
    let op = Operator::start(&api, &s.url, &["--leader-elect=false"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubeconfig");
    std::fs::write(&config, api.kubeconfig()).expect("kubeconfig");
    let run = |args: &[&str]| {
        let (config, args) = (config.clone(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::emulator_http::kubectl(&config, &args)
        })
    };
    let examples = crate::support::repo("examples");
    let Some(out) = run(&["apply", "--validate=false", "-f", examples.to_str().expect("utf-8")]).await.expect("join")
    else {
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // What a GitOps user runs: wait for every object to be Ready, then look.
    let wait = [
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        "-n",
        "contoso",
        "customers,workspaces,memberships,lockboxpolicies",
        "--all",
    ];
    let out = run(&wait).await.expect("join").expect("kubectl");
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        op.logs()
    );
    let met = String::from_utf8_lossy(&out.stdout).matches("condition met").count();
    assert_eq!(met, all_objects(&api.client()).await.len(), "every object reported");
    let out = run(&["get", "servicehub", "-n", "contoso"]).await.expect("join").expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "customer.servicehub.io/contoso",
        "workspace.servicehub.io/contoso-emea",
        "membership.servicehub.io/diego-open-canvas",
        "lockboxpolicy.servicehub.io/",
    ] {
        assert!(text.contains(kind), "{kind} missing from `kubectl get servicehub`:\n{text}");
    }
    let out =
        run(&["describe", "membership", "-n", "contoso", "diego-open-canvas"]).await.expect("join").expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Provisioned") && text.contains("Observed Generation"), "{text}");
    // The Events the operator wrote (events.k8s.io/v1) show under the object.
    let events = text.split("Events:").nth(1).unwrap_or_default();
    assert!(events.contains("Granted") && events.contains("servicehub-operator"), "no Events in:\n{text}");
}

#[tokio::test]
async fn the_leader_expires_lockbox_requests_at_their_deadline_and_catches_up_after_downtime() {
    use servicehub_operator::domain::lockbox::{Action, NewRequest, State};
    use servicehub_operator::lockbox::{self, Requester, Requesters};
    use servicehub_operator::store::Store;
    let (s, api, op) = cluster::ready_scenario(&["--leader-elect=false", "--resync=2s"]).await;
    let client = api.client();
    let db = s.store.as_ref();
    let ask = |who: &str| NewRequest {
        requester: who.into(),
        workload: "ExchangeOnline".into(),
        case_id: "1".into(),
        reason: "repair".into(),
        duration: 3600,
    };
    let now = jiff::Timestamp::now().as_second();
    // Opened two days ago: one never decided, one approved for an hour. Both overdue.
    let two_days = now - 2 * 86_400;
    let stale = lockbox::request(
        db,
        "contoso",
        "contoso",
        ask("a@microsoft.com"),
        Requester::person(&by("a@microsoft.com")),
        &Requesters::default(),
        two_days,
    )
    .await
    .expect("request");
    let approved = lockbox::request(
        db,
        "contoso",
        "contoso",
        ask("b@microsoft.com"),
        Requester::person(&by("b@microsoft.com")),
        &Requesters::default(),
        two_days,
    )
    .await
    .expect("request");
    lockbox::act(db, approved.id, Action::Approve, &by("megan.bowen@contoso.com"), None, two_days + 60)
        .await
        .expect("approve");
    // And one whose 12 h pending deadline falls three seconds from now.
    let soon = lockbox::request(
        db,
        "contoso",
        "contoso",
        ask("c@microsoft.com"),
        Requester::person(&by("c@microsoft.com")),
        &Requesters::default(),
        now - 43_200 + 3,
    )
    .await
    .expect("request");
    let deadline = soon.pending_deadline.expect("deadline");

    eventually(&op, Duration::from_secs(30), "every request closed", || async {
        let states = [stale.id, approved.id, soon.id];
        let mut closed = 0;
        for id in states {
            if db
                .lockbox_get(id)
                .await
                .expect("get")
                .is_some_and(|r| r.state != State::Pending && r.state != State::Approved)
            {
                closed += 1;
            }
        }
        closed == 3
    })
    .await;
    let closed = |id| async move { db.lockbox_get(id).await.expect("get").expect("exists") };
    let (a, b, c) = (closed(stale.id).await, closed(approved.id).await, closed(soon.id).await);
    assert_eq!((a.state, a.closed_at), (State::Expired, Some(two_days + 43_200)), "stamped with its deadline");
    assert_eq!((b.state, b.closed_at), (State::AccessExpired, Some(two_days + 60 + 3600)));
    assert_eq!((c.state, c.closed_at), (State::Expired, Some(deadline)));
    assert!(jiff::Timestamp::now().as_second() >= deadline, "not before its deadline");
    // Each transition audited and notified once.
    for (id, state) in [(a.id, "Expired"), (b.id, "AccessExpired"), (c.id, "Expired")] {
        let key = format!("SELECT COUNT(*) FROM outbox WHERE idempotency_key = 'lockbox/{id}/{state}'");
        assert_eq!(count(&s, &key).await, 1, "{key}");
    }
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM audit WHERE action IN ('lockbox.expired', 'lockbox.accessexpired')").await,
        3
    );
    assert!(op.metric("servicehub_lockbox_expired_total").await >= 3.0);
    // The policy's status reports the requests (refreshed at its next pass).
    let policies: Api<servicehub_operator::api::LockboxPolicy> = Api::namespaced(client.clone(), "contoso");
    eventually(&op, Duration::from_secs(20), "the policy's counts", || async {
        let p = policies.get("contoso-lockbox").await.expect("get");
        p.status.is_some_and(|st| {
            st.pending_requests == Some(0) && st.active_requests == Some(0) && st.next_deadline.is_none()
        })
    })
    .await;
}

/// Children of a parent that is still on its way write nothing (the parent's status write
/// requeues them); children of a parent that is stuck say what they wait for, and follow
/// it when it is fixed.
#[tokio::test]
async fn children_of_a_stuck_parent_say_what_they_wait_for() {
    let (_s, api, op) = cluster::ready_scenario(&["--leader-elect=false"]).await;
    let client = api.client();
    // A workspace the Unified agreement refuses (a personal administrator), and a member.
    let ws: Workspace = serde_json::from_value(serde_json::json!({
        "apiVersion": "servicehub.io/v1alpha1", "kind": "Workspace",
        "metadata": { "name": "stuck", "namespace": "contoso" },
        "spec": { "customerRef": { "name": "contoso" }, "displayName": "Stuck",
                  "administrators": [{ "email": "boss@outlook.com", "accountType": "Personal" }] } }))
    .expect("workspace");
    let kim = membership("kim-stuck", Some("stuck"), "kim@contoso.com", &["User"], &["Learning"]);
    // The child first, so it is reconciled while its parent is on its way.
    create_one(&client, &kim).await;
    create_one(&client, &Object::Workspace(Box::new(ws))).await;
    eventually(&op, CONVERGE, "kim to wait for its workspace", || async {
        let m = memberships(&client).get("kim-stuck").await.expect("get");
        let conds = m.status.map(|s| s.conditions).unwrap_or_default();
        conditions::get(&conds, conditions::RECONCILING).is_some_and(|c| c.reason == "WaitingForWorkspace")
    })
    .await;
    let m = memberships(&client).get("kim-stuck").await.expect("get");
    let ready = conditions::get(&m.status.expect("status").conditions, conditions::READY).cloned().expect("ready");
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("waiting for Workspace stuck"), "{}", ready.message);
    // Fixed, the workspace is provisioned and its member follows.
    let patch = serde_json::json!({ "spec": { "allowPersonalAccounts": true } });
    let workspaces: Api<Workspace> = Api::namespaced(client.clone(), "contoso");
    workspaces.patch("stuck", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    wait_all_ready(&client, &op, CONVERGE).await;
}

/// A CLI actor (the store trusts it; the console authenticates people).
fn by(email: &str) -> servicehub_operator::domain::actor::Actor {
    servicehub_operator::domain::actor::Actor::cli(Some(email), "test", "host")
}

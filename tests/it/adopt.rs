//! `servicehub.io/adopt: "<store id>"`: objects created in a cluster take over what a store
//! already holds (here, a store prepared by `servicehub apply`, whose ids are not the
//! cluster's uids; Workspaces by name, as no live object owns them) without new
//! invitations, duplicate users or lost grants; the takeover is
//! audited; an adoption never takes rows from another live object; without the annotation
//! a foreign row is refused with a message that says how to adopt it.

use crate::apiserver::http::ApiServer;
use crate::cluster::{self, Operator, eventually, wait_all_ready};
use crate::support::{eml_files, repo, sqlite_file, stderr, token_in};
use kube::api::{Api, Patch, PatchParams};
use servicehub_operator::api::{Customer, Membership, conditions};
use servicehub_operator::validate::Object;
use std::collections::BTreeMap;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

fn cli(dir: &std::path::Path, url: &str, args: &[&str]) -> std::process::Output {
    crate::support::servicehub_in(dir, &[args, &["--store", url]].concat())
}

/// `Kind/name` -> the id the store keeps the object's rows under.
fn store_ids(dir: &std::path::Path, url: &str) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for (resource, kind, key) in [
        ("customers", "Customer", "uid"),
        ("workspaces", "Workspace", "id"),
        ("memberships", "Membership", "id"),
        ("lockboxpolicies", "LockboxPolicy", "uid"),
    ] {
        let out = cli(dir, url, &["get", resource, "-o", "json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        for r in rows.as_array().into_iter().flatten() {
            let origin = r["origin"].as_str().unwrap_or(kind);
            if origin == kind {
                ids.insert(
                    format!("{kind}/{}", r["name"].as_str().unwrap_or_default()),
                    r[key].as_str().unwrap_or_default().to_owned(),
                );
            }
        }
    }
    ids
}

fn annotate(o: &mut Object, id: &str) {
    let meta = match o {
        Object::Customer(x) => &mut x.metadata,
        Object::Workspace(x) => &mut x.metadata,
        Object::Membership(x) => &mut x.metadata,
        Object::LockboxPolicy(x) => &mut x.metadata,
    };
    meta.annotations.get_or_insert_with(Default::default).insert("servicehub.io/adopt".into(), id.to_owned());
}

#[tokio::test]
async fn a_cluster_takes_over_a_store_prepared_by_apply_without_inviting_anyone_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let url = format!("sqlite://{}", home.join("store.db").display());
    let examples = repo("examples").display().to_string();
    let out = cli(home, &url, &["apply", "-f", &examples]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Lee accepts: the takeover must keep that.
    let messages = eml_files(&home.join("outbox"));
    let (_, lee) = messages.iter().find(|(_, m)| m.contains("To: lee.gu@contoso.com")).expect("lee's invitation");
    let token = token_in(lee);
    let out = cli(
        home,
        &url,
        &[
            "invitation",
            "accept",
            "--token",
            &token,
            "--account",
            "lee.gu@contoso.com",
            "--account-type",
            "WorkOrSchool",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ids = store_ids(home, &url);
    assert_eq!(ids.len(), 13, "{ids:?}");

    let s = sqlite_file(&url).await;
    let count = |sql: &'static str| {
        let store = s.store.clone();
        async move { store.count(sql).await.expect(sql) }
    };
    let before = (
        count("SELECT COUNT(*) FROM invitations").await,
        count("SELECT COALESCE(SUM(issue), 0) FROM invitations").await,
        count("SELECT COUNT(*) FROM users").await,
        count("SELECT COUNT(*) FROM grants").await,
        count("SELECT COUNT(*) FROM outbox").await,
    );
    let accepted = "SELECT COUNT(*) FROM invitations WHERE state = 'Accepted' AND email = 'lee.gu@contoso.com'";
    assert_eq!(count(accepted).await, 1);

    // The same objects in a cluster, with new uids and the adopt annotation.
    let api = ApiServer::start().await;
    let mut objects = cluster::examples();
    for o in &mut objects {
        // Workspaces are taken over by name, the rest through the annotation.
        if o.object.kind() != "Workspace" {
            let key = format!("{}/{}", o.object.kind(), o.object.name());
            annotate(&mut o.object, &ids[&key]);
        }
    }
    cluster::create(&api.client(), &objects).await;
    let op = Operator::start(&api, &url, &["--leader-elect=false"]);
    wait_all_ready(&api.client(), &op, CONVERGE).await;
    let after = (
        count("SELECT COUNT(*) FROM invitations").await,
        count("SELECT COALESCE(SUM(issue), 0) FROM invitations").await,
        count("SELECT COUNT(*) FROM users").await,
        count("SELECT COUNT(*) FROM grants").await,
        count("SELECT COUNT(*) FROM outbox").await,
    );
    assert_eq!(after, before, "(invitations, issues, users, grants, outbox) changed by the takeover");
    assert_eq!(count(accepted).await, 1, "an accepted invitation stays accepted");
    assert_eq!(count("SELECT COUNT(*) FROM audit WHERE action = 'adopt'").await, 13, "each takeover audited once");
    let ws: Api<servicehub_operator::api::Workspace> = Api::namespaced(api.client(), "contoso");
    let emea = ws.get("contoso-emea").await.expect("get");
    assert_eq!(
        emea.status.as_ref().and_then(|s| s.tracking.store_id.as_deref()),
        Some(ids["Workspace/contoso-emea"].as_str())
    );
    let mbr: Api<Membership> = Api::namespaced(api.client(), "contoso");
    let adele = mbr.get("adele-emea-admin").await.expect("get");
    assert_eq!(
        adele.status.as_ref().and_then(|s| s.tracking.store_id.as_deref()),
        Some(ids["Membership/adele-emea-admin"].as_str())
    );

    // A second object adopting the same rows is refused, naming the owner.
    let mut copy = adele.clone();
    copy.metadata = kube::api::ObjectMeta {
        name: Some("adele-copy".into()),
        namespace: Some("contoso".into()),
        annotations: adele.metadata.annotations.clone(),
        ..Default::default()
    };
    copy.status = None;
    mbr.create(&Default::default(), &copy).await.expect("create");
    eventually(&op, CONVERGE, "the copy refused, naming the owner", || async {
        let m = mbr.get("adele-copy").await.expect("get");
        let st = m.status.unwrap_or_default();
        conditions::get(&st.conditions, conditions::STALLED).is_some_and(|c| {
            c.reason == "AdoptionRefused" && c.message.contains("belong to Membership contoso/adele-emea-admin")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count("SELECT COUNT(*) FROM audit WHERE action = 'adopt'").await, 13);

    // The takeover sticks (status.storeId) when the annotation is removed afterwards.
    let customers: Api<Customer> = Api::namespaced(api.client(), "contoso");
    let drop_annotation = serde_json::json!({ "metadata": { "annotations": { "servicehub.io/adopt": null } } });
    customers.patch("contoso", &PatchParams::default(), &Patch::Merge(&drop_annotation)).await.expect("patch");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c = customers.get("contoso").await.expect("get");
    assert!(conditions::is_true(&c.status.as_ref().expect("status").conditions, conditions::READY), "{c:?}");
    drop(op);

    // Another cluster's Customer of the same name, without the annotation: the stored rows
    // are someone else's; refused, saying how to adopt them.
    let other = ApiServer::start().await;
    let customer: Vec<_> = cluster::examples().into_iter().filter(|o| o.object.kind() == "Customer").collect();
    cluster::create(&other.client(), &customer).await;
    let op = Operator::start(&other, &url, &["--leader-elect=false"]);
    let customers: Api<Customer> = Api::namespaced(other.client(), "contoso");
    eventually(&op, CONVERGE, "NameInUse with the way to adopt", || async {
        let c = customers.get("contoso").await.expect("get");
        let st = c.status.unwrap_or_default();
        conditions::get(&st.conditions, conditions::STALLED)
            .is_some_and(|c| c.reason == "NameInUse" && c.message.contains("servicehub.io/adopt"))
    })
    .await;
    assert_eq!(count("SELECT COUNT(*) FROM grants").await, before.3, "nothing taken or lost");
}

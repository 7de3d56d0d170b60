//! `spec.managementPolicy: Observe`: the plan is made and reported as differences (status
//! `differences`, `Synced=False` reason `DriftDetected`, an Event on the transition), and
//! nothing is corrected until the policy is `Manage` again.

use crate::cluster::{self, eventually};
use crate::support::{WITHOUT_LOCKBOX, example_files, servicehub_in, sqlite_file, stderr, stdout};
use kube::api::{Api, Patch, PatchParams};
use servicehub_operator::api::{Membership, conditions};
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

const ADELES_MANAGE_USERS: &str = "SELECT COUNT(*) FROM grants WHERE permission = 'ManageUsers' AND membership_id IN \
     (SELECT id FROM memberships WHERE subject_key = 'adele.vance@contoso.com')";
const TAMPER: &str = "DELETE FROM grants WHERE permission = 'ManageUsers' AND membership_id IN \
     (SELECT id FROM memberships WHERE subject_key = 'adele.vance@contoso.com')";

fn policy(value: &str) -> Patch<serde_json::Value> {
    Patch::Merge(serde_json::json!({ "spec": { "managementPolicy": value } }))
}

#[tokio::test]
async fn an_observed_membership_reports_drift_and_corrects_nothing_until_managed() {
    let (s, api, op) = cluster::ready_scenario(&["--leader-elect=false", "--resync=3s"]).await;
    let client = api.client();
    let mbr: Api<Membership> = Api::namespaced(client.clone(), "contoso");
    mbr.patch("adele-emea-admin", &PatchParams::default(), &policy("Observe")).await.expect("observe");
    eventually(&op, CONVERGE, "Synced=True under Observe", || async {
        let m = mbr.get("adele-emea-admin").await.expect("get");
        let st = m.status.as_ref().expect("status");
        st.observed_generation == Some(2) && conditions::is_true(&st.conditions, conditions::SYNCED)
    })
    .await;

    // The store is edited behind the operator's back: reported, not corrected.
    assert_eq!(s.store.execute_raw(TAMPER).await.expect("tamper"), 1);
    eventually(&op, CONVERGE, "DriftDetected with the difference", || async {
        let m = mbr.get("adele-emea-admin").await.expect("get");
        let st = m.status.as_ref().expect("status");
        let synced = conditions::get(&st.conditions, conditions::SYNCED);
        synced.is_some_and(|c| c.status == "False" && c.reason == "DriftDetected")
            && st.tracking.difference_count == Some(1)
            && st
                .tracking
                .differences
                .iter()
                .any(|d| d.contains("grant ManageUsers") && d.contains("adele.vance@contoso.com"))
            && !conditions::is_true(&st.conditions, conditions::READY)
    })
    .await;
    // Several resyncs later, still not corrected.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(s.store.count(ADELES_MANAGE_USERS).await.expect("count"), 0, "Observe corrected the store");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "contoso");
    let drift: Vec<_> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DriftDetected"))
        .collect();
    assert_eq!(drift.len(), 1, "one Event for the transition, not one per pass");

    // Manage again: the plan is applied and the observation goes.
    mbr.patch("adele-emea-admin", &PatchParams::default(), &policy("Manage")).await.expect("manage");
    eventually(&op, CONVERGE, "Ready under Manage, no Synced condition", || async {
        let m = mbr.get("adele-emea-admin").await.expect("get");
        let st = m.status.as_ref().expect("status");
        st.observed_generation == Some(3)
            && conditions::is_true(&st.conditions, conditions::READY)
            && conditions::get(&st.conditions, conditions::SYNCED).is_none()
            && st.tracking.differences.is_empty()
    })
    .await;
    assert_eq!(s.store.count(ADELES_MANAGE_USERS).await.expect("count"), 1, "the grant is back");
}

#[tokio::test]
async fn apply_reports_what_an_observed_object_would_change_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let files = example_files(home, &WITHOUT_LOCKBOX);
    let dir_arg = files.display().to_string();
    assert!(servicehub_in(home, &["apply", "-f", &dir_arg, "--deliver=false"]).status.success());
    let store = sqlite_file(&format!("sqlite://{}", home.join("servicehub.db").display())).await;
    assert_eq!(store.store.execute_raw(TAMPER).await.expect("tamper"), 1);
    let audit = store.store.count("SELECT COUNT(*) FROM audit").await.expect("audit");

    // Observe adele's membership, and drop diego's grant under Observe too.
    let path = files.join("03-memberships.yaml");
    let yaml = std::fs::read_to_string(&path).expect("read");
    let observed = yaml
        .replacen(
            "  roles: [WorkspaceAdministrator]\n",
            "  roles: [WorkspaceAdministrator]\n  managementPolicy: Observe\n",
            1,
        )
        .replacen(
            "  permissions: [ViewOpenCanvas, ViewEngagements]\n",
            "  permissions: [ViewOpenCanvas]\n  managementPolicy: Observe\n",
            1,
        );
    assert_eq!(observed.matches("managementPolicy: Observe").count(), 2, "the examples changed: {yaml}");
    std::fs::write(&path, &observed).expect("write");
    let out = servicehub_in(home, &["apply", "-f", &dir_arg, "--deliver=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "Membership contoso/adele-emea-admin (managementPolicy Observe: 1 difference(s), not corrected):"
        ),
        "{text}"
    );
    assert!(text.contains("  ! grant ManageUsers (role:WorkspaceAdministrator) to adele.vance@contoso.com"), "{text}");
    assert!(text.contains("Membership contoso/diego-open-canvas (managementPolicy Observe: 2 difference(s)"), "{text}");
    assert!(text.contains("revoke ViewEngagements (individual) from diego.siciliani@contoso.com"), "{text}");
    assert!(text.contains("No changes: what differs is under managementPolicy Observe"), "{text}");
    let row = text.lines().find(|l| l.starts_with("Membership/adele-emea-admin")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("False") && row.contains("difference(s)"), "{row}");
    assert_eq!(store.store.count(ADELES_MANAGE_USERS).await.expect("count"), 0, "nothing corrected");
    assert_eq!(store.store.count("SELECT COUNT(*) FROM audit").await.expect("audit"), audit, "nothing written");

    // Observing an object whose store rows match is no difference (the policy itself is not
    // part of what the store records).
    let customer = files.join("01-customer.yaml");
    let text = std::fs::read_to_string(&customer).expect("read");
    let observed_customer =
        text.replacen("  deletionPolicy: Orphan\n", "  deletionPolicy: Orphan\n  managementPolicy: Observe\n", 1);
    assert_ne!(observed_customer, text);
    std::fs::write(&customer, &observed_customer).expect("write");
    let out = stdout(&servicehub_in(home, &["apply", "-f", &dir_arg, "--deliver=false"]));
    let row = out.lines().find(|l| l.starts_with("Customer/contoso")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("True") && row.contains("the store matches this object (managementPolicy: Observe)"), "{row}");
    std::fs::write(&customer, &text).expect("write");

    // Manage: applied.
    std::fs::write(&path, observed.replace("  managementPolicy: Observe\n", "")).expect("write");
    let out = servicehub_in(home, &["apply", "-f", &dir_arg, "--deliver=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(store.store.count(ADELES_MANAGE_USERS).await.expect("count"), 1);
    assert!(stdout(&out).contains("revoke ViewEngagements (individual)"), "{}", stdout(&out));
}

//! `servicehub.io/paused: "true"`: the operator leaves the object alone (no store write, no
//! status write but one `Paused` condition, no invitation or revocation), resumes from the
//! current spec when the annotation goes, and a paused object can still be deleted.

use crate::cluster::{self, eventually};
use crate::support::{WITHOUT_LOCKBOX, example_files, repo, servicehub_in, stderr, stdout};
use kube::api::{Api, Patch, PatchParams};
use servicehub_operator::api::{Membership, conditions};
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

const DIEGOS_INDIVIDUAL_GRANT: &str = "SELECT COUNT(*) FROM grants g JOIN memberships m ON m.id = g.membership_id \
     WHERE m.name = 'diego-open-canvas' AND g.permission = 'ViewEngagements' AND g.source = 'individual'";

fn annotate(value: Option<&str>) -> Patch<serde_json::Value> {
    Patch::Merge(serde_json::json!({ "metadata": { "annotations": { "servicehub.io/paused": value } } }))
}

#[tokio::test]
async fn a_paused_membership_writes_nothing_resumes_when_unpaused_and_can_be_deleted() {
    // A short resync, so the minute holds several full passes over every object.
    let (s, api, op) = cluster::ready_scenario(&["--leader-elect=false", "--resync=10s"]).await;
    let client = api.client();
    let mbr: Api<Membership> = Api::namespaced(client.clone(), "contoso");
    let count = |sql: &'static str| {
        let store = s.store.clone();
        async move { store.count(sql).await.expect(sql) }
    };
    assert_eq!(count(DIEGOS_INDIVIDUAL_GRANT).await, 1);

    mbr.patch("diego-open-canvas", &PatchParams::default(), &annotate(Some("true"))).await.expect("pause");
    eventually(&op, CONVERGE, "the Paused condition", || async {
        let m = mbr.get("diego-open-canvas").await.expect("get");
        conditions::is_true(&m.status.as_ref().expect("status").conditions, conditions::PAUSED)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (writes, audit) = (api.stats().writes, count("SELECT COUNT(*) FROM audit").await);

    // A spec change while paused: the user's write, and nothing else for a minute.
    let patch = Patch::Merge(serde_json::json!({ "spec": { "permissions": ["ViewOpenCanvas"] } }));
    mbr.patch("diego-open-canvas", &PatchParams::default(), &patch).await.expect("patch");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let stats = api.stats();
    assert_eq!(stats.writes, writes + 1, "writes while paused: {:?}", stats.writes_by_resource);
    assert_eq!(count("SELECT COUNT(*) FROM audit").await, audit, "store writes while paused");
    assert_eq!(count(DIEGOS_INDIVIDUAL_GRANT).await, 1, "the grant a paused object would revoke stays");

    // Unpaused: the current spec is applied, and the Paused condition goes.
    mbr.patch("diego-open-canvas", &PatchParams::default(), &annotate(None)).await.expect("unpause");
    eventually(&op, CONVERGE, "diego at generation 2, Ready, not paused", || async {
        let m = mbr.get("diego-open-canvas").await.expect("get");
        let st = m.status.as_ref().expect("status");
        st.observed_generation == Some(2)
            && conditions::is_true(&st.conditions, conditions::READY)
            && conditions::get(&st.conditions, conditions::PAUSED).is_none()
    })
    .await;
    assert_eq!(count(DIEGOS_INDIVIDUAL_GRANT).await, 0, "the revoked grant is gone");

    // Paused, then deleted: the finalizer does not hold it; its rows follow deletionPolicy.
    mbr.patch("diego-open-canvas", &PatchParams::default(), &annotate(Some("true"))).await.expect("pause");
    eventually(&op, CONVERGE, "the Paused condition", || async {
        let m = mbr.get("diego-open-canvas").await.expect("get");
        conditions::is_true(&m.status.as_ref().expect("status").conditions, conditions::PAUSED)
    })
    .await;
    mbr.delete("diego-open-canvas", &Default::default()).await.expect("delete");
    eventually(&op, CONVERGE, "diego-open-canvas to disappear", || async {
        mbr.get_opt("diego-open-canvas").await.expect("get").is_none()
    })
    .await;
    assert_eq!(count("SELECT COUNT(*) FROM memberships WHERE name = 'diego-open-canvas'").await, 0);
}

#[test]
fn apply_skips_paused_objects_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let files = example_files(home, &WITHOUT_LOCKBOX);
    let dir_arg = files.display().to_string();
    let out = servicehub_in(home, &["apply", "-f", &dir_arg, "--deliver=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let grants = || stdout(&servicehub_in(home, &["get", "grants", "-o", "wide"]));
    let diego = |g: &str| g.lines().any(|l| l.contains("diego.siciliani") && l.contains("ViewEngagements"));
    assert!(diego(&grants()));

    // Pause diego's membership and drop the grant in the same edit.
    let path = files.join("03-memberships.yaml");
    let yaml = std::fs::read_to_string(&path).expect("read");
    let paused = yaml.replacen(
        "  name: diego-open-canvas\n",
        "  name: diego-open-canvas\n  annotations:\n    servicehub.io/paused: \"true\"\n",
        1,
    );
    assert_ne!(paused, yaml, "the example names diego-open-canvas");
    let edited = paused.replacen("[ViewOpenCanvas, ViewEngagements]", "[ViewOpenCanvas]", 1);
    assert_ne!(edited, paused, "the example grants ViewEngagements: {paused}");
    std::fs::write(&path, &edited).expect("write");
    let out = servicehub_in(home, &["apply", "-f", &dir_arg, "--deliver=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let row = text.lines().find(|l| l.starts_with("Membership/diego-open-canvas")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("Paused") && row.contains("servicehub.io/paused"), "{row}");
    assert!(text.contains("1 paused") && text.contains("0 row(s) written"), "{text}");
    assert!(diego(&grants()), "a paused object's grant stays");

    // The annotation removed: the edit is applied.
    std::fs::write(&path, edited.replacen("  annotations:\n    servicehub.io/paused: \"true\"\n", "", 1))
        .expect("write");
    let out = servicehub_in(home, &["apply", "-f", &dir_arg, "--deliver=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("- revoke ViewEngagements (individual) from diego.siciliani@contoso.com"),
        "{}",
        stdout(&out)
    );
    assert!(!diego(&grants()));
}

#[test]
fn a_paused_value_that_does_not_pause_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = std::fs::read_to_string(repo("examples/03-memberships.yaml")).expect("read").replacen(
        "  name: diego-open-canvas\n",
        "  name: diego-open-canvas\n  annotations:\n    servicehub.io/paused: \"yes\"\n",
        1,
    );
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, yaml).expect("write");
    let out = servicehub_in(dir.path(), &["validate", "-f", &file.display().to_string()]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "Membership/diego-open-canvas: metadata.annotations[servicehub.io/paused]: warning: \"yes\" is neither \"true\" nor \"false\""
        ),
        "{text}"
    );
}

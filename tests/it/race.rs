//! Two `servicehub apply` processes on one store at the same time, on both backends: the
//! same objects end up stored once, with one set of grants and one invitation per person.
//! (Objects applied without a cluster have no uid: each run looks it up by name and mints
//! one when the store has none, so both runs may mint one for the same object.)

use crate::support::{TestStore, outbox_of, root, stderr, stdout, stores};
use std::path::Path;

const ROUNDS: usize = 20;
/// Generated Memberships beside the examples, so the two runs overlap on many objects.
const EXTRA: usize = 60;

fn scenario(dir: &Path) {
    let mut yaml = String::new();
    for i in 0..EXTRA {
        yaml.push_str(&format!(
            "apiVersion: servicehub.io/v1alpha1\nkind: Membership\nmetadata:\n  name: race-{i}\n  namespace: contoso\n\
             spec:\n  customerRef:\n    name: contoso\n  workspaceRef:\n    name: contoso-emea\n  subject:\n    \
             kind: User\n    email: racer{i}@contoso.com\n  roles: [User]\n  permissions: [Learning, Programs]\n---\n"
        ));
    }
    std::fs::write(dir.join("race.yaml"), yaml).expect("write scenario");
}

fn spawn(s: &TestStore, extra: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["apply", "-f", "examples/", "-f"])
        .arg(extra)
        .args(["--store", &s.url])
        .current_dir(root())
        .env("SERVICEHUB_ACTOR", "cli:race")
        .env("SERVICEHUB_NOTIFY_DIR", outbox_of(&s.url))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn servicehub")
}

async fn count(s: &TestStore, sql: &str) -> i64 {
    s.store.count(sql).await.expect(sql)
}

/// Rows that share what must be unique.
async fn duplicates(s: &TestStore) -> Vec<(String, i64)> {
    let checks = [
        ("customers", "SELECT COUNT(*) FROM (SELECT 1 FROM customers GROUP BY namespace, name HAVING COUNT(*) > 1) d"),
        (
            "workspaces",
            "SELECT COUNT(*) FROM (SELECT 1 FROM workspaces WHERE managed GROUP BY namespace, name HAVING COUNT(*) > 1) d",
        ),
        (
            "memberships",
            "SELECT COUNT(*) FROM (SELECT 1 FROM memberships WHERE origin = 'Membership' \
             GROUP BY namespace, name HAVING COUNT(*) > 1) d",
        ),
        (
            "grants of one person in one scope",
            "SELECT COUNT(*) FROM (SELECT 1 FROM grants g JOIN memberships m ON m.id = g.membership_id \
             WHERE m.origin = 'Membership' GROUP BY m.namespace, m.name, g.permission, g.source HAVING COUNT(*) > 1) d",
        ),
        (
            "invitations",
            "SELECT COUNT(*) FROM (SELECT 1 FROM invitations GROUP BY scope_key, subject_key HAVING COUNT(*) > 1) d",
        ),
        (
            "sent messages",
            "SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE kind = 'invitation' GROUP BY invitation_id \
             HAVING COUNT(*) > 1) d",
        ),
    ];
    let mut out = Vec::new();
    for (what, sql) in checks {
        let n = count(s, sql).await;
        if n > 0 {
            out.push((what.to_owned(), n));
        }
    }
    out
}

/// Without the unique name index and the uid adoption this fails within the first rounds
/// (the third run finds duplicated memberships to correct, or the counts are off).
#[tokio::test]
async fn two_applies_at_once_store_each_object_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(dir.path());
    // What one run alone stores: the figures both runs together must reach exactly.
    let alone = stores().await.remove(0);
    let out = spawn(&alone, dir.path()).wait_with_output().expect("apply");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let expected_memberships = count(&alone, "SELECT COUNT(*) FROM memberships").await;
    let expected_grants = count(&alone, "SELECT COUNT(*) FROM grants").await;
    let expected_invitations = count(&alone, "SELECT COUNT(*) FROM invitations").await;
    assert!(expected_memberships > EXTRA as i64, "{expected_memberships}");

    for round in 0..ROUNDS {
        for s in stores().await {
            let (a, b) = (spawn(&s, dir.path()), spawn(&s, dir.path()));
            let (a, b) = (a.wait_with_output().expect("a"), b.wait_with_output().expect("b"));
            for o in [&a, &b] {
                assert!(o.status.success(), "round {round}, {}: {}\n{}", s.name, stdout(o), stderr(o));
            }
            let dup = duplicates(&s).await;
            assert!(dup.is_empty(), "round {round}, {}: duplicated {dup:?}", s.name);
            assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships").await, expected_memberships, "{}", s.name);
            assert_eq!(count(&s, "SELECT COUNT(*) FROM grants").await, expected_grants, "{}", s.name);
            assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations").await, expected_invitations, "{}", s.name);
            // A third run finds nothing to do.
            let again = spawn(&s, dir.path()).wait_with_output().expect("again");
            assert!(stdout(&again).contains("No changes"), "round {round}, {}: {}", s.name, stdout(&again));
            let _ = std::fs::remove_dir_all(outbox_of(&s.url));
        }
    }
}

/// A store written by a version without the unique index may hold copies already: the
/// migration keeps one (the one its invitation points at) and audits the removal.
#[tokio::test]
async fn the_migration_removes_copies_stored_before_it() {
    for s in stores().await {
        let dir = tempfile::tempdir().expect("tempdir");
        scenario(dir.path());
        let out = spawn(&s, dir.path()).wait_with_output().expect("apply");
        assert!(out.status.success(), "{}: {}", s.name, stderr(&out));
        // Back to the schema before the index, holding a copy of a Membership as a second
        // run that minted its own uid would have stored it.
        for sql in [
            "DROP INDEX memberships_managed_name",
            "DELETE FROM _sqlx_migrations WHERE version = 5",
            "INSERT INTO memberships (id, customer_uid, workspace_id, origin, namespace, name, managed, subject_kind, \
             subject_key, user_id, deletion_policy, spec_hash, row_version) SELECT 'copy-of-race-1', customer_uid, \
             workspace_id, origin, namespace, name, managed, subject_kind, subject_key, user_id, deletion_policy, \
             spec_hash, row_version FROM memberships WHERE name = 'race-1' AND origin = 'Membership'",
            "INSERT INTO grants (membership_id, permission, source, scope) SELECT 'copy-of-race-1', permission, source, \
             scope FROM grants WHERE membership_id = (SELECT id FROM memberships WHERE name = 'race-1' \
             AND id <> 'copy-of-race-1')",
        ] {
            s.store.execute_raw(sql).await.expect(sql);
        }
        assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE name = 'race-1'").await, 2);
        servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
        assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE name = 'race-1'").await, 1, "{}", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE id = 'copy-of-race-1'").await, 0, "{}", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM grants WHERE membership_id = 'copy-of-race-1'").await, 0);
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM audit WHERE action = 'membership.deduplicate' AND object = 'contoso/race-1'"
            )
            .await,
            1,
            "{}",
            s.name
        );
        // The kept copy is the invited one, and a re-apply changes nothing.
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM invitations i JOIN memberships m ON m.id = i.membership_id WHERE m.name = 'race-1'"
            )
            .await,
            1
        );
        let again = spawn(&s, dir.path()).wait_with_output().expect("again");
        assert!(stdout(&again).contains("No changes"), "{}: {}", s.name, stdout(&again));
    }
}

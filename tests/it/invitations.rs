//! Invitations when the people or the dates change: a replaced service administrator, an
//! agreement that ends while invitations wait, and messages to look-alike addresses.

use crate::notify::{T0, accept, at, count, file_env, refs, servicehub, token_for};
use crate::support::{TestStore, eml_files, stderr, stdout};
use std::path::Path;

/// A copy of `examples/` with `from` replaced by `to` in every file.
fn examples_with(from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(crate::support::repo("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read").replace(from, to);
            std::fs::write(dir.path().join(path.file_name().expect("name")), text).expect("write");
        }
    }
    dir
}

fn apply(s: &TestStore, now: &str, outbox: &Path, files: &Path) -> std::process::Output {
    let env = file_env(outbox, "2");
    let out = servicehub(s, now, &refs(&env), &["apply", "-f", &files.display().to_string()]);
    assert!(out.status.success(), "{}: {}\n{}", s.name, stdout(&out), stderr(&out));
    out
}

#[tokio::test]
async fn a_replaced_service_administrator_is_invited_and_the_former_ones_invitation_is_revoked() {
    for s in crate::support::stores().await {
        let outbox = tempfile::tempdir().expect("outbox");
        apply(&s, T0, outbox.path(), &crate::support::repo("examples"));
        let old_token = token_for(outbox.path(), "megan.bowen@contoso.com", 1);

        let replaced = examples_with("megan.bowen@contoso.com", "patti.fernandez@contoso.com");
        let out = apply(&s, T0, outbox.path(), replaced.path());
        let text = stdout(&out);
        assert!(text.contains("revoke the invitation of megan.bowen@contoso.com in workspace contoso-hq"), "{text}");
        assert!(text.contains("+ invite patti.fernandez@contoso.com to workspace contoso-hq"), "{text}");
        assert!(text.contains("delivered 1 message(s)"), "{}: {text}", s.name);

        // The new one got a message with a working token (issue 2 of that membership row, so
        // its idempotency key differs from the former one's).
        let new_token = token_for(outbox.path(), "patti.fernandez@contoso.com", 2);
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM invitations WHERE subject_key = 'patti.fernandez@contoso.com' AND state = 'Sent'"
            )
            .await,
            1,
            "{}",
            s.name
        );
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM invitations WHERE subject_key = 'megan.bowen@contoso.com' AND state = 'Revoked'"
            )
            .await,
            1,
            "{}",
            s.name
        );
        // The former one's token no longer makes anyone a member.
        let out = accept(&s, T0, &old_token, "megan.bowen@contoso.com", "WorkOrSchool");
        assert!(!out.status.success(), "{}: the former administrator's token still works", s.name);
        assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
        let out = accept(&s, T0, &new_token, "patti.fernandez@contoso.com", "WorkOrSchool");
        assert!(out.status.success(), "{}: {}", s.name, stderr(&out));
        // The new one holds the role; nothing is left to do; the old one holds nothing.
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM memberships m JOIN role_assignments r ON r.membership_id = m.id \
                 WHERE m.subject_key = 'megan.bowen@contoso.com' AND r.role IN ('ServiceAdministrator', 'WorkspaceAdministrator')"
            )
            .await,
            0
        );
        let again = apply(&s, T0, outbox.path(), replaced.path());
        assert!(stdout(&again).contains("No changes"), "{}", stdout(&again));

        // And back: the first administrator is invited again, under a key of its own.
        let out = apply(&s, T0, outbox.path(), &crate::support::repo("examples"));
        assert!(stdout(&out).contains("delivered 1 message(s)"), "{}: {}", s.name, stdout(&out));
        token_for(outbox.path(), "megan.bowen@contoso.com", 3);
    }
}

#[tokio::test]
async fn invitations_that_run_out_after_the_agreement_ended_are_not_issued_again() {
    for s in crate::support::stores().await {
        let outbox = tempfile::tempdir().expect("outbox");
        // The agreement ends on 2027-12-31; invitations sent on 2027-12-25 run out on 2028-01-08.
        let sent = "2027-12-25T12:00:00Z";
        apply(&s, sent, outbox.path(), &crate::support::repo("examples"));
        let env = file_env(outbox.path(), "2");
        let out = servicehub(&s, &at(sent, 15 * 24), &refs(&env), &["notify", "--once"]);
        assert!(stdout(&out).contains("13 invitation(s) expired, 0 issued again"), "{}: {}", s.name, stdout(&out));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE issue > 1").await, 0, "{}", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Expired'").await, 13);
        assert_eq!(eml_files(outbox.path()).len(), 13, "no second message");
        let reasons = s
            .store
            .strings("SELECT COALESCE(after, '') FROM audit WHERE action = 'invitation.expire'")
            .await
            .expect("audit");
        assert!(reasons.iter().all(|r| r.contains("the agreement has ended")), "{reasons:?}");
    }
}

/// Run the binary through `sh` with umask 000, so files it creates show their own modes.
fn servicehub_umask0(url: &str, env: &[(&str, String)], args: &str) -> std::process::Output {
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(format!("umask 000; exec \"$0\" {args} --store \"$1\""))
        .arg(env!("CARGO_BIN_EXE_servicehub"))
        .arg(url)
        .current_dir(crate::support::root())
        .env("SERVICEHUB_UNSAFE_TEST_CLOCK", T0)
        .env_remove("SERVICEHUB_STORE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run servicehub")
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn look_alike_addresses_get_a_message_each_and_token_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("servicehub.db");
    let url = format!("sqlite://{}", db.display());
    let outbox = dir.path().join("shared").join("outbox");
    std::fs::create_dir(dir.path().join("shared")).expect("mkdir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path().join("shared"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // Both support contacts of the default workspace: their membership ids differ only there.
    let files = examples_with("alex.wilber@contoso.com", "lee+ops@contoso.com");
    let text = std::fs::read_to_string(files.path().join("01-customer.yaml")).expect("read");
    std::fs::write(
        files.path().join("01-customer.yaml"),
        text.replace("lynne.robbins@contoso.com", "lee_ops@contoso.com"),
    )
    .expect("write");
    let env = vec![("SERVICEHUB_NOTIFY_DIR", outbox.display().to_string())];
    let out = servicehub_umask0(&url, &env, &format!("apply -f {}", files.path().display()));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let s = crate::support::sqlite_file(&url).await;

    // Both got a message of their own: 13 people, 13 files.
    let eml = eml_files(&outbox);
    assert_eq!(eml.len(), 13, "{:?}", eml.iter().map(|(p, _)| p).collect::<Vec<_>>());
    let plus = token_for(&outbox, "lee+ops@contoso.com", 1);
    let underscore = token_for(&outbox, "lee_ops@contoso.com", 1);
    assert_ne!(plus, underscore);
    for (token, who) in [(&plus, "lee+ops@contoso.com"), (&underscore, "lee_ops@contoso.com")] {
        let out = accept(&s, T0, token, who, "WorkOrSchool");
        assert!(out.status.success(), "{who}: {}", stderr(&out));
    }

    // Owner-only, although the umask allowed everything.
    assert_eq!(mode(&outbox), 0o700, "the outbox directory it created");
    for (p, _) in &eml {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    assert_eq!(mode(&db), 0o600, "the SQLite store");
    for side in ["servicehub.db-wal", "servicehub.db-shm"] {
        let p = dir.path().join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{side}");
        }
    }
    // A directory that already existed (it may be shared) keeps its mode.
    assert_eq!(mode(outbox.parent().expect("parent")), 0o755);
}

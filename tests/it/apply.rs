//! `servicehub apply` end to end on the example scenario, against SQLite and PostgreSQL, with
//! the real binary.

use crate::support::{TestStore, stderr, stdout, stores};
use std::process::Output;

const NOW: &str = "2026-11-22T12:00:00Z";

/// The binary on `s`'s store, at a fixed clock, with its own outbox directory.
pub(crate) fn run(s: &TestStore, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--store", &s.url]);
    std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(&all)
        .current_dir(crate::support::root())
        .env("SERVICEHUB_UNSAFE_TEST_CLOCK", NOW)
        .env("SERVICEHUB_ACTOR", "cli:test")
        .env("SERVICEHUB_NOTIFY_DIR", crate::support::outbox_of(&s.url))
        .output()
        .expect("run servicehub")
}

async fn count(s: &TestStore, sql: &str) -> i64 {
    s.store.count(sql).await.expect(sql)
}

#[tokio::test]
async fn applying_the_examples_provisions_the_scenario_and_a_second_apply_writes_nothing() {
    for s in stores().await {
        let out = run(&s, &["apply", "-f", "examples/"]);
        assert!(out.status.success(), "{}: {}\n{}", s.name, stdout(&out), stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("+ invite megan.bowen@contoso.com to workspace contoso-hq"), "{text}");
        // Three workspaces: the declared default and two more; no contoso-default.
        assert_eq!(count(&s, "SELECT COUNT(*) FROM workspaces").await, 3, "{}", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM workspaces WHERE is_default AND name = 'contoso-hq'").await, 1);
        // The scenario names 13 people: each is a user and each is invited once (groups are not).
        assert_eq!(count(&s, "SELECT COUNT(*) FROM users").await, 13, "{}", s.name);
        // ... and apply delivered them: one .eml file each, every invitation Sent.
        assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Sent'").await, 13, "{}", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM outbox WHERE kind = 'invitation' AND state = 'Sent'").await, 13);
        assert!(text.contains("delivered 13 message(s); 0 to retry, 0 failed"), "{text}");
        assert_eq!(crate::support::eml_files(&crate::support::outbox_of(&s.url)).len(), 13, "{}", s.name);
        // The personal-account researcher is in contoso-labs; the CSAM's grants reach every workspace.
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
                       WHERE m.subject_key = 'sam.researcher@outlook.com' AND w.name = 'contoso-labs'"
            )
            .await,
            1
        );
        let grants = count(&s, "SELECT COUNT(*) FROM grants").await;
        let audit = count(&s, "SELECT COUNT(*) FROM audit").await;

        let again = run(&s, &["apply", "-f", "examples/"]);
        assert!(again.status.success(), "{}", stderr(&again));
        let text = stdout(&again);
        assert!(text.contains("No changes: the store matches the files."), "{text}");
        assert!(text.contains("0 row(s) written."), "{text}");
        assert_eq!(count(&s, "SELECT COUNT(*) FROM grants").await, grants);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM audit").await, audit, "{}: no audit entries for a no-op", s.name);
    }
}

#[tokio::test]
async fn a_grant_deleted_behind_the_operators_back_is_restored_and_audited() {
    for s in stores().await {
        assert!(run(&s, &["apply", "-f", "examples/"]).status.success());
        let removed = s
            .store
            .execute_raw(
                "DELETE FROM grants WHERE permission = 'ManageUsers' AND membership_id IN \
                 (SELECT id FROM memberships WHERE subject_key = 'adele.vance@contoso.com')",
            )
            .await
            .expect("tamper");
        assert_eq!(removed, 1);
        s.store
            .execute_raw(
                "INSERT INTO role_assignments (membership_id, role) SELECT id, 'GlobalAdministrator' \
                 FROM memberships WHERE subject_key = 'lee.gu@contoso.com'",
            )
            .await
            .expect("tamper");
        let out = run(&s, &["apply", "-f", "examples/"]);
        let text = stdout(&out);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("+ grant ManageUsers (role:WorkspaceAdministrator) to adele.vance@contoso.com in workspace contoso-emea (drift correction)"), "{text}");
        assert!(
            text.contains(
                "- remove role GlobalAdministrator from lee.gu@contoso.com in workspace contoso-emea (drift correction)"
            ),
            "{text}"
        );
        assert_eq!(count(&s, "SELECT COUNT(*) FROM audit WHERE drift").await, 2, "{}", s.name);
        let audit = run(&s, &["get", "audit", "-o", "jsonl"]);
        let drift: Vec<serde_json::Value> = stdout(&audit)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .filter(|e: &serde_json::Value| e["drift"] == true)
            .collect();
        assert_eq!(drift.len(), 2);
        assert_eq!(drift[0]["actor"], "cli:test");
    }
}

#[tokio::test]
async fn dry_run_and_plan_write_nothing() {
    for s in stores().await {
        for cmd in [&["apply", "--dry-run", "-f", "examples/"][..], &["plan", "-f", "examples/"][..]] {
            let out = run(&s, cmd);
            assert!(out.status.success(), "{}", stderr(&out));
            let text = stdout(&out);
            assert!(text.contains("Customer contoso/contoso (") && text.contains("changes planned)"), "{text}");
            assert!(text.contains("Dry run: nothing was written."));
            for table in ["customers", "workspaces", "memberships", "grants", "invitations", "outbox", "audit", "users"]
            {
                assert_eq!(
                    count(&s, &format!("SELECT COUNT(*) FROM {table} WHERE 1 = 1")).await,
                    0,
                    "{}: {table}",
                    s.name
                );
            }
        }
    }
}

#[tokio::test]
async fn invalid_objects_are_reported_and_skipped_while_valid_ones_apply() {
    for s in stores().await {
        let out = run(&s, &["apply", "-f", "examples/invalid/permission-not-grantable.yaml"]);
        assert_eq!(out.status.code(), Some(1), "{}", s.name);
        let text = stdout(&out);
        assert!(
            text.contains("Membership/kim: spec.permissions[0]: permission ManageUsers cannot be granted"),
            "{text}"
        );
        assert_eq!(count(&s, "SELECT COUNT(*) FROM customers").await, 1, "{}: the valid customer was applied", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE origin = 'Membership'").await, 0);
    }
}

#[tokio::test]
async fn get_and_can_i_report_what_the_store_holds() {
    for s in stores().await {
        assert!(run(&s, &["apply", "-f", "examples/", "-o", "json"]).status.success());
        let out = run(&s, &["get", "workspaces", "-n", "contoso"]);
        let text = stdout(&out);
        assert!(text.starts_with("NAME ") && text.contains("contoso-labs") && text.contains("true"), "{text}");
        let out = run(&s, &["get", "customers", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
        assert_eq!(v[0]["phase"], "Active");
        assert_eq!(v[0]["workspaces"], 3);

        let yes = run(
            &s,
            &["can-i", "--user", "Adele.Vance@contoso.com", "--workspace", "contoso/contoso-emea", "ManageUsers"],
        );
        assert_eq!(yes.status.code(), Some(0), "{}", stdout(&yes));
        assert!(stdout(&yes).contains("yes: Adele.Vance@contoso.com holds ManageUsers in workspace contoso/contoso-emea through role:WorkspaceAdministrator"));
        let csam = run(
            &s,
            &["can-i", "--user", "pradeep.gupta@microsoft.com", "--workspace", "contoso/contoso-labs", "ManageUsers"],
        );
        assert_eq!(csam.status.code(), Some(0), "{}: the CSAM reaches every workspace: {}", s.name, stdout(&csam));
        let no =
            run(&s, &["can-i", "--user", "lee.gu@contoso.com", "--workspace", "contoso/contoso-emea", "ManageUsers"]);
        assert_eq!(no.status.code(), Some(1));
        assert!(stdout(&no).contains("it comes with role ServiceAdministrator or WorkspaceAdministrator or CustomerSuccessAccountManager; it cannot be granted individually"), "{}", stdout(&no));
        let cust = run(
            &s,
            &["can-i", "--user", "diego.siciliani@contoso.com", "--customer", "contoso/contoso", "ViewOpenCanvas"],
        );
        assert!(stdout(&cust).contains("through individual"), "{}", stdout(&cust));

        // The matrix's footnote 1: a Microsoft role sees support cases and cannot export
        // them; a customer's own user with the same permission can. Held, so exit 0.
        let ask = |user: &str, p: &str| {
            run(&s, &["can-i", "--user", user, "--workspace", "contoso/contoso-emea", p, "-o", "json"])
        };
        let answer = |out: Output| -> serde_json::Value { serde_json::from_slice(&out.stdout).expect("json") };
        let im = ask("irvin.sayers@microsoft.com", "ViewAllSupportCases");
        assert_eq!(im.status.code(), Some(0));
        let im = answer(im);
        assert_eq!((im["allowed"].as_bool(), im["exportAllowed"].as_bool()), (Some(true), Some(false)), "{im}");
        assert!(
            im["reason"]
                .as_str()
                .is_some_and(|r| r.ends_with("may view, not export (Microsoft role, matrix footnote 1)"))
        );
        let own = answer(ask("lee.gu@contoso.com", "ViewAllSupportCases"));
        assert_eq!(own["exportAllowed"], true, "{own}");
        let unrestricted = answer(ask("irvin.sayers@microsoft.com", "Health"));
        assert_eq!(unrestricted["exportAllowed"], true, "no footnote on Health: {unrestricted}");
        assert_eq!(answer(ask("lee.gu@contoso.com", "ManageUsers"))["exportAllowed"], false, "not held");
        // get grants says the same per grant, in the table and in JSON.
        let table = stdout(&run(&s, &["get", "grants", "-n", "contoso"]));
        let line = |who: &str, p: &str| {
            table.lines().find(|l| l.contains(who) && l.contains(&format!(" {p} "))).unwrap_or_default().to_owned()
        };
        assert!(line("irvin.sayers", "ViewAllSupportCases").contains("ViewAllSupportCases (no export)"), "{table}");
        assert!(!line("lee.gu", "ViewAllSupportCases").is_empty(), "{table}");
        assert!(!line("lee.gu", "ViewAllSupportCases").contains("(no export)"), "{table}");
        let grants: serde_json::Value =
            serde_json::from_slice(&run(&s, &["get", "grants", "-o", "json"]).stdout).expect("json");
        let restricted: Vec<String> = grants
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["exportAllowed"] == false)
            .map(|g| format!("{} {}", g["subject"].as_str().unwrap_or(""), g["permission"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            restricted,
            [
                "irvin.sayers@microsoft.com ViewAllSupportCases",
                "pradeep.gupta@microsoft.com CustomerActivity",
                "pradeep.gupta@microsoft.com ViewAllSupportCases",
                "pradeep.gupta@microsoft.com ViewOpenCanvas"
            ],
            "{}",
            s.name
        );

        // get access --user: every scope the person reaches, with sources and export flags.
        let access = |args: &[&str]| -> serde_json::Value {
            let out = run(&s, &[&["get", "access"], args, &["-o", "json"]].concat());
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            serde_json::from_slice(&out.stdout).expect("json")
        };
        let lines = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{} {} {} {}",
                        a["workspace"].as_str().unwrap_or("(customer)"),
                        a["permission"].as_str().unwrap_or(""),
                        a["sources"].as_array().map(|x| x.len()).unwrap_or(0),
                        a["exportAllowed"]
                    )
                })
                .collect()
        };
        let lee = lines(&access(&["--user", "Lee.Gu@contoso.com"]));
        assert_eq!(
            lee,
            // In the matrix's order, as in status.effectivePermissions.
            [
                "contoso-emea SupportContact 1 true",
                "contoso-emea ViewAllSupportCases 1 true",
                "contoso-emea Health 1 true"
            ],
            "{}",
            s.name
        );
        // The incident manager's customer-level role reaches all three workspaces.
        let im = lines(&access(&["--user", "irvin.sayers@microsoft.com"]));
        for ws in ["contoso-hq", "contoso-emea", "contoso-labs"] {
            assert!(im.contains(&format!("{ws} ViewAllSupportCases 1 false")), "{im:?}");
        }
        assert_eq!(access(&["--user", "nobody@contoso.com"]), serde_json::json!([]));
        let text = stdout(&run(&s, &["get", "access", "--user", "nobody@contoso.com"]));
        assert_eq!(text.trim(), "nobody@contoso.com holds nothing in any namespace");

        // get access --workspace --permission: who holds it there, directly or via a role.
        let who = access(&["--workspace", "contoso/contoso-emea", "--permission", "ManageUsers"]);
        let mut subjects: Vec<&str> =
            who.as_array().into_iter().flatten().filter_map(|g| g["subject"].as_str()).collect();
        subjects.dedup();
        assert!(subjects.contains(&"adele.vance@contoso.com"), "{who}");
        assert!(subjects.contains(&"pradeep.gupta@microsoft.com"), "the CSAM through every workspace: {who}");
        assert!(!subjects.contains(&"lee.gu@contoso.com"), "{who}");
        let table =
            stdout(&run(&s, &["get", "access", "--workspace", "contoso/contoso-emea", "--permission", "ManageUsers"]));
        assert!(table.starts_with("SUBJECT ") && table.contains("customer (every workspace)"), "{table}");

        // Wrong uses say what is wrong, exit 2 for the command line, 1 for a missing object.
        let usage = run(&s, &["get", "access"]);
        assert_eq!(usage.status.code(), Some(2));
        assert!(stderr(&usage).contains("`get access` needs --user EMAIL"), "{}", stderr(&usage));
        let usage = run(&s, &["get", "grants", "--user", "lee.gu@contoso.com"]);
        assert_eq!(usage.status.code(), Some(2));
        assert!(stderr(&usage).contains("go with `get access`"), "{}", stderr(&usage));
        let bad = run(&s, &["get", "access", "--workspace", "contoso/nowhere", "--permission", "ManageUsers"]);
        assert!(
            stderr(&bad).contains("--workspace: workspace contoso/nowhere is not in the store"),
            "{}",
            stderr(&bad)
        );
        let bad = run(&s, &["get", "access", "--workspace", "contoso/contoso-emea", "--permission", "Export"]);
        assert!(stderr(&bad).contains("--permission: unknown permission \"Export\""), "{}", stderr(&bad));
    }
}

#[test]
fn the_quickstart_command_uses_a_sqlite_file_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = crate::support::repo("examples");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("SERVICEHUB_STORE")
            .env("SERVICEHUB_UNSAFE_TEST_CLOCK", NOW)
            .output()
            .expect("run")
    };
    let out = run(&["apply", "-f", examples.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(dir.path().join("servicehub.db").exists(), "the default store is ./servicehub.db");
    // The invitations it "sent" are files a newcomer can open, in ./servicehub-outbox.
    assert!(stdout(&out).contains("Messages were written as .eml files to servicehub-outbox/"), "{}", stdout(&out));
    let mails = crate::support::eml_files(&dir.path().join("servicehub-outbox"));
    assert_eq!(mails.len(), 13);
    let (_, sam) = mails.iter().find(|(_, m)| m.contains("To: sam.researcher@outlook.com")).expect("sam's invitation");
    assert!(sam.contains("Subject: You are invited to Contoso Ltd (workspace contoso-labs)"), "{sam}");
    // ... and accept it with the CLI, from the same directory: contoso-labs allows personal accounts.
    let token = crate::support::token_in(sam);
    let out = run(&[
        "invitation",
        "accept",
        "--token",
        &token,
        "--account",
        "sam.researcher@outlook.com",
        "--account-type",
        "Personal",
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("is now active in workspace contoso-labs"), "{}", stdout(&out));
    let out = run(&["migrate"]);
    // The newest migration the binary carries, counted from the migration folder.
    let newest = std::fs::read_dir(crate::support::repo("migrations/sqlite")).expect("migrations").count();
    assert_eq!(stdout(&out).trim(), format!("store sqlite://servicehub.db: schema version {newest} is current"));
    let out = run(&["apply", "-f", examples.to_str().expect("utf-8")]);
    assert!(stdout(&out).contains("No changes"), "{}", stdout(&out));
}

#[tokio::test]
async fn delete_follows_the_deletion_policy_and_keeps_users_and_audit() {
    for s in stores().await {
        assert!(run(&s, &["apply", "-f", "examples/"]).status.success());
        let users = count(&s, "SELECT COUNT(*) FROM users").await;
        let audit = count(&s, "SELECT COUNT(*) FROM audit").await;
        // Memberships default to deletionPolicy Delete: rows and grants go, invitations are revoked.
        let out = run(&s, &["delete", "-f", "examples/03-memberships.yaml"]);
        assert!(out.status.success(), "{}: {}", s.name, stdout(&out));
        assert!(
            stdout(&out).contains("Membership contoso/csam: delete Membership contoso/csam with what it provisioned")
        );
        assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE origin = 'Membership'").await, 0, "{}", s.name);
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM grants g JOIN memberships m ON m.id = g.membership_id WHERE m.origin = 'Membership'").await,
            0
        );
        assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Revoked'").await, 7, "{}", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM users").await, users, "user records are kept");
        assert!(count(&s, "SELECT COUNT(*) FROM audit").await > audit, "deletions are audited, nothing removed");
        // Deleting again is a no-op.
        let again = run(&s, &["delete", "-f", "examples/03-memberships.yaml"]);
        assert!(stdout(&again).contains("Membership contoso/csam: not in the store"), "{}", stdout(&again));
        // The example Customer says deletionPolicy: Orphan: its rows stay, unmanaged.
        let out = run(&s, &["delete", "-f", "examples/01-customer.yaml"]);
        assert!(stdout(&out).contains("stop managing Customer contoso/contoso"), "{}", stdout(&out));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM customers WHERE NOT managed").await, 1, "{}", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM workspaces").await, 3, "its workspaces are still there");
    }
}

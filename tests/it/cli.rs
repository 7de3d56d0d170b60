//! The command line where it wrote when it should not: the clock of every write is the
//! machine's (`--now`/`--at` only preview), read-only commands never create a store, and a
//! run whose input cannot be read does nothing else.

use crate::support::servicehub_in as at_home;
use crate::support::{eml_files, repo, root, stderr, stdout};

fn examples() -> String {
    repo("examples").display().to_string()
}

#[test]
fn now_and_at_only_preview_and_are_refused_where_something_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let later = "2028-06-01T00:00:00Z";
    // A write with a chosen time is refused before anything happens.
    for args in [
        vec!["apply", "-f", &examples(), "--now", later],
        vec!["notify", "--once", "--now", later],
        vec![
            "invitation",
            "accept",
            "--token",
            "x",
            "--account",
            "a@b.co",
            "--account-type",
            "WorkOrSchool",
            "--now",
            later,
        ],
        vec!["lockbox", "approve", "1", "--as", "a@b.co", "--now", later],
        vec!["lockbox", "sweep", "--at", later],
    ] {
        let out = at_home(home, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}{}", stdout(&out), stderr(&out));
        assert!(stderr(&out).contains("only previews"), "{args:?}: {}", stderr(&out));
        assert!(!home.join("servicehub.db").exists(), "{args:?} created the store");
    }
    // Previews take it: the agreement (ending 2027-12-31) is seen as expired in 2028.
    // (Exit 1: in 2028 the workspaces of an expired agreement would be refused.)
    let out = at_home(home, &["plan", "-f", &examples(), "--now", later, "-o", "json"]);
    assert_ne!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"phase\": \"Expired\""), "{}", stdout(&out));
    let out = at_home(home, &["apply", "--dry-run", "-f", &examples(), "--now", "2026-06-01T00:00:00Z"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!home.join("servicehub.db").exists(), "a preview created the store");

    // The old environment variable no longer moves the clock of a write.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["apply", "-f", &examples(), "--deliver=false"])
        .current_dir(home)
        .env("SERVICEHUB_NOW", later)
        .env_remove("SERVICEHUB_UNSAFE_TEST_CLOCK")
        .env_remove("SERVICEHUB_STORE")
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = at_home(home, &["get", "customers", "-o", "json"]);
    assert!(stdout(&out).contains("Active"), "stored as of now, not 2028: {}", stdout(&out));
}

#[test]
fn read_only_commands_never_create_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = dir.path().join("servicehub.bd");
    let url = format!("sqlite://{}", typo.display());
    for args in [
        vec!["get", "customers", "--store", &url],
        vec!["get", "audit", "--store", &url],
        vec!["can-i", "--user", "a@b.co", "--workspace", "contoso/contoso-hq", "Learning", "--store", &url],
        vec!["lockbox", "list", "--store", &url],
    ] {
        let out = at_home(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(&format!("no store at {}", typo.display())), "{args:?}: {}", stderr(&out));
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // A plan against a store that does not exist yet plans against an empty one: everything
    // would be added, and nothing is created.
    let out = at_home(dir.path(), &["plan", "-f", &examples(), "--store", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("+ invite megan.bowen@contoso.com"), "{}", stdout(&out));
    assert!(stderr(&out).contains("does not exist yet"), "{}", stderr(&out));
    assert!(!typo.exists());
    // A path without a scheme gets a suggestion.
    let out = at_home(dir.path(), &["get", "customers", "--store", "servicehub.db"]);
    assert!(stderr(&out).contains("did you mean sqlite://servicehub.db?"), "{}", stderr(&out));
}

#[test]
fn a_run_whose_input_cannot_be_read_does_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    // Messages are waiting in the outbox.
    let out = at_home(home, &["apply", "-f", &examples(), "--deliver=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let missing = home.join("nope.yaml").display().to_string();
    let out = at_home(home, &["apply", "-f", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.yaml: cannot read"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("No changes"), "{}", stdout(&out));
    assert!(eml_files(&home.join("outbox")).is_empty(), "an unreadable input delivered messages");
    // With -o json the errors are part of the JSON document, and nothing was planned.
    let out = at_home(home, &["apply", "-f", &missing, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON document");
    let problem = &doc["problems"][0];
    assert!(problem["message"].as_str().is_some_and(|m| m.contains("cannot read")), "{doc}");
    assert!(problem["file"].as_str().is_some_and(|f| f.ends_with("nope.yaml")), "{doc}");
    assert_eq!((problem["severity"].as_str(), doc["objects"].as_array().map(Vec::len)), (Some("error"), Some(0)));
    let _ = root();
}

#[test]
fn plan_exit_code_tells_a_pipeline_whether_anything_would_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let out = at_home(home, &["plan", "--exit-code", "-f", &examples()]);
    assert_eq!(out.status.code(), Some(2), "changes to make: {}", stderr(&out));
    assert!(stdout(&out).contains("changes planned):"), "plain wording: {}", stdout(&out));
    assert!(at_home(home, &["apply", "-f", &examples()]).status.success());
    let out = at_home(home, &["plan", "--exit-code", "-f", &examples()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = at_home(home, &["apply", "--exit-code", "-f", &examples()]);
    assert_eq!(out.status.code(), Some(2), "--exit-code without a preview is a usage error");
}

#[test]
fn get_takes_what_kubectl_users_type_and_refuses_what_does_not_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    assert!(at_home(home, &["apply", "-f", &examples(), "--deliver=false"]).status.success());
    let full = stdout(&at_home(home, &["get", "workspaces"]));
    assert!(full.contains("contoso-emea"), "{full}");
    for alias in ["workspace", "ws", "WS", "Workspaces"] {
        let out = at_home(home, &["get", alias]);
        assert!(out.status.success(), "{alias}: {}", stderr(&out));
        assert_eq!(stdout(&out), full, "{alias}");
    }
    for alias in ["cust", "customer", "mbr", "membership", "grant", "invitation"] {
        assert!(at_home(home, &["get", alias]).status.success(), "{alias}");
    }
    // An audit kind that does not exist is refused with the valid ones; letter case is free.
    let out = at_home(home, &["get", "audit", "--kind", "nosuchkind"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown kind \"nosuchkind\"; one of Customer, Workspace, Membership"),
        "{}",
        stderr(&out)
    );
    let lower = stdout(&at_home(home, &["get", "audit", "--kind", "membership", "-o", "json"]));
    let exact = stdout(&at_home(home, &["get", "audit", "--kind", "Membership", "-o", "json"]));
    assert!(!exact.is_empty() && lower == exact);
    let out = at_home(home, &["lockbox", "list", "--state", "approved"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn commands_print_results_not_logs_and_colour_only_at_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    assert!(at_home(home, &["apply", "-f", &examples()]).status.success());
    let messages = eml_files(&home.join("outbox"));
    let accept = |message: usize, extra: &[&str]| {
        let token = crate::support::token_in(&messages[message].1);
        let mut args = vec!["invitation", "accept", "--token", &token, "--account", "x@contoso.com"];
        args.extend(["--account-type", "WorkOrSchool"]);
        args.extend_from_slice(extra);
        at_home(home, &args)
    };
    // (Logs are JSON lines when standard error is not a terminal: look for the level in any form.)
    let out = accept(0, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("INFO"), "no INFO log lines from a command: {}", stderr(&out));
    // They are there when asked for.
    let out = accept(1, &["--log", "info"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("INFO"), "asked-for logs: {}", stderr(&out));
    // Text logs written to a file (not a terminal) carry no ANSI colour codes.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["get", "customers", "--log", "debug", "--log-format", "text"])
        .current_dir(home)
        .env_remove("SERVICEHUB_STORE")
        .output()
        .expect("run");
    assert!(!stderr(&out).is_empty(), "debug logs were asked for");
    assert!(!stderr(&out).contains('\u{1b}'), "ANSI codes in redirected logs: {:?}", stderr(&out));
}

#[test]
fn shell_completions_are_generated_for_each_shell() {
    for (shell, marker) in
        [("bash", "_servicehub()"), ("zsh", "#compdef servicehub"), ("fish", "complete -c servicehub")]
    {
        let out = crate::support::servicehub(&["completion", shell]);
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {}", &script[..script.len().min(200)]);
        assert!(script.contains("lockbox") && script.contains("can-i"), "{shell}: the subcommands are in it");
    }
}

#[test]
fn run_says_once_what_is_missing_and_which_flag_sets_the_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let store = format!("sqlite://{}", home.join("s.db").display());
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"));
        c.arg("run").args(["--store", &store]).args(args).current_dir(home).env("HOME", home);
        c.env_remove("KUBECONFIG").env_remove("KUBERNETES_SERVICE_HOST").env_remove("SERVICEHUB_STORE");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run")
    };
    let out = run(&[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let path = home.join(".kube").join("config").display().to_string();
    assert!(err.contains(&format!("no kubeconfig at {path} (set KUBECONFIG")), "{err}");
    assert_eq!(err.matches(&path).count(), 1, "the cause once: {err}");
    assert!(!err.contains("'\""), "the path is not quoted twice: {err}");

    // A port already taken: the address and the flag that sets it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let kubeconfig = home.join("kubeconfig");
    std::fs::write(&kubeconfig, crate::apiserver::http::kubeconfig_for("http://127.0.0.1:1")).expect("kubeconfig");
    let out = run(&[("KUBECONFIG", kubeconfig.to_str().expect("utf-8"))], &["--http-addr", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot listen on {addr} (choose another with --http-addr")), "{err}");
}

#[test]
fn delete_shows_everything_it_takes_with_it_and_asks_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    assert!(at_home(home, &["apply", "-f", &examples(), "--deliver=false"]).status.success());
    let workspaces = repo("examples/02-workspaces.yaml").display().to_string();
    let before = stdout(&at_home(home, &["get", "memberships"]));
    // The preview lists what goes with the named workspaces, the service administrator's
    // role in the default workspace included.
    let out = at_home(home, &["delete", "--dry-run", "-f", &workspaces]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("removes membership of megan.bowen@contoso.com in workspace contoso-hq (WorkspaceAdministrator), from Customer/contoso"),
        "{text}"
    );
    // Not at a terminal and without --yes: refused, nothing removed.
    let out = at_home(home, &["delete", "-f", &workspaces]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("run it again with --yes"), "{}", stderr(&out));
    assert_eq!(stdout(&at_home(home, &["get", "memberships"])), before, "nothing was deleted");
    // With --yes it goes ahead.
    let out = at_home(home, &["delete", "--yes", "-f", &workspaces]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&at_home(home, &["get", "memberships"])).contains("contoso-emea"));
    // The Customer is Orphan: deleting it says what stays and why.
    let out = at_home(home, &["delete", "-f", &repo("examples/01-customer.yaml").display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("its rows stay (deletionPolicy: Orphan)"), "{text}");
    assert!(text.contains("keeps (unmanaged) membership of megan.bowen@contoso.com at customer level"), "{text}");
}

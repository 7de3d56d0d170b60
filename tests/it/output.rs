//! What people and scripts read: one JSON convention in every command (camelCase, nested
//! JSON, RFC 3339 UTC; `-o json` a document, `-o jsonl` lines, `-o yaml` the same data),
//! tables that fit a terminal with `-o wide` for all of it, the new `get` resources, the
//! apply summary (`--quiet`, refused objects) and `explain`.

use crate::support::{repo, stderr, stdout};
use serde_json::Value;
use std::path::Path;

use crate::support::servicehub_in as at;

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = at(dir, args);
    assert!(out.status.success(), "{args:?}: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn examples() -> String {
    repo("examples").display().to_string()
}

/// Every key in `v`, at any depth, with its path.
fn keys(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(format!("{path}.{k}"));
                keys(x, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, path, out)),
        _ => {}
    }
}

/// Every string that holds JSON, or a Unix timestamp where a time belongs: what the old
/// output had and the convention forbids.
fn encoded(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let at = format!("{path}.{k}");
                if let Value::String(s) = x
                    && (s.starts_with('{') || s.starts_with('['))
                    && serde_json::from_str::<Value>(s).is_ok()
                {
                    out.push(format!("{at} is JSON in a string: {s}"));
                }
                if (k.ends_with("At") || k == "at" || k.ends_with("Deadline")) && x.is_number() {
                    out.push(format!("{at} is a number, not RFC 3339: {x}"));
                }
                encoded(x, &at, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| encoded(x, path, out)),
        _ => {}
    }
}

fn rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.ends_with('Z') && s.parse::<jiff::Timestamp>().is_ok())
}

#[test]
fn every_format_follows_one_convention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    ok(home, &["apply", "-f", &examples()]);
    let request = ok(
        home,
        &[
            "lockbox",
            "request",
            "--customer",
            "contoso/contoso",
            "--workload",
            "ExchangeOnline",
            "--case",
            "7",
            "--reason",
            "repair",
            "--duration",
            "2h",
            "--as",
            "eng@microsoft.com",
            "-o",
            "json",
        ],
    );
    let request: Value = serde_json::from_str(&request).expect("one request, one JSON object");
    assert!(request.is_object() && rfc3339(&request["createdAt"]) && rfc3339(&request["pendingDeadline"]), "{request}");
    let id = request["id"].as_i64().expect("id").to_string();

    let mut lists = Vec::new();
    for resource in
        ["customers", "workspaces", "memberships", "lockboxpolicies", "users", "invitations", "grants", "audit"]
    {
        let json: Value = serde_json::from_str(&ok(home, &["get", resource, "-o", "json"])).expect(resource);
        let items = json.as_array().unwrap_or_else(|| panic!("{resource}: -o json is one array: {json}"));
        assert!(!items.is_empty(), "{resource}: empty");
        // -o jsonl: the same objects, one per line; -o yaml: the same data.
        let lines: Vec<Value> = ok(home, &["get", resource, "-o", "jsonl"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{resource}: jsonl line {l:?}: {e}")))
            .collect();
        assert_eq!(&lines, items, "{resource}: jsonl");
        let yaml: Value = serde_yaml::from_str(&ok(home, &["get", resource, "-o", "yaml"])).expect("yaml");
        assert_eq!(yaml, json, "{resource}: yaml");
        lists.push((resource, json));
    }
    for (what, doc) in [
        ("lockbox show", ok(home, &["lockbox", "show", &id, "-o", "json"])),
        ("lockbox list", ok(home, &["lockbox", "list", "-o", "json"])),
        ("plan", ok(home, &["plan", "-f", &examples(), "-o", "json"])),
        ("notify", ok(home, &["notify", "--once", "-o", "json"])),
    ] {
        lists.push((what, serde_json::from_str(&doc).unwrap_or_else(|e| panic!("{what}: {e}: {doc}"))));
    }
    for (what, doc) in &lists {
        let mut all = Vec::new();
        keys(doc, "", &mut all);
        let snake: Vec<&String> =
            all.iter().filter(|k| k.rsplit('.').next().is_some_and(|k| k.contains('_'))).collect();
        assert!(snake.is_empty(), "{what}: keys not in camelCase: {snake:?}");
        let mut bad = Vec::new();
        encoded(doc, what, &mut bad);
        assert!(bad.is_empty(), "{what}: {bad:#?}");
    }
    let get = |what: &str| lists.iter().find(|(w, _)| *w == what).map(|(_, d)| d.clone()).expect(what);
    let customer = &get("customers")[0];
    assert!(customer["settings"].is_object() && customer["newsletters"].is_array(), "{customer}");
    assert!(get("workspaces")[0]["supportBenefits"].is_array());
    let policy = &get("lockboxpolicies")[0];
    assert_eq!((policy["name"].as_str(), policy["openRequests"].as_i64()), (Some("contoso-lockbox"), Some(1)));
    assert!(policy["approvers"]["emails"].is_array(), "{policy}");
    let invitation = &get("invitations")[0];
    assert!(rfc3339(&invitation["sentAt"]) && rfc3339(&invitation["expiresAt"]), "{invitation}");
    let audit = get("audit");
    let first = &audit[0];
    assert!(rfc3339(&first["at"]) && first["after"].is_object(), "{first}");
    assert_eq!(first["objectName"], "contoso/contoso", "audit entries name their object: {first}");
    assert!(get("lockbox show").is_object(), "show is one object");
    assert_eq!(get("plan")["problems"], Value::Array(Vec::new()));

    // can-i answers scripts with a document and the same exit code.
    let yes = at(
        home,
        &[
            "can-i",
            "--user",
            "adele.vance@contoso.com",
            "--workspace",
            "contoso/contoso-emea",
            "ManageUsers",
            "-o",
            "json",
        ],
    );
    assert_eq!(yes.status.code(), Some(0));
    let yes: Value = serde_json::from_slice(&yes.stdout).expect("can-i json");
    assert_eq!((yes["allowed"].as_bool(), yes["scope"].as_str()), (Some(true), Some("workspace")), "{yes}");
    assert_eq!(yes["sources"][0], "role:WorkspaceAdministrator");
    let no = at(
        home,
        &["can-i", "--user", "lee.gu@contoso.com", "--workspace", "contoso/contoso-emea", "ManageUsers", "-o", "yaml"],
    );
    assert_eq!(no.status.code(), Some(1));
    let no: Value = serde_yaml::from_slice(&no.stdout).expect("can-i yaml");
    assert_eq!(no["allowed"], false);
    assert!(no["reason"].as_str().is_some_and(|r| r.contains("it comes with role")), "{no}");
}

#[test]
fn tables_fit_a_terminal_name_objects_and_wide_shows_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    ok(home, &["apply", "-f", &examples(), "--deliver=false"]);
    let customer: Value = serde_json::from_str(&ok(home, &["get", "customers", "-o", "json"])).expect("json");
    let uid = customer[0]["uid"].as_str().expect("uid").to_owned();
    let width = |t: &str| t.lines().map(|l| l.chars().count()).max().unwrap_or(0);

    let audit = ok(home, &["get", "audit"]);
    assert!(audit.starts_with("ID "), "{audit}");
    assert!(width(&audit) <= 120, "the audit table is {} columns wide:\n{audit}", width(&audit));
    assert!(!audit.contains(&uid), "the audit table shows names, not uids:\n{audit}");
    assert!(audit.contains("customer.put") && audit.contains("contoso/contoso-emea"), "{audit}");
    assert!(!audit.contains("NOTE"), "no always-empty column:\n{audit}");
    assert!(audit.lines().next().is_some_and(|h| h.contains("KIND")), "{audit}");
    assert!(audit.lines().any(|l| l.contains("grant.add") && l.contains("Membership")), "{audit}");
    let wide = ok(home, &["get", "audit", "-o", "wide"]);
    assert!(!wide.contains('…') && audit.contains('…'), "wide cuts nothing; the table cuts long names");

    let grants = ok(home, &["get", "grants"]);
    assert!(width(&grants) <= 130, "{grants}");
    assert!(grants.contains("ManageCloudSupportRequestVisibili…"), "long permission names are cut: {grants}");
    let grants_ns = ok(home, &["get", "grants", "-n", "contoso"]);
    assert!(width(&grants_ns) <= 120, "{grants_ns}");
    assert!(
        !grants_ns.lines().next().unwrap_or_default().contains("NAMESPACE"),
        "-n drops the column, as kubectl does"
    );
    let wide = ok(home, &["get", "grants", "-o", "wide"]);
    assert!(wide.contains("group:6f1c2f4e-2b7a-4d0c-9a51-3e8f0c2d9b10") && wide.contains("Membership/csam"), "{wide}");

    let lbp = ok(home, &["get", "lbp"]);
    assert!(lbp.contains("contoso-lockbox") && lbp.contains("12h") && lbp.contains("8h"), "{lbp}");
    assert_eq!(lbp, ok(home, &["get", "LockboxPolicies"]));
    let users = ok(home, &["get", "users", "-n", "contoso"]);
    assert!(users.contains("sam.researcher@outlook.com") && users.contains("Personal"), "{users}");
    assert_eq!(users, ok(home, &["get", "user", "-n", "contoso"]));
}

#[test]
fn apply_summary_lists_refused_objects_and_quiet_prints_only_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let files = crate::support::example_files(home, &crate::support::WITHOUT_LOCKBOX);
    std::fs::write(
        files.join("05-bad.yaml"),
        "apiVersion: servicehub.io/v1alpha1\nkind: Membership\nmetadata: {name: bad-roles, namespace: contoso}\n\
         spec:\n  customerRef: {name: contoso}\n  workspaceRef: {name: contoso-emea}\n  subject: {kind: User, email: x@contoso.com, displayName: X}\n  roles: [NoSuchRole]\n",
    )
    .expect("write");
    let files = files.display().to_string();
    let out = at(home, &["apply", "-f", &files, "--deliver=false"]);
    assert_eq!(out.status.code(), Some(1), "an invalid object fails the run");
    let text = stdout(&out);
    let row = text.lines().find(|l| l.starts_with("Membership/bad-roles")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("Refused") && row.contains("spec.roles"), "{row}");
    assert!(text.contains(", 1 refused."), "{text}");

    let out = at(home, &["plan", "-f", &files, "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let refused: Vec<&Value> =
        doc["problems"].as_array().into_iter().flatten().filter(|p| p["object"] == "Membership/bad-roles").collect();
    assert!(!refused.is_empty() && refused[0]["field"].as_str().is_some_and(|f| f.starts_with("spec.roles")), "{doc}");
    assert!(doc["objects"].as_array().is_some_and(|o| o.iter().all(|o| o["name"] != "bad-roles")));

    // --quiet: no per-object plan, only what changed or is not Ready, and the totals.
    std::fs::remove_file(Path::new(&files).join("05-bad.yaml")).expect("rm");
    let quiet = stdout(&at(home, &["apply", "-f", &files, "--quiet", "--deliver=false"]));
    assert_eq!(quiet.trim(), "12 object(s): 0 with changes (0 change(s)), 12 Ready. 0 row(s) written.", "{quiet}");
    let full = stdout(&at(home, &["apply", "-f", &files, "--deliver=false"]));
    assert!(full.contains("No changes: the store matches the files.") && full.contains("OBJECT"), "{full}");
}

#[test]
fn a_quiet_first_apply_counts_every_change_and_json_still_lists_them() {
    // With --quiet and the table, the report keeps each change's action and drift, not its
    // summary (issue 18: memory); the counts come out the same, and -o json, which lists
    // the changes, keeps their summaries however it is asked.
    let (quiet_home, json_home) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let quiet = ok(quiet_home.path(), &["apply", "-f", &examples(), "--quiet", "--deliver=false"]);
    let out = at(json_home.path(), &["apply", "-f", &examples(), "--quiet", "--deliver=false", "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let changes: Vec<&Value> = doc["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|o| o["changes"].as_array().into_iter().flatten())
        .collect();
    assert!(changes.len() > 10, "{doc}");
    assert!(changes.iter().all(|c| c["summary"].as_str().is_some_and(|s| !s.is_empty())), "{doc}");
    let objects = doc["objects"].as_array().map_or(0, Vec::len);
    let summary = format!("{objects} object(s): {objects} with changes ({} change(s))", changes.len());
    assert!(quiet.contains(&summary), "{summary}\n{quiet}");
    // The quiet table still lists the changed objects (here, every one).
    assert!(quiet.lines().any(|l| l.starts_with("Membership/") && l.contains("True")), "{quiet}");
}

#[test]
fn progress_is_shown_at_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    // A generated customer large enough to get a progress line (500 objects and more).
    let mut yaml = std::fs::read_to_string(repo("examples/01-customer.yaml")).expect("customer");
    yaml.push_str("\n---\n");
    yaml.push_str(&std::fs::read_to_string(repo("examples/02-workspaces.yaml")).expect("workspaces"));
    for i in 0..1500 {
        yaml.push_str(&format!(
            "---\napiVersion: servicehub.io/v1alpha1\nkind: Membership\nmetadata: {{name: m{i}, namespace: contoso}}\n\
             spec:\n  customerRef: {{name: contoso}}\n  workspaceRef: {{name: contoso-emea}}\n  subject: {{kind: User, email: u{i}@contoso.com, displayName: U {i}}}\n  roles: [User]\n"
        ));
    }
    let file = home.join("many.yaml");
    std::fs::write(&file, yaml).expect("write");
    let file = file.display().to_string();
    let piped = at(home, &["plan", "-f", &file]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert!(!stderr(&piped).contains("planned,"), "no progress when standard error is not a terminal");
    // util-linux `script` gives the command a terminal and records what it printed.
    let log = home.join("typescript");
    let cmd = format!("{} plan -f {file}", env!("CARGO_BIN_EXE_servicehub"));
    let out = std::process::Command::new("script")
        .args(["-qefc", &cmd, &log.display().to_string()])
        .current_dir(home)
        .env_remove("SERVICEHUB_STORE")
        .output();
    let Ok(out) = out else {
        assert!(std::env::var_os("CI").is_none(), "`script` (util-linux) is needed in CI");
        eprintln!("skipped: `script` is not installed");
        return;
    };
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        seen.contains("1504/1504 object(s) planned, 1504 with changes"),
        "a progress line at a terminal: {seen:.2000}"
    );
    assert!(seen.contains("1504 object(s): 1504 with changes"), "{seen:.2000}");
}

#[test]
fn explain_documents_kinds_and_fields_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = ok(dir.path(), &["explain", "membership.spec.permissions"]);
    assert!(text.contains("KIND:       Membership") && text.contains("FIELD: permissions <[]string>"), "{text}");
    assert!(text.contains("DESCRIPTION:"), "{text}");
    let kind = ok(dir.path(), &["explain", "cust"]);
    assert!(
        kind.contains("KIND:       Customer") && kind.contains("FIELDS:") && kind.contains("spec\t<Object>"),
        "{kind}"
    );
    let out = at(dir.path(), &["explain", "membership.spec.rolez"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("field \"rolez\" does not exist in Membership.spec") && stderr(&out).contains("roles")
    );
}

#[tokio::test]
async fn audit_of_a_namespace_holds_every_entry_of_its_customers_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    ok(home, &["apply", "-f", &examples()]);
    let ask = [
        "lockbox",
        "request",
        "--customer",
        "contoso/contoso",
        "--workload",
        "ExchangeOnline",
        "--case",
        "7",
        "--reason",
        "repair",
        "--duration",
        "2h",
        "--as",
        "eng@microsoft.com",
    ];
    ok(home, &ask);
    let all: Value = serde_json::from_str(&ok(home, &["get", "audit", "-o", "json"])).expect("json");
    let mine: Value = serde_json::from_str(&ok(home, &["get", "audit", "-n", "contoso", "-o", "json"])).expect("json");
    let kinds = |v: &Value| -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for e in v.as_array().expect("array") {
            *m.entry(e["kind"].as_str().expect("kind").to_owned()).or_default() += 1;
        }
        m
    };
    // Every entry of the examples belongs to contoso: invitations, users and the Lockbox
    // request included (before, -n kept only customer, workspace and membership entries).
    assert_eq!(kinds(&mine), kinds(&all), "{:?} vs {:?}", kinds(&mine), kinds(&all));
    for kind in ["Invitation", "User", "lockbox", "LockboxPolicy", "Membership"] {
        assert!(kinds(&mine).get(kind).is_some_and(|n| *n > 0), "{kind}: {:?}", kinds(&mine));
    }
    let other: Value =
        serde_json::from_str(&ok(home, &["get", "audit", "-n", "fabrikam", "-o", "json"])).expect("json");
    assert_eq!(other, serde_json::json!([]), "another namespace sees none of it");
    // A limit applies to the namespace's entries (the store's filter; no flag uses it yet).
    let url = format!("sqlite://{}", home.join("servicehub.db").display());
    let s = crate::support::sqlite_file(&url).await;
    let filter = |limit| servicehub_operator::store::AuditFilter {
        namespace: Some("contoso".into()),
        limit,
        ..Default::default()
    };
    let store: &dyn servicehub_operator::store::Store = s.store.as_ref();
    let whole = store.audit(&filter(None)).await.expect("audit");
    assert_eq!(whole.len(), mine.as_array().map_or(0, Vec::len));
    let two = store.audit(&filter(Some(2))).await.expect("audit");
    assert_eq!(two, whole[..2].to_vec());
}

//! `servicehub import`: the YAML of what the store holds for a customer, which applied back
//! to the same store plans nothing; with the real binary, on SQLite and PostgreSQL.

use crate::apply::run;
use crate::support::{TestStore, stderr, stdout, stores};

fn ok(s: &TestStore, args: &[&str]) -> String {
    let out = run(s, args);
    assert!(out.status.success(), "{}: {args:?}\n{}\n{}", s.name, stdout(&out), stderr(&out));
    stdout(&out)
}

async fn count(s: &TestStore, sql: &str) -> i64 {
    s.store.count(sql).await.expect(sql)
}

/// Import `contoso/contoso` into a file; then `plan` and `apply` of that file alone must
/// find nothing to do and write nothing, the audit log included.
async fn import_applies_back_as_a_no_op(s: &TestStore, objects: usize) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = ok(s, &["import", "--customer", "contoso/contoso"]);
    let docs: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&yaml).map(|d| serde::Deserialize::deserialize(d).expect("YAML")).collect();
    assert_eq!(docs.len(), objects, "{}: one document per object", s.name);
    let file = dir.path().join("imported.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let path = file.to_str().expect("utf-8");
    let audit = count(s, "SELECT COUNT(*) FROM audit").await;
    let plan = ok(s, &["plan", "-f", path]);
    assert!(plan.contains("0 with changes (0 change(s) planned)"), "{}: {plan}", s.name);
    // Delivery off: invitations the first apply left queued are not this apply's doing.
    let apply = ok(s, &["apply", "-f", path, "--deliver=false"]);
    assert!(apply.contains("No changes: the store matches the files."), "{}: {apply}", s.name);
    assert!(apply.contains("0 row(s) written."), "{}: {apply}", s.name);
    assert_eq!(count(s, "SELECT COUNT(*) FROM audit").await, audit, "{}: nothing audited", s.name);
    yaml
}

#[tokio::test]
async fn the_examples_import_to_yaml_that_applies_back_as_a_no_op() {
    for s in stores().await {
        ok(&s, &["apply", "-f", "examples/", "--deliver=false"]);
        let yaml = import_applies_back_as_a_no_op(&s, 13).await;
        // What the examples hold, not a column rebuild: list order and a group's display
        // name (neither has a column of its own) come back as written.
        let at = |needle: &str| yaml.find(needle).unwrap_or_else(|| panic!("{needle} missing:\n{yaml}"));
        assert!(at("alex.wilber@contoso.com") < at("lynne.robbins@contoso.com"), "support contacts in order");
        assert!(yaml.contains("displayName: EMEA Learning"), "{yaml}");
        // Only what an object declares: no default workspace or administrator rows of the
        // Customer's own, and every object names its row for a cluster to adopt.
        let kinds = |k: &str| yaml.matches(&format!("kind: {k}\n")).count();
        assert_eq!((kinds("Customer"), kinds("Workspace"), kinds("Membership"), kinds("LockboxPolicy")), (1, 3, 8, 1));
        assert_eq!(yaml.matches("servicehub.io/adopt: ").count(), 13, "{yaml}");
        let uid = s.store.strings("SELECT uid FROM customers WHERE name = 'contoso'").await.expect("uid");
        assert!(yaml.contains(&format!("servicehub.io/adopt: {}", uid[0])), "{yaml}");

        // JSON: one v1 List of the same objects.
        let json: serde_json::Value =
            serde_json::from_str(&ok(&s, &["import", "--customer", "contoso/contoso", "-o", "json"])).expect("JSON");
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"].as_array().map(Vec::len), Some(13));
        assert_eq!(json["items"][0]["kind"], "Customer");
        assert_eq!(json["items"][0]["spec"]["agreement"]["id"], "U-2025-004711");
    }
}

#[tokio::test]
async fn a_generated_customer_of_1000_memberships_imports_and_applies_back_as_a_no_op() {
    for s in stores().await {
        let dir = generated(1000);
        ok(&s, &["apply", "-f", dir.path().to_str().expect("utf-8"), "--deliver=false"]);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM memberships WHERE origin = 'Membership'").await, 1000);
        // Customer, three Workspaces, 1,000 Memberships.
        import_applies_back_as_a_no_op(&s, 1004).await;
    }
}

#[tokio::test]
async fn import_refuses_what_it_cannot_describe_and_names_it() {
    for s in stores().await {
        let out = run(&s, &["import", "--customer", "contoso/contoso"]);
        assert!(!out.status.success(), "{}", s.name);
        assert!(stderr(&out).contains("no store at") || stderr(&out).contains("not in the store"), "{}", stderr(&out));

        ok(&s, &["apply", "-f", "examples/", "--deliver=false"]);
        let out = run(&s, &["import", "--customer", "contoso/fabrikam"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("customer contoso/fabrikam: not in the store"), "{}", stderr(&out));
        let out = run(&s, &["import", "--customer", "contoso"]);
        assert!(stderr(&out).contains("--customer must be NAMESPACE/NAME"), "{}", stderr(&out));

        // A row written before the store kept applied specs (as an upgraded store holds it):
        // import names it and says what to do, and writes no YAML.
        s.store.execute_raw("UPDATE memberships SET applied_spec = '' WHERE name = 'csam'").await.expect("an old row");
        let out = run(&s, &["import", "--customer", "contoso/contoso"]);
        assert!(!out.status.success());
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("stored before servicehub kept applied specs: Membership csam"), "{err}");
        assert!(err.contains("apply them once"), "{err}");
        // The next apply rewrites that one row (and only it), and import works again.
        let again = ok(&s, &["apply", "-f", "examples/", "--deliver=false"]);
        assert!(again.contains("1 with changes"), "{}: {again}", s.name);
        import_applies_back_as_a_no_op(&s, 13).await;
    }
}

/// The examples' Customer and Workspaces, and `n` Memberships that vary in what a column
/// rebuild would lose: users and groups with display names, roles and permissions in no
/// particular order, customer and workspace level, both deletion policies.
fn generated(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["00-namespace.yaml", "01-customer.yaml", "02-workspaces.yaml"] {
        std::fs::copy(crate::support::repo("examples").join(f), dir.path().join(f)).expect("copy");
    }
    let workspaces = ["contoso-hq", "contoso-emea", "contoso-labs"];
    let docs: Vec<String> = (0..n)
        .map(|i| {
            let scope = match i % 4 {
                0 => String::new(),
                k => format!("  workspaceRef:\n    name: {}\n", workspaces[k - 1]),
            };
            let subject = if i % 5 == 0 {
                format!("    kind: Group\n    groupId: 00000000-0000-4000-8000-{i:012}\n    displayName: Team {i}\n")
            } else {
                format!("    kind: User\n    email: Person.{i}@Contoso.com\n    displayName: Person {i}\n")
            };
            let grants = match (i % 4, i % 3) {
                (0, 0) => "  roles: [User]\n  permissions: [ViewEngagements, ViewOpenCanvas]\n",
                (0, _) => "  roles: [User]\n",
                (_, 0) => "  permissions: [SupportContact, Learning, Health]\n",
                (_, 1) => "  roles: [User]\n  permissions: [Programs, Learning]\n",
                _ => "  permissions: [Learning]\n",
            };
            let policy = if i % 7 == 0 { "  deletionPolicy: Orphan\n" } else { "" };
            format!(
                "apiVersion: servicehub.io/v1alpha1\nkind: Membership\nmetadata:\n  name: member-{i}\n  namespace: contoso\n\
                 spec:\n  customerRef:\n    name: contoso\n{scope}  subject:\n{subject}{grants}{policy}"
            )
        })
        .collect();
    std::fs::write(dir.path().join("10-generated.yaml"), docs.join("---\n")).expect("write");
    dir
}

#[tokio::test]
async fn what_an_operator_provisioned_imports_and_a_new_cluster_takes_it_over_from_that_yaml() {
    use crate::cluster::{self, Operator};
    use servicehub_operator::validate::{References, validate_paths};
    for s in stores().await {
        let (api, op) = cluster::ready_scenario_on(&s, &["--leader-elect=false"]).await;
        drop(op);
        drop(api);
        // The operator wrote the applied specs: the YAML plans nothing against its store.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("contoso.yaml");
        std::fs::write(&file, ok(&s, &["import", "--customer", "contoso/contoso"])).expect("write");
        let plan = ok(&s, &["plan", "-f", file.to_str().expect("utf-8")]);
        assert!(plan.contains("0 with changes (0 change(s) planned)"), "{}: {plan}", s.name);

        // A new cluster (new uids) created from that YAML takes the rows over: nobody is
        // invited again, nothing is duplicated, each object's takeover is audited once.
        let rows = async || {
            let mut n = Vec::new();
            for sql in [
                "SELECT COUNT(*) FROM invitations",
                "SELECT CAST(COALESCE(SUM(issue), 0) AS BIGINT) FROM invitations",
                "SELECT COUNT(*) FROM users",
                "SELECT COUNT(*) FROM memberships",
                "SELECT COUNT(*) FROM grants",
                "SELECT COUNT(*) FROM workspaces",
            ] {
                n.push(count(&s, sql).await);
            }
            n
        };
        let before = rows().await;
        let report = validate_paths(&[file], References::InSet);
        assert!(!report.has_errors(), "{:?}", report.problems);
        let api = crate::apiserver::http::ApiServer::start().await;
        cluster::create(&api.client(), &report.objects).await;
        let op = Operator::start(&api, &s.url, &["--leader-elect=false"]);
        cluster::wait_all_ready(&api.client(), &op, std::time::Duration::from_secs(60)).await;
        assert_eq!(rows().await, before, "{}: (invitations, issues, users, memberships, grants, workspaces)", s.name);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM audit WHERE action = 'adopt'").await, 13, "{}", s.name);
    }
}

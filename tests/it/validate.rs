//! `servicehub validate` on the examples: the scenario is clean, every invalid file fails with
//! its expected message, and bad input never panics.

use crate::support::{repo, servicehub, stderr, stdout};

#[test]
fn the_example_scenario_validates_cleanly() {
    let out = servicehub(&["validate", "-f", "examples/"]);
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "", "no problems, not even warnings");
    assert!(stderr(&out).contains("13 object(s) checked: 13 valid"), "{}", stderr(&out));
}

#[test]
fn every_invalid_example_fails_with_its_message() {
    let mut files: Vec<_> = std::fs::read_dir(repo("examples/invalid"))
        .expect("examples/invalid")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "one file per rule");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} must start with `# expect: MESSAGE`", file.display()));
        let rel = format!("examples/invalid/{}", file.file_name().and_then(|n| n.to_str()).expect("name"));
        let out = servicehub(&["validate", "-f", &rel]);
        assert_eq!(out.status.code(), Some(1), "{rel} must be rejected");
        let printed = stdout(&out);
        assert!(printed.contains(expect), "{rel}: expected {expect:?} in:\n{printed}");
        for line in printed.lines() {
            assert!(line.starts_with(&format!("{rel}: ")), "FILE: KIND/NAME: FIELD: MESSAGE, got {line:?}");
        }
    }
}

#[test]
fn deprecated_permissions_are_a_warning_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deprecated.yaml");
    let scenario = std::fs::read_to_string(repo("examples/invalid/permission-not-grantable.yaml")).expect("read");
    std::fs::write(&file, scenario.replace("[ManageUsers]", "[Learning, ContractDetails]")).expect("write");
    let out = servicehub(&["validate", "-f", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("spec.permissions[1]: warning: permission ContractDetails is deprecated"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn garbage_input_is_reported_not_panicked_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("empty.yaml", ""),
        ("scalar.yaml", "just a string\n"),
        ("list.yaml", "- 1\n- 2\n"),
        ("tabs.yaml", "a:\n\tb: c\n"),
        ("no-kind.yaml", "apiVersion: servicehub.io/v1alpha1\nmetadata: {name: x}\n"),
        ("bad-kind.yaml", "apiVersion: servicehub.io/v1alpha1\nkind: Agreement\nmetadata: {name: x}\n"),
        ("bad-version.yaml", "apiVersion: servicehub.io/v1\nkind: Customer\nmetadata: {name: x}\n"),
        ("no-name.yaml", "apiVersion: servicehub.io/v1alpha1\nkind: Customer\nmetadata: {}\nspec: {}\n"),
        ("bad-name.yaml", "apiVersion: servicehub.io/v1alpha1\nkind: Customer\nmetadata: {name: Not_OK}\nspec: {}\n"),
        ("spec-list.yaml", "apiVersion: servicehub.io/v1alpha1\nkind: Customer\nmetadata: {name: x}\nspec: []\n"),
        ("binary.yaml", "\u{0}\u{1}\u{2}"),
    ];
    for (name, body) in cases {
        std::fs::write(dir.path().join(name), body).expect("write");
    }
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").expect("write");
    let out = servicehub(&["validate", "-f", dir.path().to_str().expect("utf-8")]);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}\n{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(!printed.contains("notes.txt"), "non-YAML files in a directory are skipped");
    for needle in [
        "tabs.yaml: document 1: malformed YAML: line 2",
        "no-kind.yaml: document 1: kind: Required value",
        "bad-kind.yaml: Agreement/x: kind: unknown kind",
        "bad-version.yaml: Customer/x: apiVersion: unsupported apiVersion",
        "no-name.yaml: Customer/<unnamed>: metadata.name: Required value",
        "bad-name.yaml: Customer/Not_OK: metadata.name: Invalid value",
        "spec-list.yaml: Customer/x: spec: Invalid value: []: must be of type object",
        "scalar.yaml: document 1: not a Kubernetes object",
        "list.yaml: document 1: not a Kubernetes object",
    ] {
        assert!(printed.contains(needle), "expected {needle:?} in:\n{printed}");
    }
}

#[test]
fn missing_paths_are_reported() {
    let out = servicehub(&["validate", "-f", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("does/not/exist.yaml: cannot read"), "{}", stdout(&out));
}

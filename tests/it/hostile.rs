//! Hostile and careless input to `validate` (and so to `apply`): nesting that would stall the
//! YAML parser, oversized documents, values JSON cannot hold, keys that are not strings, a
//! look-alike API group, a byte-order mark, a megabyte-long name. Each is refused with the
//! file and, where one exists, the object and field or line; the documents after it are
//! still checked.

use crate::support::{repo, servicehub, stderr, stdout};

fn validate(files: &[(&str, String)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).expect("write");
    }
    let out = servicehub(&["validate", "-f", dir.path().to_str().expect("utf-8")]);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    (out.status.code(), stdout(&out))
}

fn workspace(name: &str, display: &str) -> String {
    format!(
        "apiVersion: servicehub.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: {name}\n  namespace: contoso\nspec:\n  \
         customerRef: {{name: contoso}}\n  displayName: {display}\n  administrators: [{{email: a@contoso.com}}]\n"
    )
}

fn customer() -> String {
    std::fs::read_to_string(repo("examples/01-customer.yaml")).expect("customer")
}

#[test]
fn deep_nesting_is_refused_before_the_parser_sees_it() {
    // 100,000 levels (about 200 KB) took the parser more than 20 s.
    let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let (code, out) = validate(&[("deep.yaml", deep), ("ok.yaml", customer())]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("deep.yaml: refused before parsing: line 1, column 68: collections nested deeper than 64 levels"),
        "{out}"
    );
    // Brackets inside quotes and comments are text, not nesting.
    let quoted = format!("{}  # {}\nnote: \"{}\"\n", workspace("quoted", "'[[[['"), "[".repeat(100), "{".repeat(100));
    let (code, out) = validate(&[("quoted.yaml", quoted), ("ok.yaml", customer())]);
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("nested deeper"), "{out}");
}

#[test]
fn oversized_documents_are_refused_with_the_limit() {
    let big = workspace("big", &format!("\"{}\"", "x".repeat(3 * 1024 * 1024 + 10)));
    let (code, out) = validate(&[("big.yaml", big), ("ok.yaml", customer())]);
    assert_eq!(code, Some(1));
    assert!(out.contains("big.yaml: refused before parsing: document 1 is larger than 3 MiB"), "{out}");
}

#[test]
fn a_malformed_document_names_its_object_and_the_next_ones_are_still_checked() {
    let file = [
        workspace("too-big", "123456789012345678901234567890"),
        workspace("infinite", ".inf"),
        workspace("not-a-number", ".nan"),
        format!("{}  ? [a, b]\n  : 1\n", workspace("list-key", "x")),
        format!("{}  ~: 1\n", workspace("null-key", "x")),
        // The last one is wrong in an ordinary way: it must still be reached.
        workspace("Bad_Name", "x"),
    ]
    .join("---\n");
    let (code, out) = validate(&[("gaps.yaml", file), ("00.yaml", customer())]);
    assert_eq!(code, Some(1));
    for needle in [
        "gaps.yaml: Workspace/too-big: malformed YAML: line 8, column 16: spec.displayName: a number wider than 64 bits",
        "gaps.yaml: Workspace/infinite: spec.displayName: .inf (infinity or not-a-number) is not a JSON value",
        "gaps.yaml: Workspace/not-a-number: spec.displayName: .nan (infinity or not-a-number)",
        "gaps.yaml: Workspace/list-key: spec: a key in spec is a list: keys must be strings",
        "gaps.yaml: Workspace/null-key: spec: a key in spec is null: keys must be strings",
        "gaps.yaml: Workspace/Bad_Name: metadata.name: Invalid value",
    ] {
        assert!(out.contains(needle), "expected {needle:?} in:\n{out}");
    }
    // Every message names the file and an object.
    for line in out.lines() {
        assert!(line.contains("gaps.yaml: Workspace/"), "{line}");
    }
}

#[test]
fn a_look_alike_api_group_is_an_error_not_an_ignored_object() {
    for group in ["SERVICEHUB.IO/v1alpha1", "servicehub.com/v1alpha1", "Servicehub.io/v1alpha1"] {
        let policy = format!(
            "apiVersion: {group}\nkind: LockboxPolicy\nmetadata:\n  name: typo\n  namespace: contoso\nspec: {{}}\n"
        );
        let (code, out) = validate(&[("policy.yaml", policy), ("00.yaml", customer())]);
        assert_eq!(code, Some(1), "{group}: {out}");
        assert!(out.contains("LockboxPolicy/typo: apiVersion: unknown API group"), "{out}");
        assert!(out.contains("did you mean apiVersion: servicehub.io/v1alpha1?"), "{out}");
    }
    // Other groups beside ours are still simply skipped.
    let other = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nmetadata: {name: k}\n".to_owned();
    let (code, out) = validate(&[("k.yaml", other), ("00.yaml", customer())]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let (code, out) = validate(&[("bom.yaml", format!("\u{feff}{}", customer()))]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn a_megabyte_long_name_is_not_echoed_in_full() {
    let name = "a".repeat(1024 * 1024);
    let (code, out) = validate(&[("long.yaml", workspace(&name, "x")), ("00.yaml", customer())]);
    assert_eq!(code, Some(1));
    assert!(out.contains("metadata.name"), "{}", &out[..out.len().min(2000)]);
    assert!(out.len() < 4096, "{} bytes printed for one long name", out.len());
    assert!(out.contains("(1048576 characters)"), "{}", &out[..out.len().min(2000)]);
}

//! `servicehub explain KIND[.FIELD]...`: the documentation of a kind or field, offline, from
//! the CRD schemas this binary carries (the ones `servicehub crd` prints), laid out as
//! `kubectl explain` lays it out, so a reader without a cluster sees the same text.

use crate::api;
use serde_json::Value;
use std::process::ExitCode;

/// Arguments of `servicehub explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// `KIND` or `KIND.FIELD.FIELD...`: kind as plural, singular, short name or kind, in any
    /// letter case (`membership.spec.permissions`, `ws.spec`, `Customer.status.conditions`).
    pub path: String,
    /// Show every field below, as an indented tree.
    #[arg(long)]
    pub recursive: bool,
}

/// Run `explain`: print the text, or refuse naming what does not exist and what does.
pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let ExplainArgs { path, recursive } = args;
    let text = render(&path, recursive).map_err(anyhow::Error::msg)?;
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The text `explain PATH` prints.
pub fn render(path: &str, recursive: bool) -> Result<String, String> {
    let mut parts = path.split('.');
    let kind = parts.next().unwrap_or_default();
    let crds = api::crds();
    let crd = crds
        .iter()
        .find(|c| {
            let n = &c.spec.names;
            [Some(&n.kind), Some(&n.plural), n.singular.as_ref()]
                .into_iter()
                .flatten()
                .chain(n.short_names.iter().flatten())
                .any(|name| name.eq_ignore_ascii_case(kind))
        })
        .ok_or_else(|| {
            let kinds: Vec<String> = crds.iter().map(|c| c.spec.names.kind.clone()).collect();
            format!("unknown kind {kind:?}: one of {} (or their plural and short names)", kinds.join(", "))
        })?;
    let version = crd.spec.versions.iter().find(|v| v.storage).unwrap_or(&crd.spec.versions[0]);
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    // What every object has, which a CRD's schema leaves to the API server (as `kubectl
    // explain` shows it).
    let mut schema = schema;
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, kind, description) in STANDARD {
            props.insert((*name).to_owned(), serde_json::json!({ "type": kind, "description": description }));
        }
    }
    let mut node = &schema;
    let mut walked = vec![crd.spec.names.kind.clone()];
    let mut field = None;
    for part in parts {
        let container = element(node);
        let Some(next) = container.get("properties").and_then(|p| p.get(part)) else {
            let known: Vec<&str> = container
                .get("properties")
                .and_then(Value::as_object)
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let at = walked.join(".");
            return Err(if known.is_empty() {
                format!("field {part:?} does not exist: {at} has no fields")
            } else {
                format!("field {part:?} does not exist in {at}; its fields are {}", known.join(", "))
            });
        };
        walked.push(part.to_owned());
        field = Some((part.to_owned(), next));
        node = next;
    }
    let mut out = String::new();
    out.push_str(&format!("GROUP:      {}\n", crd.spec.group));
    out.push_str(&format!("KIND:       {}\n", crd.spec.names.kind));
    out.push_str(&format!("VERSION:    {}\n\n", version.name));
    if let Some((name, f)) = &field {
        out.push_str(&format!("FIELD: {name} <{}>\n\n", type_name(f)));
    }
    out.push_str("DESCRIPTION:\n");
    let description = node.get("description").and_then(Value::as_str).unwrap_or("<empty>");
    wrap(&mut out, description, 4);
    if let Some(values) = element(node).get("enum").and_then(Value::as_array) {
        out.push_str("\nENUM:\n");
        for v in values {
            out.push_str(&format!("    {}\n", v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
        }
    }
    let container = element(node);
    if container.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty()) {
        out.push_str("\nFIELDS:\n");
        fields(&mut out, container, 1, recursive);
    }
    Ok(out)
}

/// The fields of every Kubernetes object, in the words of the API reference.
const STANDARD: &[(&str, &str, &str)] = &[
    (
        "apiVersion",
        "string",
        "APIVersion defines the versioned schema of this representation of an object. Servers should convert \
         recognized schemas to the latest internal value, and may reject unrecognized values.",
    ),
    (
        "kind",
        "string",
        "Kind is a string value representing the REST resource this object represents. Servers may infer this \
         from the endpoint the client submits requests to. In CamelCase.",
    ),
    (
        "metadata",
        "ObjectMeta",
        "Standard object's metadata (name, namespace, labels, annotations, uid, generation, finalizers).",
    ),
];

/// The schema whose fields a path continues into: an array's items, else the node itself.
fn element(node: &Value) -> &Value {
    match node.get("items") {
        Some(items) if node.get("type").and_then(Value::as_str) == Some("array") => element(items),
        _ => node,
    }
}

/// The type as `kubectl explain` writes it: `string`, `[]string`, `Object`, `[]Object`,
/// `map[string]string`, `integer`, `boolean`, `IntOrString`.
fn type_name(node: &Value) -> String {
    if node.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return "IntOrString".into();
    }
    match node.get("type").and_then(Value::as_str) {
        Some("array") => format!("[]{}", node.get("items").map(type_name).unwrap_or_else(|| "Object".into())),
        Some("object") => match node.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map[string]{}", type_name(v)),
            _ => "Object".into(),
        },
        Some(t) => t.to_owned(),
        None if node.get("properties").is_some() => "Object".into(),
        None => "Object".into(),
    }
}

fn fields(out: &mut String, container: &Value, depth: usize, recursive: bool) {
    let required: Vec<&str> = container
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = container.get("properties").and_then(Value::as_object) else { return };
    let pad = "  ".repeat(depth);
    for (name, f) in props {
        let req = if required.contains(&name.as_str()) { " -required-" } else { "" };
        out.push_str(&format!("{pad}{name}\t<{}>{req}\n", type_name(f)));
        if recursive {
            fields(out, element(f), depth + 1, true);
        } else {
            let d = f.get("description").and_then(Value::as_str).unwrap_or("<no description>");
            wrap(out, d, depth * 2 + 2);
            out.push('\n');
        }
    }
}

/// Append `text` word-wrapped at 80 columns, each line indented by `indent`; paragraphs
/// (blank-line separated) are kept.
fn wrap(out: &mut String, text: &str, indent: usize) {
    let pad = " ".repeat(indent);
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && indent + line.len() + 1 + word.len() > 80 {
                out.push_str(&format!("{pad}{line}\n"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            out.push_str(&format!("{pad}{line}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn kind_by_any_name_lists_its_fields() {
        for name in ["Membership", "memberships", "membership", "MBR"] {
            let t = render(name, false).expect(name);
            assert!(t.starts_with("GROUP:      servicehub.io\nKIND:       Membership\nVERSION:    v1alpha1\n"), "{t}");
            assert!(t.contains("\nFIELDS:\n  apiVersion\t<string>\n"), "{t}");
            assert!(t.contains("  spec\t<Object> -required-\n"), "{t}");
        }
    }

    #[test]
    fn field_paths_go_through_lists_and_show_enums() {
        let t = render("membership.spec.roles", false).expect("roles");
        assert!(t.contains("FIELD: roles <[]string>"), "{t}");
        assert!(t.contains("\nENUM:\n") && t.contains("\n    WorkspaceAdministrator\n"), "{t}");
        let t = render("customer.spec.supportContacts.email", false).expect("through a list");
        assert!(t.contains("FIELD: email <string>"), "{t}");
    }

    #[test]
    fn unknown_names_are_refused_with_what_exists() {
        let e = render("gadget", false).expect_err("no such kind");
        assert!(e.contains("unknown kind \"gadget\"") && e.contains("LockboxPolicy"), "{e}");
        let e = render("ws.spec.nope", false).expect_err("no such field");
        assert!(e.contains("field \"nope\" does not exist in Workspace.spec") && e.contains("displayName"), "{e}");
    }

    #[test]
    fn recursive_shows_the_tree() {
        let t = render("lbp.spec", true).expect("tree");
        assert!(t.contains("  approvers\t<Object>"), "{t}");
        assert!(t.contains("    emails\t<[]string>"), "{t}");
    }
}

//! Domain rules on one object, and the rules between the objects of one set.

use super::{Object, Problem, References, Severity, Sourced};
use crate::api::{Customer, Workspace};
use crate::domain::matrix::Scope;
use crate::domain::rules::{self, GrantCheck};
use std::collections::{HashMap, HashSet};

/// Rules that need only the object itself: individual grants against the matrix.
pub(super) fn check_alone(object: &Object, push: &mut dyn FnMut(&str, String, Severity)) {
    // `paused: "yes"` or `"True"` would look paused to a reader and not be.
    let annotation = crate::api::PAUSED_ANNOTATION;
    if let Some(v) = object.meta().annotations.as_ref().and_then(|a| a.get(annotation))
        && v != "true"
        && v != "false"
    {
        let shown = crate::validate::shown(v);
        let msg = format!("\"{shown}\" is neither \"true\" nor \"false\"; only \"true\" pauses the object");
        push(&format!("metadata.annotations[{annotation}]"), msg, Severity::Warning);
    }
    if let Object::Membership(m) = object {
        let scope = if m.spec.workspace_ref.is_some() { Scope::Workspace } else { Scope::Customer };
        for (i, p) in m.spec.permissions.iter().enumerate() {
            let field = format!("spec.permissions[{i}]");
            match rules::check_individual(scope, &m.spec.roles, *p) {
                GrantCheck::Allowed => {}
                GrantCheck::Deprecated(msg) => push(&field, msg, Severity::Warning),
                GrantCheck::Refused(msg) => push(&field, msg, Severity::Error),
            }
        }
    }
}

/// Rules between objects. Returns the indexes of objects that broke one.
pub(super) fn check(
    objects: &[(Sourced, bool)],
    references: References,
    problems: &mut Vec<Problem>,
) -> HashSet<usize> {
    let mut bad = HashSet::new();
    let mut error = |i: usize, field: &str, message: String| {
        let s = &objects[i].0;
        problems.push(Problem {
            file: s.file.clone(),
            object: format!("{}/{}", s.object.kind(), s.object.name()),
            field: field.to_owned(),
            message,
            severity: Severity::Error,
        });
        bad.insert(i);
    };

    let mut seen: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut customers: HashMap<(&str, &str), &Customer> = HashMap::new();
    let mut workspaces: HashMap<(&str, &str), &Workspace> = HashMap::new();
    for (i, (s, _)) in objects.iter().enumerate() {
        let o = &s.object;
        let key = (o.kind(), o.namespace(), o.name());
        if let Some(first) = seen.insert(key, i) {
            let other = &objects[first].0.file;
            error(
                i,
                "metadata.name",
                format!("duplicate: {} {}/{} is also defined in {other}", o.kind(), o.namespace(), o.name()),
            );
            continue;
        }
        match o {
            Object::Customer(c) => {
                customers.insert((o.namespace(), o.name()), c);
            }
            Object::Workspace(w) => {
                workspaces.insert((o.namespace(), o.name()), w);
            }
            _ => {}
        }
    }

    let mut defaults: HashMap<(&str, &str), &str> = HashMap::new();
    let mut policies: HashMap<(&str, &str), &str> = HashMap::new();
    let mut subjects: HashMap<(&str, &str, Option<&str>, String), &str> = HashMap::new();
    for (i, (s, _)) in objects.iter().enumerate() {
        let o = &s.object;
        let ns = o.namespace();
        let customer_ref = (!matches!(o, Object::Customer(_))).then(|| o.customer());
        let customer = customer_ref.and_then(|c| customers.get(&(ns, c)).copied());
        if let Some(c) = customer_ref
            && customer.is_none()
            && references == References::InSet
        {
            error(
                i,
                "spec.customerRef.name",
                format!("Customer {c:?} is not among the given objects in namespace {ns}"),
            );
        }
        match o {
            Object::Customer(c) => {
                let default_ws = workspaces
                    .iter()
                    .find(|((wns, _), w)| *wns == ns && w.spec.default && w.spec.customer_ref.name == o.name());
                let (ws_name, exception) = match default_ws {
                    Some(((_, n), w)) => (format!("{ns}/{n}"), w.spec.allow_personal_accounts),
                    None => (format!("{ns}/{}-default", o.name()), None),
                };
                let kind = c.spec.agreement.kind;
                let invited = std::iter::once(("spec.serviceAdministrator".to_owned(), &c.spec.service_administrator))
                    .chain(
                        c.spec
                            .support_contacts
                            .iter()
                            .enumerate()
                            .map(|(j, p)| (format!("spec.supportContacts[{j}]"), p)),
                    );
                for (field, person) in invited {
                    if let Err(msg) =
                        rules::check_account(person.account_type, person.email.as_str(), &ws_name, kind, exception)
                    {
                        error(i, &format!("{field}.accountType"), msg);
                    }
                }
            }
            Object::Workspace(w) => {
                if w.spec.default {
                    let c = w.spec.customer_ref.name.as_str();
                    if let Some(other) = defaults.insert((ns, c), o.name()) {
                        error(
                            i,
                            "spec.default",
                            format!(
                                "Customer {c:?} already has default workspace {other:?}; at most one Workspace per customer may set default: true"
                            ),
                        );
                    }
                }
                if let Some(c) = customer {
                    let kind = c.spec.agreement.kind;
                    for (j, person) in w.spec.administrators.iter().enumerate() {
                        let at = format!("{ns}/{}", o.name());
                        if let Err(msg) = rules::check_account(
                            person.account_type,
                            person.email.as_str(),
                            &at,
                            kind,
                            w.spec.allow_personal_accounts,
                        ) {
                            error(i, &format!("spec.administrators[{j}].accountType"), msg);
                        }
                    }
                }
            }
            Object::Membership(m) => {
                let ws_name = m.spec.workspace_ref.as_ref().map(|r| r.name.as_str());
                if let Some(wn) = ws_name {
                    match workspaces.get(&(ns, wn)) {
                        None if references == References::InSet => {
                            error(
                                i,
                                "spec.workspaceRef.name",
                                format!("Workspace {wn:?} is not among the given objects in namespace {ns}"),
                            );
                        }
                        None => {}
                        Some(w) if w.spec.customer_ref.name != m.spec.customer_ref.name => {
                            error(
                                i,
                                "spec.workspaceRef.name",
                                format!(
                                    "Workspace {wn:?} belongs to Customer {:?}, not to {:?}",
                                    w.spec.customer_ref.name, m.spec.customer_ref.name
                                ),
                            );
                        }
                        Some(w) => {
                            if let (Some(c), Some(email)) = (customer, &m.spec.subject.email)
                                && let Err(msg) = rules::check_account(
                                    m.spec.subject.account_type(),
                                    email.as_str(),
                                    &format!("{ns}/{wn}"),
                                    c.spec.agreement.kind,
                                    w.spec.allow_personal_accounts,
                                )
                            {
                                error(i, "spec.subject.accountType", msg);
                            }
                        }
                    }
                }
                let key = (ns, m.spec.customer_ref.name.as_str(), ws_name, m.spec.subject.key());
                if let Some(other) = subjects.insert(key, o.name()) {
                    error(
                        i,
                        "spec.subject",
                        format!(
                            "Membership {other:?} already gives this subject access in the same scope; merge the two (one invitation per subject per scope)"
                        ),
                    );
                }
            }
            Object::LockboxPolicy(p) => {
                let c = p.spec.customer_ref.name.as_str();
                if let Some(other) = policies.insert((ns, c), o.name()) {
                    error(
                        i,
                        "spec.customerRef.name",
                        format!("Customer {c:?} already has LockboxPolicy {other:?}; a customer has at most one"),
                    );
                }
            }
        }
    }
    bad
}

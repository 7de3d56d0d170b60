//! Every CEL rule of the CRDs, valid and invalid, evaluated client-side the way the API server
//! evaluates `x-kubernetes-validations` (creation rules and `oldSelf` transition rules).

use super::*;
use serde_json::json;

fn customer(spec: serde_json::Value) -> Customer {
    let mut base = json!({
        "displayName": "Fabrikam",
        "agreement": { "kind": "Unified", "id": "U-1", "startDate": "2025-01-01" },
        "serviceAdministrator": { "email": "sa@fabrikam.com" },
    });
    merge(&mut base, spec);
    Customer::new("fabrikam", serde_json::from_value(base).expect("customer spec"))
}

fn workspace(spec: serde_json::Value) -> Workspace {
    let mut base = json!({
        "customerRef": { "name": "fabrikam" },
        "displayName": "Ops",
        "administrators": [{ "email": "admin@fabrikam.com" }],
    });
    merge(&mut base, spec);
    Workspace::new("ops", serde_json::from_value(base).expect("workspace spec"))
}

fn membership(spec: serde_json::Value) -> Membership {
    let mut base = json!({
        "customerRef": { "name": "fabrikam" },
        "workspaceRef": { "name": "ops" },
        "subject": { "kind": "User", "email": "kim@fabrikam.com" },
    });
    merge(&mut base, spec);
    Membership::new("kim", serde_json::from_value(base).expect("membership spec"))
}

fn policy(spec: serde_json::Value) -> LockboxPolicy {
    let mut base = json!({
        "customerRef": { "name": "fabrikam" },
        "approvers": { "emails": ["sa@fabrikam.com"] },
    });
    merge(&mut base, spec);
    LockboxPolicy::new("lockbox", serde_json::from_value(base).expect("policy spec"))
}

/// Shallow-merge `patch` into `base`; a `null` removes the key.
fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    let (Some(b), serde_json::Value::Object(p)) = (base.as_object_mut(), patch) else { return };
    for (k, v) in p {
        if v.is_null() {
            b.remove(&k);
        } else {
            b.insert(k, v);
        }
    }
}

fn messages(r: Result<(), kube::core::cel::ValidationErrors>) -> String {
    match r {
        Ok(()) => String::new(),
        Err(e) => {
            e.into_vec().iter().map(|e| format!("{}: {}", e.field_path, e.message)).collect::<Vec<_>>().join("\n")
        }
    }
}

#[track_caller]
fn ok(r: Result<(), kube::core::cel::ValidationErrors>) {
    let m = messages(r);
    assert!(m.is_empty(), "expected valid, got: {m}");
}

#[track_caller]
fn rejected(r: Result<(), kube::core::cel::ValidationErrors>, needle: &str) {
    let m = messages(r);
    assert!(m.contains(needle), "expected {needle:?}, got: {m:?}");
}

#[test]
fn agreement_end_date_must_follow_start_date() {
    ok(customer(json!({})).validate_cel());
    let agreement =
        |end: &str| json!({ "agreement": { "kind": "Premier", "id": "P", "startDate": "2025-01-01", "endDate": end } });
    ok(customer(agreement("2025-01-02")).validate_cel());
    rejected(customer(agreement("2025-01-01")).validate_cel(), "endDate must be after startDate");
    rejected(customer(agreement("2024-12-31")).validate_cel(), "endDate must be after startDate");
}

#[test]
fn delegated_administration_needs_exactly_a_group_id() {
    let gid = "6f1c2f4e-2b7a-4d0c-9a51-3e8f0c2d9b10";
    ok(customer(json!({ "administration": { "model": "Delegated", "groupId": gid } })).validate_cel());
    ok(customer(json!({ "administration": { "model": "Direct" } })).validate_cel());
    rejected(customer(json!({ "administration": { "model": "Delegated" } })).validate_cel(), "groupId is required");
    rejected(
        customer(json!({ "administration": { "model": "Direct", "groupId": gid } })).validate_cel(),
        "must be omitted when model is Direct",
    );
}

#[test]
fn every_email_field_checks_syntax() {
    let bad = "not-an-email";
    rejected(customer(json!({ "serviceAdministrator": { "email": bad } })).validate_cel(), "must be an email address");
    rejected(customer(json!({ "supportContacts": [{ "email": bad }] })).validate_cel(), "must be an email address");
    rejected(customer(json!({ "globalAdministrators": [{ "email": "a b@c.d" }] })).validate_cel(), "email address");
    rejected(
        customer(json!({ "newsletters": [{ "name": "n", "subscribers": ["x@y"] }] })).validate_cel(),
        "email address",
    );
    rejected(policy(json!({ "approvers": { "emails": [bad] } })).validate_cel(), "email address");
    rejected(policy(json!({ "notificationRecipients": [bad] })).validate_cel(), "email address");
    rejected(workspace(json!({ "administrators": [{ "email": bad }] })).validate_cel(), "email address");
    rejected(membership(json!({ "subject": { "kind": "User", "email": bad } })).validate_cel(), "email address");
    ok(membership(json!({ "subject": { "kind": "User", "email": "first.last+tag@sub.contoso.co.uk" } }))
        .validate_cel());
}

#[test]
fn references_are_immutable() {
    let old = workspace(json!({}));
    ok(workspace(json!({ "displayName": "renamed" })).validate_cel_update(&old));
    rejected(workspace(json!({ "customerRef": { "name": "other" } })).validate_cel_update(&old), "is immutable");

    let old = membership(json!({}));
    ok(membership(json!({ "roles": ["WorkspaceAdministrator"] })).validate_cel_update(&old));
    rejected(membership(json!({ "customerRef": { "name": "other" } })).validate_cel_update(&old), "is immutable");
    rejected(membership(json!({ "workspaceRef": { "name": "other" } })).validate_cel_update(&old), "is immutable");
    rejected(
        membership(json!({ "workspaceRef": null })).validate_cel_update(&old),
        "workspaceRef cannot be added or removed",
    );
    let old_customer_level = membership(json!({ "workspaceRef": null }));
    rejected(membership(json!({})).validate_cel_update(&old_customer_level), "workspaceRef cannot be added or removed");

    let old = policy(json!({}));
    rejected(policy(json!({ "customerRef": { "name": "other" } })).validate_cel_update(&old), "is immutable");
}

#[test]
fn subject_kind_matches_its_fields() {
    let gid = "0b7e6a52-5c1d-4f3e-8a2b-9d4c7e1f6a30";
    ok(membership(json!({ "subject": { "kind": "Group", "groupId": gid } })).validate_cel());
    let msg = "a User subject needs email and no groupId";
    rejected(membership(json!({ "subject": { "kind": "User" } })).validate_cel(), msg);
    rejected(
        membership(json!({ "subject": { "kind": "User", "email": "a@b.cd", "groupId": gid } })).validate_cel(),
        msg,
    );
    rejected(membership(json!({ "subject": { "kind": "Group" } })).validate_cel(), msg);
    rejected(
        membership(json!({ "subject": { "kind": "Group", "groupId": gid, "email": "a@b.cd" } })).validate_cel(),
        msg,
    );
    rejected(
        membership(json!({ "subject": { "kind": "Group", "groupId": gid, "accountType": "Personal" } })).validate_cel(),
        msg,
    );
}

#[test]
fn roles_fit_the_scope() {
    let msg = "a role does not fit the scope";
    ok(membership(json!({ "roles": ["WorkspaceAdministrator", "User"] })).validate_cel());
    for role in ["GlobalAdministrator", "CustomerSuccessAccountManager", "IncidentManager", "ServiceAdministrator"] {
        rejected(membership(json!({ "roles": [role] })).validate_cel(), msg);
    }
    let customer_level = |roles: serde_json::Value| membership(json!({ "workspaceRef": null, "roles": roles }));
    ok(customer_level(json!(["GlobalAdministrator", "CustomerSuccessAccountManager", "IncidentManager", "User"]))
        .validate_cel());
    rejected(customer_level(json!(["WorkspaceAdministrator"])).validate_cel(), msg);
    rejected(customer_level(json!(["ServiceAdministrator"])).validate_cel(), msg);
}

#[test]
fn permissions_fit_the_scope() {
    let msg = "a permission does not fit the scope";
    ok(membership(json!({ "permissions": ["SupportContact", "Learning"] })).validate_cel());
    rejected(membership(json!({ "permissions": ["ViewEngagements"] })).validate_cel(), msg);
    let customer_level = |p: serde_json::Value| membership(json!({ "workspaceRef": null, "permissions": p }));
    ok(customer_level(json!(["ViewOpenCanvas", "ManageOpenCanvas", "ViewEngagements"])).validate_cel());
    rejected(customer_level(json!(["Learning"])).validate_cel(), msg);
}

#[test]
fn workspaces_need_an_administrator_unless_default() {
    let msg = "a workspace needs at least one administrator";
    rejected(workspace(json!({ "administrators": [] })).validate_cel(), msg);
    ok(workspace(json!({ "administrators": [], "default": true })).validate_cel());
}

#[test]
fn lockbox_durations_are_bounded() {
    for ttl in ["1m", "12h", "96h", "1h30m"] {
        ok(policy(json!({ "pendingTtl": ttl })).validate_cel());
    }
    for ttl in ["59s", "96h1s", "97h"] {
        rejected(policy(json!({ "pendingTtl": ttl })).validate_cel(), "must be between 1m and 96h");
    }
    for d in ["1m", "8h", "336h"] {
        ok(policy(json!({ "maxAccessDuration": d })).validate_cel());
    }
    for d in ["30s", "337h"] {
        rejected(policy(json!({ "maxAccessDuration": d })).validate_cel(), "must be between 1m and 336h");
    }
}

#[test]
fn lockbox_approvers() {
    let msg = "an enabled policy needs at least one approver";
    rejected(policy(json!({ "approvers": {} })).validate_cel(), msg);
    ok(policy(json!({ "approvers": {}, "enabled": false })).validate_cel());
    ok(policy(json!({ "approvers": { "roles": ["GlobalAdministrator", "ServiceAdministrator"] } })).validate_cel());
    rejected(
        policy(json!({ "approvers": { "roles": ["WorkspaceAdministrator"] } })).validate_cel(),
        "approver roles may be GlobalAdministrator and ServiceAdministrator",
    );
}

#[test]
fn defaults_are_declared_in_the_schema() {
    let p = policy(json!({}));
    assert_eq!(p.spec.pending_ttl.to_string(), "12h");
    assert_eq!(p.spec.max_access_duration.to_string(), "8h");
    assert!(p.spec.enabled);
    let crd = serde_json::to_value(LockboxPolicy::crd()).expect("crd");
    let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(props["pendingTtl"]["default"], "12h");
    assert_eq!(props["maxAccessDuration"]["default"], "8h");
    assert_eq!(props["enabled"]["default"], true);
}

#[test]
fn crds_have_status_subresource_short_names_and_category() {
    for (crd, short) in crds().iter().zip(["cust", "ws", "mbr", "lbp"]) {
        let names = &crd.spec.names;
        assert_eq!(names.short_names.as_deref(), Some(&[short.to_owned()][..]));
        assert_eq!(names.categories.as_deref(), Some(&["servicehub".to_owned()][..]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{}", names.kind);
        let cols: Vec<&str> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert!(cols.contains(&"Ready") && cols.contains(&"Age"), "{}: {cols:?}", names.kind);
    }
}

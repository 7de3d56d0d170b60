//! The OpenAPI 3.0 document of `/api/v1`, served at `/api/v1/openapi.json`: the operations
//! are listed here beside the router's routes (a test checks that each is served and that
//! the router serves no `/api/v1` path that is not listed), and every body's schema is
//! generated from the Rust type the handler reads or writes (`schemars`), so the document
//! cannot drift from what is sent.

use crate::access::AccessLine;
use crate::domain::lockbox::Request;
use crate::store::{Accepted, GrantRow, Resend};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

/// One operation: method, path, summary, query parameters (name, required, description),
/// the request body's schema, the success status and its body's schema.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
    query: &'static [(&'static str, bool, &'static str, &'static str)],
    body: Option<Value>,
    ok: (u16, Value),
    /// The operation changes something (needs X-CSRF-Token with the session cookie).
    writes: bool,
}

/// Every error status the API answers with, each with the error body.
const ERRORS: [(u16, &str); 10] = [
    (400, "The body or a parameter is malformed (the field is named)."),
    (401, "No valid bearer token or session."),
    (403, "Authenticated, but not allowed (or the CSRF token is missing)."),
    (404, "No such object."),
    (409, "A conflict: someone acted first, or a deadline has passed."),
    (410, "Gone: the invitation expired or was revoked."),
    (413, "The body is larger than 16 KiB."),
    (422, "A field breaks a rule (the field is named)."),
    (429, "Too many requests from this address; Retry-After says when to retry."),
    (503, "The store is not available; retry."),
];

/// The document, as JSON.
pub fn document() -> Value {
    let mut out = SchemaSettings::openapi3().for_serialize().into_generator();
    let mut input = SchemaSettings::openapi3().for_deserialize().into_generator();
    let request = out.subschema_for::<Request>().to_value();
    let items = |v: Value| json!({ "type": "object", "required": ["items"], "properties": { "items": { "type": "array", "items": v } } });
    let ops = [
        Op {
            method: "post",
            path: "/api/v1/invitations/accept",
            id: "acceptInvitation",
            summary: "Accept an invitation as the caller (the account and its type come from the authentication)",
            tag: "invitations",
            query: &[],
            body: Some(input.subschema_for::<super::invitations::ApiRequest>().to_value()),
            ok: (200, out.subschema_for::<Accepted>().to_value()),
            writes: true,
        },
        Op {
            method: "post",
            path: "/api/v1/invitations/resend",
            id: "resendInvitations",
            summary: "Send a person's failed or expired invitations again with new tokens (administrators, within their reach)",
            tag: "invitations",
            query: &[],
            body: Some(input.subschema_for::<super::access::ResendBody>().to_value()),
            ok: (200, items(out.subschema_for::<Resend>().to_value())),
            writes: true,
        },
        Op {
            method: "get",
            path: "/api/v1/access/me",
            id: "myAccess",
            summary: "The caller's access: every permission with its source, group and export flag",
            tag: "access",
            query: &[],
            body: None,
            ok: (200, items(out.subschema_for::<AccessLine>().to_value())),
            writes: false,
        },
        Op {
            method: "get",
            path: "/api/v1/access/lookup",
            id: "lookUpPerson",
            summary: "A person's (or group's) access and invitations, within the caller's reach",
            tag: "access",
            query: &[
                ("customer", true, "The customer, NAMESPACE/NAME.", "contoso/contoso"),
                ("subject", true, "An email address, or a group's object id.", "lee.gu@contoso.com"),
                ("workspace", false, "Only this workspace (by name).", "contoso-emea"),
            ],
            body: None,
            ok: (200, out.subschema_for::<super::access::Lookup>().to_value()),
            writes: false,
        },
        Op {
            method: "get",
            path: "/api/v1/access/holders",
            id: "permissionHolders",
            summary: "Who holds a permission in a workspace, directly or through a role",
            tag: "access",
            query: &[
                ("customer", true, "The customer, NAMESPACE/NAME.", "contoso/contoso"),
                ("workspace", true, "The workspace (by name).", "contoso-emea"),
                ("permission", true, "The permission (for example ManageUsers).", "ManageUsers"),
            ],
            body: None,
            ok: (200, items(out.subschema_for::<GrantRow>().to_value())),
            writes: false,
        },
        Op {
            method: "get",
            path: "/api/v1/lockbox/inbox",
            id: "lockboxInbox",
            summary: "Requests waiting for the caller's decision, active access they approve, and their own requests",
            tag: "lockbox",
            query: &[],
            body: None,
            ok: (200, out.subschema_for::<super::lockbox::Inbox>().to_value()),
            writes: false,
        },
        Op {
            method: "get",
            path: "/api/v1/lockbox/requests",
            id: "myLockboxRequests",
            summary: "The caller's own requests, newest first",
            tag: "lockbox",
            query: &[],
            body: None,
            ok: (200, items(request.clone())),
            writes: false,
        },
        Op {
            method: "post",
            path: "/api/v1/lockbox/requests",
            id: "openLockboxRequest",
            summary: "Ask for access to a customer's content (Microsoft engineers)",
            tag: "lockbox",
            query: &[],
            body: Some(input.subschema_for::<super::lockbox::Ask>().to_value()),
            ok: (201, request.clone()),
            writes: true,
        },
        Op {
            method: "get",
            path: "/api/v1/lockbox/requests/{id}",
            id: "lockboxRequest",
            summary: "One request with its history and what the caller may do",
            tag: "lockbox",
            query: &[],
            body: None,
            ok: (200, out.subschema_for::<super::lockbox::Detail>().to_value()),
            writes: false,
        },
        Op {
            method: "post",
            path: "/api/v1/lockbox/requests/{id}/{action}",
            id: "decideLockboxRequest",
            summary: "Approve, deny (with a reason), revoke (approvers) or complete (the requester) a request",
            tag: "lockbox",
            query: &[],
            body: Some(input.subschema_for::<super::lockbox::DecisionBody>().to_value()),
            ok: (200, request),
            writes: true,
        },
        Op {
            method: "get",
            path: "/api/v1/audit",
            id: "audit",
            summary: "A customer's audit, newest first, 50 per page (its Global Administrators and CSAM)",
            tag: "audit",
            query: AUDIT_QUERY,
            body: None,
            ok: (
                200,
                json!({ "type": "object", "required": ["items", "page", "pages", "total"], "properties": {
                    "items": { "type": "array", "items": out.subschema_for::<super::audit::Line>().to_value() },
                    "page": { "type": "integer", "minimum": 1 }, "pages": { "type": "integer", "minimum": 1 },
                    "total": { "type": "integer", "minimum": 0 } } }),
            ),
            writes: false,
        },
        Op {
            method: "get",
            path: "/api/v1/audit/export",
            id: "exportAudit",
            summary: "Every matching audit entry of a customer, as CSV or JSON",
            tag: "audit",
            query: AUDIT_EXPORT_QUERY,
            body: None,
            ok: (200, items(out.subschema_for::<super::audit::Line>().to_value())),
            writes: false,
        },
    ];
    let mut paths = serde_json::Map::new();
    for op in ops {
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method] = operation(&op);
    }
    let mut schemas = out.take_definitions(true);
    schemas.extend(input.take_definitions(true));
    schemas.insert(
        "Error".into(),
        json!({ "type": "object", "required": ["reason", "message"], "properties": {
            "reason": { "type": "string", "description": "A code: Invalid, Unauthorized, Forbidden, NotFound, AlreadyDecided, PastDeadline, ..." },
            "message": { "type": "string", "description": "What went wrong and what to do." },
            "field": { "type": "string", "description": "The field or parameter at fault." },
            "retryAfterSeconds": { "type": "integer" } } }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "servicehub-operator console API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Lockbox requests and decisions, access look-ups, the audit and invitations, for the people the \
                operator provisions. Authenticate with an OpenID Connect ID token (Authorization: Bearer) or the \
                console's session cookie; with the cookie, every POST needs the session's CSRF token in X-CSRF-Token.",
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }, { "session": [] }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT (an OpenID Connect ID token)" },
                "session": { "type": "apiKey", "in": "cookie", "name": "servicehub-session",
                    "description": "The console's session (`__Host-servicehub-session` on https)." },
            },
        },
    })
}

const AUDIT_QUERY: &[(&str, bool, &str, &str)] = &[
    ("customer", true, "The customer, NAMESPACE/NAME.", "contoso/contoso"),
    (
        "kind",
        false,
        "Only entries of this kind or whose action starts with it (lockbox, Invitation, session).",
        "lockbox",
    ),
    ("actor", false, "Only entries whose actor contains this.", "megan"),
    ("channel", false, "operator, cli, console-oidc, console-email or api-bearer.", "console-email"),
    ("since", false, "From this time (RFC 3339) or date (YYYY-MM-DD, UTC).", "2025-01-01"),
    ("until", false, "Before this time or date.", "2030-01-01"),
    ("page", false, "The page, from 1.", "1"),
];

const AUDIT_EXPORT_QUERY: &[(&str, bool, &str, &str)] = &[
    ("format", false, "csv (the default) or json.", "csv"),
    ("customer", true, "The customer, NAMESPACE/NAME.", "contoso/contoso"),
    ("kind", false, "As for the audit.", "lockbox"),
    ("actor", false, "As for the audit.", "megan"),
    ("channel", false, "As for the audit.", "console-email"),
    ("since", false, "As for the audit.", "2025-01-01"),
    ("until", false, "As for the audit.", "2030-01-01"),
];

fn operation(op: &Op) -> Value {
    let mut parameters: Vec<Value> = op
        .query
        .iter()
        .map(|(name, required, description, example)| {
            json!({ "name": name, "in": "query", "required": required, "description": description,
                    "schema": { "type": "string" }, "example": example })
        })
        .collect();
    if op.path.contains("{id}") {
        parameters.push(json!({ "name": "id", "in": "path", "required": true, "description": "The request id.",
            "schema": { "type": "integer", "format": "int64" }, "example": 1 }));
    }
    if op.path.contains("{action}") {
        parameters.push(json!({ "name": "action", "in": "path", "required": true,
            "schema": { "type": "string", "enum": ["approve", "deny", "revoke", "complete"] } }));
    }
    if op.writes {
        parameters.push(json!({ "name": "X-CSRF-Token", "in": "header", "required": false,
            "description": "The session's CSRF token: required with the session cookie, not with a bearer token.",
            "schema": { "type": "string" } }));
    }
    let mut responses = serde_json::Map::new();
    let ok = if op.path == "/api/v1/audit/export" {
        json!({ "description": "The entries", "content": {
            "application/json": { "schema": op.ok.1 }, "text/csv": { "schema": { "type": "string" } } } })
    } else {
        json!({ "description": "Done", "content": { "application/json": { "schema": op.ok.1 } } })
    };
    responses.insert(op.ok.0.to_string(), ok);
    for (code, why) in ERRORS {
        responses.insert(
            code.to_string(),
            json!({ "description": why, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
        );
    }
    let mut o = json!({ "operationId": op.id, "summary": op.summary, "tags": [op.tag], "parameters": parameters,
        "responses": responses });
    if let Some(body) = &op.body {
        o["requestBody"] = json!({ "required": op.method == "post" && !op.path.ends_with("{action}"),
            "content": { "application/json": { "schema": body } } });
    }
    o
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(document()).into_response()
}

/// Every documented operation, as `(METHOD, path)`.
pub fn operations() -> Vec<(String, String)> {
    let doc = document();
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, methods) in paths {
            for method in methods.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                out.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

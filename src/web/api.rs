//! What every JSON endpoint under `/api/v1` shares: who calls (a verified bearer ID token, or
//! the console session, with its CSRF token on state-changing requests) and errors as JSON
//! with a reason, the field at fault where there is one, and a message.

use super::Console;
use crate::api::Role;
use crate::domain::actor::{Actor, Channel};
use crate::store::StoreError;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An authenticated caller of the API.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The signed-in email, normalized.
    pub email: String,
    /// `WorkOrSchool` or `Personal`, from the sign-in.
    pub account_type: String,
    /// Group object ids the sign-in proved.
    pub groups: Vec<String>,
    /// The audit actor (channel: the bearer API, or the console session's sign-in method).
    pub actor: Actor,
}

impl Caller {
    /// The subject keys the store's grants name the caller by: their email and
    /// `group:<id>` per group of their sign-in.
    pub fn subject_keys(&self) -> Vec<String> {
        crate::lockbox::subject_keys(&self.email, &self.groups)
    }

    /// Whether the caller holds Global Administrator or CSAM for the customer (directly or
    /// through a group): who reads a customer's requests and policy without deciding them.
    pub async fn audits(&self, c: &Console, customer_uid: &str) -> Result<bool, StoreError> {
        let roles = c.store.roles_of(customer_uid, &self.subject_keys()).await?;
        Ok(roles.iter().any(|r| matches!(r, Role::GlobalAdministrator | Role::CustomerSuccessAccountManager)))
    }
}

/// The customer `ns/name` a request names, or a 422 naming `customer`.
pub(crate) async fn customer(c: &Console, given: &str) -> Result<crate::store::CustomerRow, Problem> {
    let unknown = || Problem::invalid("customer", format!("customer: no customer {}", crate::validate::shown(given)));
    let (ns, name) = given.split_once('/').ok_or_else(unknown)?;
    let rows = c.store.customers(Some(ns)).await.map_err(|e| Problem::store(&e))?;
    rows.into_iter().find(|r| r.record.name == name).ok_or_else(unknown)
}

impl From<&crate::store::Session> for Caller {
    fn from(s: &crate::store::Session) -> Caller {
        Caller {
            email: s.email.clone(),
            account_type: s.account_type.clone(),
            groups: s.groups.clone(),
            actor: s.actor(),
        }
    }
}

/// An error as JSON: `{reason, message, field?}`.
pub fn error(code: StatusCode, reason: &str, field: Option<&str>, message: impl Into<String>) -> Response {
    let mut body = serde_json::json!({ "reason": reason, "message": message.into() });
    if let Some(f) = field {
        body["field"] = f.into();
    }
    (code, axum::Json(body)).into_response()
}

/// Who calls `endpoint` (its metric label): a verified bearer ID token, or the console
/// session. With the session cookie, a state-changing request (`writes`) must carry the
/// session's CSRF token in `X-CSRF-Token`; a bearer token is not sent by browsers on their
/// own, so it needs none.
pub async fn caller(c: &Console, headers: &HeaderMap, endpoint: &str, writes: bool) -> Result<Caller, Response> {
    let unauthorized = |msg: String| {
        let mut res = error(StatusCode::UNAUTHORIZED, "Unauthorized", None, msg);
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        res
    };
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let Some(raw) = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")) else {
            return Err(unauthorized("Authorization: only Bearer ID tokens are accepted".into()));
        };
        let Some(provider) = &c.oidc else {
            return Err(unauthorized(
                "Authorization: bearer tokens need OpenID Connect configured on this console".into(),
            ));
        };
        return match provider.verify_bearer(raw).await {
            Ok(v) => Ok(Caller {
                actor: Actor::person(&v.person.email, Channel::ApiBearer, &v.subject),
                email: v.person.email,
                account_type: v.person.account_type.as_str().to_owned(),
                groups: v.person.groups,
            }),
            Err(e) => {
                c.metrics.refused(endpoint, "bad_bearer");
                Err(unauthorized(format!("Authorization: {e}")))
            }
        };
    }
    match super::signin::session_of(c, headers)
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "StoreError", None, "the store is not available; retry"))?
    {
        Some(s) => {
            let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
            if writes && !s.csrf_ok(given.as_ref()) {
                c.metrics.refused(endpoint, "csrf");
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "CsrfTokenMissing",
                    Some("X-CSRF-Token"),
                    "X-CSRF-Token: the session's CSRF token is required with a session cookie",
                ));
            }
            Ok(Caller::from(&s))
        }
        None => Err(unauthorized(
            "sign in: send Authorization: Bearer <ID token>, or the console's session cookie with X-CSRF-Token".into(),
        )),
    }
}

/// Why an operation is refused: the status, a reason code, the field at fault, and a
/// message that says what to do. Pages show it; the API sends it as JSON.
#[derive(Debug)]
pub struct Problem {
    pub(crate) code: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) field: Option<&'static str>,
    pub(crate) message: String,
}

impl Problem {
    pub(crate) fn new(
        code: StatusCode,
        reason: &'static str,
        field: Option<&'static str>,
        message: impl Into<String>,
    ) -> Problem {
        Problem { code, reason, field, message: message.into() }
    }

    /// A field that breaks a rule: 422 naming it.
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", Some(field), message)
    }

    /// 403 with why.
    pub(crate) fn forbidden(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "Forbidden", None, message)
    }

    /// 404: no such Lockbox request.
    pub(crate) fn no_request(id: i64) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "NotFound", None, format!("lockbox request {id} does not exist"))
    }

    pub(crate) fn store(e: &StoreError) -> Problem {
        tracing::warn!(error = %e, "a console request failed in the store");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "StoreError", None, "the store is not available; retry")
    }

    pub(crate) fn json(self) -> Response {
        error(self.code, self.reason, self.field, self.message)
    }

    pub(crate) fn page(self, s: &crate::store::Session, title: &str) -> Response {
        self.page_then(s, title, None)
    }

    /// The refusal as a page, with a link (path, text) to go on from.
    pub(crate) fn page_then(self, s: &crate::store::Session, title: &str, next: Option<(String, String)>) -> Response {
        let hint = match self.code {
            _ if next.is_some() => None,
            StatusCode::CONFLICT => Some("The request's page shows its state and history now.".to_owned()),
            StatusCode::FORBIDDEN => None,
            _ => Some("Go back and correct the form.".to_owned()),
        };
        let page = super::pages::Message {
            head: super::pages::Head::new(title, Some(s.me())),
            class: "error",
            message: self.message,
            hint,
            operation: None,
            next,
        };
        super::pages::html(self.code, &page)
    }
}

/// A body that is not the JSON asked for: the unknown field is named, else the position
/// (serde's own message may quote the input).
pub(crate) fn body_error(e: &serde_json::Error, shape: &str) -> Problem {
    let text = e.to_string();
    if let Some((name, _)) = text.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')) {
        let name = crate::validate::shown(name);
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Invalid",
            None,
            format!("{name}: not a field of this request; the body is {shape}"),
        );
    }
    let field = text.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(n, _)| n.to_owned());
    match field {
        Some(f) => {
            Problem::new(StatusCode::BAD_REQUEST, "Invalid", None, format!("{f}: required; the body is {shape}"))
        }
        None => Problem::new(
            StatusCode::BAD_REQUEST,
            "Invalid",
            None,
            format!("the body must be JSON {shape} ({:?} error at column {})", e.classify(), e.column()),
        ),
    }
}

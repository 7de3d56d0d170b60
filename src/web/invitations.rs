//! The invitation acceptance page and `POST /v1/invitations/accept`.
//!
//! The link in an invitation (`/invitations/accept?token=…`) puts the token in a short-lived
//! `HttpOnly` cookie and redirects to the same page without it (`Referrer-Policy:
//! no-referrer`), so neither proxies nor the browser history keep it. The page shows what
//! the invitation gives and asks the person to sign in; acceptance is bound to the signed-in
//! identity (the invited address, the account type the sign-in proved).

use super::pages::{self, Head};
use super::signin::{MaybeSigned, Signed};
use super::{Console, Peer, form};
use crate::auth::session::{Cookie, is_token};
use crate::notify::accept::{self, Error};
use crate::notify::token;
use crate::store::{AcceptRefusal, InvitationView};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// How long the token waits in its cookie between the link and the acceptance.
const COOKIE_LIFETIME: Duration = Duration::from_secs(30 * 60);

fn invitation_cookie<'h>(c: &Console, headers: &'h HeaderMap) -> Option<&'h str> {
    let h = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    Cookie::Invitation.find(h, c.config.secure()).filter(|t| is_token(t))
}

fn render(
    c: &Console,
    view: InvitationView,
    session: Option<&crate::store::Session>,
    refusal: Option<String>,
) -> Response {
    let now = c.clock.now();
    let scope =
        view.workspace.as_ref().map_or("All workspaces (customer level)".to_owned(), |w| format!("Workspace {w}"));
    let roles = if view.roles.is_empty() { "User".to_owned() } else { view.roles.join(", ") };
    let expires = view.expires_at.map(crate::domain::time::rfc3339).unwrap_or_else(|| "-".into());
    let accounts = if view.personal_allowed {
        "Work or school accounts and personal Microsoft accounts".to_owned()
    } else {
        "Work or school accounts only".to_owned()
    };
    let refusal = refusal.or_else(|| match session {
        Some(s) => view.refusal(&s.email, &s.account_type, now).map(|r| r.to_string()),
        None => view.refusal(&view.email, "WorkOrSchool", now).map(|r| r.to_string()),
    });
    let can_accept = session.is_some() && refusal.is_none();
    let page = pages::Invitation {
        head: Head::new("Your invitation", session.map(|s| s.me())),
        view,
        scope,
        roles,
        expires,
        accounts,
        refusal,
        can_accept,
    };
    pages::html(StatusCode::OK, &page)
}

/// `GET /invitations/accept[?token=…]`.
pub async fn page(
    State(c): State<Arc<Console>>,
    peer: Peer,
    MaybeSigned(s): MaybeSigned,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(t) = super::query(&uri).get("token") {
        let to = super::Kept {
            group: "invitation",
            cookie: Cookie::Invitation,
            lifetime: COOKIE_LIFETIME,
            to: "/invitations/accept",
        };
        return super::keep_token(&c, &peer, t, to, not_valid).await;
    }
    let Some(t) = invitation_cookie(&c, &headers) else {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Your invitation",
            s.map(|s| s.me()),
            "note",
            "Open the link from your invitation message to see the invitation.",
            None,
        );
    };
    match c.store.invitation_view(&token::hash(t)).await {
        Ok(Some(view)) => render(&c, view, s.as_ref(), None),
        Ok(None) => {
            c.refused_token("invitation", "unknown_token", &peer.0).await;
            not_valid()
        }
        Err(e) => pages::server_error("reading an invitation failed", &e),
    }
}

fn not_valid() -> Response {
    pages::message(
        StatusCode::NOT_FOUND,
        "Invitation not found",
        None,
        "error",
        "This invitation link is not valid: check that it was copied whole from the newest invitation message.",
        None,
    )
}

/// `POST /invitations/accept`: accept as the signed-in person.
pub async fn accept(
    State(c): State<Arc<Console>>,
    peer: Peer,
    Signed(s): Signed,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let f = form(&body, &["csrf"]).unwrap_or_default();
    if !s.csrf_ok(f.get("csrf")) {
        return super::forbidden_csrf(&c, "invitation", Some(s.me()), "Reload the invitation page and accept again.");
    }
    let Some(t) = invitation_cookie(&c, &headers) else {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Your invitation",
            Some(s.me()),
            "error",
            "Open the link from your invitation message again: it is needed to accept.",
            None,
        );
    };
    let req = accept::Request { token: t.to_owned(), account: s.email.clone(), account_type: s.account_type.clone() };
    let clear = Cookie::Invitation.clear(c.config.secure());
    match accept::accept(c.store.as_ref(), &req, s.actor(), false, c.clock.now()).await {
        Ok(a) => {
            c.metrics.notified("invitation", "accepted", 1);
            let scope = a.workspace.as_ref().map_or("customer level".to_owned(), |w| format!("workspace {w}"));
            let res = pages::message(
                StatusCode::OK,
                "Invitation accepted",
                Some(s.me()),
                "success",
                format!("You are now active in {scope} of customer {}.", a.customer),
                None,
            );
            pages::with_cookies(res, &[clear])
        }
        Err(Error::Refused(AcceptRefusal::UnknownToken)) | Err(Error::Invalid(_)) => {
            c.refused_token("invitation", "unknown_token", &peer.0).await;
            not_valid()
        }
        Err(Error::Refused(r)) => {
            c.metrics.notified("invitation", "refused", 1);
            match c.store.invitation_view(&token::hash(t)).await {
                Ok(Some(view)) => render(&c, view, Some(&s), Some(r.to_string())),
                _ => pages::message(
                    StatusCode::FORBIDDEN,
                    "Invitation refused",
                    Some(s.me()),
                    "error",
                    r.to_string(),
                    None,
                ),
            }
        }
        Err(Error::Store(e)) => pages::server_error("accepting an invitation failed", &e),
    }
}

/// The request body of the JSON endpoint: the token only. The account and its type come
/// from the authentication, never from the body.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiRequest {
    token: String,
}

/// `POST /v1/invitations/accept` (and `/api/v1/…`): `{"token"}`, authenticated by
/// `Authorization: Bearer <ID token>` or by the console session with `X-CSRF-Token`.
pub async fn api_accept(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = c.limit("api_invitation", &peer.0, true) {
        return r;
    }
    let super::api::Caller { email, account_type, actor, .. } =
        match super::api::caller(&c, &headers, "api_invitation", true).await {
            Ok(who) => who,
            Err(r) => return r,
        };
    let req: ApiRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            // The class and position only: serde's message may quote the input. An unknown
            // field is named (cut to 100 characters): the account, its type and any time come
            // from the server, never from the body.
            let text = e.to_string();
            let unknown = text
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(name, _)| crate::validate::shown(name));
            let (field, message) = match unknown {
                Some(f) if f == "account" || f == "accountType" => {
                    let m = format!("{f}: comes from the sign-in (the bearer token or session), not from the body");
                    (f, m)
                }
                Some(f) => {
                    let m = format!("{f}: not a field of this request; the body is {{\"token\": \"…\"}}");
                    (f, m)
                }
                None => {
                    let (class, column) = (e.classify(), e.column());
                    let m = format!("the body must be JSON {{\"token\": \"…\"}} ({class:?} error at column {column})");
                    ("token".to_owned(), m)
                }
            };
            return super::api::error(StatusCode::BAD_REQUEST, "Invalid", Some(&field), message);
        }
    };
    let r = accept::Request { token: req.token, account: email, account_type };
    match accept::accept(c.store.as_ref(), &r, actor, false, c.clock.now()).await {
        Ok(a) => {
            c.metrics.notified("invitation", "accepted", 1);
            let mut body = serde_json::to_value(&a).unwrap_or_default();
            body["state"] = "Accepted".into();
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(Error::Invalid(e)) => {
            c.refused_token("api_invitation", "malformed", &peer.0).await;
            super::api::error(StatusCode::BAD_REQUEST, "Invalid", Some(e.field), e.to_string())
        }
        Err(Error::Refused(r)) => {
            let code = match r {
                AcceptRefusal::UnknownToken => {
                    c.refused_token("api_invitation", "unknown_token", &peer.0).await;
                    StatusCode::NOT_FOUND
                }
                AcceptRefusal::Used(_) | AcceptRefusal::Superseded(_) => StatusCode::CONFLICT,
                AcceptRefusal::Expired(_) | AcceptRefusal::Revoked => StatusCode::GONE,
                AcceptRefusal::WrongAccount { .. }
                | AcceptRefusal::PersonalNotAllowed { .. }
                | AcceptRefusal::PersonalNotAllowedAtCustomer { .. } => StatusCode::FORBIDDEN,
            };
            if code != StatusCode::NOT_FOUND {
                c.metrics.notified("invitation", "refused", 1);
            }
            super::api::error(code, r.reason(), None, r.to_string())
        }
        Err(Error::Store(e)) => {
            tracing::warn!(error = %e, "invitation acceptance failed");
            super::api::error(StatusCode::SERVICE_UNAVAILABLE, "StoreError", None, "the store is not available; retry")
        }
    }
}

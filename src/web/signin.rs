//! Sign-in, sessions and sign-out.
//!
//! - Email link: the form queues a link through the outbox (the same response whether or
//!   not the address is known); the link sets a short-lived cookie and redirects to a page
//!   without the token, where one button signs in (a mail scanner opening the link signs
//!   nobody in and uses nothing up).
//! - OpenID Connect: the form starts an authorization request (PKCE, `state`, nonce) bound to
//!   this browser's pre-session cookie; the callback verifies the ID token and signs in.
//! - Every sign-in makes a new session id (any earlier session of the browser is ended) and
//!   is audited with its channel; sign-out ends the session in the store, not just the cookie.

use super::pages::{self, Head, Me};
use super::{Console, Peer, form, safe_return};
use crate::api::AccountType;
use crate::auth::claims::account_type_of_email;
use crate::auth::session::{Cookie, is_token, same_secret};
use crate::domain::actor::{Actor, Channel};
use crate::notify::token::{self, Token};
use crate::store::{PendingLogin, Session};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// A signed-in person (the extractor checks the session in the store; a handler taking it
/// cannot run for anyone else). Pages without a session redirect to sign-in and back.
pub struct Signed(pub Session);

/// The session, if there is one.
pub struct MaybeSigned(pub Option<Session>);

fn cookie_header(headers: &HeaderMap) -> &str {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The live session the request's cookie names.
pub(crate) async fn session_of(c: &Console, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(id) = Cookie::Session.find(cookie_header(headers), c.config.secure()) else { return Ok(None) };
    if !is_token(id) {
        return Ok(None);
    }
    let idle = i64::try_from(c.config.lifetimes.idle.as_secs()).unwrap_or(i64::MAX / 4);
    c.store
        .session_find(&token::hash(id), c.clock.now(), idle)
        .await
        .map_err(|e| pages::server_error("reading a session failed", &e))
}

impl FromRequestParts<Arc<Console>> for MaybeSigned {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Console>) -> Result<Self, Self::Rejection> {
        Ok(MaybeSigned(session_of(c, &parts.headers).await?))
    }
}

impl FromRequestParts<Arc<Console>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Console>) -> Result<Self, Self::Rejection> {
        match session_of(c, &parts.headers).await? {
            Some(s) => Ok(Signed(s)),
            None => {
                let back = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let to =
                    format!("/?return={}", url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>());
                Err(pages::see_other(&to, &[]))
            }
        }
    }
}

impl Session {
    /// The page header's view of the person.
    pub fn me(&self) -> Me {
        Me {
            email: self.email.clone(),
            account_type: self.account_type.clone(),
            account_label: pages::account_label(&self.account_type),
            csrf: self.csrf.clone(),
        }
    }

    /// The audit actor of this session's requests.
    pub fn actor(&self) -> Actor {
        let channel = if self.method == "oidc" { Channel::ConsoleOidc } else { Channel::ConsoleEmail };
        Actor::person(&self.email, channel, &self.subject)
    }

    /// Whether `given` is this session's CSRF token.
    pub fn csrf_ok(&self, given: Option<&String>) -> bool {
        given.is_some_and(|g| same_secret(g, &self.csrf))
    }
}

/// The browser's pre-session CSRF value, and the cookie to set when it has none yet.
fn presession(c: &Console, headers: &HeaderMap) -> (String, Option<String>) {
    match Cookie::Presession.find(cookie_header(headers), c.config.secure()).filter(|v| is_token(v)) {
        Some(v) => (v.to_owned(), None),
        None => {
            let v = Token::generate().secret;
            let set = Cookie::Presession.set(&v, Duration::from_secs(3600), c.config.secure());
            (v.clone(), Some(set))
        }
    }
}

/// Whether a sign-in form's `csrf` equals the browser's pre-session cookie.
fn presession_ok(c: &Console, headers: &HeaderMap, given: Option<&String>) -> bool {
    let cookie = Cookie::Presession.find(cookie_header(headers), c.config.secure());
    matches!((cookie, given), (Some(a), Some(b)) if same_secret(a, b))
}

fn forbidden_csrf(c: &Console, endpoint: &str) -> Response {
    super::forbidden_csrf(c, endpoint, None, "Go back, reload the page and submit it again.")
}

/// The sign-in page (`return_to`, an optional note and an error on the email field).
fn signin_page(
    c: &Console,
    headers: &HeaderMap,
    status: StatusCode,
    return_to: String,
    email: String,
    error: Option<String>,
    note: Option<String>,
) -> Response {
    let (csrf, set) = presession(c, headers);
    let page = pages::SignIn {
        head: Head::new("Sign in", None),
        email_link: c.config.email_link,
        oidc: c.oidc.is_some(),
        oidc_name: c.config.oidc_name.clone(),
        csrf,
        return_to,
        email,
        error,
        note,
    };
    pages::with_cookies(pages::html(status, &page), &set.into_iter().collect::<Vec<_>>())
}

/// `/`: the home page of a signed-in person, else the sign-in page.
pub async fn home(
    State(c): State<Arc<Console>>,
    MaybeSigned(s): MaybeSigned,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let q = super::query(&uri);
    let Some(s) = s else {
        return signin_page(
            &c,
            &headers,
            StatusCode::OK,
            safe_return(q.get("return").map(String::as_str)),
            String::new(),
            None,
            None,
        );
    };
    let memberships = match c.store.memberships(None).await {
        Ok(m) => m,
        Err(e) => return pages::server_error("reading memberships failed", &e),
    };
    let customers = match c.store.customers(None).await {
        Ok(m) => m,
        Err(e) => return pages::server_error("reading customers failed", &e),
    };
    let display = |uid: &str| {
        customers.iter().find(|c| c.record.uid == uid).map(|c| c.record.display_name.clone()).unwrap_or_default()
    };
    let groups: Vec<String> = s.groups.iter().map(|g| format!("group:{g}")).collect();
    let access = memberships
        .iter()
        .filter(|m| m.record.subject_key == s.email || groups.contains(&m.record.subject_key))
        .map(|m| pages::Access {
            customer: display(&m.record.customer_uid),
            scope: m
                .workspace
                .as_ref()
                .map_or("All workspaces (customer level)".to_owned(), |w| format!("Workspace {w}")),
            roles: if m.record.roles.is_empty() {
                "User".to_owned()
            } else {
                m.record.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            },
            through: if m.record.subject_kind == "Group" {
                format!("group {}", m.record.subject_key.trim_start_matches("group:"))
            } else {
                "you".to_owned()
            },
        })
        .collect();
    let page = pages::Home {
        head: Head::new("Welcome", Some(s.me())),
        email: s.email.clone(),
        account_type: s.account_type.clone(),
        account_label: pages::account_label(&s.account_type),
        method: if s.method == "oidc" { "OpenID Connect".into() } else { "an emailed link".into() },
        expires: crate::domain::time::rfc3339(s.expires_at),
        access,
    };
    pages::html(StatusCode::OK, &page)
}

/// `POST /signin/email`: queue a sign-in link.
pub async fn email_request(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = c.limit("signin", &peer.0, false) {
        return r;
    }
    if !c.config.email_link {
        return not_available("Email-link sign-in");
    }
    let f = match form(&body, &["csrf", "email", "return"]) {
        Ok(f) => f,
        Err(e) => return pages::message(StatusCode::BAD_REQUEST, "Sign in", None, "error", e, None),
    };
    if !presession_ok(&c, &headers, f.get("csrf")) {
        return forbidden_csrf(&c, "signin");
    }
    let return_to = safe_return(f.get("return").map(String::as_str));
    let given = f.get("email").map(|e| e.trim().to_owned()).unwrap_or_default();
    let email = given.to_ascii_lowercase();
    let invalid = if email.is_empty() {
        Some("Email address: required".to_owned())
    } else if email.len() > 254 || email.parse::<lettre::Address>().is_err() {
        Some("Email address: must be an address such as lee@contoso.com".to_owned())
    } else {
        None
    };
    if let Some(error) = invalid {
        return signin_page(&c, &headers, StatusCode::BAD_REQUEST, return_to, given, Some(error), None);
    }
    if let Err(wait) = c.limit_email(&email) {
        c.metrics.refused("signin", "rate_limited");
        return pages::too_many(wait, false);
    }
    if let Err(e) = c.store.signin_request(&email, &return_to, c.clock.now()).await {
        return pages::server_error("queueing a sign-in link failed", &e);
    }
    if let Some(w) = &c.wake {
        w.notify_one();
    }
    pages::message(
        StatusCode::OK,
        "Check your mail",
        None,
        "success",
        format!("A sign-in link is on its way to {email}. It works once, for 15 minutes."),
        Some("Nothing arrived? Check the address and your spam folder, then ask for a new link.".into()),
    )
}

/// `GET /signin/email?token=…`: keep the token in a cookie and drop it from the address bar;
/// `GET /signin/email`: ask to confirm.
pub async fn email_link(State(c): State<Arc<Console>>, peer: Peer, uri: Uri, headers: HeaderMap) -> Response {
    let q = super::query(&uri);
    let secure = c.config.secure();
    if let Some(t) = q.get("token") {
        let lifetime = Duration::from_secs(crate::store::SIGNIN_VALIDITY as u64);
        let to = super::Kept { group: "signin_link", cookie: Cookie::SigninLink, lifetime, to: "/signin/email" };
        return super::keep_token(&c, &peer, t, to, link_refused).await;
    }
    if Cookie::SigninLink.find(cookie_header(&headers), secure).is_none() {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Sign in",
            None,
            "error",
            "Open the link from your sign-in message to continue.",
            None,
        );
    }
    let (csrf, set) = presession(&c, &headers);
    let page = pages::Confirm {
        head: Head::new("Sign in", None),
        message: "Continue to sign in to the Services Hub console in this browser.".into(),
        action: "/signin/email/confirm".into(),
        csrf,
        button: "Sign in".into(),
    };
    pages::with_cookies(pages::html(StatusCode::OK, &page), &set.into_iter().collect::<Vec<_>>())
}

fn link_refused() -> Response {
    pages::message(
        StatusCode::BAD_REQUEST,
        "Sign-in link not valid",
        None,
        "error",
        "This sign-in link was already used, has run out (links work for 15 minutes) or is not complete.",
        Some("Ask for a new link on the sign-in page.".into()),
    )
}

/// `POST /signin/email/confirm`: use the link and start a session.
pub async fn email_confirm(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = c.limit("signin_link", &peer.0, false) {
        return r;
    }
    let f = match form(&body, &["csrf"]) {
        Ok(f) => f,
        Err(e) => return pages::message(StatusCode::BAD_REQUEST, "Sign in", None, "error", e, None),
    };
    if !presession_ok(&c, &headers, f.get("csrf")) {
        return forbidden_csrf(&c, "signin_link");
    }
    let secure = c.config.secure();
    let Some(t) = Cookie::SigninLink.find(cookie_header(&headers), secure).filter(|t| is_token(t)) else {
        return link_refused();
    };
    let used = match c.store.signin_consume(&token::hash(t), c.clock.now()).await {
        Ok(u) => u,
        Err(e) => return pages::server_error("using a sign-in link failed", &e),
    };
    let Some((email, return_to)) = used else {
        c.refused_token("signin_link", "unknown_token", &peer.0).await;
        return pages::with_cookies(link_refused(), &[Cookie::SigninLink.clear(secure)]);
    };
    let domains: Vec<&str> = c.config.consumer_domains.iter().map(String::as_str).collect();
    let kind = account_type_of_email(&email, &domains);
    let person =
        NewSession { email: email.clone(), account_type: kind, method: "email", subject: email, groups: Vec::new() };
    match start(&c, &headers, &peer, person).await {
        Ok(cookies) => {
            let mut cookies = cookies;
            cookies.push(Cookie::SigninLink.clear(secure));
            pages::see_other(&safe_return(Some(&return_to)), &cookies)
        }
        Err(r) => r,
    }
}

/// Who a new session is for.
pub(crate) struct NewSession {
    pub email: String,
    pub account_type: AccountType,
    pub method: &'static str,
    pub subject: String,
    pub groups: Vec<String>,
}

/// Start a session (ending the browser's previous one); the cookies to set.
pub(crate) async fn start(
    c: &Console,
    headers: &HeaderMap,
    peer: &Peer,
    p: NewSession,
) -> Result<Vec<String>, Response> {
    let now = c.clock.now();
    let secure = c.config.secure();
    if let Some(old) = Cookie::Session.find(cookie_header(headers), secure).filter(|t| is_token(t)) {
        let by = Actor::person(&p.email, Channel::Unrecorded, &p.subject);
        if let Err(e) = c.store.sessions_end(Some(&token::hash(old)), None, now, &by, "session.replace").await {
            return Err(pages::server_error("ending the previous session failed", &e));
        }
    }
    let id = Token::generate();
    let absolute = c.config.lifetimes.absolute;
    let session = Session {
        id_hash: id.hash.clone(),
        email: p.email.clone(),
        account_type: p.account_type.as_str().to_owned(),
        method: p.method.to_owned(),
        subject: p.subject.clone(),
        groups: p.groups,
        csrf: Token::generate().secret,
        address: peer.0.ip().to_string(),
        created_at: now,
        seen_at: now,
        expires_at: now + i64::try_from(absolute.as_secs()).unwrap_or(i64::MAX / 4),
        revoked_at: None,
    };
    if let Err(e) = c.store.session_insert(&session, &session.actor()).await {
        return Err(pages::server_error("starting a session failed", &e));
    }
    tracing::info!(email = %session.email, method = %session.method, "signed in to the console");
    Ok(vec![Cookie::Session.set(&id.secret, absolute, secure), Cookie::Presession.clear(secure)])
}

/// A 404 for a sign-in method this console does not offer.
fn not_available(what: &str) -> Response {
    let text = format!("{what} is not enabled on this console.");
    pages::message(StatusCode::NOT_FOUND, "Not available", None, "error", text, None)
}

/// The store key of an authorization request: its `state` bound to this browser's
/// pre-session value, so a callback opened in another browser (login CSRF) finds nothing.
fn login_key(state: &str, presession: &str) -> String {
    token::hash(&format!("{state}.{presession}"))
}

/// `POST /signin/oidc`: send the browser to the provider.
pub async fn oidc_begin(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = c.limit("signin", &peer.0, false) {
        return r;
    }
    let Some(provider) = &c.oidc else { return not_available("OpenID Connect sign-in") };
    let f = match form(&body, &["csrf", "return"]) {
        Ok(f) => f,
        Err(e) => return pages::message(StatusCode::BAD_REQUEST, "Sign in", None, "error", e, None),
    };
    if !presession_ok(&c, &headers, f.get("csrf")) {
        return forbidden_csrf(&c, "signin");
    }
    let pre = f.get("csrf").cloned().unwrap_or_default();
    let begun = match provider.begin().await {
        Ok(b) => b,
        Err(e) => return pages::server_error("starting an OpenID Connect sign-in failed", &e),
    };
    let login = PendingLogin {
        state_hash: login_key(&begun.state, &pre),
        verifier: begun.verifier,
        nonce: begun.nonce,
        return_to: safe_return(f.get("return").map(String::as_str)),
        created_at: c.clock.now(),
    };
    if let Err(e) = c.store.oidc_begin(&login).await {
        return pages::server_error("storing an OpenID Connect sign-in failed", &e);
    }
    pages::see_other(begun.url.as_str(), &[])
}

/// `GET /signin/oidc/callback?code=…&state=…`: verify and sign in.
pub async fn oidc_callback(State(c): State<Arc<Console>>, peer: Peer, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = c.limit("oidc_callback", &peer.0, false) {
        return r;
    }
    let Some(provider) = &c.oidc else { return not_available("OpenID Connect sign-in") };
    let q = super::query(&uri);
    let refused = |text: String| {
        pages::message(
            StatusCode::UNAUTHORIZED,
            "Sign-in refused",
            None,
            "error",
            text,
            Some("Start again from the sign-in page.".into()),
        )
    };
    if let Some(err) = q.get("error") {
        let why = q
            .get("error_description")
            .map(|d| crate::validate::shown(d))
            .unwrap_or_else(|| crate::validate::shown(err));
        return refused(format!("The identity provider did not sign you in: {why}"));
    }
    let (Some(code), Some(state)) = (q.get("code"), q.get("state")) else {
        c.refused_token("oidc_callback", "malformed", &peer.0).await;
        return refused("The sign-in answer is incomplete (code and state are required).".into());
    };
    let pre = Cookie::Presession.find(cookie_header(&headers), c.config.secure()).unwrap_or_default().to_owned();
    let login = match c.store.oidc_take(&login_key(state, &pre), c.clock.now()).await {
        Ok(l) => l,
        Err(e) => return pages::server_error("reading an OpenID Connect sign-in failed", &e),
    };
    let Some(login) = login else {
        c.refused_token("oidc_callback", "unknown_token", &peer.0).await;
        return refused(
            "This sign-in was not started in this browser, was used already or took longer than 10 minutes.".into(),
        );
    };
    let verified = match provider.finish(code, &login.verifier, &login.nonce).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "OpenID Connect sign-in refused");
            return refused(e.to_string());
        }
    };
    let p = verified.person;
    let person = NewSession {
        email: p.email,
        account_type: p.account_type,
        method: "oidc",
        subject: verified.subject,
        groups: p.groups,
    };
    match start(&c, &headers, &peer, person).await {
        Ok(cookies) => pages::see_other(&login.return_to, &cookies),
        Err(r) => r,
    }
}

/// `POST /signout`: end the session in the store and drop the cookie.
pub async fn signout(State(c): State<Arc<Console>>, Signed(s): Signed, body: axum::body::Bytes) -> Response {
    let f = form(&body, &["csrf"]).unwrap_or_default();
    if !s.csrf_ok(f.get("csrf")) {
        return forbidden_csrf(&c, "signout");
    }
    if let Err(e) = c.store.sessions_end(Some(&s.id_hash), None, c.clock.now(), &s.actor(), "session.end").await {
        return pages::server_error("ending a session failed", &e);
    }
    let secure = c.config.secure();
    let res = pages::message(StatusCode::OK, "Signed out", None, "success", "You are signed out.", None);
    pages::with_cookies(res.into_response(), &[Cookie::Session.clear(secure)])
}

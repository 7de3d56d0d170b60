//! The web console and its JSON endpoints, on their own port (never the metrics port).
//!
//! Server-rendered HTML that works without JavaScript. One router for pages anyone may open
//! (sign-in, the invitation page), whose state-changing forms carry a pre-session CSRF
//! value, and handlers for signed-in people that take a [`signin::Signed`] extractor, so a
//! handler cannot forget to check the session. Every response carries strict security
//! headers; request bodies are limited; every unauthenticated endpoint is rate limited per
//! client address (and per email where one is given). Time is the server's clock.
//!
//! The pages call the same store and notify functions as the CLI: a page never writes SQL
//! or re-implements a rule.

// Handlers return `Result<_, Response>` (a rejection is the page to send): the response is
// built once per refused request, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod access;
pub mod api;
pub mod audit;
pub mod invitations;
pub mod lockbox;
pub mod openapi;
pub mod pages;
pub mod signin;

use crate::auth::oidc;
use crate::auth::ratelimit::Limiter;
use crate::auth::session::Lifetimes;
use crate::controller::metrics::Metrics;
use crate::store::Store;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Largest request body the console reads (forms and JSON are small); larger gets 413.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The clock of everything the console writes: the server's (tests start it elsewhere, see
/// [`Clock::offset`]).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// This machine's clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| jiff::Timestamp::now().as_second()))
    }

    /// A clock that starts at `start` and runs at the machine's pace (tests of deadlines run
    /// the binary with `SERVICEHUB_UNSAFE_TEST_CLOCK`; nothing a request carries can set it).
    pub fn offset(start: jiff::Timestamp) -> Clock {
        let skew = start.as_second() - jiff::Timestamp::now().as_second();
        Clock(Arc::new(move || jiff::Timestamp::now().as_second() + skew))
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

/// Rate limits of the unauthenticated endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per client address and window, per endpoint group.
    pub per_address: u32,
    /// Sign-in links per email address and window.
    pub per_email: u32,
    /// The window.
    pub window: Duration,
}

impl Default for RateLimits {
    /// 30 requests per address and 5 links per email in 10 minutes: a person retrying is
    /// never refused, a script guessing or mail-bombing is.
    fn default() -> Self {
        RateLimits { per_address: 30, per_email: 5, window: Duration::from_secs(600) }
    }
}

/// The console's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The public base URL (`https://hub.example.com`): links, cookies' `Secure`, the OIDC
    /// callback.
    pub base_url: url::Url,
    /// Whether email-link sign-in is offered.
    pub email_link: bool,
    /// Mail domains whose addresses are personal accounts (email-link sign-in).
    pub consumer_domains: Vec<String>,
    /// Session lifetimes.
    pub lifetimes: Lifetimes,
    /// Rate limits.
    pub limits: RateLimits,
    /// The provider's name on the sign-in button.
    pub oidc_name: String,
    /// Who may open Customer Lockbox requests.
    pub requesters: crate::lockbox::Requesters,
    /// How many times an invitation may be issued again (`--invitation-reissues`), for the
    /// administrators' "send again".
    pub invitation_reissues: u32,
}

impl Config {
    /// Whether cookies must be `Secure` (the base URL is https).
    pub fn secure(&self) -> bool {
        self.base_url.scheme() == "https"
    }
}

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Neither sign-in method is on.
    #[error(
        "the console has no sign-in method: enable email-link sign-in (--console-email-signin) or configure OpenID \
         Connect (--oidc-issuer, --oidc-client-id and SERVICEHUB_OIDC_CLIENT_SECRET)"
    )]
    NoSignIn,
    /// The provider could not be discovered.
    #[error(transparent)]
    Oidc(#[from] oidc::Error),
}

/// Everything the handlers share.
pub struct Console {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Settings.
    pub config: Config,
    /// The server's clock.
    pub clock: Clock,
    /// The OpenID provider, when configured.
    pub oidc: Option<oidc::Provider>,
    /// Counters of refusals.
    pub metrics: Arc<Metrics>,
    /// Wakes the delivery worker when a sign-in link is queued.
    pub wake: Option<Arc<Notify>>,
    /// Per client address, each group of unauthenticated endpoints.
    by_address: Limiter,
    /// Sign-in links per email.
    by_email: Limiter,
    /// The first refused token per address and window gets an audit entry; the rest are
    /// counted in the metric only.
    audited_guesses: Limiter,
    /// The Content-Security-Policy of every response (made once: it names the provider).
    csp: String,
}

impl Console {
    /// A console; refuses to start without a sign-in method.
    pub fn new(
        store: Arc<dyn Store>,
        config: Config,
        oidc: Option<oidc::Provider>,
        clock: Clock,
        metrics: Arc<Metrics>,
        wake: Option<Arc<Notify>>,
    ) -> Result<Console, StartError> {
        if !config.email_link && oidc.is_none() {
            return Err(StartError::NoSignIn);
        }
        let l = config.limits;
        let csp = csp(oidc.as_ref().and_then(|p| p.authorization_origin()));
        Ok(Console {
            csp,
            store,
            oidc,
            clock,
            metrics,
            wake,
            by_address: Limiter::new(l.per_address, l.window),
            by_email: Limiter::new(l.per_email, l.window),
            audited_guesses: Limiter::new(1, l.window),
            config,
        })
    }

    /// Count a request of `group` from `addr`; the 429 to answer when over the limit.
    pub(crate) fn limit(&self, group: &str, addr: &SocketAddr, json: bool) -> Result<(), Response> {
        self.by_address.check(&format!("{group}|{}", addr.ip()), Instant::now()).map_err(|wait| {
            self.metrics.refused(group, "rate_limited");
            pages::too_many(wait, json)
        })
    }

    /// Count a sign-in link for `email`; the wait when over the limit.
    pub(crate) fn limit_email(&self, email: &str) -> Result<(), Duration> {
        self.by_email.check(email, Instant::now())
    }

    /// A refused token (unknown or malformed) at `endpoint` from `addr`: counted, and the first
    /// per address and window is audited with what happened after it.
    pub(crate) async fn refused_token(&self, endpoint: &str, reason: &str, addr: &SocketAddr) {
        self.metrics.refused(endpoint, reason);
        if self.audited_guesses.check(&addr.ip().to_string(), Instant::now()).is_err() {
            return;
        }
        let by = crate::domain::actor::Actor {
            name: "anonymous".into(),
            channel: crate::domain::actor::Channel::Unrecorded,
            subject: addr.ip().to_string(),
        };
        let window = self.config.limits.window.as_secs();
        let after = serde_json::json!({ "endpoint": endpoint, "reason": reason, "address": addr.ip().to_string(),
            "note": format!("further refused tokens from this address in the next {window} s are counted in the \
                             metric servicehub_console_refusals_total only") });
        let entry = crate::store::AuditEntry::new(
            self.clock.now(),
            &by,
            "token.refuse",
            "Console",
            endpoint,
            None,
            Some(after.to_string()),
        );
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::warn!(error = %e, "could not audit a refused token");
        }
    }
}

/// The Content-Security-Policy: nothing inline, nothing from elsewhere; forms post to the
/// console and (for OIDC sign-in, which redirects) to the provider's origin.
fn csp(provider: Option<String>) -> String {
    let form_action = match provider {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; \
         base-uri 'none'"
    )
}

/// Strict headers on every response, errors and 404s included.
async fn security_headers(State(c): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(h, header::CONTENT_SECURITY_POLICY, &c.csp);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    if c.config.secure() {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    res
}

async fn stylesheet() -> Response {
    let mut res = include_str!("static/console.css").into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    res
}

async fn script() -> Response {
    let mut res = include_str!("static/console.js").into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    res
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let json = uri.path().starts_with("/v1/") || uri.path().starts_with("/api/");
    if json {
        let body = serde_json::json!({ "reason": "NotFound", "message": format!("no such endpoint: {}", uri.path()) });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    pages::message(
        StatusCode::NOT_FOUND,
        "Not found",
        None,
        "error",
        "There is no page at this address.",
        Some("Check the link, or start from the sign-in page.".into()),
    )
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> axum::Router {
    axum::Router::new()
        .route("/", get(signin::home))
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .route("/signin/email", post(signin::email_request).get(signin::email_link))
        .route("/signin/email/confirm", post(signin::email_confirm))
        .route("/signin/oidc", post(signin::oidc_begin))
        .route("/signin/oidc/callback", get(signin::oidc_callback))
        .route("/signout", post(signin::signout))
        .route("/invitations/accept", get(invitations::page).post(invitations::accept))
        .route("/v1/invitations/accept", post(invitations::api_accept))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/invitations/accept", post(invitations::api_accept))
        .route("/access", get(access::mine_page))
        .route("/access/lookup", get(access::lookup_page))
        .route("/access/resend", post(access::resend_form))
        .route("/api/v1/access/me", get(access::api_mine))
        .route("/api/v1/access/lookup", get(access::api_lookup))
        .route("/api/v1/access/holders", get(access::api_holders))
        .route("/api/v1/invitations/resend", post(access::api_resend))
        .route("/audit", get(audit::page))
        .route("/audit/export", get(audit::export_page))
        .route("/api/v1/audit", get(audit::api_list))
        .route("/api/v1/audit/export", get(audit::api_export))
        .route("/lockbox", get(lockbox::inbox_page))
        .route("/lockbox/new", get(lockbox::new_form))
        .route("/lockbox/policy", get(lockbox::policy_page))
        .route("/lockbox/requests", post(lockbox::create))
        .route("/lockbox/requests/{id}", get(lockbox::request_page).post(lockbox::decide_form))
        .route("/api/v1/lockbox/inbox", get(lockbox::api_inbox))
        .route("/api/v1/lockbox/requests", get(lockbox::api_mine).post(lockbox::api_create))
        .route("/api/v1/lockbox/requests/{id}", get(lockbox::api_request))
        .route("/api/v1/lockbox/requests/{id}/{action}", post(lockbox::api_decide))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(console.clone(), security_headers))
        .with_state(console)
}

/// Serve the console on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, console: Arc<Console>, shutdown: CancellationToken) {
    let app = router(console).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::error!(error = %e, "console HTTP server failed");
    }
}

/// The client's address (the TCP peer; a proxy in front is one address for every client,
/// which the per-email limits still cover).
pub(crate) type Peer = ConnectInfo<SocketAddr>;

/// A form body's fields (urlencoded), refusing unknown fields and repeated ones by name.
pub(crate) fn form(body: &[u8], allowed: &[&str]) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if !allowed.contains(&k.as_ref()) {
            return Err(format!("{}: not a field of this form", crate::validate::shown(&k)));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("{k}: given more than once"));
        }
    }
    Ok(out)
}

/// The query string's parameters.
pub(crate) fn query(uri: &axum::http::Uri) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect()
}

/// Where a token from a link is kept: the endpoint group (rate limit, metric), the cookie,
/// how long, and the page to redirect to.
pub(crate) struct Kept {
    pub group: &'static str,
    pub cookie: crate::auth::session::Cookie,
    pub lifetime: Duration,
    pub to: &'static str,
}

/// A link's token, taken out of the address bar at once: rate limited, refused when it is
/// malformed (`refused` is the page), else kept in an `HttpOnly` cookie and redirected to
/// the same page without it, so proxies and browser history do not keep it.
pub(crate) async fn keep_token(
    c: &Console,
    peer: &Peer,
    token: &str,
    kept: Kept,
    refused: fn() -> Response,
) -> Response {
    if let Err(r) = c.limit(kept.group, &peer.0, false) {
        return r;
    }
    if !crate::auth::session::is_token(token) {
        c.refused_token(kept.group, "malformed", &peer.0).await;
        return refused();
    }
    let cookie = kept.cookie.set(token, kept.lifetime, c.config.secure());
    pages::see_other(kept.to, &[cookie])
}

/// A state-changing form whose CSRF token is missing or wrong: 403, counted, nothing written.
pub(crate) fn forbidden_csrf(c: &Console, endpoint: &str, me: Option<pages::Me>, hint: &str) -> Response {
    c.metrics.refused(endpoint, "csrf");
    pages::message(
        StatusCode::FORBIDDEN,
        "Form expired",
        me,
        "error",
        "This form could not be verified (its security token is missing or wrong). Nothing was changed.",
        Some(hint.to_owned()),
    )
}

/// A console path to return to after sign-in: a path on this console only (`/…`, not `//…`),
/// so a link cannot send someone elsewhere after they sign in.
pub(crate) fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && p.len() <= 512 => p.to_owned(),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_returned_to() {
        assert_eq!(safe_return(Some("/invitations/accept")), "/invitations/accept");
        for bad in ["//evil.example", "https://evil.example/", "/\\evil.example", "evil"] {
            assert_eq!(safe_return(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_return(None), "/");
    }

    #[test]
    fn forms_refuse_unknown_and_repeated_fields() {
        assert_eq!(form(b"email=a%40b.c&csrf=x", &["email", "csrf"]).expect("ok")["email"], "a@b.c");
        assert!(form(b"email=a&admin=1", &["email"]).expect_err("unknown").starts_with("admin:"));
        assert!(form(b"email=a&email=b", &["email"]).expect_err("twice").starts_with("email:"));
    }
}

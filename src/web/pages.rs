//! The console's pages: askama templates (checked at compile time, HTML-escaped) and the
//! responses that carry them.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The signed-in person, as the page header shows them.
pub struct Me {
    /// Email.
    pub email: String,
    /// `WorkOrSchool` or `Personal`.
    pub account_type: String,
    /// The account type for people.
    pub account_label: &'static str,
    /// The session's CSRF token (for the sign-out form).
    pub csrf: String,
}

/// An account type as people read it.
pub fn account_label(account_type: &str) -> &'static str {
    if account_type == "Personal" { "Personal Microsoft account" } else { "Work or school account" }
}

/// What every page's layout needs.
pub struct Head {
    /// The page title.
    pub title: String,
    /// Who is signed in.
    pub me: Option<Me>,
}

impl Head {
    /// A head with `title`.
    pub fn new(title: impl Into<String>, me: Option<Me>) -> Head {
        Head { title: title.into(), me }
    }
}

/// The sign-in page.
#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignIn {
    pub head: Head,
    pub email_link: bool,
    pub oidc: bool,
    pub oidc_name: String,
    pub csrf: String,
    pub return_to: String,
    pub email: String,
    pub error: Option<String>,
    pub note: Option<String>,
}

/// A page with one message (results, refusals, errors).
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub head: Head,
    /// `note`, `success` or `error`.
    pub class: &'static str,
    pub message: String,
    pub hint: Option<String>,
    /// The operation id of a server error (also in the log).
    pub operation: Option<String>,
    /// Where to go on from here (path, text), besides the start page.
    pub next: Option<(String, String)>,
}

/// A page asking to confirm an action with one button (no link acts by being opened).
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct Confirm {
    pub head: Head,
    pub message: String,
    pub action: String,
    pub csrf: String,
    pub button: String,
}

/// One line of "where you have access".
pub struct Access {
    pub customer: String,
    pub scope: String,
    pub roles: String,
    pub through: String,
}

/// The home page of a signed-in person.
#[derive(Template)]
#[template(path = "home.html")]
pub struct Home {
    pub head: Head,
    pub email: String,
    pub account_type: String,
    pub account_label: &'static str,
    pub method: String,
    pub expires: String,
    pub access: Vec<Access>,
}

/// The invitation acceptance page.
#[derive(Template)]
#[template(path = "invitation.html")]
pub struct Invitation {
    pub head: Head,
    pub view: crate::store::InvitationView,
    pub scope: String,
    pub roles: String,
    pub expires: String,
    pub accounts: String,
    pub refusal: Option<String>,
    pub can_accept: bool,
}

/// Render a template with a status; a template that fails to render is a 500 without detail.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut res = (status, body).into_response();
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// A message page.
pub fn message(
    status: StatusCode,
    title: &str,
    me: Option<Me>,
    class: &'static str,
    text: impl Into<String>,
    hint: Option<String>,
) -> Response {
    let page = Message { head: Head::new(title, me), class, message: text.into(), hint, operation: None, next: None };
    html(status, &page)
}

/// A server error: logged with an operation id that the page shows, nothing else revealed.
pub fn server_error(what: &str, error: &dyn std::fmt::Display) -> Response {
    let operation = uuid::Uuid::new_v4().to_string();
    tracing::error!(%operation, error = %error, "{what}");
    let page = Message {
        head: Head::new("Something went wrong", None),
        class: "error",
        message: "The console could not finish this request. Try again in a moment.".into(),
        hint: Some("If it keeps failing, give the operation id below to your administrator.".into()),
        operation: Some(operation),
        next: None,
    };
    html(StatusCode::SERVICE_UNAVAILABLE, &page)
}

/// A 303 to `to`, with optional cookies.
pub fn see_other(to: &str, cookies: &[String]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// Add cookies to a response.
pub fn with_cookies(mut res: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// A 429 with `Retry-After` (whole seconds).
pub fn too_many(wait: std::time::Duration, json: bool) -> Response {
    let secs = wait.as_secs().max(1);
    let text = format!("Too many requests from your address. Try again in {secs} seconds.");
    let mut res = if json {
        let body = serde_json::json!({ "reason": "TooManyRequests", "message": text, "retryAfterSeconds": secs });
        (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
    } else {
        message(StatusCode::TOO_MANY_REQUESTS, "Slow down", None, "error", text, None)
    };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

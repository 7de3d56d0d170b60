//! What a notification says: one [`Message`] per outbox entry, rendered as plain text and
//! HTML, and as an RFC 5322 message (for SMTP and `.eml` files) or a JSON document (webhook).

use serde::{Deserialize, Serialize};

/// One message, ready for any transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The idempotency key: the same on every attempt of the same message.
    pub id: String,
    /// `invitation` or `lockbox`.
    pub kind: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// The structured content (the webhook's receiver need not parse the text).
    pub data: serde_json::Value,
}

/// The stored content of an invitation (written by the planner).
#[derive(Debug, Deserialize)]
pub struct InvitationContent {
    /// The customer's display name.
    pub customer: String,
    /// The customer object's name.
    pub customer_name: String,
    /// Namespace.
    pub namespace: String,
    /// The workspace object's name, or none at customer level.
    pub workspace: Option<String>,
    /// The invitee's email.
    pub email: String,
    /// The invitee's display name.
    pub display_name: String,
    /// Roles given.
    pub roles: Vec<String>,
    /// Who invited (the object, and who applied it).
    pub invited_by: String,
    /// Which accounts the scope takes (`any`, `workOrSchool`); absent in messages queued
    /// before it was recorded.
    #[serde(default)]
    pub accounts: Option<String>,
}

/// What the delivery worker adds to an invitation for one attempt.
pub struct InvitationLink<'a> {
    /// The acceptance link, token included.
    pub link: &'a str,
    /// The token itself (for the CLI instructions).
    pub token: &'a str,
    /// Until when it can be accepted (Unix seconds).
    pub expires_at: i64,
}

/// The sign-in hint that fits the scope's accounts.
fn account_hint(accounts: Option<&str>) -> &'static str {
    match accounts {
        Some("workOrSchool") => {
            "Sign in with your organisation's work or school account: this workspace does not accept personal \
             Microsoft accounts."
        }
        Some("any") => "You can sign in with a work or school account or with a personal Microsoft account.",
        _ => {
            "A workspace may accept only work or school accounts; if yours refuses a personal account, sign in \
             with your organisation's account."
        }
    }
}

/// Render an invitation.
pub fn invitation(id: &str, c: &InvitationContent, l: &InvitationLink<'_>) -> Message {
    let scope = match &c.workspace {
        Some(w) => format!("workspace {w}"),
        None => "customer level".to_owned(),
    };
    let roles = if c.roles.is_empty() { "User".to_owned() } else { c.roles.join(", ") };
    let expires = crate::domain::time::rfc3339(l.expires_at);
    let subject = format!("You are invited to {} ({}) in Services Hub", c.customer, scope);
    let greeting = if c.display_name.is_empty() { "Hello".to_owned() } else { format!("Hello {}", c.display_name) };
    let text = format!(
        "{greeting},\n\n{by} invited you to {scope} of {customer} in Services Hub, with the roles: {roles}.\n\n\
         Accept the invitation here, signed in as {email}:\n{link}\n\n\
         The invitation can be used once and expires on {expires}.\n\
         {hint}\n",
        hint = account_hint(c.accounts.as_deref()),
        by = c.invited_by,
        customer = c.customer,
        email = c.email,
        link = l.link,
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>{greeting},</p>\n\
         <p>{by} invited you to <strong>{scope}</strong> of <strong>{customer}</strong> in Services Hub, with the roles: {roles}.</p>\n\
         <p><a href=\"{link}\">Accept the invitation</a></p>\n\
         <p>The invitation can be used once and expires on {expires}.</p>\n</body></html>\n",
        greeting = escape(&greeting),
        by = escape(&c.invited_by),
        scope = escape(&scope),
        customer = escape(&c.customer),
        roles = escape(&roles),
        link = escape(l.link),
    );
    let data = serde_json::json!({
        "customer": { "namespace": c.namespace, "name": c.customer_name, "displayName": c.customer },
        "workspace": c.workspace,
        "email": c.email,
        "displayName": c.display_name,
        "roles": c.roles,
        "invitedBy": c.invited_by,
        "acceptUrl": l.link,
        "expiresAt": expires,
    });
    Message { id: id.to_owned(), kind: "invitation".into(), to: vec![c.email.clone()], subject, text, html, data }
}

/// Render an emailed sign-in link for `email`, valid until `expires_at`.
pub fn signin(id: &str, email: &str, link: &str, expires_at: i64) -> Message {
    let expires = crate::domain::time::rfc3339(expires_at);
    let subject = "Sign in to Services Hub".to_owned();
    let text = format!(
        "Hello,\n\nSomeone (we hope you) asked to sign in to the Services Hub console as {email}.\n\n\
         Sign in here:\n{link}\n\n\
         The link can be used once and works until {expires} (15 minutes). If you did not ask for it, \
         ignore this message: nobody can sign in without the link.\n"
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>Someone (we hope you) asked to sign in to the Services Hub console as \
         <strong>{e}</strong>.</p>\n<p><a href=\"{l}\">Sign in to Services Hub</a></p>\n\
         <p>The link can be used once and works until {expires} (15 minutes). If you did not ask for it, ignore \
         this message.</p>\n</body></html>\n",
        e = escape(email),
        l = escape(link),
    );
    let data = serde_json::json!({ "email": email, "signInUrl": link, "expiresAt": expires });
    Message { id: id.to_owned(), kind: "signin".into(), to: vec![email.to_owned()], subject, text, html, data }
}

/// Render a Lockbox notification (`{to, subject, request, customer}` as the store queued it),
/// with a link to the request's page (`link`; opening it decides nothing: the page asks for
/// sign-in and a confirmed form).
pub fn lockbox(id: &str, payload: &serde_json::Value, link: Option<&str>) -> Message {
    let to = payload["to"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
    let r = &payload["request"];
    let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
    let c = &payload["customer"];
    let customer = match (c["displayName"].as_str(), c["namespace"].as_str(), c["name"].as_str()) {
        (Some(d), Some(ns), Some(n)) if !d.is_empty() => format!("{d} ({ns}/{n})"),
        (_, Some(ns), Some(n)) => format!("{ns}/{n}"),
        _ => "-".to_owned(),
    };
    let state = field("state");
    let subject = match (state.as_str(), c["displayName"].as_str().filter(|d| !d.is_empty())) {
        ("Pending", Some(d)) => format!("Approval needed: Customer Lockbox request {} for {d}", r["id"]),
        _ => payload["subject"].as_str().unwrap_or("Customer Lockbox request").to_owned(),
    };
    let mut lines = vec![
        format!("Customer: {customer}"),
        format!("Request: {}", r["id"]),
        format!("State: {state}"),
        format!("Requested by: {}", field("requester")),
        format!("Workload: {}", field("workload")),
        format!("Support case: {}", field("caseId")),
        format!("Reason: {}", field("reason")),
        format!("Access asked for: {}", crate::domain::lockbox::human(r["requestedSeconds"].as_i64().unwrap_or(0))),
    ];
    let deadline = |k: &str, label: &str| r[k].as_str().map(|t| format!("{label}: {t} (UTC)"));
    lines.extend(match state.as_str() {
        "Pending" => deadline("pendingDeadline", "Decide by"),
        "Approved" | "NotRequired" => deadline("accessDeadline", "Access until"),
        _ => None,
    });
    if let Some(by) = r["decidedBy"].as_str() {
        let why = r["decisionReason"].as_str().map(|w| format!(": {w}")).unwrap_or_default();
        lines.push(format!("Decided by: {by}{why}"));
    }
    let act = if state == "Pending" {
        "Sign in to the console to approve or deny it before the deadline; opening the link decides nothing."
    } else {
        "The request's page shows its whole history."
    };
    let link_text = link.map(|l| format!("\n{act}\n{l}\n")).unwrap_or_default();
    let text = format!("{subject}\n\n{}\n{link_text}", lines.join("\n"));
    let items: String = lines.iter().map(|l| format!("<li>{}</li>", escape(l))).collect();
    let link_html = link
        .map(|l| format!("<p>{}</p>\n<p><a href=\"{}\">Open request {}</a></p>\n", escape(act), escape(l), r["id"]))
        .unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>{}</p>\n<ul>{items}</ul>\n{link_html}</body></html>\n",
        escape(&subject)
    );
    let mut data = r.clone();
    data["customer"] = c.clone();
    if let Some(l) = link {
        data["requestUrl"] = l.into();
    }
    Message { id: id.to_owned(), kind: "lockbox".into(), to: to.unwrap_or_default(), subject, text, html, data }
}

/// Escape text for HTML.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Message-ID of a message: its idempotency key at the sender's domain. Every character
/// of a key (`invitation/<uid>/<scope>/<issue>`) is allowed in a msg-id's left part.
pub fn message_id(id: &str, from_domain: &str) -> String {
    let left: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) { c } else { '_' })
        .collect();
    format!("<{left}@{from_domain}>")
}

/// A body whose lines reach the reader as written: 7bit when it is ASCII, else 8bit, and
/// quoted-printable only for lines longer than SMTP allows (998 octets). Quoted-printable
/// would break a link's line with soft line breaks and show its `=` as `=3D`, so a token
/// copied from the raw message would not work. (`lettre` would choose quoted-printable for
/// any line of 76 characters or more, which every acceptance link is.)
fn body(text: String) -> lettre::message::Body {
    use lettre::message::Body;
    use lettre::message::header::ContentTransferEncoding as Cte;
    let text = text.replace("\r\n", "\n");
    let fits = text.split('\n').all(|l| l.len() <= 998 && !l.contains('\r'));
    let crlf = || text.replace('\n', "\r\n").into_bytes();
    match (fits, text.is_ascii()) {
        (true, true) => Body::dangerous_pre_encoded(crlf(), Cte::SevenBit),
        (true, false) => Body::dangerous_pre_encoded(crlf(), Cte::EightBit),
        (false, _) => Body::new(text),
    }
}

/// The message as RFC 5322 bytes: multipart/alternative with the text and HTML bodies.
pub fn rfc5322(m: &Message, from: &lettre::message::Mailbox) -> Result<lettre::Message, String> {
    use lettre::message::header::ContentType;
    use lettre::message::{MultiPart, SinglePart};
    let mut b = lettre::Message::builder()
        .from(from.clone())
        .subject(m.subject.clone())
        .message_id(Some(message_id(&m.id, from.email.domain())))
        .date_now();
    for to in &m.to {
        b = b.to(to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?);
    }
    let text = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(body(m.text.clone()));
    let html = SinglePart::builder().header(ContentType::TEXT_HTML).body(body(m.html.clone()));
    b.multipart(MultiPart::alternative().singlepart(text).singlepart(html)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> InvitationContent {
        InvitationContent {
            customer: "Contoso <Ltd>".into(),
            customer_name: "contoso".into(),
            namespace: "support".into(),
            workspace: Some("emea".into()),
            email: "lee@contoso.com".into(),
            display_name: "Lee".into(),
            roles: vec!["WorkspaceAdministrator".into()],
            invited_by: "operator".into(),
            accounts: Some("workOrSchool".into()),
        }
    }

    #[test]
    fn an_invitation_names_customer_workspace_roles_inviter_link_and_expiry() {
        let link =
            InvitationLink { link: "https://hub.example/accept?token=abc", token: "abc", expires_at: 1_800_000_000 };
        let m = invitation("invitation/m1/ws1/1", &content(), &link);
        assert_eq!(m.to, vec!["lee@contoso.com"]);
        assert_eq!(m.subject, "You are invited to Contoso <Ltd> (workspace emea) in Services Hub");
        for part in
            ["operator invited you", "workspace emea", "WorkspaceAdministrator", "token=abc", "2027-01-15T08:00:00Z"]
        {
            assert!(m.text.contains(part), "text lacks {part:?}: {}", m.text);
        }
        assert!(m.html.contains("Contoso &lt;Ltd&gt;") && !m.html.contains("<Ltd>"), "{}", m.html);
        assert_eq!(m.data["acceptUrl"], "https://hub.example/accept?token=abc");
    }

    #[test]
    fn the_sign_in_hint_fits_the_scope() {
        let link = InvitationLink { link: "https://x/?token=t", token: "t", expires_at: 0 };
        let work = invitation("invitation/a/b/1", &content(), &link);
        assert!(work.text.contains("does not accept personal Microsoft accounts"), "{}", work.text);
        let any = InvitationContent { accounts: Some("any".into()), ..content() };
        let m = invitation("invitation/a/b/1", &any, &link);
        assert!(m.text.contains("or with a personal Microsoft account") && !m.text.contains("does not accept"));
        let old = InvitationContent { accounts: None, ..content() };
        assert!(invitation("invitation/a/b/1", &old, &link).text.contains("may accept only work or school"));
    }

    #[test]
    fn the_message_id_is_the_idempotency_key() {
        let from: lettre::message::Mailbox = "Services Hub <hub@contoso.example>".parse().expect("mailbox");
        let link = InvitationLink { link: "https://x/?token=t", token: "t", expires_at: 0 };
        let m = invitation("invitation/c1/sa/c1/1", &content(), &link);
        let raw = String::from_utf8(rfc5322(&m, &from).expect("message").formatted()).expect("utf-8");
        assert!(raw.contains("Message-ID: <invitation/c1/sa/c1/1@contoso.example>"), "{raw}");
        assert!(raw.contains("To: lee@contoso.com") && raw.contains("multipart/alternative"), "{raw}");
    }

    #[test]
    fn a_long_link_reaches_the_raw_message_whole_on_one_line() {
        let from: lettre::message::Mailbox = "Services Hub <hub@contoso.example>".parse().expect("mailbox");
        let token = "TDg5R23qDzE1zw39IYrF_GCSIlI43GYgfes8EvrspTo";
        let url = format!("https://servicehub.contoso.example/invitations/accept?token={token}");
        let link = InvitationLink { link: &url, token, expires_at: 0 };
        let mut c = content();
        c.display_name = "Lee Müller".into();
        for m in [invitation("invitation/c1/ws/1", &content(), &link), invitation("invitation/c1/ws/2", &c, &link)] {
            let raw = String::from_utf8(rfc5322(&m, &from).expect("message").formatted()).expect("utf-8");
            assert!(!raw.contains("quoted-printable") && !raw.contains("=3D"), "{raw}");
            assert!(raw.lines().any(|l| l.trim_end() == url), "the link is a line of its own: {raw}");
            assert!(raw.contains("\r\n") && !raw.replace("\r\n", "").contains('\n'), "CRLF line ends only");
        }
        let long = "x".repeat(1200);
        let m = Message { text: long.clone(), html: long, ..invitation("invitation/c1/ws/3", &content(), &link) };
        let raw = String::from_utf8(rfc5322(&m, &from).expect("message").formatted()).expect("utf-8");
        assert!(raw.lines().all(|l| l.len() <= 998), "a line past SMTP's limit is encoded");
    }
}

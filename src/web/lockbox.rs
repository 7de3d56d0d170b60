//! Customer Lockbox in the console and under `/api/v1/lockbox`: engineers open requests and
//! follow them, approvers decide from an inbox, and every page and endpoint asks the same
//! questions of the store (who is the requester, who are the request's approvers, who holds
//! a Global Administrator or CSAM role for the customer).
//!
//! Decisions are the store's guarded transitions ([`crate::lockbox::act`]), stamped with the
//! signed-in identity, its channel and the server's clock. Of two concurrent decisions one
//! wins; the other person is told who acted first. No page decides by being opened: the
//! link in a notification leads to the request's page, where a form (with the session's
//! CSRF token) decides.

use super::api::{self, Caller, Problem};
use super::pages::{self, Head};
use super::signin::Signed;
use super::{Console, form};
use crate::api::lockbox_policy::Workload;
use crate::domain::lockbox::{self as domain, Action, NewRequest, Refusal, Request, State as ReqState};
use crate::domain::time::rfc3339;
use crate::lockbox::{self, Error, Requester};
use crate::store::{AuditFilter, CustomerRow, LockboxFilter, StoreError};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

/// Live requests read for an inbox (pending and active ones across every customer: a
/// pending request lives at most its policy's pendingTtl, so these stay few).
const LIVE_LIMIT: i64 = 5000;
/// A requester's requests shown, newest first.
const MINE_LIMIT: i64 = 100;
/// Longest reason and case id accepted (characters).
const REASON_MAX: usize = 1000;
const CASE_MAX: usize = 64;

/// What a person may do with one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    /// They opened it.
    pub requester: bool,
    /// They are one of its approvers (resolved when it was opened).
    pub approver: bool,
    /// They hold Global Administrator or CSAM for the customer (they may read it).
    pub auditor: bool,
}

impl Rights {
    /// Whether they may see the request at all.
    pub fn may_view(self) -> bool {
        self.requester || self.approver || self.auditor
    }
}

/// The rights of `who` on `r`.
async fn rights(c: &Console, r: &Request, who: &Caller) -> Result<Rights, StoreError> {
    let requester = r.requester == who.email;
    let approver = !requester && r.approvers.contains(&who.email);
    let auditor = !requester && !approver && who.audits(c, &r.customer_uid).await?;
    Ok(Rights { requester, approver, auditor })
}

/// The request as it stands at `now`: one past its deadline shows as closed at the deadline,
/// as the operator's sweep records it (a page view writes nothing).
fn as_of(r: Request, now: i64) -> Request {
    domain::expire(&r, now).unwrap_or(r)
}

/// The actions `rights` allow on `r` at `now`.
fn allowed(r: &Request, rights: Rights, now: i64) -> Vec<Action> {
    let mut out = Vec::new();
    let before = |deadline: Option<i64>| deadline.is_none_or(|d| now < d);
    if rights.approver && r.state == ReqState::Pending && before(r.pending_deadline) {
        out.extend([Action::Approve, Action::Deny]);
    }
    if r.state.has_access() && before(r.access_deadline) {
        if rights.approver {
            out.push(Action::Revoke);
        }
        if rights.requester {
            out.push(Action::Complete);
        }
    }
    out
}

/// Customers by uid: `(namespace/name, display name)`.
struct Customers(HashMap<String, (String, String)>);

impl Customers {
    async fn read(c: &Console) -> Result<Customers, StoreError> {
        Ok(Customers::of(&c.store.customers(None).await?))
    }

    fn of(rows: &[CustomerRow]) -> Customers {
        Customers(
            rows.iter()
                .map(|r| {
                    let key = format!("{}/{}", r.record.namespace, r.record.name);
                    (r.record.uid.clone(), (key, r.record.display_name.clone()))
                })
                .collect(),
        )
    }

    fn key(&self, uid: &str) -> String {
        self.0.get(uid).map(|(k, _)| k.clone()).unwrap_or_else(|| "-".into())
    }

    fn shown(&self, uid: &str) -> String {
        match self.0.get(uid) {
            Some((k, d)) if !d.is_empty() => format!("{d} ({k})"),
            Some((k, _)) => k.clone(),
            None => "-".into(),
        }
    }
}

/// A time as the pages show it (`… UTC`), or `-`.
fn utc(t: Option<i64>) -> String {
    t.map(|t| format!("{} UTC", rfc3339(t))).unwrap_or_else(|| "-".into())
}

/// A duration left, to the second (`3h 59m 12s`).
fn left(seconds: i64) -> String {
    let s = seconds.max(0);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, x) => format!("{x}s"),
        (0, m, x) => format!("{m}m {x}s"),
        (h, m, x) => format!("{h}h {m}m {x}s"),
    }
}

/// One line of a list of requests.
pub struct Line {
    pub id: i64,
    pub customer: String,
    pub requester: String,
    pub workload: String,
    pub case_id: String,
    pub state: String,
    /// The deadline that applies (to decide, or of access), RFC 3339 UTC, or `-`.
    pub deadline: String,
    /// Seconds left before it, at the page's time (0 when none or passed).
    pub left_seconds: i64,
    pub left: String,
}

fn line(r: &Request, customers: &Customers, now: i64) -> Line {
    let due = r.due_at();
    let left_seconds = due.map_or(0, |d| (d - now).max(0));
    Line {
        id: r.id,
        customer: customers.shown(&r.customer_uid),
        requester: r.requester.clone(),
        workload: r.workload.clone(),
        case_id: r.case_id.clone(),
        state: r.state.to_string(),
        deadline: due.map(rfc3339).unwrap_or_else(|| "-".into()),
        left_seconds,
        left: if due.is_some() { left(left_seconds) } else { "-".into() },
    }
}

/// The requests of a person's inbox: waiting for their decision, active access they may
/// revoke, and their own.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inbox {
    pub pending: Vec<Request>,
    pub active: Vec<Request>,
    pub mine: Vec<Request>,
}

async fn inbox(c: &Console, who: &Caller, now: i64) -> Result<Inbox, StoreError> {
    let live = c.store.lockbox_due(i64::MAX, None, LIVE_LIMIT).await?;
    let (mut pending, mut active) = (Vec::new(), Vec::new());
    for r in live.into_iter().map(|r| as_of(r, now)) {
        if r.requester == who.email || !r.approvers.contains(&who.email) {
            continue;
        }
        match r.state {
            ReqState::Pending => pending.push(r),
            s if s.has_access() => active.push(r),
            _ => {}
        }
    }
    let filter = LockboxFilter { requester: Some(who.email.clone()), limit: Some(MINE_LIMIT), ..Default::default() };
    let mine = c.store.lockbox_list(&filter).await?.into_iter().map(|r| as_of(r, now)).collect();
    Ok(Inbox { pending, active, mine })
}

/// The inbox page.
#[derive(Template)]
#[template(path = "lockbox_inbox.html")]
pub struct InboxPage {
    pub head: Head,
    pub pending: Vec<Line>,
    pub active: Vec<Line>,
    pub mine: Vec<Line>,
    pub may_request: bool,
    pub now: String,
}

/// `GET /lockbox`.
pub async fn inbox_page(State(c): State<Arc<Console>>, Signed(s): Signed) -> Response {
    let now = c.clock.now();
    let who = Caller::from(&s);
    let read = async {
        let inbox = inbox(&c, &who, now).await?;
        let rows = c.store.customers(None).await?;
        let names = Customers::of(&rows);
        let may_request = !requesters(&c, &who, rows).await?.is_empty();
        Ok::<_, StoreError>((inbox, names, may_request))
    };
    let (inbox, customers, may_request) = match read.await {
        Ok(v) => v,
        Err(e) => return pages::server_error("reading the Lockbox inbox failed", &e),
    };
    let lines = |rs: &[Request]| rs.iter().map(|r| line(r, &customers, now)).collect();
    let page = InboxPage {
        head: Head::new("Customer Lockbox", Some(s.me())),
        pending: lines(&inbox.pending),
        active: lines(&inbox.active),
        mine: lines(&inbox.mine),
        may_request,
        now: rfc3339(now),
    };
    pages::html(StatusCode::OK, &page)
}

/// `GET /api/v1/lockbox/inbox`: `{pending, active, mine}`.
pub async fn api_inbox(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let who = match api::caller(&c, &headers, "api_lockbox", false).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match inbox(&c, &who, c.clock.now()).await {
        Ok(i) => (StatusCode::OK, axum::Json(i)).into_response(),
        Err(e) => Problem::store(&e).json(),
    }
}

/// Of `customers`, those `who` may open requests for.
async fn requesters(c: &Console, who: &Caller, customers: Vec<CustomerRow>) -> Result<Vec<CustomerRow>, StoreError> {
    let mut out = Vec::new();
    for row in customers {
        if c.config.requesters.allows(c.store.as_ref(), &row.record.uid, &who.email, &who.groups).await? {
            out.push(row);
        }
    }
    Ok(out)
}

/// Customers `who` may open requests for, as `(namespace/name, shown name, workloads, max
/// access)`, sorted: what the form offers.
async fn requestable(c: &Console, who: &Caller) -> Result<Vec<(String, String, Vec<String>, i64)>, StoreError> {
    let rows = requesters(c, who, c.store.customers(None).await?).await?;
    let names = Customers::of(&rows);
    let mut out = Vec::new();
    for row in rows {
        let r = &row.record;
        let (workloads, max) = match c.store.lockbox_policy(&r.namespace, &r.name).await? {
            Some((_, Some(p))) => (p.workloads, p.max_access),
            _ => (Workload::ALL.iter().map(|w| w.as_str().to_owned()).collect(), domain::DEFAULT_MAX_ACCESS),
        };
        out.push((names.key(&r.uid), names.shown(&r.uid), workloads, max));
    }
    out.sort();
    Ok(out)
}

/// A new request as a form or JSON body gives it.
#[derive(Clone, Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ask {
    /// The customer, `namespace/name`.
    pub customer: String,
    /// The workload.
    pub workload: String,
    /// The support case.
    pub case_id: String,
    /// Why access is needed.
    pub reason: String,
    /// How long (`4h`, `90m`), at most the policy's maxAccessDuration.
    pub duration: String,
}

/// Open the request `ask` describes, as `who`.
async fn open(c: &Console, who: &Caller, ask: Ask) -> Result<Request, Problem> {
    let Some((ns, name)) = ask.customer.split_once('/').filter(|(a, b)| !a.is_empty() && !b.is_empty()) else {
        return Err(Problem::invalid("customer", "customer: choose a customer (NAMESPACE/NAME)"));
    };
    if !Workload::ALL.iter().any(|w| w.as_str() == ask.workload) {
        let all: Vec<&str> = Workload::ALL.iter().map(|w| w.as_str()).collect();
        return Err(Problem::invalid("workload", format!("workload: one of {}", all.join(", "))));
    }
    let case_id = ask.case_id.trim();
    if case_id.is_empty() || case_id.chars().count() > CASE_MAX || case_id.chars().any(char::is_control) {
        return Err(Problem::invalid("caseId", format!("caseId: the support case id, 1 to {CASE_MAX} characters")));
    }
    let reason = ask.reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_MAX {
        return Err(Problem::invalid(
            "reason",
            format!("reason: say why access to customer content is needed (at most {REASON_MAX} characters)"),
        ));
    }
    let duration: crate::api::GoDuration = ask.duration.trim().parse().map_err(|_| {
        Problem::invalid(
            "duration",
            format!("duration: a duration such as 4h or 90m, not {}", crate::validate::shown(&ask.duration)),
        )
    })?;
    if duration.seconds() <= 0 {
        return Err(Problem::invalid("duration", "duration: the access asked for must be longer than zero"));
    }
    let new = NewRequest {
        requester: who.email.clone(),
        workload: ask.workload,
        case_id: case_id.to_owned(),
        reason: reason.to_owned(),
        duration: duration.seconds(),
    };
    let by = Requester { actor: &who.actor, groups: &who.groups };
    match lockbox::request(c.store.as_ref(), ns, name, new, by, &c.config.requesters, c.clock.now()).await {
        Ok(r) => Ok(r),
        Err(e @ Error::NotRequester { .. }) => Err(Problem::forbidden(e.to_string())),
        Err(e @ Error::UnknownCustomer(_)) => Err(Problem::invalid("customer", format!("customer: {e}"))),
        Err(Error::Refused(e @ Refusal::WorkloadNotCovered { .. })) => {
            Err(Problem::invalid("workload", format!("workload: {e}")))
        }
        Err(Error::Refused(e @ Refusal::TooLong { .. })) => Err(Problem::invalid("duration", format!("duration: {e}"))),
        Err(Error::Refused(e)) => Err(Problem::new(StatusCode::CONFLICT, "Refused", None, e.to_string())),
        Err(Error::NotFound(_)) => Err(Problem::invalid("customer", "customer: not found")),
        Err(Error::Store(e)) => Err(Problem::store(&e)),
    }
}

/// The form to open a request.
#[derive(Template)]
#[template(path = "lockbox_new.html")]
pub struct NewPage {
    pub head: Head,
    pub csrf: String,
    /// `(value, shown, workloads, max access)`.
    pub customers: Vec<(String, String, String, String)>,
    pub workloads: Vec<&'static str>,
    pub ask: Ask,
    pub error: Option<String>,
    pub error_field: String,
}

fn new_page(
    s: &crate::store::Session,
    customers: Vec<(String, String, Vec<String>, i64)>,
    ask: Ask,
    problem: Option<Problem>,
) -> Response {
    let code = problem.as_ref().map_or(StatusCode::OK, |p| p.code);
    let page = NewPage {
        head: Head::new("Ask for access to customer content", Some(s.me())),
        csrf: s.csrf.clone(),
        customers: customers
            .into_iter()
            .map(|(k, shown, w, max)| (k, shown, w.join(", "), domain::human(max)))
            .collect(),
        workloads: Workload::ALL.iter().map(|w| w.as_str()).collect(),
        ask,
        error_field: problem.as_ref().and_then(|p| p.field).unwrap_or_default().to_owned(),
        error: problem.map(|p| p.message),
    };
    pages::html(code, &page)
}

/// `GET /lockbox/new`.
pub async fn new_form(State(c): State<Arc<Console>>, Signed(s): Signed) -> Response {
    let who = Caller::from(&s);
    let customers = match requestable(&c, &who).await {
        Ok(v) => v,
        Err(e) => return pages::server_error("reading customers failed", &e),
    };
    if customers.is_empty() {
        let text = format!(
            "Customer Lockbox requests come from Microsoft engineers: an address at {}, or a Customer Success Account \
             Manager or Incident Manager role for the customer. {} is neither for any customer.",
            c.config.requesters.domains.join(", "),
            s.email
        );
        return pages::message(StatusCode::FORBIDDEN, "Not a requester", Some(s.me()), "error", text, None);
    }
    let ask = Ask { duration: "4h".into(), ..Ask::default() };
    new_page(&s, customers, ask, None)
}

/// `POST /lockbox/requests` (the form).
pub async fn create(State(c): State<Arc<Console>>, Signed(s): Signed, body: axum::body::Bytes) -> Response {
    let f = match form(&body, &["csrf", "customer", "workload", "caseId", "reason", "duration"]) {
        Ok(f) => f,
        Err(e) => return Problem::invalid("form", e).page(&s, "Ask for access"),
    };
    if !s.csrf_ok(f.get("csrf")) {
        return super::forbidden_csrf(&c, "lockbox", Some(s.me()), "Reload the form and submit it again.");
    }
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    let ask = Ask {
        customer: field("customer"),
        workload: field("workload"),
        case_id: field("caseId"),
        reason: field("reason"),
        duration: field("duration"),
    };
    let who = Caller::from(&s);
    match open(&c, &who, ask.clone()).await {
        Ok(r) => pages::see_other(&format!("/lockbox/requests/{}", r.id), &[]),
        Err(p) if p.code == StatusCode::UNPROCESSABLE_ENTITY => match requestable(&c, &who).await {
            Ok(customers) => new_page(&s, customers, ask, Some(p)),
            Err(e) => pages::server_error("reading customers failed", &e),
        },
        Err(p) => p.page(&s, "Ask for access"),
    }
}

/// `POST /api/v1/lockbox/requests`: 201 with the request.
pub async fn api_create(State(c): State<Arc<Console>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let who = match api::caller(&c, &headers, "api_lockbox", true).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let ask: Ask = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return api::body_error(&e, "{\"customer\", \"workload\", \"caseId\", \"reason\", \"duration\"}").json();
        }
    };
    match open(&c, &who, ask).await {
        Ok(r) => (StatusCode::CREATED, axum::Json(r)).into_response(),
        Err(p) => p.json(),
    }
}

/// One step of a request's history.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// When (RFC 3339).
    pub at: String,
    /// The state reached.
    pub state: String,
    /// Who acted.
    pub actor: String,
    /// Through which channel, as people read it.
    pub channel: String,
}

/// A request with what the reader needs around it.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    pub request: Request,
    /// `namespace/name`.
    pub customer: String,
    pub history: Vec<Step>,
    /// What the reader may do now (`approve`, `deny`, `revoke`, `complete`).
    pub allowed_actions: Vec<&'static str>,
    #[serde(skip)]
    #[schemars(skip)]
    rights: Rights,
    #[serde(skip)]
    #[schemars(skip)]
    shown_customer: String,
}

async fn detail(c: &Console, id: i64, who: &Caller) -> Result<Detail, Problem> {
    let r = c.store.lockbox_get(id).await.map_err(|e| Problem::store(&e))?.ok_or_else(|| Problem::no_request(id))?;
    let rights = rights(c, &r, who).await.map_err(|e| Problem::store(&e))?;
    if !rights.may_view() {
        return Err(Problem::forbidden(format!(
            "{} may not see lockbox request {id}: only its requester, its approvers and the customer's Global \
             Administrators and CSAM can",
            who.email
        )));
    }
    let now = c.clock.now();
    let r = as_of(r, now);
    let filter = AuditFilter { kind: Some("lockbox".into()), object: Some(id.to_string()), ..Default::default() };
    let history = c.store.audit(&filter).await.map_err(|e| Problem::store(&e))?;
    let history = history
        .iter()
        .map(|e| Step {
            at: rfc3339(e.at),
            state: e.action.strip_prefix("lockbox.").unwrap_or(&e.action).to_owned(),
            actor: e.actor.clone(),
            channel: e.channel.describe().to_owned(),
        })
        .collect();
    let customers = Customers::read(c).await.map_err(|e| Problem::store(&e))?;
    Ok(Detail {
        allowed_actions: allowed(&r, rights, now).into_iter().map(Action::as_str).collect(),
        customer: customers.key(&r.customer_uid),
        shown_customer: customers.shown(&r.customer_uid),
        request: r,
        history,
        rights,
    })
}

/// A request's page.
#[derive(Template)]
#[template(path = "lockbox_request.html")]
pub struct RequestPage {
    pub head: Head,
    pub csrf: String,
    pub r: Request,
    pub customer: String,
    /// `namespace/name`.
    pub customer_key: String,
    pub duration: String,
    pub approvers: String,
    pub decide_by: String,
    pub decide_by_utc: Option<String>,
    pub access_until: String,
    pub access_until_utc: Option<String>,
    pub left_seconds: i64,
    pub left: String,
    pub decided: String,
    pub closed: String,
    pub history: Vec<Step>,
    pub can_decide: bool,
    pub can_revoke: bool,
    pub can_complete: bool,
    pub role: &'static str,
    pub done: Option<String>,
}

/// `GET /lockbox/requests/{id}`.
pub async fn request_page(
    State(c): State<Arc<Console>>,
    Signed(s): Signed,
    Path(id): Path<i64>,
    uri: axum::http::Uri,
) -> Response {
    let who = Caller::from(&s);
    let d = match detail(&c, id, &who).await {
        Ok(d) => d,
        Err(p) => return p.page(&s, "Customer Lockbox request"),
    };
    let now = c.clock.now();
    let r = d.request;
    let due = r.due_at();
    let decided = match (&r.decided_at, &r.decided_by) {
        (Some(t), Some(by)) => {
            let why = r.decision_reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
            format!("{} UTC by {by}{why}", rfc3339(*t))
        }
        _ => "-".into(),
    };
    let done = super::query(&uri).get("done").and_then(|d| match d.as_str() {
        "approve" => Some("You approved this request.".to_owned()),
        "deny" => Some("You denied this request.".to_owned()),
        "revoke" => Some("You revoked this access.".to_owned()),
        "complete" => Some("You completed this request.".to_owned()),
        _ => None,
    });
    let role = if d.rights.requester {
        "requester"
    } else if d.rights.approver {
        "approver"
    } else {
        "auditor"
    };
    let page = RequestPage {
        head: Head::new(format!("Customer Lockbox request {id}"), Some(s.me())),
        csrf: s.csrf.clone(),
        customer: d.shown_customer,
        customer_key: d.customer,
        duration: domain::human(r.requested_seconds),
        approvers: if r.approvers.is_empty() { "-".into() } else { r.approvers.join(", ") },
        decide_by: utc(r.pending_deadline),
        decide_by_utc: r.pending_deadline.map(rfc3339),
        access_until: utc(r.access_deadline),
        access_until_utc: r.access_deadline.map(rfc3339),
        left_seconds: due.map_or(0, |d| (d - now).max(0)),
        left: due.map_or_else(|| "-".into(), |d| left(d - now)),
        decided,
        closed: utc(r.closed_at),
        history: d.history,
        can_decide: d.allowed_actions.contains(&"approve"),
        can_revoke: d.allowed_actions.contains(&"revoke"),
        can_complete: d.allowed_actions.contains(&"complete"),
        role,
        done,
        r,
    };
    pages::html(StatusCode::OK, &page)
}

/// `GET /api/v1/lockbox/requests/{id}`.
pub async fn api_request(State(c): State<Arc<Console>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let who = match api::caller(&c, &headers, "api_lockbox", false).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else { return invalid_id(&id) };
    match detail(&c, id, &who).await {
        Ok(d) => (StatusCode::OK, axum::Json(d)).into_response(),
        Err(p) => p.json(),
    }
}

fn invalid_id(id: &str) -> Response {
    let m = format!("id: a request id is a whole number, not {}", crate::validate::shown(id));
    Problem::new(StatusCode::BAD_REQUEST, "Invalid", Some("id"), m).json()
}

/// `GET /api/v1/lockbox/requests`: the caller's own requests, newest first.
pub async fn api_mine(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let who = match api::caller(&c, &headers, "api_lockbox", false).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match inbox(&c, &who, c.clock.now()).await {
        Ok(i) => (StatusCode::OK, axum::Json(serde_json::json!({ "items": i.mine }))).into_response(),
        Err(e) => Problem::store(&e).json(),
    }
}

/// Who acted on `r` first, for the person whose decision lost.
fn first(r: &Request) -> String {
    let by = r.decided_by.clone().unwrap_or_else(|| "someone".into());
    match r.state {
        ReqState::Approved => format!("{by} approved this request first, at {}.", utc(r.decided_at)),
        ReqState::Denied => format!("{by} denied this request first, at {}.", utc(r.decided_at)),
        ReqState::Revoked => format!("{by} revoked this access first, at {}.", utc(r.closed_at)),
        ReqState::Completed => format!("The requester completed this request at {}.", utc(r.closed_at)),
        ReqState::Expired => format!("Nobody decided before the deadline: it expired at {}.", utc(r.closed_at)),
        ReqState::AccessExpired => format!("The approved access ended at {}.", utc(r.closed_at)),
        ReqState::Pending | ReqState::NotRequired => format!("Request {} changed meanwhile; reload it.", r.id),
    }
}

/// Take `action` on request `id` as `who`, with `reason`.
async fn act(c: &Console, id: i64, action: Action, who: &Caller, reason: Option<String>) -> Result<Request, Problem> {
    let r = c.store.lockbox_get(id).await.map_err(|e| Problem::store(&e))?.ok_or_else(|| Problem::no_request(id))?;
    let rights = rights(c, &r, who).await.map_err(|e| Problem::store(&e))?;
    // Who may act is answered before the state is, so a refusal never depends on it.
    let forbidden = |why: String| {
        c.metrics.refused("lockbox", "forbidden");
        Problem::forbidden(format!("{} may not {} request {id}: {why}", who.email, action.as_str()))
    };
    match action {
        Action::Approve | Action::Deny | Action::Revoke if !rights.approver => {
            let why = if rights.requester {
                "a requester never decides their own request".to_owned()
            } else {
                format!("only its approvers may ({})", r.approvers.join(", "))
            };
            return Err(forbidden(why));
        }
        Action::Complete if !rights.requester => return Err(forbidden("only its requester completes it".into())),
        _ => {}
    }
    let reason = reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > REASON_MAX) {
        return Err(Problem::invalid("reason", format!("reason: at most {REASON_MAX} characters")));
    }
    if action == Action::Deny && reason.is_none() {
        return Err(Problem::invalid("reason", "reason: say why the request is denied; the requester reads it"));
    }
    match lockbox::act(c.store.as_ref(), id, action, &who.actor, reason, c.clock.now()).await {
        Ok(r) => Ok(r),
        Err(Error::Refused(e @ Refusal::PastDeadline { .. })) => Err(Problem::new(
            StatusCode::CONFLICT,
            "PastDeadline",
            None,
            format!("{e}. Nothing was changed by your {}.", action.as_str()),
        )),
        Err(Error::Refused(Refusal::WrongState { .. })) | Err(Error::Store(StoreError::Conflict(_))) => {
            Err(lost(c, id).await)
        }
        Err(Error::Refused(e @ Refusal::NotAllowed { .. })) => Err(forbidden(e.to_string())),
        Err(Error::Refused(e)) => Err(Problem::new(StatusCode::CONFLICT, "Refused", None, e.to_string())),
        Err(Error::NotFound(_)) => Err(Problem::no_request(id)),
        Err(e @ (Error::UnknownCustomer(_) | Error::NotRequester { .. })) => {
            Err(Problem::new(StatusCode::CONFLICT, "Refused", None, e.to_string()))
        }
        Err(Error::Store(e)) => Err(Problem::store(&e)),
    }
}

/// The refusal of a decision that lost: who acted first, from the request as it is now.
async fn lost(c: &Console, id: i64) -> Problem {
    match c.store.lockbox_get(id).await {
        Ok(Some(now)) => Problem::new(StatusCode::CONFLICT, "AlreadyDecided", None, first(&now)),
        Ok(None) => Problem::no_request(id),
        Err(e) => Problem::store(&e),
    }
}

/// `POST /lockbox/requests/{id}` (the forms: `action`, `reason`, `csrf`).
pub async fn decide_form(
    State(c): State<Arc<Console>>,
    Signed(s): Signed,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Response {
    let title = format!("Customer Lockbox request {id}");
    let f = match form(&body, &["csrf", "action", "reason"]) {
        Ok(f) => f,
        Err(e) => return Problem::invalid("form", e).page(&s, &title),
    };
    if !s.csrf_ok(f.get("csrf")) {
        return super::forbidden_csrf(&c, "lockbox", Some(s.me()), "Reload the request's page and decide again.");
    }
    let Some(action) = f.get("action").and_then(|a| Action::parse(a)) else {
        return Problem::invalid("action", "action: one of approve, deny, revoke, complete").page(&s, &title);
    };
    match act(&c, id, action, &Caller::from(&s), f.get("reason").cloned()).await {
        Ok(_) => pages::see_other(&format!("/lockbox/requests/{id}?done={}", action.as_str()), &[]),
        // Back to the request, as it is now.
        Err(p) => {
            p.page_then(&s, &title, Some((format!("/lockbox/requests/{id}"), format!("Request {id} as it is now"))))
        }
    }
}

/// The body of a decision.
#[derive(Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/lockbox/requests/{id}/{action}`: `{reason?}`; 200 with the request.
pub async fn api_decide(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let who = match api::caller(&c, &headers, "api_lockbox", true).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else { return invalid_id(&id) };
    let Some(action) = Action::parse(&action) else {
        let m = format!("action: one of approve, deny, revoke, complete, not {}", crate::validate::shown(&action));
        return Problem::new(StatusCode::NOT_FOUND, "NotFound", Some("action"), m).json();
    };
    let b: DecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
        DecisionBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return api::body_error(&e, "{\"reason\": \"…\"}").json(),
        }
    };
    match act(&c, id, action, &who, b.reason).await {
        Ok(r) => (StatusCode::OK, axum::Json(r)).into_response(),
        Err(p) => p.json(),
    }
}

/// The LockboxPolicy page: the policy as applied and its live requests.
#[derive(Template)]
#[template(path = "lockbox_policy.html")]
pub struct PolicyPage {
    pub head: Head,
    pub customer: String,
    pub object: String,
    pub enabled: bool,
    /// As written: emails and roles.
    pub named: String,
    /// Resolved to people now.
    pub approvers: Vec<String>,
    pub pending_ttl: String,
    pub max_access: String,
    pub workloads: String,
    pub recipients: String,
    pub live: Vec<Line>,
}

/// `GET /lockbox/policy?customer=NS/NAME`: for the policy's approvers (resolved now) and the
/// customer's Global Administrators and CSAM.
pub async fn policy_page(State(c): State<Arc<Console>>, Signed(s): Signed, uri: axum::http::Uri) -> Response {
    let title = "Customer Lockbox policy";
    let given = super::query(&uri).get("customer").cloned().unwrap_or_default();
    let who = Caller::from(&s);
    let unknown = || Problem::invalid("customer", format!("customer: no customer {}", crate::validate::shown(&given)));
    let Some((ns, name)) = given.split_once('/') else { return unknown().page(&s, title) };
    let read = async {
        let policy = c.store.lockbox_policy(ns, name).await?;
        let rows = c.store.policies(Some(ns)).await?;
        let customers = Customers::read(&c).await?;
        Ok::<_, StoreError>((policy, rows, customers))
    };
    let (policy, rows, customers) = match read.await {
        Ok(v) => v,
        Err(e) => return Problem::store(&e).page(&s, title),
    };
    let Some((uid, resolved)) = policy else { return unknown().page(&s, title) };
    let Some((resolved, row)) = resolved.zip(rows.into_iter().find(|r| r.record.customer_uid == uid)) else {
        let m = format!("{given} has no LockboxPolicy: requests need no approval and are time-bound by 8h");
        return pages::message(StatusCode::NOT_FOUND, title, Some(s.me()), "note", m, None);
    };
    let auditor = match who.audits(&c, &uid).await {
        Ok(a) => a,
        Err(e) => return Problem::store(&e).page(&s, title),
    };
    if !auditor && !resolved.approvers.contains(&who.email) {
        let m = format!(
            "{} may not see the Lockbox policy of {given}: its approvers and the customer's Global Administrators and \
             CSAM can",
            who.email
        );
        return Problem::forbidden(m).page(&s, title);
    }
    let live = match c.store.lockbox_due(i64::MAX, Some(&uid), LIVE_LIMIT).await {
        Ok(v) => v,
        Err(e) => return Problem::store(&e).page(&s, title),
    };
    let now = c.clock.now();
    let list = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .map(|v| match v {
                serde_json::Value::Array(a) => {
                    a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect::<Vec<_>>().join(", ")
                }
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    let named: serde_json::Value = serde_json::from_str(&row.record.approvers).unwrap_or_default();
    let join = |v: &serde_json::Value| {
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()
    };
    let page = PolicyPage {
        head: Head::new(format!("Customer Lockbox policy of {}", customers.shown(&uid)), Some(s.me())),
        customer: given.clone(),
        object: format!("LockboxPolicy {}/{}", row.record.namespace, row.record.name),
        enabled: resolved.enabled,
        named: format!("emails: {}; roles: {}", join(&named["emails"]), join(&named["roles"])),
        approvers: resolved.approvers,
        pending_ttl: domain::human(resolved.pending_ttl),
        max_access: domain::human(resolved.max_access),
        workloads: resolved.workloads.join(", "),
        recipients: list(&row.record.recipients),
        live: live
            .into_iter()
            .map(|r| as_of(r, now))
            .filter(|r| r.due_at().is_some_and(|d| d > now))
            .map(|r| line(&r, &customers, now))
            .collect(),
    };
    pages::html(StatusCode::OK, &page)
}

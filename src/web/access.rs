//! Access in the console and under `/api/v1/access`: what the signed-in person can see (each
//! permission with its source, the group it comes through, the no-export flag), and for
//! administrators the same for anyone in their reach, who holds a permission in a workspace,
//! and a person's invitations with "send again".
//!
//! Reach is read from the store's grants ([`crate::access::reach`]): Global Administrators
//! and CSAM at customer level see everyone in the customer; Workspace Administrators see the
//! workspaces they administer and are refused for the others.

use super::api::{self, Caller, Problem};
use super::pages::{self, Head};
use super::signin::Signed;
use super::{Console, form};
use crate::access::{self, AccessLine, Reach};
use crate::store::{CustomerRow, GrantRow, InvitationRow, Resend, ResendOf};
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// A look-up's subject as given: an email, or a group's object id (`group:<id>` or the id).
fn subject_key(given: &str) -> Result<String, Problem> {
    let given = given.trim();
    if given.is_empty() || given.len() > 320 || given.chars().any(char::is_control) {
        return Err(Problem::invalid("subject", "subject: an email address or a group's object id"));
    }
    Ok(match given.strip_prefix("group:") {
        Some(id) => format!("group:{id}"),
        None if given.contains('@') => given.to_ascii_lowercase(),
        None => format!("group:{given}"),
    })
}

/// A customer and how far the caller reaches in it.
struct Reached {
    customer: CustomerRow,
    reach: Reach,
}

/// The customer `customer` and the caller's reach there, read once per request: refused
/// when they reach nothing there, or name a workspace they do not administer.
async fn reached(c: &Console, who: &Caller, customer: &str, workspace: Option<&str>) -> Result<Reached, Problem> {
    let customer = api::customer(c, customer).await?;
    let reach =
        access::reach(c.store.as_ref(), &customer, &who.subject_keys()).await.map_err(|e| Problem::store(&e))?;
    // Without a workspace, a Workspace Administrator sees what lies in their workspaces.
    if reach == Reach::Nothing || (workspace.is_some() && !reach.covers(workspace)) {
        return Err(refused(who, &customer, workspace, &reach));
    }
    Ok(Reached { customer, reach })
}

fn refused(who: &Caller, customer: &CustomerRow, workspace: Option<&str>, reach: &Reach) -> Problem {
    let key = format!("{}/{}", customer.record.namespace, customer.record.name);
    let message = match (reach, workspace) {
        (Reach::Workspaces(set), Some(w)) => format!(
            "{} may not look up people in workspace {w} of {key}: you administer {}",
            who.email,
            set.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        (Reach::Workspaces(set), None) => format!(
            "{} may not look up people across {key}: choose one of the workspaces you administer ({})",
            who.email,
            set.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        _ => format!(
            "{} may not look up people in {key}: Global Administrators and CSAM of the customer can, and Workspace \
             Administrators within their workspaces",
            who.email
        ),
    };
    Problem::forbidden(message)
}

/// What a look-up answers.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lookup {
    /// The subject looked up.
    pub subject: String,
    /// Their access within the caller's reach.
    pub items: Vec<AccessLine>,
    /// Their invitations within the caller's reach.
    pub invitations: Vec<InvitationRow>,
}

/// `subject`'s access and invitations in `customer` (of `workspace` only, if given), within
/// the caller's reach.
async fn lookup(c: &Console, at: &Reached, subject: &str, workspace: Option<&str>) -> Result<Lookup, Problem> {
    let (cust, reach) = (&at.customer, &at.reach);
    let subject = subject_key(subject)?;
    let within = |w: Option<&str>| workspace.is_none_or(|x| w == Some(x)) && reach.covers(w);
    let lines = access::lines(c.store.as_ref(), std::slice::from_ref(cust), std::slice::from_ref(&subject))
        .await
        .map_err(|e| Problem::store(&e))?;
    let invitations = c.store.invitations_of(&cust.record.uid, &subject).await.map_err(|e| Problem::store(&e))?;
    Ok(Lookup {
        items: lines.into_iter().filter(|l| within(l.workspace.as_deref())).collect(),
        invitations: invitations.into_iter().filter(|i| within(i.workspace.as_deref())).collect(),
        subject,
    })
}

/// Who holds `permission` in `workspace` of `customer`, if the caller's reach covers it.
/// (`at` was reached for `workspace`, so the caller's reach covers it.)
async fn holders(c: &Console, at: &Reached, workspace: &str, permission: &str) -> Result<Vec<GrantRow>, Problem> {
    match access::holders(c.store.as_ref(), &at.customer.record.namespace, workspace, permission).await {
        Ok(rows) => Ok(rows),
        Err(e @ access::HoldersError::UnknownPermission(_)) => {
            Err(Problem::invalid("permission", format!("permission: {e}")))
        }
        Err(e @ access::HoldersError::UnknownWorkspace(_)) => {
            Err(Problem::invalid("workspace", format!("workspace: {e}")))
        }
        Err(access::HoldersError::Store(e)) => Err(Problem::store(&e)),
    }
}

/// Send `email`'s failed or expired invitations in `customer` (of `workspace`) again.
async fn resend(
    c: &Console,
    who: &Caller,
    customer: &str,
    email: &str,
    workspace: Option<&str>,
) -> Result<Vec<Resend>, Problem> {
    let Reached { customer: cust, reach } = reached(c, who, customer, workspace).await?;
    // Across the customer only for those who reach all of it.
    if !reach.covers(workspace) {
        return Err(refused(who, &cust, workspace, &reach));
    }
    let email = email.trim().to_ascii_lowercase();
    if !email.contains('@') {
        return Err(Problem::invalid("email", "email: the invited address"));
    }
    let of =
        ResendOf { namespace: &cust.record.namespace, customer: Some(&cust.record.name), email: &email, workspace };
    let done = c
        .store
        .invitations_resend(&of, i64::from(c.config.invitation_reissues), c.clock.now(), &who.actor)
        .await
        .map_err(|e| Problem::store(&e))?;
    if done.iter().any(|r| r.refused.is_none())
        && let Some(w) = &c.wake
    {
        w.notify_one();
    }
    Ok(done)
}

/// One row of an access table.
pub struct Row {
    pub customer: String,
    pub scope: String,
    pub permission: String,
    pub sources: String,
    pub through: String,
    pub export: &'static str,
}

fn rows(lines: &[AccessLine]) -> Vec<Row> {
    lines
        .iter()
        .map(|l| Row {
            customer: format!("{}/{}", l.namespace, l.customer),
            scope: l
                .workspace
                .clone()
                .map_or_else(|| "Customer level (all workspaces)".into(), |w| format!("Workspace {w}")),
            permission: l.permission.to_string(),
            sources: l
                .sources
                .iter()
                .map(|s| s.strip_prefix("role:").map_or("individual grant".into(), |r| format!("role {r}")))
                .collect::<Vec<_>>()
                .join(", "),
            through: l.through_group.clone().map_or_else(|| "directly".into(), |g| format!("group {g}")),
            export: if l.export_allowed { "yes" } else { "no (view only)" },
        })
        .collect()
}

/// The "your access" page.
#[derive(Template)]
#[template(path = "access.html")]
pub struct AccessPage {
    pub head: Head,
    pub rows: Vec<Row>,
    /// Workspace names to filter by.
    pub workspaces: Vec<String>,
    pub filter: String,
    /// Customers (`ns/name`) the person may look people up in, with what they reach.
    pub lookups: Vec<(String, String)>,
}

/// `GET /access[?workspace=NAME]`.
pub async fn mine_page(State(c): State<Arc<Console>>, Signed(s): Signed, uri: Uri) -> Response {
    let who = Caller::from(&s);
    let filter = super::query(&uri).get("workspace").cloned().unwrap_or_default();
    let read = async {
        let customers = c.store.customers(None).await?;
        let lines = access::lines(c.store.as_ref(), &customers, &who.subject_keys()).await?;
        let mut lookups = Vec::new();
        for cust in &customers {
            let what = match access::reach(c.store.as_ref(), cust, &who.subject_keys()).await? {
                Reach::Customer => "everyone".to_owned(),
                Reach::Workspaces(set) => format!("workspaces {}", set.into_iter().collect::<Vec<_>>().join(", ")),
                Reach::Nothing => continue,
            };
            lookups.push((format!("{}/{}", cust.record.namespace, cust.record.name), what));
        }
        Ok::<_, crate::store::StoreError>((lines, lookups))
    };
    let (lines, lookups) = match read.await {
        Ok(v) => v,
        Err(e) => return pages::server_error("reading access failed", &e),
    };
    let mut workspaces: Vec<String> = lines.iter().filter_map(|l| l.workspace.clone()).collect();
    workspaces.sort();
    workspaces.dedup();
    let shown: Vec<AccessLine> = lines
        .into_iter()
        .filter(|l| filter.is_empty() || l.workspace.as_deref() == Some(filter.as_str()) || l.workspace.is_none())
        .collect();
    let page =
        AccessPage { head: Head::new("Your access", Some(s.me())), rows: rows(&shown), workspaces, filter, lookups };
    pages::html(StatusCode::OK, &page)
}

/// The look-up page.
#[derive(Template)]
#[template(path = "lookup.html")]
pub struct LookupPage {
    pub head: Head,
    pub csrf: String,
    pub customer: String,
    pub subject: String,
    pub workspace: String,
    pub rows: Vec<Row>,
    /// (workspace or `-`, email, state, issue, expires, may resend)
    pub invitations: Vec<(String, String, String, i64, String, bool)>,
    pub permission: String,
    pub holders: Option<Vec<(String, String, String, &'static str)>>,
    pub done: Vec<String>,
}

/// `GET /access/lookup?customer=NS/NAME[&subject=EMAIL|GROUP][&workspace=W][&permission=P]`.
pub async fn lookup_page(State(c): State<Arc<Console>>, Signed(s): Signed, uri: Uri) -> Response {
    let q = super::query(&uri);
    let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let who = Caller::from(&s);
    let Some(customer) = get("customer") else {
        return Problem::invalid("customer", "customer: choose a customer (NAMESPACE/NAME)")
            .page(&s, "Look up a person");
    };
    let workspace = get("workspace");
    let mut page = LookupPage {
        head: Head::new("Look up a person", Some(s.me())),
        csrf: s.csrf.clone(),
        customer: customer.clone(),
        subject: get("subject").unwrap_or_default(),
        workspace: workspace.clone().unwrap_or_default(),
        rows: Vec::new(),
        invitations: Vec::new(),
        permission: get("permission").unwrap_or_default(),
        holders: None,
        done: q.get("done").map(|d| d.split('\n').map(str::to_owned).collect()).unwrap_or_default(),
    };
    // The customer and the reach are checked even for an empty form.
    let at = match reached(&c, &who, &customer, workspace.as_deref()).await {
        Ok(at) => at,
        Err(p) => return p.page(&s, "Look up a person"),
    };
    if let Some(subject) = get("subject") {
        match lookup(&c, &at, &subject, workspace.as_deref()).await {
            Ok(l) => {
                page.subject = l.subject.clone();
                page.rows = rows(&l.items);
                page.invitations = l
                    .invitations
                    .iter()
                    .map(|i| {
                        let state = i.record.state.clone();
                        let may = matches!(state.as_str(), "Failed" | "Expired");
                        let expires =
                            i.record.expires_at.map(crate::domain::time::rfc3339).unwrap_or_else(|| "-".into());
                        (
                            i.workspace.clone().unwrap_or_else(|| "-".into()),
                            i.record.email.clone(),
                            state,
                            i.record.issue,
                            expires,
                            may,
                        )
                    })
                    .collect();
            }
            Err(p) => return p.page(&s, "Look up a person"),
        }
    }
    if let (Some(w), Some(p)) = (workspace.as_deref(), get("permission")) {
        match holders(&c, &at, w, &p).await {
            Ok(rows) => {
                page.holders = Some(
                    rows.iter()
                        .map(|g| {
                            let through = if g.workspace.is_some() {
                                "this workspace"
                            } else {
                                "customer level (every workspace)"
                            };
                            (
                                g.subject.clone(),
                                g.grant.source.label(),
                                through.to_owned(),
                                if g.export_allowed { "yes" } else { "no (view only)" },
                            )
                        })
                        .collect(),
                )
            }
            Err(p) => return p.page(&s, "Look up a person"),
        }
    }
    pages::html(StatusCode::OK, &page)
}

/// `POST /access/resend` (the look-up page's "send again": `customer`, `email`, `workspace`).
pub async fn resend_form(State(c): State<Arc<Console>>, Signed(s): Signed, body: axum::body::Bytes) -> Response {
    let f = match form(&body, &["csrf", "customer", "email", "workspace"]) {
        Ok(f) => f,
        Err(e) => return Problem::invalid("form", e).page(&s, "Send again"),
    };
    if !s.csrf_ok(f.get("csrf")) {
        return super::forbidden_csrf(&c, "access", Some(s.me()), "Reload the look-up page and send again.");
    }
    let field = |k: &str| f.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let (Some(customer), Some(email)) = (field("customer"), field("email")) else {
        return Problem::invalid("email", "customer and email: both are needed").page(&s, "Send again");
    };
    let workspace = field("workspace").filter(|w| w != "-");
    match resend(&c, &Caller::from(&s), &customer, &email, workspace.as_deref()).await {
        Ok(done) => {
            let lines: Vec<String> = done
                .iter()
                .map(|r| {
                    let scope =
                        r.workspace.clone().map_or_else(|| "customer level".into(), |w| format!("workspace {w}"));
                    match &r.refused {
                        None => format!("{scope}: sent again to {} (issue {})", r.email, r.issue),
                        Some(why) => format!("{scope}: left as it is: {why}"),
                    }
                })
                .collect();
            let mut to = url::form_urlencoded::Serializer::new(String::new());
            to.append_pair("customer", &customer).append_pair("subject", &email);
            if let Some(w) = &workspace {
                to.append_pair("workspace", w);
            }
            to.append_pair("done", &lines.join("\n"));
            pages::see_other(&format!("/access/lookup?{}", to.finish()), &[])
        }
        Err(p) => p.page(&s, "Send again"),
    }
}

async fn caller(c: &Console, headers: &HeaderMap, writes: bool) -> Result<Caller, Response> {
    api::caller(c, headers, "api_access", writes).await
}

fn ok(body: impl serde::Serialize) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `GET /api/v1/access/me`: `{items}`.
pub async fn api_mine(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let who = match caller(&c, &headers, false).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let read = async {
        let customers = c.store.customers(None).await?;
        access::lines(c.store.as_ref(), &customers, &who.subject_keys()).await
    };
    match read.await {
        Ok(items) => ok(serde_json::json!({ "items": items })),
        Err(e) => Problem::store(&e).json(),
    }
}

/// `GET /api/v1/access/lookup?customer=NS/NAME&subject=S[&workspace=W]`.
pub async fn api_lookup(State(c): State<Arc<Console>>, headers: HeaderMap, uri: Uri) -> Response {
    let who = match caller(&c, &headers, false).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let q = super::query(&uri);
    let (Some(customer), Some(subject)) = (q.get("customer"), q.get("subject")) else {
        return Problem::new(StatusCode::BAD_REQUEST, "Invalid", Some("subject"), "customer and subject are required")
            .json();
    };
    let workspace = q.get("workspace").map(String::as_str);
    let found = async { lookup(&c, &reached(&c, &who, customer, workspace).await?, subject, workspace).await };
    match found.await {
        Ok(l) => ok(l),
        Err(p) => p.json(),
    }
}

/// `GET /api/v1/access/holders?customer=NS/NAME&workspace=W&permission=P`.
pub async fn api_holders(State(c): State<Arc<Console>>, headers: HeaderMap, uri: Uri) -> Response {
    let who = match caller(&c, &headers, false).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let q = super::query(&uri);
    let (Some(customer), Some(workspace), Some(permission)) =
        (q.get("customer"), q.get("workspace"), q.get("permission"))
    else {
        let m = "customer, workspace and permission are required";
        return Problem::new(StatusCode::BAD_REQUEST, "Invalid", Some("permission"), m).json();
    };
    let found =
        async { holders(&c, &reached(&c, &who, customer, Some(workspace)).await?, workspace, permission).await };
    match found.await {
        Ok(items) => ok(serde_json::json!({ "items": items })),
        Err(p) => p.json(),
    }
}

/// The body of a resend.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResendBody {
    customer: String,
    email: String,
    #[serde(default)]
    workspace: Option<String>,
}

/// `POST /api/v1/invitations/resend`: `{customer, email, workspace?}`; `{items}` with what was
/// done with each invitation.
pub async fn api_resend(State(c): State<Arc<Console>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let who = match caller(&c, &headers, true).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let b: ResendBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return api::body_error(&e, "{\"customer\", \"email\", \"workspace\"?}").json(),
    };
    match resend(&c, &who, &b.customer, &b.email, b.workspace.as_deref()).await {
        Ok(items) => ok(serde_json::json!({ "items": items })),
        Err(p) => p.json(),
    }
}

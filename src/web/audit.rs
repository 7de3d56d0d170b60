//! The audit of one customer in the console (`/audit`) and under `/api/v1/audit`: every entry
//! that belongs to it (objects, users, invitations, grants, Lockbox requests and decisions,
//! its people's console sign-ins), filtered by kind, actor, channel and time range, newest
//! first, paged, and exported as CSV or JSON. For the customer's Global Administrators and
//! CSAM only ([`crate::access::reach`] at customer level).

use super::Console;
use super::api::{self, Caller, Problem};
use super::pages::{self, Head};
use super::signin::Signed;
use crate::access::Reach;
use crate::domain::time::rfc3339;
use crate::store::{AuditEntry, AuditFilter, CustomerRow};
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

/// Entries per page.
pub const PAGE: usize = 50;

/// The filters of an audit query, as the query string gives them.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub customer: String,
    pub kind: String,
    pub actor: String,
    pub channel: String,
    /// RFC 3339 or a date (`2026-12-01`, midnight UTC).
    pub since: String,
    pub until: String,
    pub page: usize,
}

fn time(field: &'static str, given: &str) -> Result<Option<i64>, Problem> {
    let given = given.trim();
    if given.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = given.parse::<jiff::Timestamp>() {
        return Ok(Some(t.as_second()));
    }
    given
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| Some(z.timestamp().as_second()))
        .ok_or_else(|| {
            Problem::invalid(
                field,
                format!("{field}: a time (RFC 3339) or a date (YYYY-MM-DD), not {}", crate::validate::shown(given)),
            )
        })
}

impl Query {
    fn parse(q: &HashMap<String, String>) -> Result<Query, Problem> {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        let page = match get("page").as_str() {
            "" => 1,
            p => p.parse::<usize>().ok().filter(|p| *p >= 1 && *p <= 1_000_000).ok_or_else(|| {
                Problem::new(StatusCode::BAD_REQUEST, "Invalid", Some("page"), "page: a page number from 1")
            })?,
        };
        let channel = get("channel");
        let known = ["operator", "cli", "console-oidc", "console-email", "api-bearer"];
        if !channel.is_empty() && !known.contains(&channel.as_str()) {
            return Err(Problem::invalid("channel", format!("channel: one of {}", known.join(", "))));
        }
        Ok(Query {
            customer: get("customer"),
            kind: get("kind"),
            actor: get("actor"),
            channel,
            since: get("since"),
            until: get("until"),
            page,
        })
    }
}

/// The customer's entries matching `q`, newest first (all of them; the caller pages).
async fn entries(c: &Console, who: &Caller, q: &Query) -> Result<(CustomerRow, Vec<AuditEntry>), Problem> {
    let cust = api::customer(c, &q.customer).await?;
    let reach =
        crate::access::reach(c.store.as_ref(), &cust, &who.subject_keys()).await.map_err(|e| Problem::store(&e))?;
    if reach != Reach::Customer {
        c.metrics.refused("audit", "forbidden");
        return Err(Problem::forbidden(format!(
            "{} may not read the audit of {}: its Global Administrators and CSAM can",
            who.email, q.customer
        )));
    }
    let (since, until) = (time("since", &q.since)?, time("until", &q.until)?);
    let filter = AuditFilter { customer_uid: Some(cust.record.uid.clone()), since, ..Default::default() };
    let mut all = c.store.audit(&filter).await.map_err(|e| Problem::store(&e))?;
    let kind = q.kind.to_ascii_lowercase();
    let actor = q.actor.to_ascii_lowercase();
    all.retain(|e| {
        (kind.is_empty() || e.kind.to_ascii_lowercase() == kind || e.action.to_ascii_lowercase().starts_with(&kind))
            && (actor.is_empty() || e.actor.to_ascii_lowercase().contains(&actor))
            && (q.channel.is_empty() || e.channel.as_str() == q.channel)
            && until.is_none_or(|u| e.at < u)
    });
    all.reverse();
    Ok((cust, all))
}

/// One entry as the page, the CSV and the JSON show it.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub channel: String,
    pub subject: String,
    pub action: String,
    pub kind: String,
    pub object: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

fn line(e: &AuditEntry) -> Line {
    let json = |t: &Option<String>| {
        t.as_ref().map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.clone())))
    };
    Line {
        id: e.id,
        at: rfc3339(e.at),
        actor: e.actor.clone(),
        channel: e.channel.as_str().to_owned(),
        subject: e.subject.clone(),
        action: e.action.clone(),
        kind: e.kind.clone(),
        object: e.object.clone(),
        before: json(&e.before),
        after: json(&e.after),
    }
}

/// A CSV cell: quoted when it holds a separator, a quote or a line break; and a cell that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) is prefixed with `'`
/// (OWASP: CSV injection).
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// The CSV of `lines` (RFC 4180, CRLF line ends, a header row).
pub fn csv(lines: &[Line]) -> String {
    let mut out = String::from("id,at,actor,channel,subject,action,kind,object,before,after\r\n");
    for l in lines {
        let j = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let cells = [
            l.id.to_string(),
            l.at.clone(),
            l.actor.clone(),
            l.channel.clone(),
            l.subject.clone(),
            l.action.clone(),
            l.kind.clone(),
            l.object.clone(),
            j(&l.before),
            j(&l.after),
        ];
        out.push_str(&cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// The audit page.
#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub head: Head,
    pub q: Query,
    pub lines: Vec<Line>,
    pub total: usize,
    pub pages: usize,
    /// The query string of the filters, without the page (for links).
    pub filters: String,
}

fn filters(q: &Query) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("customer", &q.customer),
        ("kind", &q.kind),
        ("actor", &q.actor),
        ("channel", &q.channel),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// `GET /audit?customer=NS/NAME[&kind&actor&channel&since&until&page]`.
pub async fn page(State(c): State<Arc<Console>>, Signed(s): Signed, uri: Uri) -> Response {
    let q = match Query::parse(&super::query(&uri)) {
        Ok(q) => q,
        Err(p) => return p.page(&s, "Audit"),
    };
    let (cust, all) = match entries(&c, &Caller::from(&s), &q).await {
        Ok(v) => v,
        Err(p) => return p.page(&s, "Audit"),
    };
    let total = all.len();
    let pages = total.div_ceil(PAGE).max(1);
    let lines = all.iter().skip((q.page - 1) * PAGE).take(PAGE).map(line).collect();
    let title = format!(
        "Audit of {}",
        if cust.record.display_name.is_empty() { &q.customer } else { &cust.record.display_name }
    );
    let page = AuditPage { head: Head::new(title, Some(s.me())), filters: filters(&q), q, lines, total, pages };
    pages::html(StatusCode::OK, &page)
}

fn download(body: String, content_type: &'static str, name: &str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// The export of `q` as `format` (`csv` or `json`), every matching entry.
async fn export(c: &Console, who: &Caller, q: &Query, format: &str) -> Result<Response, Problem> {
    if !matches!(format, "csv" | "json") {
        return Err(Problem::invalid("format", "format: csv or json"));
    }
    let (cust, all) = entries(c, who, q).await?;
    let lines: Vec<Line> = all.iter().map(line).collect();
    let name = format!("audit-{}-{}.{format}", cust.record.namespace, cust.record.name);
    Ok(if format == "csv" {
        download(csv(&lines), "text/csv; charset=utf-8", &name)
    } else {
        let body = serde_json::to_string_pretty(&serde_json::json!({ "items": lines })).unwrap_or_default();
        download(body, "application/json", &name)
    })
}

/// `GET /audit/export?format=csv|json&…` (the page's download links).
pub async fn export_page(State(c): State<Arc<Console>>, Signed(s): Signed, uri: Uri) -> Response {
    let raw = super::query(&uri);
    let q = match Query::parse(&raw) {
        Ok(q) => q,
        Err(p) => return p.page(&s, "Audit"),
    };
    match export(&c, &Caller::from(&s), &q, raw.get("format").map_or("csv", String::as_str)).await {
        Ok(r) => r,
        Err(p) => p.page(&s, "Audit"),
    }
}

/// `GET /api/v1/audit?customer=…`: `{items, page, pages, total}`, newest first.
pub async fn api_list(State(c): State<Arc<Console>>, headers: HeaderMap, uri: Uri) -> Response {
    let who = match api::caller(&c, &headers, "api_audit", false).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let q = match Query::parse(&super::query(&uri)) {
        Ok(q) => q,
        Err(p) => return p.json(),
    };
    match entries(&c, &who, &q).await {
        Ok((_, all)) => {
            let total = all.len();
            let items: Vec<Line> = all.iter().skip((q.page - 1) * PAGE).take(PAGE).map(line).collect();
            let body = serde_json::json!({ "items": items, "page": q.page, "pages": total.div_ceil(PAGE).max(1), "total": total });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(p) => p.json(),
    }
}

/// `GET /api/v1/audit/export?format=csv|json&customer=…`: every matching entry.
pub async fn api_export(State(c): State<Arc<Console>>, headers: HeaderMap, uri: Uri) -> Response {
    let who = match api::caller(&c, &headers, "api_audit", false).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let raw = super::query(&uri);
    let q = match Query::parse(&raw) {
        Ok(q) => q,
        Err(p) => return p.json(),
    };
    match export(&c, &who, &q, raw.get("format").map_or("csv", String::as_str)).await {
        Ok(r) => r,
        Err(p) => p.json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_never_run_as_formulas() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("line\nbreak"), "\"line\nbreak\"");
    }
}

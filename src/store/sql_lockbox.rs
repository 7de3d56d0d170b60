//! Lockbox requests in the SQL store. A request's changes, its audit entry and its
//! notifications (outbox) are one transaction; a transition is an UPDATE guarded by the row
//! version, so of two concurrent decisions exactly one wins and the other gets `Conflict`.
//! Due requests come from the partial index on `due_at`, never from a scan.

use super::sql::{audit_entry, begin, enqueue, get, map_err};
use super::{AuditEntry, Backend, LockboxFilter, LockboxSummary, Result, StoreError};
use crate::api::lockbox_policy::Approvers;
use crate::domain::actor::Actor;
use crate::domain::lockbox::{Policy, Request, State};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};

const COLS: &str = "id, customer_uid, requester, workload, case_id, reason, requested_seconds, approvers, state, \
    created_at, pending_deadline, decided_at, decided_by, decision_reason, access_deadline, closed_at, \
    CASE WHEN expired_by_inaction THEN 1 ELSE 0 END AS expired_by_inaction, row_version";

fn request(r: &AnyRow) -> Result<Request> {
    let state: String = get(r, "state")?;
    let approvers: String = get(r, "approvers")?;
    Ok(Request {
        id: get(r, "id")?,
        customer_uid: get(r, "customer_uid")?,
        requester: get(r, "requester")?,
        workload: get(r, "workload")?,
        case_id: get(r, "case_id")?,
        reason: get(r, "reason")?,
        requested_seconds: get(r, "requested_seconds")?,
        approvers: serde_json::from_str(&approvers).map_err(|e| StoreError::Corrupt(format!("approvers: {e}")))?,
        state: State::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("lockbox state {state:?}")))?,
        created_at: get(r, "created_at")?,
        pending_deadline: get(r, "pending_deadline")?,
        decided_at: get(r, "decided_at")?,
        decided_by: get(r, "decided_by")?,
        decision_reason: get(r, "decision_reason")?,
        access_deadline: get(r, "access_deadline")?,
        closed_at: get(r, "closed_at")?,
        expired_by_inaction: get::<i64>(r, "expired_by_inaction")? != 0,
        version: get(r, "row_version")?,
    })
}

/// The customer's uid and policy, approver roles resolved to the users holding them now.
pub(super) async fn policy(
    pool: &AnyPool,
    namespace: &str,
    customer: &str,
) -> Result<Option<(String, Option<Policy>)>> {
    let row = sqlx::query("SELECT uid FROM customers WHERE namespace = $1 AND name = $2 AND managed")
        .bind(namespace)
        .bind(customer)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    let Some(row) = row else { return Ok(None) };
    let uid: String = get(&row, "uid")?;
    let row = sqlx::query(
        "SELECT CASE WHEN enabled THEN 1 ELSE 0 END AS enabled, approvers, pending_ttl_seconds, max_access_seconds, \
         workloads FROM lockbox_policies WHERE customer_uid = $1 AND managed",
    )
    .bind(&uid)
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    let Some(row) = row else { return Ok(Some((uid, None))) };
    let named: Approvers = serde_json::from_str(&get::<String>(&row, "approvers")?)
        .map_err(|e| StoreError::Corrupt(format!("policy approvers: {e}")))?;
    let mut approvers: Vec<String> = named.emails.iter().map(|e| e.normalized()).collect();
    for role in &named.roles {
        let holders = sqlx::query(
            "SELECT DISTINCT m.subject_key FROM memberships m JOIN role_assignments r ON r.membership_id = m.id \
             WHERE m.customer_uid = $1 AND m.managed AND m.subject_kind = 'User' AND r.role = $2",
        )
        .bind(&uid)
        .bind(role.as_str())
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
        for h in holders {
            approvers.push(get(&h, "subject_key")?);
        }
    }
    approvers.sort();
    approvers.dedup();
    let workloads: Vec<String> = serde_json::from_str(&get::<String>(&row, "workloads")?)
        .map_err(|e| StoreError::Corrupt(format!("policy workloads: {e}")))?;
    let policy = Policy {
        enabled: get::<i64>(&row, "enabled")? != 0,
        pending_ttl: get(&row, "pending_ttl_seconds")?,
        max_access: get(&row, "max_access_seconds")?,
        workloads,
        approvers,
    };
    Ok(Some((uid, Some(policy))))
}

/// Who hears about a request reaching `state`: approvers when it waits for them, the
/// requester when it is decided or ends by itself.
fn recipients(r: &Request) -> Vec<String> {
    match r.state {
        State::Pending => r.approvers.clone(),
        State::Approved | State::Denied | State::Expired | State::Revoked | State::AccessExpired => {
            vec![r.requester.clone()]
        }
        State::Completed | State::NotRequired => Vec::new(),
    }
}

/// The audit entry and notification of a request reaching its current state, in `tx`.
async fn record(
    tx: &mut Transaction<'static, Any>,
    r: &Request,
    actor: &Actor,
    at: i64,
    before: Option<&Request>,
) -> Result<()> {
    let entry = AuditEntry::new(
        at,
        actor,
        &format!("lockbox.{}", r.state.as_str().to_ascii_lowercase()),
        "lockbox",
        &r.id.to_string(),
        before.and_then(|b| serde_json::to_string(b).ok()),
        serde_json::to_string(r).ok(),
    );
    audit_entry(tx, &entry).await?;
    let mut to = recipients(r);
    // The policy's notificationRecipients hear about every request and decision.
    let extra: Option<String> =
        sqlx::query_scalar("SELECT recipients FROM lockbox_policies WHERE customer_uid = $1 AND managed")
            .bind(&r.customer_uid)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?;
    let extra: Vec<String> = extra.and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default();
    for e in extra.into_iter().map(|e| e.to_ascii_lowercase()) {
        if !to.contains(&e) {
            to.push(e);
        }
    }
    if !to.is_empty() {
        let customer = sqlx::query("SELECT namespace, name, display_name FROM customers WHERE uid = $1")
            .bind(&r.customer_uid)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?;
        let customer = match customer {
            Some(c) => serde_json::json!({
                "namespace": get::<String>(&c, "namespace")?,
                "name": get::<String>(&c, "name")?,
                "displayName": get::<String>(&c, "display_name")?,
            }),
            None => serde_json::Value::Null,
        };
        let payload = serde_json::json!({
            "to": to,
            "subject": format!("Customer Lockbox request {} is {}", r.id, r.state),
            "request": r,
            "customer": customer,
        });
        let key = format!("lockbox/{}/{}", r.id, r.state.as_str());
        enqueue(tx, "lockbox", &key, &payload.to_string(), at, None).await?;
    }
    Ok(())
}

/// Store a new request with its audit entry and notification; its id.
pub(super) async fn insert(pool: &AnyPool, backend: Backend, r: &Request, actor: &Actor) -> Result<i64> {
    let mut tx = begin(pool, backend).await?;
    let row = sqlx::query(
        "INSERT INTO lockbox_requests (customer_uid, requester, workload, case_id, reason, requested_seconds, approvers, \
         state, created_at, pending_deadline, access_deadline, due_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(&r.customer_uid)
    .bind(&r.requester)
    .bind(&r.workload)
    .bind(&r.case_id)
    .bind(&r.reason)
    .bind(r.requested_seconds)
    .bind(serde_json::to_string(&r.approvers).unwrap_or_else(|_| "[]".into()))
    .bind(r.state.as_str())
    .bind(r.created_at)
    .bind(r.pending_deadline)
    .bind(r.access_deadline)
    .bind(r.due_at())
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    let id: i64 = get(&row, "id")?;
    let stored = Request { id, ..r.clone() };
    record(&mut tx, &stored, actor, r.created_at, None).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(id)
}

/// Move a request from `before` (as read) to `after`, at `at`, if nobody moved it first.
pub(super) async fn transition(
    pool: &AnyPool,
    backend: Backend,
    before: &Request,
    after: &Request,
    actor: &Actor,
    at: i64,
) -> Result<()> {
    let mut tx = begin(pool, backend).await?;
    let done = sqlx::query(
        "UPDATE lockbox_requests SET state = $1, decided_at = $2, decided_by = $3, decision_reason = $4, \
         access_deadline = $5, closed_at = $6, expired_by_inaction = $7, due_at = $8, row_version = row_version + 1 \
         WHERE id = $9 AND row_version = $10",
    )
    .bind(after.state.as_str())
    .bind(after.decided_at)
    .bind(after.decided_by.clone())
    .bind(after.decision_reason.clone())
    .bind(after.access_deadline)
    .bind(after.closed_at)
    .bind(after.expired_by_inaction)
    .bind(after.due_at())
    .bind(before.id)
    .bind(before.version)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "lockbox request {} changed since it was read (it was {})",
            before.id, before.state
        )));
    }
    record(&mut tx, after, actor, at, Some(before)).await?;
    tx.commit().await.map_err(map_err)
}

/// One request.
pub(super) async fn get_one(pool: &AnyPool, id: i64) -> Result<Option<Request>> {
    let sql = format!("SELECT {COLS} FROM lockbox_requests WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await.map_err(map_err)?;
    row.as_ref().map(request).transpose()
}

/// Live requests whose deadline is at or before `at` (optionally of one customer), oldest
/// deadline first, at most `limit`: read through the `due_at` partial index.
pub(super) async fn due(pool: &AnyPool, at: i64, customer: Option<&str>, limit: i64) -> Result<Vec<Request>> {
    let filter = if customer.is_some() { " AND customer_uid = $3" } else { "" };
    let sql = format!(
        "SELECT {COLS} FROM lockbox_requests WHERE due_at IS NOT NULL AND due_at <= $1{filter} ORDER BY due_at, id LIMIT $2"
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(at).bind(limit);
    if let Some(c) = customer {
        q = q.bind(c);
    }
    q.fetch_all(pool).await.map_err(map_err)?.iter().map(request).collect()
}

/// The history, newest first, filtered.
pub(super) async fn list(pool: &AnyPool, f: &LockboxFilter) -> Result<Vec<Request>> {
    let mut qb = super::sql::Sql::new(
        "SELECT r.id, r.customer_uid, r.requester, r.workload, r.case_id, r.reason, r.requested_seconds, r.approvers, \
         r.state, r.created_at, r.pending_deadline, r.decided_at, r.decided_by, r.decision_reason, r.access_deadline, \
         r.closed_at, CASE WHEN r.expired_by_inaction THEN 1 ELSE 0 END AS expired_by_inaction, r.row_version \
         FROM lockbox_requests r JOIN customers c ON c.uid = r.customer_uid WHERE 1 = 1",
    );
    if let Some(ns) = &f.namespace {
        qb.push(" AND c.namespace = ").bind(ns.as_str());
    }
    if let Some(name) = &f.customer {
        qb.push(" AND c.name = ").bind(name.as_str());
    }
    if let Some(state) = f.state {
        qb.push(" AND r.state = ").bind(state.as_str());
    }
    if let Some(since) = f.since {
        qb.push(" AND r.created_at >= ").bind(since);
    }
    if let Some(who) = &f.requester {
        qb.push(" AND r.requester = ").bind(who.as_str());
    }
    qb.push(" ORDER BY r.created_at DESC, r.id DESC");
    if let Some(limit) = f.limit {
        qb.push(" LIMIT ").bind(limit);
    }
    qb.build().fetch_all(pool).await.map_err(map_err)?.iter().map(request).collect()
}

/// Pending and active counts and the next deadline of one customer's requests.
pub(super) async fn summary(pool: &AnyPool, customer_uid: &str) -> Result<LockboxSummary> {
    let row = sqlx::query(
        "SELECT \
         (SELECT COUNT(*) FROM lockbox_requests WHERE customer_uid = $1 AND state = 'Pending') AS pending, \
         (SELECT COUNT(*) FROM lockbox_requests WHERE customer_uid = $1 AND state IN ('Approved', 'NotRequired')) AS active, \
         (SELECT MIN(due_at) FROM lockbox_requests WHERE customer_uid = $1 AND due_at IS NOT NULL) AS next_deadline",
    )
    .bind(customer_uid)
    .fetch_one(pool)
    .await
    .map_err(map_err)?;
    Ok(LockboxSummary {
        pending: get(&row, "pending")?,
        active: get(&row, "active")?,
        next_deadline: get(&row, "next_deadline")?,
    })
}

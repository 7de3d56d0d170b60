//! Outbox delivery and the invitation lifecycle in the SQL store.
//!
//! Delivery is at least once with one identity per message: an attempt is first *claimed*
//! (attempt counted, next attempt scheduled, for an invitation a new token hash stored and its
//! expiry fixed), then sent, then marked sent. A crash between sending and marking leaves the
//! entry due again at its scheduled retry, and the re-send carries the same idempotency key.
//! Each state change of an invitation, its audit entry and any re-issue are one transaction.

use super::records::*;
use super::sql::{Sql, audit_entries, audit_entry, begin, enqueue, get, in_list, invitation_key, map_err};
use super::{Backend, Result};
use crate::domain::actor::Actor;
use sqlx::{Any, AnyPool, Transaction};
use std::collections::{HashMap, HashSet};

/// Due entries, oldest deadline first, through the `outbox_due` partial index.
pub(super) async fn due(pool: &AnyPool, at: i64, limit: i64) -> Result<Vec<OutboxEntry>> {
    let rows = sqlx::query(
        "SELECT id, kind, idempotency_key, payload, attempts, invitation_id FROM outbox \
         WHERE state = 'Pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
    )
    .bind(at)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(OutboxEntry {
                id: get(r, "id")?,
                kind: get(r, "kind")?,
                key: get(r, "idempotency_key")?,
                payload: get(r, "payload")?,
                attempts: get(r, "attempts")?,
                invitation_id: get(r, "invitation_id")?,
            })
        })
        .collect()
}

/// One claim request: the entry, when its next attempt is due if this one fails to report
/// (a crash mid-send), and the hash of the token its message will carry, if any.
pub struct ClaimRequest<'a> {
    /// The entry as read by `due`.
    pub entry: &'a OutboxEntry,
    /// When the next attempt is due.
    pub retry_at: i64,
    /// The hash of the message's token (invitations, sign-in links).
    pub token_hash: Option<&'a str>,
}

/// Requests (or entries) handled per set of statements: each statement of a set binds a
/// few values per entry, far below SQLite's and PostgreSQL's parameter limits.
const PER_STATEMENT: usize = 200;

/// Claim one attempt at `at` for each request, in one transaction (a message costs a share
/// of one commit instead of one of its own, issue 18): count it and schedule the next try
/// at `retry_at` (so a crash mid-send is retried), and for an invitation store the token
/// hash (valid `validity` seconds from the first attempt). An entry with nothing left to
/// deliver is closed as `Cancelled`; one another worker took is `Taken`, with nothing
/// written for it.
///
/// The requests name distinct entries, as [`due`] returns them. Each step is one statement
/// for all the requests, not one per request: on SQLite every statement is a round trip to
/// the driver's worker thread, on PostgreSQL to the server, and eight of them per message
/// were most of file delivery's time (issue 18).
pub(super) async fn claim_all(
    pool: &AnyPool,
    backend: Backend,
    requests: &[ClaimRequest<'_>],
    at: i64,
    validity: i64,
) -> Result<Vec<Claim>> {
    let mut tx = begin(pool, backend).await?;
    let mut claims = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(PER_STATEMENT) {
        claims.extend(claim_in(&mut tx, backend, chunk, at, validity).await?);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(claims)
}

/// An invitation as a claim reads it.
struct Invitation {
    membership: String,
    scope: String,
    issue: i64,
    state: String,
    expires_at: Option<i64>,
}

async fn claim_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    requests: &[ClaimRequest<'_>],
    at: i64,
    validity: i64,
) -> Result<Vec<Claim>> {
    // 1. The invitations the invitation entries deliver.
    let ids: Vec<i64> =
        requests.iter().filter(|r| r.entry.kind == "invitation").filter_map(|r| r.entry.invitation_id).collect();
    let mut invitations: HashMap<i64, Invitation> = HashMap::new();
    if !ids.is_empty() {
        let mut q = Sql::for_backend(
            backend,
            "SELECT id, membership_id, scope_key, issue, state, expires_at FROM invitations WHERE id",
        );
        in_list(&mut q, &ids);
        for row in q.build().fetch_all(&mut **tx).await.map_err(map_err)? {
            let invitation = Invitation {
                membership: get(&row, "membership_id")?,
                scope: get(&row, "scope_key")?,
                issue: get(&row, "issue")?,
                state: get(&row, "state")?,
                expires_at: get(&row, "expires_at")?,
            };
            invitations.insert(get(&row, "id")?, invitation);
        }
    }
    // Per request, whether it still has something to deliver and, for an invitation entry,
    // its invitation. An invitation entry is for one issue: it has nothing to deliver once
    // its invitation is gone or no longer waits for that issue (`Failed` is re-tried only
    // through a re-issue, which makes a new entry).
    let live: Vec<Option<Option<&Invitation>>> = requests
        .iter()
        .map(|r| {
            if r.entry.kind != "invitation" {
                return Some(None);
            }
            let i = invitations.get(&r.entry.invitation_id?)?;
            let waits =
                invitation_key(&i.membership, &i.scope, i.issue) == r.entry.key && i.state == invitation_state::PENDING;
            waits.then_some(Some(i))
        })
        .collect();
    // 2. Entries with nothing left to deliver are closed.
    let dead: Vec<i64> = requests.iter().zip(&live).filter(|(_, l)| l.is_none()).map(|(r, _)| r.entry.id).collect();
    if !dead.is_empty() {
        let mut q = Sql::for_backend(backend, "UPDATE outbox SET state = 'Cancelled' WHERE state = 'Pending' AND id");
        in_list(&mut q, &dead);
        q.build().execute(&mut **tx).await.map_err(map_err)?;
    }
    // 3. The claims, each guarded by the attempt count as read, and before anything else is
    // written for the entry, so a lost claim writes nothing: of two workers claiming the same
    // attempt, one wins (on PostgreSQL the loser waits on the row, then finds the count moved).
    let wanted: Vec<&ClaimRequest<'_>> =
        requests.iter().zip(&live).filter(|(_, l)| l.is_some()).map(|(r, _)| r).collect();
    let mut attempts: HashMap<i64, i64> = HashMap::new();
    if !wanted.is_empty() {
        let mut q = Sql::for_backend(backend, "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = CASE id");
        for r in &wanted {
            q.push(" WHEN ").bind(r.entry.id).push(" THEN ").bind(r.retry_at);
        }
        q.push(" END WHERE state = 'Pending' AND id");
        in_list(&mut q, &wanted.iter().map(|r| r.entry.id).collect::<Vec<_>>());
        q.push(" AND attempts = CASE id");
        for r in &wanted {
            q.push(" WHEN ").bind(r.entry.id).push(" THEN ").bind(r.entry.attempts);
        }
        q.push(" END RETURNING id, attempts");
        for row in q.build().fetch_all(&mut **tx).await.map_err(map_err)? {
            attempts.insert(get(&row, "id")?, get(&row, "attempts")?);
        }
    }
    // 4. For each claimed invitation: the attempt counted, the expiry fixed at the first
    // attempt, and the hash of the token this attempt's message carries.
    let claimed: Vec<(&ClaimRequest<'_>, i64, &Invitation, i64)> = requests
        .iter()
        .zip(&live)
        .filter(|(r, _)| attempts.contains_key(&r.entry.id))
        .filter_map(|(r, l)| {
            let i = (*l)??;
            Some((r, r.entry.invitation_id?, i, i.expires_at.unwrap_or(at + validity)))
        })
        .collect();
    if !claimed.is_empty() {
        let mut q = Sql::for_backend(backend, "UPDATE invitations SET attempts = attempts + 1, expires_at = CASE id");
        for (_, id, _, expires_at) in &claimed {
            q.push(" WHEN ").bind(*id).push(" THEN ").bind(*expires_at);
        }
        q.push(" END WHERE id");
        in_list(&mut q, &claimed.iter().map(|(_, id, ..)| *id).collect::<Vec<_>>());
        q.build().execute(&mut **tx).await.map_err(map_err)?;
        let tokens: Vec<(&str, i64, i64)> =
            claimed.iter().filter_map(|(r, id, i, _)| Some((r.token_hash?, *id, i.issue))).collect();
        if !tokens.is_empty() {
            let mut q = Sql::for_backend(
                backend,
                "INSERT INTO invitation_tokens (token_hash, invitation_id, issue, created_at) ",
            );
            q.values(&tokens, |(hash, id, issue)| vec![(*hash).into(), (*id).into(), (*issue).into(), at.into()]);
            q.build().execute(&mut **tx).await.map_err(map_err)?;
        }
    }
    let expiry: HashMap<i64, i64> = claimed.iter().map(|(r, _, _, e)| (r.entry.id, *e)).collect();
    let mut claims = Vec::with_capacity(requests.len());
    for (r, l) in requests.iter().zip(&live) {
        let claim = if l.is_none() {
            Claim::Cancelled
        } else if let Some(&attempt) = attempts.get(&r.entry.id) {
            let mut expires_at = expiry.get(&r.entry.id).copied();
            // A sign-in link's token is made for this attempt; only its hash is kept.
            if r.entry.kind == "signin"
                && let Some(hash) = r.token_hash
            {
                expires_at = Some(super::sql_console::signin_token(tx, r.entry, hash, at).await?);
            }
            Claim::Send { attempt, expires_at }
        } else {
            // Claimed, delivered or closed by another worker since it was read.
            Claim::Taken
        };
        claims.push(claim);
    }
    Ok(claims)
}

/// The Membership an invitation belongs to.
async fn membership_of(tx: &mut Transaction<'static, Any>, invitation_id: i64) -> Result<Option<MembershipRef>> {
    let row = sqlx::query(
        "SELECT m.namespace, m.name, m.origin FROM invitations i JOIN memberships m ON m.id = i.membership_id \
         WHERE i.id = $1",
    )
    .bind(invitation_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    row.map(|r| {
        Ok(MembershipRef { namespace: get(&r, "namespace")?, name: get(&r, "name")?, origin: get(&r, "origin")? })
    })
    .transpose()
}

/// An invitation's audit entry (kind `Invitation`), in `tx`.
async fn audit(
    tx: &mut Transaction<'static, Any>,
    at: i64,
    actor: &Actor,
    action: &str,
    object: &str,
    after: serde_json::Value,
) -> Result<()> {
    let entry = AuditEntry::new(at, actor, action, "Invitation", object, None, Some(after.to_string()));
    audit_entry(tx, &entry).await
}

/// Mark entries delivered, in one transaction; an invitation becomes `Sent` (once: a re-send
/// after a crash finds it sent already) and is audited. The Membership to refresh, per entry.
/// As in [`claim_all`], each step is one statement for all the entries.
pub(super) async fn sent_all(
    pool: &AnyPool,
    backend: Backend,
    entries: &[&OutboxEntry],
    at: i64,
    by: &Actor,
) -> Result<Vec<Option<MembershipRef>>> {
    let mut tx = begin(pool, backend).await?;
    let mut out = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(PER_STATEMENT) {
        out.extend(sent_in(&mut tx, backend, chunk, at, by).await?);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(out)
}

async fn sent_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    entries: &[&OutboxEntry],
    at: i64,
    by: &Actor,
) -> Result<Vec<Option<MembershipRef>>> {
    let mut q = Sql::for_backend(backend, "UPDATE outbox SET state = 'Sent', sent_at = ");
    q.bind(at).push(", last_error = NULL WHERE state = 'Pending' AND id");
    in_list(&mut q, &entries.iter().map(|e| e.id).collect::<Vec<_>>());
    q.push(" RETURNING id");
    let mut done: HashSet<i64> = HashSet::new();
    for row in q.build().fetch_all(&mut **tx).await.map_err(map_err)? {
        done.insert(get(&row, "id")?);
    }
    // The invitations of the entries this call delivered (not those a crashed attempt did).
    let invitations: Vec<i64> =
        entries.iter().filter(|e| done.contains(&e.id)).filter_map(|e| e.invitation_id).collect();
    let mut marked: HashSet<i64> = HashSet::new();
    if !invitations.is_empty() {
        let mut q = Sql::for_backend(backend, "UPDATE invitations SET state = 'Sent', sent_at = ");
        q.bind(at).push(", last_error = NULL WHERE state = 'Pending' AND id");
        in_list(&mut q, &invitations);
        q.push(" RETURNING id");
        for row in q.build().fetch_all(&mut **tx).await.map_err(map_err)? {
            marked.insert(get(&row, "id")?);
        }
    }
    // Per entry, the invitation this call made `Sent`: audited, and its Membership refreshed.
    let sent: Vec<Option<i64>> =
        entries.iter().map(|e| e.invitation_id.filter(|id| done.contains(&e.id) && marked.contains(id))).collect();
    let mut touched: HashMap<i64, MembershipRef> = HashMap::new();
    if !marked.is_empty() {
        let after = Some(serde_json::json!({ "state": "Sent" }).to_string());
        let audit: Vec<AuditEntry> = entries
            .iter()
            .zip(&sent)
            .filter(|(_, s)| s.is_some())
            .map(|(e, _)| AuditEntry::new(at, by, "invitation.send", "Invitation", &e.key, None, after.clone()))
            .collect();
        audit_entries(tx, backend, &audit).await?;
        let mut q = Sql::for_backend(
            backend,
            "SELECT i.id, m.namespace, m.name, m.origin FROM invitations i JOIN memberships m ON m.id = i.membership_id \
             WHERE i.id",
        );
        in_list(&mut q, &marked.iter().copied().collect::<Vec<_>>());
        for r in q.build().fetch_all(&mut **tx).await.map_err(map_err)? {
            let m =
                MembershipRef { namespace: get(&r, "namespace")?, name: get(&r, "name")?, origin: get(&r, "origin")? };
            touched.insert(get(&r, "id")?, m);
        }
    }
    Ok(sent.into_iter().map(|id| id.and_then(|id| touched.get(&id).cloned())).collect())
}

/// Record a failed attempt: retry at `retry_at`, or with `None` give up (the entry and its
/// invitation become `Failed`). The Membership to refresh when the invitation failed.
pub(super) async fn failed(
    pool: &AnyPool,
    backend: Backend,
    entry: &OutboxEntry,
    at: i64,
    error: &str,
    retry_at: Option<i64>,
    by: &Actor,
) -> Result<Option<MembershipRef>> {
    let mut tx = begin(pool, backend).await?;
    let state = if retry_at.is_some() { "Pending" } else { "Failed" };
    sqlx::query(
        "UPDATE outbox SET state = $2, next_attempt_at = COALESCE($3, next_attempt_at), last_error = $4 \
         WHERE id = $1 AND state = 'Pending'",
    )
    .bind(entry.id)
    .bind(state)
    .bind(retry_at)
    .bind(error)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let mut touched = None;
    if let Some(id) = entry.invitation_id {
        let gave_up =
            sqlx::query("UPDATE invitations SET state = $2, last_error = $3 WHERE id = $1 AND state = 'Pending'")
                .bind(id)
                .bind(if retry_at.is_some() { invitation_state::PENDING } else { invitation_state::FAILED })
                .bind(error)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        if retry_at.is_none() && gave_up.rows_affected() == 1 {
            let after = serde_json::json!({ "state": "Failed", "attempts": entry.attempts + 1, "error": error });
            audit(&mut tx, at, by, "invitation.fail", &entry.key, after).await?;
            touched = membership_of(&mut tx, id).await?;
        }
    }
    tx.commit().await.map_err(map_err)?;
    Ok(touched)
}

/// Issue invitation `id` (of `membership` and `scope`, now at `issue` in `state`) again, in
/// `tx`: a new issue number, the delivery state cleared, and a new outbox entry with the
/// same content (a new token is made when it is sent). `false` when it changed since it was
/// read (accepted, revoked, re-sent): nothing is written then.
async fn reissue_invitation(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    membership: &str,
    scope: &str,
    state: &str,
    issue: i64,
    at: i64,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE invitations SET state = 'Pending', issue = issue + 1, reissues = reissues + 1, attempts = 0, \
         sent_at = NULL, expires_at = NULL, last_error = NULL WHERE id = $1 AND state = $2 AND issue = $3",
    )
    .bind(id)
    .bind(state)
    .bind(issue)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    if changed.rows_affected() == 0 {
        return Ok(false);
    }
    let payload: Option<String> = sqlx::query_scalar("SELECT payload FROM outbox WHERE idempotency_key = $1")
        .bind(invitation_key(membership, scope, issue))
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?;
    let key = invitation_key(membership, scope, issue + 1);
    enqueue(tx, "invitation", &key, payload.as_deref().unwrap_or("{}"), at, Some(id)).await?;
    Ok(true)
}

/// Expire sent invitations whose tokens ran out by `at` (through the `invitations_due` partial
/// index), at most `limit`. One with fewer than `max_reissues` re-issues is issued again at
/// once: new issue number, new outbox entry with the same content, a new token when sent.
pub(super) async fn expire(
    pool: &AnyPool,
    backend: Backend,
    at: i64,
    max_reissues: i64,
    limit: i64,
    by: &Actor,
) -> Result<Vec<ExpiredInvitation>> {
    let rows = sqlx::query(
        "SELECT i.id, i.membership_id, i.scope_key, i.email, i.issue, i.reissues, c.end_date FROM invitations i \
         JOIN customers c ON c.uid = i.customer_uid \
         WHERE i.state = 'Sent' AND i.expires_at <= $1 ORDER BY i.expires_at, i.id LIMIT $2",
    )
    .bind(at)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, membership, scope, email, issue, reissues): (i64, String, String, String, i64, i64) = (
            get(&row, "id")?,
            get(&row, "membership_id")?,
            get(&row, "scope_key")?,
            get(&row, "email")?,
            get(&row, "issue")?,
            get(&row, "reissues")?,
        );
        // After the agreement's end nothing new is issued (as the planner does for new
        // invitations): an invitation that runs out then simply expires.
        let ended = agreement_ended(get::<Option<String>>(&row, "end_date")?.as_deref(), at);
        let mut tx = begin(pool, backend).await?;
        let reissue = reissues < max_reissues && !ended;
        let changed = if reissue {
            reissue_invitation(&mut tx, id, &membership, &scope, "Sent", issue, at).await?
        } else {
            sqlx::query("UPDATE invitations SET state = 'Expired' WHERE id = $1 AND state = 'Sent' AND issue = $2")
                .bind(id)
                .bind(issue)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected()
                == 1
        };
        if !changed {
            // Accepted or revoked since it was read.
            tx.rollback().await.map_err(map_err)?;
            continue;
        }
        let old_key = invitation_key(&membership, &scope, issue);
        let new_issue = if reissue { issue + 1 } else { issue };
        let action = if reissue { "invitation.reissue" } else { "invitation.expire" };
        let mut after = serde_json::json!({ "expiredIssue": issue, "issue": new_issue, "reissued": reissue });
        if ended {
            after["reason"] = "the agreement has ended".into();
        }
        audit(&mut tx, at, by, action, &old_key, after).await?;
        let membership = membership_of(&mut tx, id).await?;
        tx.commit().await.map_err(map_err)?;
        out.push(ExpiredInvitation { email, reissued: reissue, issue: new_issue, membership });
    }
    Ok(out)
}

/// Whether an agreement ending on `end_date` (a `YYYY-MM-DD` date; it ends at that UTC
/// midnight) has ended at `at` (Unix seconds).
fn agreement_ended(end_date: Option<&str>, at: i64) -> bool {
    end_date
        .and_then(|d| d.parse::<jiff::civil::Date>().ok())
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .is_some_and(|z| z.timestamp().as_second() <= at)
}

/// Memberships whose invitation was accepted at or after `since`.
pub(super) async fn accepted_since(pool: &AnyPool, since: i64, limit: i64) -> Result<Vec<MembershipRef>> {
    let rows = sqlx::query(
        "SELECT m.namespace, m.name, m.origin FROM invitations i JOIN memberships m ON m.id = i.membership_id \
         WHERE i.state = 'Accepted' AND i.accepted_at >= $1 ORDER BY i.accepted_at LIMIT $2",
    )
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(MembershipRef { namespace: get(r, "namespace")?, name: get(r, "name")?, origin: get(r, "origin")? })
        })
        .collect()
}

/// Accept an invitation by token at `at`. Refusals are audited too (without the token).
pub(super) async fn accept(
    pool: &AnyPool,
    backend: Backend,
    who: &Acceptance,
    at: i64,
) -> Result<std::result::Result<Accepted, AcceptRefusal>> {
    let mut tx = begin(pool, backend).await?;
    let row = sqlx::query(
        "SELECT t.issue AS token_issue, i.id, i.membership_id, i.scope_key, i.subject_key, i.email, i.issue, i.state, \
         i.expires_at, i.accepted_at, i.customer_uid, c.namespace, c.name AS customer, c.agreement_kind, \
         w.id AS workspace_id, w.name AS workspace, CASE WHEN w.personal_allowed THEN 1 ELSE 0 END AS personal_allowed \
         FROM invitation_tokens t JOIN invitations i ON i.id = t.invitation_id \
         JOIN customers c ON c.uid = i.customer_uid LEFT JOIN workspaces w ON w.id = i.scope_key \
         WHERE t.token_hash = $1",
    )
    .bind(&who.token_hash)
    .fetch_optional(&mut *tx)
    .await
    .map_err(map_err)?;
    let attempt = serde_json::json!({ "account": who.account, "accountType": who.account_type });
    let Some(row) = row else {
        if who.audit_unknown {
            let after = serde_json::json!({ "account": who.account, "accountType": who.account_type,
                "refused": "UnknownToken" });
            audit(&mut tx, at, &who.by, "invitation.refuse", "unknown token", after).await?;
            tx.commit().await.map_err(map_err)?;
        }
        return Ok(Err(AcceptRefusal::UnknownToken));
    };
    let id: i64 = get(&row, "id")?;
    let (membership, scope, issue): (String, String, i64) =
        (get(&row, "membership_id")?, get(&row, "scope_key")?, get(&row, "issue")?);
    let object = invitation_key(&membership, &scope, issue);
    let state: String = get(&row, "state")?;
    let token_issue: i64 = get(&row, "token_issue")?;
    let expires_at: Option<i64> = get(&row, "expires_at")?;
    let workspace: Option<String> = get(&row, "workspace")?;
    let customer: String = get(&row, "customer")?;
    let invited: String = get(&row, "email")?;
    let personal_allowed = match &workspace {
        Some(_) => get::<i64>(&row, "personal_allowed")? != 0,
        None => get::<String>(&row, "agreement_kind")? != "Unified",
    };
    let facts = AcceptFacts {
        invited: &invited,
        superseded_by: (token_issue < issue).then_some(issue),
        state: &state,
        accepted_at: get(&row, "accepted_at")?,
        expires_at,
        workspace: workspace.as_deref(),
        customer: &customer,
        personal_allowed,
    };
    let refusal = facts.refusal(&who.account, &who.account_type, who.by.channel.authenticated(), at);
    if let Some(refusal) = refusal {
        let mut after = attempt;
        after["refused"] = refusal.reason().into();
        audit(&mut tx, at, &who.by, "invitation.refuse", &object, after).await?;
        tx.commit().await.map_err(map_err)?;
        return Ok(Err(refusal));
    }
    let accepted = sqlx::query(
        "UPDATE invitations SET state = 'Accepted', accepted_at = $2, accepted_by = $3, accepted_account_type = $4 \
         WHERE id = $1 AND issue = $5 AND state IN ('Pending', 'Sent', 'Failed')",
    )
    .bind(id)
    .bind(at)
    .bind(&who.account)
    .bind(&who.account_type)
    .bind(issue)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    if accepted.rows_affected() == 0 {
        // Another token of this invitation was accepted meanwhile (PostgreSQL's transactions
        // do not serialize the read above; SQLite's BEGIN IMMEDIATE does).
        tx.rollback().await.map_err(map_err)?;
        return Ok(Err(AcceptRefusal::Used(crate::domain::time::rfc3339(at))));
    }
    // Single use: the state is `Accepted` now, so every token of this issue (a crash re-send
    // may have made several) is refused from here on, with a message that says why.
    // The user is active in this workspace only (customer level has no workspace row).
    if let Some(ws) = get::<Option<String>>(&row, "workspace_id")? {
        sqlx::query(
            "INSERT INTO user_workspaces (user_id, workspace_id, state, updated_at) \
             SELECT id, $3, 'Active', $4 FROM users WHERE customer_uid = $1 AND email = $2 \
             ON CONFLICT (user_id, workspace_id) DO UPDATE SET state = 'Active', updated_at = excluded.updated_at",
        )
        .bind(get::<String>(&row, "customer_uid")?)
        .bind(get::<String>(&row, "subject_key")?)
        .bind(ws)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    let mut after = attempt;
    after["state"] = "Accepted".into();
    audit(&mut tx, at, &who.by, "invitation.accept", &object, after).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(Ok(Accepted {
        namespace: get(&row, "namespace")?,
        customer,
        workspace,
        email: invited,
        account: who.account.clone(),
        accepted_at: at,
    }))
}

/// Send again, with a new token, each `Failed` or `Expired` invitation of `email` in the
/// customers of `namespace` (of one workspace, by name, if given): as the re-issue of an
/// expired invitation does, within the same `max_reissues` limit and never after the
/// agreement's end. One transaction per invitation, guarded by its state and issue; the
/// others are reported with the reason they are left as they are.
pub(super) async fn resend(
    pool: &AnyPool,
    backend: Backend,
    of: &ResendOf<'_>,
    max_reissues: i64,
    at: i64,
    by: &Actor,
) -> Result<Vec<Resend>> {
    let ResendOf { namespace, customer, email, workspace } = *of;
    let mut qb = super::sql::Sql::new(
        "SELECT i.id, i.membership_id, i.scope_key, i.email, i.issue, i.reissues, i.state, i.expires_at, c.name AS customer, \
         c.start_date, c.end_date, w.name AS workspace FROM invitations i JOIN customers c ON c.uid = i.customer_uid \
         LEFT JOIN workspaces w ON w.id = i.scope_key WHERE c.namespace = ",
    );
    qb.bind(namespace).push(" AND i.subject_key = ").bind(email.trim().to_ascii_lowercase());
    if let Some(name) = customer {
        qb.push(" AND c.name = ").bind(name);
    }
    if let Some(w) = workspace {
        qb.push(" AND w.name = ").bind(w);
    }
    qb.push(" ORDER BY c.name, w.name, i.id");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, membership, scope, issue, reissues, state): (i64, String, String, i64, i64, String) = (
            get(&row, "id")?,
            get(&row, "membership_id")?,
            get(&row, "scope_key")?,
            get(&row, "issue")?,
            get(&row, "reissues")?,
            get(&row, "state")?,
        );
        let mut r = Resend {
            email: get(&row, "email")?,
            customer: get(&row, "customer")?,
            workspace: get(&row, "workspace")?,
            state: state.clone(),
            issue,
            refused: None,
            membership: None,
        };
        let start: String = get(&row, "start_date")?;
        let started = start.parse::<jiff::civil::Date>().ok().and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok());
        r.refused = match state.as_str() {
            "Failed" | "Expired" => None,
            "Accepted" => Some("accepted already: nothing to send".into()),
            "Revoked" => Some("revoked (its membership is gone): nothing to send".into()),
            "Sent" => Some(format!(
                "sent and valid until {}: the invitee can still accept it",
                get::<Option<i64>>(&row, "expires_at")?.map(crate::domain::time::rfc3339).unwrap_or_default()
            )),
            _ => Some("waiting to be sent: the outbox delivers it".into()),
        };
        if r.refused.is_none() {
            if agreement_ended(get::<Option<String>>(&row, "end_date")?.as_deref(), at) {
                r.refused = Some("the agreement has ended: nothing new is issued".into());
            } else if started.is_some_and(|s| s.timestamp().as_second() > at) {
                r.refused = Some(format!("the agreement starts on {start}: nothing is issued before"));
            } else if reissues >= max_reissues {
                r.refused = Some(format!(
                    "issued {} times already, the limit of re-issues ({max_reissues}, --invitation-reissues) is reached; \
                     delete and re-create the Membership to start over",
                    reissues + 1
                ));
            }
        }
        if r.refused.is_some() {
            out.push(r);
            continue;
        }
        let mut tx = begin(pool, backend).await?;
        if !reissue_invitation(&mut tx, id, &membership, &scope, &state, issue, at).await? {
            tx.rollback().await.map_err(map_err)?;
            r.refused = Some("changed meanwhile (accepted, revoked or re-sent by someone else)".into());
            out.push(r);
            continue;
        }
        let old_key = invitation_key(&membership, &scope, issue);
        let after = serde_json::json!({ "previousIssue": issue, "previousState": state, "issue": issue + 1 });
        audit(&mut tx, at, by, "invitation.resend", &old_key, after).await?;
        r.membership = membership_of(&mut tx, id).await?;
        tx.commit().await.map_err(map_err)?;
        r.issue = issue + 1;
        r.state = "Pending".into();
        out.push(r);
    }
    Ok(out)
}

//! Outbox delivery and the invitation lifecycle in the SQL store.
//!
//! Delivery is at least once with one identity per message: an attempt is first *claimed*
//! (attempt counted, next attempt scheduled, for an invitation a new token hash stored and its
//! expiry fixed), then sent, then marked sent. A crash between sending and marking leaves the
//! entry due again at its scheduled retry, and the re-send carries the same idempotency key.
//! Each state change of an invitation, its audit entry and any re-issue are one transaction.

use super::records::*;
use super::sql::{audit_entry, begin, enqueue, get, invitation_key, map_err};
use super::{Backend, Result};
use crate::domain::actor::Actor;
use sqlx::{Any, AnyPool, Transaction};

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

/// The invitation an entry delivers, if it still wants delivering: (issue, expires_at).
async fn live_invitation(
    tx: &mut Transaction<'static, Any>,
    entry: &OutboxEntry,
) -> Result<Option<(i64, Option<i64>)>> {
    let Some(id) = entry.invitation_id else { return Ok(None) };
    let row = sqlx::query("SELECT membership_id, scope_key, issue, state, expires_at FROM invitations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?;
    let Some(row) = row else { return Ok(None) };
    let (membership, scope, issue, state): (String, String, i64, String) =
        (get(&row, "membership_id")?, get(&row, "scope_key")?, get(&row, "issue")?, get(&row, "state")?);
    // The entry is for this issue, and the invitation waits for it (`Failed` is re-tried only
    // through a re-issue, which makes a new entry).
    let wanted = invitation_key(&membership, &scope, issue) == entry.key && state == invitation_state::PENDING;
    Ok(wanted.then_some((issue, get(&row, "expires_at")?)))
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

/// Claim one attempt at `at` for each request, in one transaction (a message costs a share
/// of one commit instead of one of its own, issue 18): count it and schedule the next try
/// at `retry_at` (so a crash mid-send is retried), and for an invitation store the token
/// hash (valid `validity` seconds from the first attempt). An entry with nothing left to
/// deliver is closed as `Cancelled`; one another worker took is `Taken`, with nothing
/// written for it.
pub(super) async fn claim_all(
    pool: &AnyPool,
    backend: Backend,
    requests: &[ClaimRequest<'_>],
    at: i64,
    validity: i64,
) -> Result<Vec<Claim>> {
    let mut tx = begin(pool, backend).await?;
    let mut claims = Vec::with_capacity(requests.len());
    for r in requests {
        claims.push(claim_in(&mut tx, r, at, validity).await?);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(claims)
}

async fn claim_in(
    tx: &mut Transaction<'static, Any>,
    request: &ClaimRequest<'_>,
    at: i64,
    validity: i64,
) -> Result<Claim> {
    let ClaimRequest { entry, retry_at, token_hash } = *request;
    let mut live = None;
    if entry.kind == "invitation" {
        let Some(invitation) = live_invitation(tx, entry).await? else {
            sqlx::query("UPDATE outbox SET state = 'Cancelled' WHERE id = $1 AND state = 'Pending'")
                .bind(entry.id)
                .execute(&mut **tx)
                .await
                .map_err(map_err)?;
            return Ok(Claim::Cancelled);
        };
        live = Some(invitation);
    }
    // Guarded by the attempt count as read, and first, so a lost claim writes nothing: of two
    // workers claiming the same attempt, one wins (on PostgreSQL the loser waits on this row,
    // then finds the count moved).
    let claimed = sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2 WHERE id = $1 AND state = 'Pending' \
         AND attempts = $3 RETURNING attempts",
    )
    .bind(entry.id)
    .bind(retry_at)
    .bind(entry.attempts)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    let Some(row) = claimed else {
        // Claimed, delivered or closed by another worker since it was read.
        return Ok(Claim::Taken);
    };
    let attempt = get(&row, "attempts")?;
    let mut expires = None;
    if let Some((issue, expires_at)) = live {
        let id = entry.invitation_id.unwrap_or_default();
        let expires_at = expires_at.unwrap_or(at + validity);
        sqlx::query("UPDATE invitations SET attempts = attempts + 1, expires_at = $2 WHERE id = $1")
            .bind(id)
            .bind(expires_at)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
        if let Some(hash) = token_hash {
            sqlx::query(
                "INSERT INTO invitation_tokens (token_hash, invitation_id, issue, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(hash)
            .bind(id)
            .bind(issue)
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
        }
        expires = Some(expires_at);
    } else if entry.kind == "signin" {
        // The link's token is made for this attempt; only its hash is kept.
        if let Some(hash) = token_hash {
            expires = Some(super::sql_console::signin_token(tx, entry, hash, at).await?);
        }
    }
    Ok(Claim::Send { attempt, expires_at: expires })
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
pub(super) async fn sent_all(
    pool: &AnyPool,
    backend: Backend,
    entries: &[&OutboxEntry],
    at: i64,
    by: &Actor,
) -> Result<Vec<Option<MembershipRef>>> {
    let mut tx = begin(pool, backend).await?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        out.push(sent_in(&mut tx, entry, at, by).await?);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(out)
}

async fn sent_in(
    tx: &mut Transaction<'static, Any>,
    entry: &OutboxEntry,
    at: i64,
    by: &Actor,
) -> Result<Option<MembershipRef>> {
    let done = sqlx::query(
        "UPDATE outbox SET state = 'Sent', sent_at = $2, last_error = NULL WHERE id = $1 AND state = 'Pending'",
    )
    .bind(entry.id)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    let mut touched = None;
    if let Some(id) = entry.invitation_id
        && done.rows_affected() == 1
    {
        let marked = sqlx::query(
            "UPDATE invitations SET state = 'Sent', sent_at = $2, last_error = NULL WHERE id = $1 AND state = 'Pending'",
        )
        .bind(id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
        if marked.rows_affected() == 1 {
            audit(tx, at, by, "invitation.send", &entry.key, serde_json::json!({ "state": "Sent" })).await?;
            touched = membership_of(tx, id).await?;
        }
    }
    Ok(touched)
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

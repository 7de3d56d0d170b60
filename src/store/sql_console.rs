//! The console's rows in the SQL store: sessions, email sign-in links, pending OpenID Connect
//! logins, and what the invitation page shows about a token.
//!
//! Secrets are stored as SHA-256 hashes only (session ids, sign-in tokens, OIDC `state`), so
//! a copy of the store signs nobody in. Every sign-in and sign-out is audited with its channel.

use super::records::{AuditEntry, invitation_state};
use super::sql::{audit_entry, begin, enqueue, get, map_err};
use super::{Backend, Result};
use crate::domain::actor::Actor;
use serde::Serialize;
use sqlx::AnyPool;
use sqlx::any::AnyRow;

/// How long an emailed sign-in link works (seconds).
pub const SIGNIN_VALIDITY: i64 = 15 * 60;

/// How long an authorization request to the OpenID provider may take (seconds).
pub const OIDC_LOGIN_VALIDITY: i64 = 10 * 60;

/// A session's `seen_at` is written at most this often (seconds): a page view is not a write.
pub const SEEN_RESOLUTION: i64 = 60;

/// A console session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// SHA-256 of the id in the cookie, hex (the id itself is never stored).
    #[serde(skip)]
    pub id_hash: String,
    /// The signed-in email, normalized.
    pub email: String,
    /// `WorkOrSchool` or `Personal`, from the sign-in.
    pub account_type: String,
    /// `oidc` or `email`.
    pub method: String,
    /// OIDC `issuer#sub`, or the email for an email link.
    pub subject: String,
    /// Group object ids from the ID token's `groups` claim.
    pub groups: Vec<String>,
    /// The CSRF token of this session's forms.
    #[serde(skip)]
    pub csrf: String,
    /// The client address at sign-in.
    pub address: String,
    /// When it began (RFC 3339 in JSON).
    #[serde(serialize_with = "crate::domain::time::as_rfc3339")]
    pub created_at: i64,
    /// Last request (to the minute).
    #[serde(serialize_with = "crate::domain::time::as_rfc3339")]
    pub seen_at: i64,
    /// The absolute end.
    #[serde(serialize_with = "crate::domain::time::as_rfc3339")]
    pub expires_at: i64,
    /// When it was ended (sign-out or revocation).
    #[serde(serialize_with = "crate::domain::time::as_rfc3339_opt")]
    pub revoked_at: Option<i64>,
}

/// An authorization request sent to the OpenID provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLogin {
    /// SHA-256 of the `state` parameter, hex.
    pub state_hash: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// Where to go after signing in (a path on the console).
    pub return_to: String,
    /// When it was made.
    pub created_at: i64,
}

/// What the invitation page shows about a token, before anyone signs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    /// The invited address.
    pub email: String,
    /// The customer's display name.
    pub customer: String,
    /// The workspace (object name), or none at customer level.
    pub workspace: Option<String>,
    /// Roles given.
    pub roles: Vec<String>,
    /// Who or what invited.
    pub invited_by: String,
    /// `Pending`, `Sent`, `Accepted`, `Expired`, `Revoked`, `Failed`.
    pub state: String,
    /// The newer issue that replaced this token, if one did.
    pub superseded_by: Option<i64>,
    /// When it was accepted.
    #[serde(serialize_with = "crate::domain::time::as_rfc3339_opt")]
    pub accepted_at: Option<i64>,
    /// The customer object's name.
    pub customer_name: String,
    /// Until when it can be accepted.
    #[serde(serialize_with = "crate::domain::time::as_rfc3339_opt")]
    pub expires_at: Option<i64>,
    /// Whether personal (Microsoft) accounts are accepted in this scope.
    pub personal_allowed: bool,
}

impl InvitationView {
    /// Why `account` could not accept at `now`: the rule the acceptance applies
    /// ([`super::AcceptFacts::refusal`]), for the page to say before anyone presses a button.
    pub fn refusal(&self, account: &str, account_type: &str, now: i64) -> Option<super::AcceptRefusal> {
        let facts = super::AcceptFacts {
            invited: &self.email,
            superseded_by: self.superseded_by,
            state: &self.state,
            accepted_at: self.accepted_at,
            expires_at: self.expires_at,
            workspace: self.workspace.as_deref(),
            customer: &self.customer_name,
            personal_allowed: self.personal_allowed,
        };
        facts.refusal(account, account_type, true, now)
    }
}

fn session(r: &AnyRow) -> Result<Session> {
    let groups: String = get(r, "groups")?;
    Ok(Session {
        id_hash: get(r, "id_hash")?,
        email: get(r, "email")?,
        account_type: get(r, "account_type")?,
        method: get(r, "method")?,
        subject: get(r, "subject")?,
        groups: serde_json::from_str(&groups)
            .map_err(|e| super::StoreError::Corrupt(format!("session groups: {e}")))?,
        csrf: get(r, "csrf")?,
        address: get(r, "address")?,
        created_at: get(r, "created_at")?,
        seen_at: get(r, "seen_at")?,
        expires_at: get(r, "expires_at")?,
        revoked_at: get(r, "revoked_at")?,
    })
}

const SESSION_COLUMNS: &str = "id_hash, email, account_type, method, subject, groups, csrf, address, created_at, \
                               seen_at, expires_at, revoked_at";

/// Store a new session with its sign-in audit entry, in one transaction.
pub(super) async fn session_insert(pool: &AnyPool, backend: Backend, s: &Session, by: &Actor) -> Result<()> {
    let mut tx = begin(pool, backend).await?;
    sqlx::query(
        "INSERT INTO sessions (id_hash, email, account_type, method, subject, groups, csrf, address, created_at, \
         seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
    )
    .bind(&s.id_hash)
    .bind(&s.email)
    .bind(&s.account_type)
    .bind(&s.method)
    .bind(&s.subject)
    .bind(serde_json::to_string(&s.groups).unwrap_or_else(|_| "[]".into()))
    .bind(&s.csrf)
    .bind(&s.address)
    .bind(s.created_at)
    .bind(s.expires_at)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let after = serde_json::json!({ "accountType": s.account_type, "method": s.method, "address": s.address,
        "groups": s.groups.len(), "expiresAt": crate::domain::time::rfc3339(s.expires_at) });
    let entry = AuditEntry::new(s.created_at, by, "session.start", "Session", &s.email, None, Some(after.to_string()));
    audit_entry(&mut tx, &entry).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

/// The live session with this id hash at `now`: not ended, before its absolute end, and seen
/// within `idle` seconds. Its `seen_at` is moved forward (at most once a minute); whether it
/// was, beside the session.
pub(super) async fn session_find(
    pool: &AnyPool,
    id_hash: &str,
    now: i64,
    idle: i64,
) -> Result<Option<(Session, bool)>> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2 \
         AND seen_at + $3 > $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_hash)
        .bind(now)
        .bind(idle)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    let Some(row) = row else { return Ok(None) };
    let mut s = session(&row)?;
    let touch = now - s.seen_at >= SEEN_RESOLUTION;
    if touch {
        sqlx::query("UPDATE sessions SET seen_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL")
            .bind(id_hash)
            .bind(now)
            .execute(pool)
            .await
            .map_err(map_err)?;
        s.seen_at = now;
    }
    Ok(Some((s, touch)))
}

/// End sessions: one (by id hash) or every live one of an email; audited once per session.
pub(super) async fn sessions_end(
    pool: &AnyPool,
    backend: Backend,
    id_hash: Option<&str>,
    email: Option<&str>,
    at: i64,
    by: &Actor,
    action: &str,
) -> Result<u64> {
    let mut tx = begin(pool, backend).await?;
    let rows = sqlx::query(
        "UPDATE sessions SET revoked_at = $3 WHERE revoked_at IS NULL AND expires_at > $3 \
         AND ($1 IS NULL OR id_hash = $1) AND ($2 IS NULL OR email = $2) RETURNING email, method, created_at",
    )
    .bind(id_hash)
    .bind(email)
    .bind(at)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    for r in &rows {
        let email: String = get(r, "email")?;
        let after = serde_json::json!({ "method": get::<String>(r, "method")?,
            "startedAt": crate::domain::time::rfc3339(get(r, "created_at")?) });
        let entry = AuditEntry::new(at, by, action, "Session", &email, None, Some(after.to_string()));
        audit_entry(&mut tx, &entry).await?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(rows.len() as u64)
}

/// Sessions not ended and before their absolute end at `now`, optionally of one email.
pub(super) async fn sessions(pool: &AnyPool, email: Option<&str>, now: i64) -> Result<Vec<Session>> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE revoked_at IS NULL AND expires_at > $1 \
         AND ($2 IS NULL OR email = $2) ORDER BY email, created_at"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(email).fetch_all(pool).await.map_err(map_err)?;
    rows.iter().map(session).collect()
}

/// Queue a sign-in link for `email` (then to `return_to`): an outbox entry whose token is
/// made when it is sent.
pub(super) async fn signin_request(
    pool: &AnyPool,
    backend: Backend,
    email: &str,
    return_to: &str,
    at: i64,
) -> Result<()> {
    let mut tx = begin(pool, backend).await?;
    let key = format!("signin/{}", uuid::Uuid::new_v4());
    let payload = serde_json::json!({ "email": email, "returnTo": return_to }).to_string();
    enqueue(&mut tx, "signin", &key, &payload, at, None).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

/// Store the hash of the token a sign-in message carries (at its claim), in `tx`.
pub(super) async fn signin_token(
    conn: &mut sqlx::AnyConnection,
    entry: &super::OutboxEntry,
    token_hash: &str,
    at: i64,
) -> Result<i64> {
    let payload: serde_json::Value = serde_json::from_str(&entry.payload)
        .map_err(|e| super::StoreError::Corrupt(format!("sign-in message {}: {e}", entry.key)))?;
    let email = payload["email"].as_str().unwrap_or_default();
    let return_to = payload["returnTo"].as_str().unwrap_or("/");
    let expires_at = at + SIGNIN_VALIDITY;
    sqlx::query(
        "INSERT INTO signin_tokens (token_hash, email, outbox_id, return_to, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash)
    .bind(email)
    .bind(entry.id)
    .bind(return_to)
    .bind(at)
    .bind(expires_at)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(expires_at)
}

/// Use a sign-in token at `at`: its email and where to go next, once, while it is valid.
pub(super) async fn signin_consume(pool: &AnyPool, token_hash: &str, at: i64) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "UPDATE signin_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING email, return_to",
    )
    .bind(token_hash)
    .bind(at)
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    row.map(|r| Ok((get(&r, "email")?, get(&r, "return_to")?))).transpose()
}

/// Store an authorization request sent to the provider.
pub(super) async fn oidc_begin(pool: &AnyPool, p: &PendingLogin) -> Result<()> {
    // Requests never answered are cleared as new ones come in.
    sqlx::query("DELETE FROM oidc_logins WHERE expires_at <= $1")
        .bind(p.created_at)
        .execute(pool)
        .await
        .map_err(map_err)?;
    sqlx::query(
        "INSERT INTO oidc_logins (state_hash, verifier, nonce, return_to, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&p.state_hash)
    .bind(&p.verifier)
    .bind(&p.nonce)
    .bind(&p.return_to)
    .bind(p.created_at)
    .bind(p.created_at + OIDC_LOGIN_VALIDITY)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Take the authorization request with this `state` hash (once), if it has not run out.
pub(super) async fn oidc_take(pool: &AnyPool, state_hash: &str, at: i64) -> Result<Option<PendingLogin>> {
    let row = sqlx::query(
        "DELETE FROM oidc_logins WHERE state_hash = $1 RETURNING state_hash, verifier, nonce, return_to, created_at, \
         expires_at",
    )
    .bind(state_hash)
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    let Some(r) = row else { return Ok(None) };
    if get::<i64>(&r, "expires_at")? <= at {
        return Ok(None);
    }
    Ok(Some(PendingLogin {
        state_hash: get(&r, "state_hash")?,
        verifier: get(&r, "verifier")?,
        nonce: get(&r, "nonce")?,
        return_to: get(&r, "return_to")?,
        created_at: get(&r, "created_at")?,
    }))
}

/// What the invitation page shows for a token, from the invitation and its newest message.
pub(super) async fn invitation_view(pool: &AnyPool, token_hash: &str) -> Result<Option<InvitationView>> {
    let row = sqlx::query(
        "SELECT t.issue AS token_issue, i.id, i.email, i.issue, i.state, i.expires_at, i.accepted_at, c.display_name, \
         c.name AS customer_name, \
         c.agreement_kind, w.name AS workspace, CASE WHEN w.personal_allowed THEN 1 ELSE 0 END AS personal_allowed, \
         (SELECT o.payload FROM outbox o WHERE o.invitation_id = i.id ORDER BY o.id DESC LIMIT 1) AS payload \
         FROM invitation_tokens t JOIN invitations i ON i.id = t.invitation_id \
         JOIN customers c ON c.uid = i.customer_uid LEFT JOIN workspaces w ON w.id = i.scope_key \
         WHERE t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    let Some(r) = row else { return Ok(None) };
    let payload: Option<String> = get(&r, "payload")?;
    let content: serde_json::Value = payload.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default();
    let workspace: Option<String> = get(&r, "workspace")?;
    let personal_allowed = match &workspace {
        Some(_) => get::<i64>(&r, "personal_allowed")? != 0,
        None => get::<String>(&r, "agreement_kind")? != "Unified",
    };
    let state: String = get(&r, "state")?;
    Ok(Some(InvitationView {
        email: get(&r, "email")?,
        customer: get(&r, "display_name")?,
        workspace,
        roles: content["roles"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        invited_by: content["invited_by"].as_str().unwrap_or("an administrator").to_owned(),
        superseded_by: {
            let issue: i64 = get(&r, "issue")?;
            (get::<i64>(&r, "token_issue")? < issue).then_some(issue)
        },
        accepted_at: get(&r, "accepted_at")?,
        customer_name: get(&r, "customer_name")?,
        state: if state.is_empty() { invitation_state::PENDING.to_owned() } else { state },
        expires_at: get(&r, "expires_at")?,
        personal_allowed,
    }))
}

//! The SQL store over sqlx's `Any` driver: one implementation, one set of SQL text (written in
//! the dialect both SQLite and PostgreSQL accept: `$N` parameters, `ON CONFLICT`, partial
//! indexes), two sets of embedded migrations. Backend differences are confined to
//! [`SqlStore::connect`] (WAL and pragmas for SQLite), [`SqlStore::begin`] (`BEGIN IMMEDIATE`
//! on SQLite so writers queue instead of failing on lock upgrade) and the schema-version probe.
//!
//! Booleans are read through `CASE WHEN col THEN 1 ELSE 0 END`, because the drivers disagree on
//! how a boolean column decodes through `Any`.

use super::change::{Batch, Change, GuardTable, Step};
use super::records::*;
use super::snapshot::Snapshot;
use super::{AuditFilter, Backend, Focus, MigrationReport, Result, Store, StoreError, StoreUrl};
use crate::api::{Permission, Role};
use crate::domain::actor::Actor;
use crate::domain::matrix;
use crate::domain::rules::Source;
use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, AssertSqlSafe, Row, Transaction};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One query per kind of deadline; each `MIN` is answered from the partial index on the
/// deadline column (`outbox_due`, `invitations_due`, `lockbox_requests_due`). The first
/// [`DELIVERY_DEADLINES`] are the delivery worker's.
pub const DEADLINE_QUERIES: &[&str] = &[
    "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'Pending'",
    "SELECT MIN(expires_at) FROM invitations WHERE state = 'Sent'",
    "SELECT MIN(due_at) FROM lockbox_requests WHERE due_at IS NOT NULL",
];

/// How many of [`DEADLINE_QUERIES`] concern delivery: a retry and an invitation's expiry.
pub const DELIVERY_DEADLINES: usize = 2;

/// The earliest of the deadlines `queries` return (each a `MIN` over a partial index).
pub(super) async fn earliest(pool: &AnyPool, queries: &[&str]) -> Result<Option<i64>> {
    let mut next: Option<i64> = None;
    for sql in queries {
        let t: Option<i64> = sqlx::query_scalar(AssertSqlSafe(*sql)).fetch_one(pool).await.map_err(map_err)?;
        next = match (next, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Rows per multi-row INSERT: keeps statements well under SQLite's parameter limit.
const ROWS_PER_INSERT: usize = 100;

/// The SQL store.
pub struct SqlStore {
    /// Reads.
    pool: AnyPool,
    /// Writes: on a SQLite file a pool of one connection, so writers queue here, woken in
    /// turn, instead of in SQLite's busy handler, which sleeps and polls (1, 2, 5, 10 ... ms)
    /// while holding a pooled connection that reads then wait for. On PostgreSQL (row
    /// locks, concurrent writers) and in-memory SQLite, the same pool as reads.
    writer: AnyPool,
    /// Single-batch applies, combined into shared transactions (see `sql_group`).
    group: super::sql_group::GroupCommit,
    url: StoreUrl,
    rows_written: AtomicU64,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("url", &self.url).finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connect without migrating. A SQLite file is created if missing and switched to WAL.
    pub async fn connect(url: StoreUrl) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = url.backend();
        let target = match backend {
            Backend::Sqlite if !url.expose().contains("mode=") => {
                let sep = if url.expose().contains('?') { '&' } else { '?' };
                format!("{}{sep}mode=rwc", url.expose())
            }
            _ => url.expose().to_owned(),
        };
        if let Some(file) = url.sqlite_file() {
            create_private_file(&file).map_err(|e| StoreError::Unavailable(format!("{}: {e}", file.display())))?;
        }
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match backend {
            // One writer at a time is SQLite's model; a small pool keeps readers concurrent
            // under WAL, and writers queue for the writer pool's one connection (below).
            // Each connection caches up
            // to 2 MiB of pages (it was 64 MiB, up to 256 MiB over the pool against the
            // chart's 256Mi limit, then 8 MiB). A first apply of 10,000 Memberships ran as fast
            // with 2 and peaked 7 MB lower; a page SQLite does not cache is still in the kernel's.
            Backend::Sqlite => options.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                         PRAGMA cache_size = -2048; PRAGMA temp_store = MEMORY;",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            }),
            // Every statement planned for its parameters. A prepared statement otherwise
            // settles on a generic plan after five runs, costed for the tables as they were
            // then: a store that starts empty keeps plans that find a membership, user or
            // invitation by scanning the customer's index range and filtering (thousands of
            // rows per focused read at 10,000 Memberships) until an ANALYZE invalidates
            // them, which never comes where autovacuum is off. A custom plan sees the
            // tables' current size; planning these short statements costs microseconds.
            Backend::Postgres => options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("SET plan_cache_mode = force_custom_plan").execute(conn).await?;
                    Ok(())
                })
            }),
        };
        if backend == Backend::Postgres {
            // One direct attempt first: a refused or unresolvable server is reported at once,
            // in the driver's words ("Connection refused"), instead of as a pool timeout
            // after `acquire_timeout` of silent retries.
            use sqlx::Connection;
            let probe = sqlx::AnyConnection::connect(&target).await.map_err(|e| map_connect_error(&url, e))?;
            let _ = probe.close().await;
        }
        let pool = options.clone().connect(&target).await.map_err(|e| map_connect_error(&url, e))?;
        let writer = if url.sqlite_file().is_some() {
            // WAL is a property of the file: set once, it stays.
            sqlx::raw_sql("PRAGMA journal_mode = WAL;").execute(&pool).await.map_err(map_err)?;
            options.max_connections(1).connect(&target).await.map_err(|e| map_connect_error(&url, e))?
        } else {
            pool.clone()
        };
        let group = super::sql_group::GroupCommit::new(writer.clone(), backend);
        Ok(SqlStore { pool, writer, group, url, rows_written: AtomicU64::new(0) })
    }

    fn migrator(&self) -> &'static Migrator {
        match self.url.backend() {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The newest migration this binary carries.
    pub fn supported_version(&self) -> i64 {
        self.migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Apply only the migrations up to `version` (tests of the upgrade path).
    pub async fn migrate_to(&self, version: i64) -> Result<()> {
        let mut m = Migrator::with_migrations(
            self.migrator().iter().filter(|m| m.version <= version).cloned().collect::<Vec<_>>(),
        );
        m.set_ignore_missing(true);
        m.run(&self.pool).await.map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// The schema as text (tables, columns, indexes), to compare two stores.
    pub async fn schema_dump(&self) -> Result<String> {
        let sql = match self.url.backend() {
            Backend::Sqlite => {
                "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master \
                 WHERE name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY type, name"
            }
            Backend::Postgres => {
                "SELECT 'column ' || table_name || '.' || column_name || ': ' || data_type || ' ' || is_nullable \
                 || ' ' || COALESCE(column_default, '') FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' \
                 UNION ALL SELECT 'index ' || indexname || ': ' || replace(indexdef, current_schema() || '.', '') FROM pg_indexes \
                 WHERE schemaname = current_schema() AND tablename <> '_sqlx_migrations' ORDER BY 1"
            }
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await.map_err(map_err)?;
        Ok(rows.iter().map(|r| r.try_get::<String, _>(0).unwrap_or_default()).collect::<Vec<_>>().join("\n"))
    }

    /// Run raw SQL (tests and benchmarks that need to reach behind the store's back).
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        let r = sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&self.pool).await.map_err(map_err)?;
        Ok(r.rows_affected())
    }

    /// Count rows of a query returning one integer (tests).
    #[doc(hidden)]
    pub async fn count(&self, sql: &str) -> Result<i64> {
        sqlx::query_scalar(AssertSqlSafe(sql.to_owned())).fetch_one(&self.pool).await.map_err(map_err)
    }

    /// The rows of a query returning one text column (tests that compare store contents).
    #[doc(hidden)]
    pub async fn strings(&self, sql: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(AssertSqlSafe(sql.to_owned())).fetch_all(&self.pool).await.map_err(map_err)
    }

    /// Batches applied in a shared transaction (a group of two or more) since the store
    /// opened (tests that check a group formed).
    #[doc(hidden)]
    pub fn batches_grouped(&self) -> u64 {
        self.group.grouped()
    }

    /// SQLite's query plan for `sql`, one line per step (tests that check index use).
    #[doc(hidden)]
    pub async fn explain(&self, sql: &str) -> Result<String> {
        let rows = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap_or_default()).collect::<Vec<_>>().join("\n"))
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        begin(&self.writer, self.url.backend()).await
    }
}

/// One batch inside an open transaction: guard, changes, audit. With `defer`, role, grant
/// and audit rows are collected for one multi-row INSERT per chunk instead.
pub(super) async fn apply_in<'a>(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    batch: &'a Batch,
    mut defer: Option<&mut Deferred<'a>>,
) -> Result<ApplyOutcome> {
    // A new object's first write creates its row: that insert doubles as the guard.
    let creates = batch
        .guard
        .as_ref()
        .filter(|g| g.expected.is_none())
        .and_then(|g| batch.steps.iter().position(|s| put_id(&s.change) == Some(g.id.as_str())));
    let guard_rows = if creates.is_some() { 0 } else { check_guard(tx, batch).await? };
    let mut out = ApplyOutcome { rows: guard_rows, invitations: 0 };
    let mut i = 0;
    while i < batch.steps.len() {
        let step = &batch.steps[i];
        if let Some(d) = defer.as_deref_mut() {
            let deferred = match &step.change {
                Change::AddRole { membership_id, role } => {
                    d.roles.push((membership_id, *role));
                    true
                }
                Change::AddGrant { membership_id, grant } => {
                    d.grants.push((membership_id, grant));
                    true
                }
                Change::PutUser(u) => {
                    d.users.push(u);
                    true
                }
                Change::PutMembership(m) => {
                    d.memberships.push((m, creates == Some(i)));
                    true
                }
                Change::IssueInvitation { invitation, payload } => {
                    d.invitations.push((invitation, payload, batch.at));
                    out.invitations += 1;
                    true
                }
                _ => false,
            };
            if deferred {
                i += 1;
                continue;
            }
        }
        // Runs of grant additions become multi-row INSERTs: a reconcile adds many at once.
        let run: Vec<(&str, &Grant)> = batch.steps[i..]
            .iter()
            .map_while(|s| match &s.change {
                Change::AddGrant { membership_id, grant } => Some((membership_id.as_str(), grant)),
                _ => None,
            })
            .collect();
        if run.len() > 1 {
            for chunk in run.chunks(ROWS_PER_INSERT) {
                out.rows += insert_grants(tx, backend, chunk).await?;
            }
            i += run.len();
            continue;
        }
        let create_only = creates == Some(i);
        let n = execute(tx, backend, &step.change, batch.at, create_only).await?;
        if create_only && n == 0 {
            let what = batch.guard.as_ref().map(|g| format!("{} {}", g.table.kind(), g.id)).unwrap_or_default();
            return Err(StoreError::Conflict(format!("{what} was created concurrently")));
        }
        out.rows += n;
        if matches!(step.change, Change::IssueInvitation { .. }) {
            out.invitations += 1;
        }
        i += 1;
    }
    match defer {
        Some(d) => d.audit.extend(batch.steps.iter().map(|s| (batch, s))),
        None => {
            let entries: Vec<(&Batch, &Step)> = batch.steps.iter().map(|s| (batch, s)).collect();
            for chunk in entries.chunks(ROWS_PER_INSERT) {
                out.rows += insert_audit(tx, backend, chunk).await?;
            }
        }
    }
    Ok(out)
}

async fn check_guard(tx: &mut Transaction<'static, Any>, batch: &Batch) -> Result<u64> {
    let Some(g) = &batch.guard else { return Ok(0) };
    let (table, key) = g.table.table();
    match g.expected {
        Some(v) => {
            let sql = format!(
                "UPDATE {table} SET row_version = row_version + 1 WHERE {key} = $1 AND row_version = $2 AND managed"
            );
            let n = sqlx::query(AssertSqlSafe(sql)).bind(&g.id).bind(v).execute(&mut **tx).await.map_err(map_err)?;
            if n.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "{} {} changed since it was read (expected version {v})",
                    g.table.kind(),
                    g.id
                )));
            }
            Ok(n.rows_affected())
        }
        None => {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE {key} = $1");
            let n: i64 =
                sqlx::query_scalar(AssertSqlSafe(sql)).bind(&g.id).fetch_one(&mut **tx).await.map_err(map_err)?;
            if n > 0 {
                return Err(StoreError::Conflict(format!("{} {} was created concurrently", g.table.kind(), g.id)));
            }
            Ok(0)
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.url.backend()
    }

    fn url(&self) -> &StoreUrl {
        &self.url
    }

    async fn migrate(&self) -> Result<MigrationReport> {
        let from = self.schema_version().await?;
        let supported = self.supported_version();
        if from > supported {
            return Err(StoreError::SchemaTooNew { found: from, supported });
        }
        self.migrator().run(&self.pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(MigrationReport { from, to: self.schema_version().await? })
    }

    async fn schema_version(&self) -> Result<i64> {
        let exists_sql = match self.url.backend() {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let exists: i64 = sqlx::query_scalar(exists_sql).fetch_one(&self.pool).await.map_err(map_err)?;
        if exists == 0 {
            return Ok(0);
        }
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err).map(|_| ())
    }

    async fn lockbox_policy(
        &self,
        namespace: &str,
        customer: &str,
    ) -> Result<Option<(String, Option<crate::domain::lockbox::Policy>)>> {
        super::sql_lockbox::policy(&self.pool, namespace, customer).await
    }

    async fn lockbox_insert(&self, request: &crate::domain::lockbox::Request, actor: &Actor) -> Result<i64> {
        let id = super::sql_lockbox::insert(&self.writer, self.url.backend(), request, actor).await?;
        self.rows_written.fetch_add(2, Ordering::Relaxed);
        Ok(id)
    }

    async fn lockbox_transition(
        &self,
        before: &crate::domain::lockbox::Request,
        after: &crate::domain::lockbox::Request,
        actor: &Actor,
        at: i64,
    ) -> Result<()> {
        super::sql_lockbox::transition(&self.writer, self.url.backend(), before, after, actor, at).await?;
        self.rows_written.fetch_add(2, Ordering::Relaxed);
        Ok(())
    }

    async fn lockbox_get(&self, id: i64) -> Result<Option<crate::domain::lockbox::Request>> {
        super::sql_lockbox::get_one(&self.pool, id).await
    }

    async fn lockbox_due(
        &self,
        at: i64,
        customer_uid: Option<&str>,
        limit: i64,
    ) -> Result<Vec<crate::domain::lockbox::Request>> {
        super::sql_lockbox::due(&self.pool, at, customer_uid, limit).await
    }

    async fn lockbox_list(&self, filter: &super::LockboxFilter) -> Result<Vec<crate::domain::lockbox::Request>> {
        super::sql_lockbox::list(&self.pool, filter).await
    }

    async fn lockbox_next_due(&self) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(due_at) FROM lockbox_requests WHERE due_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn lockbox_summary(&self, customer_uid: &str) -> Result<super::LockboxSummary> {
        super::sql_lockbox::summary(&self.pool, customer_uid).await
    }

    async fn invitations_of(&self, customer_uid: &str, subject_key: &str) -> Result<Vec<InvitationRow>> {
        super::sql_read::invitations(&self.pool, super::sql_read::Invitations::Subject { customer_uid, subject_key })
            .await
    }

    async fn holders(&self, customer_uid: &str, workspace_id: &str, permission: &str) -> Result<Vec<GrantRow>> {
        let rows = super::sql_read::Grants::Holders { customer_uid, workspace_id, permission };
        super::sql_read::grants(&self.pool, rows).await
    }

    async fn roles_of(&self, customer_uid: &str, subject_keys: &[String]) -> Result<Vec<crate::api::Role>> {
        super::sql_read::roles_of(&self.pool, customer_uid, subject_keys).await
    }

    async fn outbox_due(&self, at: i64, limit: i64) -> Result<Vec<OutboxEntry>> {
        super::sql_outbox::due(&self.pool, at, limit).await
    }

    async fn outbox_claim_all(
        &self,
        requests: &[super::ClaimRequest<'_>],
        at: i64,
        validity: i64,
    ) -> Result<Vec<Claim>> {
        let claims = super::sql_outbox::claim_all(&self.writer, self.backend(), requests, at, validity).await?;
        self.rows_written.fetch_add(claims.len() as u64, Ordering::Relaxed);
        Ok(claims)
    }

    async fn outbox_sent_all(
        &self,
        entries: &[&OutboxEntry],
        at: i64,
        by: &Actor,
    ) -> Result<Vec<Option<MembershipRef>>> {
        self.rows_written.fetch_add(entries.len() as u64, Ordering::Relaxed);
        super::sql_outbox::sent_all(&self.writer, self.backend(), entries, at, by).await
    }

    async fn outbox_failed(
        &self,
        entry: &OutboxEntry,
        at: i64,
        error: &str,
        retry_at: Option<i64>,
        by: &Actor,
    ) -> Result<Option<MembershipRef>> {
        self.rows_written.fetch_add(1, Ordering::Relaxed);
        super::sql_outbox::failed(&self.writer, self.backend(), entry, at, error, retry_at, by).await
    }

    async fn invitations_expire(
        &self,
        at: i64,
        max_reissues: i64,
        limit: i64,
        by: &Actor,
    ) -> Result<Vec<ExpiredInvitation>> {
        let out = super::sql_outbox::expire(&self.writer, self.backend(), at, max_reissues, limit, by).await?;
        self.rows_written.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    async fn invitations_resend(
        &self,
        of: &super::ResendOf<'_>,
        max_reissues: i64,
        at: i64,
        by: &Actor,
    ) -> Result<Vec<super::Resend>> {
        let out = super::sql_outbox::resend(&self.writer, self.backend(), of, max_reissues, at, by).await?;
        self.rows_written.fetch_add(out.iter().filter(|r| r.refused.is_none()).count() as u64 * 3, Ordering::Relaxed);
        Ok(out)
    }

    async fn outbox_next_due(&self) -> Result<Option<i64>> {
        earliest(&self.pool, &DEADLINE_QUERIES[..DELIVERY_DEADLINES]).await
    }

    async fn invitations_accepted_since(&self, since: i64, limit: i64) -> Result<Vec<MembershipRef>> {
        super::sql_outbox::accepted_since(&self.pool, since, limit).await
    }

    async fn invitation_accept(
        &self,
        acceptance: &Acceptance,
        at: i64,
    ) -> Result<std::result::Result<Accepted, AcceptRefusal>> {
        self.rows_written.fetch_add(1, Ordering::Relaxed);
        super::sql_outbox::accept(&self.writer, self.backend(), acceptance, at).await
    }

    async fn invitation_view(&self, token_hash: &str) -> Result<Option<super::InvitationView>> {
        super::sql_console::invitation_view(&self.pool, token_hash).await
    }

    async fn session_insert(&self, session: &super::Session, by: &Actor) -> Result<()> {
        super::sql_console::session_insert(&self.writer, self.backend(), session, by).await?;
        self.rows_written.fetch_add(2, Ordering::Relaxed);
        Ok(())
    }

    async fn session_find(&self, id_hash: &str, now: i64, idle: i64) -> Result<Option<super::Session>> {
        // On the read pool: most lookups only read, and the occasional touch (one UPDATE a
        // minute per session) may wait in SQLite's busy handler rather than queue every
        // page view behind the writers.
        let found = super::sql_console::session_find(&self.pool, id_hash, now, idle).await?;
        self.rows_written.fetch_add(u64::from(found.as_ref().is_some_and(|(_, touched)| *touched)), Ordering::Relaxed);
        Ok(found.map(|(s, _)| s))
    }

    async fn sessions_end(
        &self,
        id_hash: Option<&str>,
        email: Option<&str>,
        at: i64,
        by: &Actor,
        action: &str,
    ) -> Result<u64> {
        let n = super::sql_console::sessions_end(&self.writer, self.backend(), id_hash, email, at, by, action).await?;
        self.rows_written.fetch_add(2 * n, Ordering::Relaxed);
        Ok(n)
    }

    async fn sessions(&self, email: Option<&str>, now: i64) -> Result<Vec<super::Session>> {
        super::sql_console::sessions(&self.pool, email, now).await
    }

    async fn signin_request(&self, email: &str, return_to: &str, at: i64) -> Result<()> {
        super::sql_console::signin_request(&self.writer, self.backend(), email, return_to, at).await?;
        self.rows_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn signin_consume(&self, token_hash: &str, at: i64) -> Result<Option<(String, String)>> {
        let email = super::sql_console::signin_consume(&self.writer, token_hash, at).await?;
        self.rows_written.fetch_add(u64::from(email.is_some()), Ordering::Relaxed);
        Ok(email)
    }

    async fn oidc_begin(&self, login: &super::PendingLogin) -> Result<()> {
        self.rows_written.fetch_add(1, Ordering::Relaxed);
        super::sql_console::oidc_begin(&self.writer, login).await
    }

    async fn oidc_take(&self, state_hash: &str, at: i64) -> Result<Option<super::PendingLogin>> {
        super::sql_console::oidc_take(&self.writer, state_hash, at).await
    }

    async fn load(&self, namespace: &str, name: &str, focus: &Focus) -> Result<Snapshot> {
        super::sql_read::load(&self.pool, namespace, name, focus).await
    }

    async fn uids(&self, kind: GuardTable, namespace: &str) -> Result<std::collections::HashMap<String, String>> {
        let (table, key) = kind.table();
        // Memberships implied by a Customer or Workspace carry their owner's name: only rows
        // of Membership objects answer for a Membership name.
        let only = if kind == GuardTable::Membership { " AND origin = 'Membership'" } else { "" };
        let sql = format!("SELECT name, {key} FROM {table} WHERE namespace = $1 AND managed{only}");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(namespace).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(|r| Ok((get(r, "name")?, get(r, key)?))).collect()
    }

    async fn apply(&self, batch: &Batch) -> Result<ApplyOutcome> {
        if batch.is_empty() {
            return Ok(ApplyOutcome::default());
        }
        let out = self.group.apply(batch).await?;
        self.rows_written.fetch_add(out.rows, Ordering::Relaxed);
        Ok(out)
    }

    async fn apply_all(&self, batches: &[Batch]) -> Result<Vec<Result<ApplyOutcome>>> {
        if batches.iter().all(Batch::is_empty) {
            return Ok(batches.iter().map(|_| Ok(ApplyOutcome::default())).collect());
        }
        // Optimistically all in one transaction; if any batch fails, roll everything back and
        // apply each batch on its own, so a bad one cannot take the others down with it.
        let mut tx = self.begin().await?;
        let mut outs = Vec::with_capacity(batches.len());
        let mut failed = false;
        let merge = batches.iter().all(|b| b.steps.iter().all(|s| additive(&s.change)));
        let mut deferred = Deferred::default();
        for batch in batches {
            let defer = if merge { Some(&mut deferred) } else { None };
            match apply_in(&mut tx, self.backend(), batch, defer).await {
                Ok(out) => outs.push(out),
                Err(e) if e.is_retryable() && !matches!(e, StoreError::Conflict(_)) => return Err(e),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let flushed = if failed {
            0
        } else {
            match deferred.flush(&mut tx, self.backend()).await {
                Ok(n) => n,
                Err(e) if e.is_retryable() && !matches!(e, StoreError::Conflict(_)) => return Err(e),
                Err(_) => {
                    failed = true;
                    0
                }
            }
        };
        if failed {
            tx.rollback().await.map_err(map_err)?;
            let mut results = Vec::with_capacity(batches.len());
            for batch in batches {
                results.push(self.apply(batch).await);
            }
            return Ok(results);
        }
        tx.commit().await.map_err(map_err)?;
        self.rows_written.fetch_add(outs.iter().map(|o| o.rows).sum::<u64>() + flushed, Ordering::Relaxed);
        Ok(outs.into_iter().map(Ok).collect())
    }

    async fn customers(&self, namespace: Option<&str>) -> Result<Vec<CustomerRow>> {
        super::sql_read::customers(&self.pool, namespace).await
    }

    async fn workspaces(&self, namespace: Option<&str>) -> Result<Vec<WorkspaceRow>> {
        super::sql_read::workspaces(&self.pool, namespace).await
    }

    async fn memberships(&self, namespace: Option<&str>) -> Result<Vec<MembershipRow>> {
        super::sql_read::memberships(&self.pool, namespace).await
    }

    async fn invitations(&self, namespace: Option<&str>) -> Result<Vec<InvitationRow>> {
        super::sql_read::invitations(&self.pool, super::sql_read::Invitations::Namespace(namespace)).await
    }

    async fn grants(&self, namespace: Option<&str>) -> Result<Vec<GrantRow>> {
        super::sql_read::grants(&self.pool, super::sql_read::Grants::Namespace(namespace)).await
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut conn = self.writer.acquire().await.map_err(map_err)?;
        audit_entry(&mut conn, entry).await?;
        self.rows_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn users(&self, namespace: Option<&str>) -> Result<Vec<UserRow>> {
        super::sql_read::users(&self.pool, namespace).await
    }

    async fn policies(&self, namespace: Option<&str>) -> Result<Vec<PolicyRow>> {
        super::sql_read::policies(&self.pool, namespace).await
    }

    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        super::sql_read::audit(&self.pool, filter).await
    }

    async fn workspace_members(&self, workspace_id: &str) -> Result<Vec<MemberView>> {
        super::sql_read::workspace_members(&self.pool, workspace_id).await
    }

    async fn visible_to(&self, customer_uid: &str, subject_key: &str) -> Result<Vec<ScopeView>> {
        super::sql_read::visible_to(&self.pool, customer_uid, subject_key).await
    }

    async fn next_deadline(&self) -> Result<Option<i64>> {
        earliest(&self.pool, DEADLINE_QUERIES).await
    }

    fn rows_written(&self) -> u64 {
        self.rows_written.load(Ordering::Relaxed)
    }
}

async fn insert_grants(tx: &mut Transaction<'static, Any>, backend: Backend, grants: &[(&str, &Grant)]) -> Result<u64> {
    let mut qb = Sql::for_backend(backend, "INSERT INTO grants (membership_id, permission, source, scope) ");
    qb.values(grants, |(m, g)| {
        vec![
            (*m).into(),
            g.permission.as_str().into(),
            g.source.label().into(),
            matrix::row_of(g.permission).scope.as_str().into(),
        ]
    });
    qb.push(" ON CONFLICT DO NOTHING");
    let r = qb.build().execute(&mut **tx).await.map_err(map_err)?;
    Ok(r.rows_affected())
}

async fn insert_roles(tx: &mut Transaction<'static, Any>, backend: Backend, roles: &[(&str, Role)]) -> Result<u64> {
    let mut qb = Sql::for_backend(backend, "INSERT INTO role_assignments (membership_id, role) ");
    qb.values(roles, |(m, r)| vec![(*m).into(), r.as_str().into()]);
    qb.push(" ON CONFLICT DO NOTHING");
    let r = qb.build().execute(&mut **tx).await.map_err(map_err)?;
    Ok(r.rows_affected())
}

async fn insert_audit(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    entries: &[(&Batch, &Step)],
) -> Result<u64> {
    let mut qb = Sql::for_backend(backend, AUDIT_INSERT);
    qb.values(entries, |(batch, step)| {
        let (kind, action) = step.change.audit_action();
        vec![
            batch.at.into(),
            batch.actor.name.as_str().into(),
            batch.actor.channel.as_str().into(),
            batch.actor.subject.as_str().into(),
            action.into(),
            kind.into(),
            step.change.object_key().into(),
            step.drift.into(),
            step.before.clone().into(),
            step.change.after_json().into(),
        ]
    });
    let r = qb.build().execute(&mut **tx).await.map_err(map_err)?;
    Ok(r.rows_affected())
}

const LIVE_INVITATION: &str = "('Pending', 'Sent')";

/// Rows whose INSERTs are collected across the batches of one `apply_all` transaction and
/// written as multi-row statements at the end (only for purely additive chunks, where
/// nothing in the chunk could remove or depend on them before then). One statement per
/// thousand rows instead of one per row: on SQLite each statement is a round trip to the
/// driver's worker thread, on PostgreSQL to the server (issue 18).
///
/// They are written parents first (users, memberships, then their invitations, roles and
/// grants, then the audit), by the same statements a single change uses ([`put_users`],
/// [`put_memberships`], [`issue_invitations`]). The guarantees stay those of one statement
/// per row:
/// - a new membership's row is inserted only if absent, and a chunk in which any was
///   already there fails as a whole, to be applied batch by batch (as when the statement
///   per row found it);
/// - where two changes of a chunk put the same row, that kind is written a row at a time
///   in the original order, so the last one wins as before (a multi-row upsert may not
///   touch one row twice on PostgreSQL);
/// - rows written are counted as the statements per row would count them.
#[derive(Default)]
pub(super) struct Deferred<'a> {
    users: Vec<&'a UserRecord>,
    /// Each with whether it creates its object's row (the guard).
    memberships: Vec<(&'a MembershipRecord, bool)>,
    /// Each with its message and the batch's time.
    invitations: Vec<(&'a InvitationRecord, &'a str, i64)>,
    roles: Vec<(&'a str, Role)>,
    grants: Vec<(&'a str, &'a Grant)>,
    audit: Vec<(&'a Batch, &'a Step)>,
}

/// Rows per statement for puts with these keys: all of them, unless two share a key (then
/// one at a time, in order).
fn rows_per_statement<K: Ord>(keys: impl Iterator<Item = K>) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let repeats = keys.into_iter().any(|k| !seen.insert(k));
    if repeats { 1 } else { DEFERRED_ROWS_PER_INSERT }
}

const USER_INSERT: &str = "INSERT INTO users (customer_uid, email, display_name, account_type) ";

/// Upsert `users` in one statement.
async fn put_users(tx: &mut Transaction<'static, Any>, backend: Backend, users: &[&UserRecord]) -> Result<u64> {
    let mut qb = Sql::for_backend(backend, USER_INSERT);
    qb.values(users, |u| {
        vec![
            u.customer_uid.as_str().into(),
            u.email.as_str().into(),
            u.display_name.as_str().into(),
            u.account_type.as_str().into(),
        ]
    });
    qb.push(
        " ON CONFLICT (customer_uid, email) DO UPDATE SET display_name = excluded.display_name, \
         account_type = excluded.account_type",
    );
    Ok(qb.build().execute(&mut **tx).await.map_err(map_err)?.rows_affected())
}

const MEMBERSHIP_INSERT: &str = "INSERT INTO memberships (id, customer_uid, workspace_id, origin, namespace, name, \
     managed, subject_kind, subject_key, user_id, deletion_policy, spec_hash, applied_spec) ";

/// Write `memberships` in one statement: with `create_only` each only if absent (the rows
/// affected then say how many were), else as upserts.
async fn put_memberships(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    memberships: &[&MembershipRecord],
    create_only: bool,
) -> Result<u64> {
    let mut qb = Sql::for_backend(backend, MEMBERSHIP_INSERT);
    for (i, m) in memberships.iter().enumerate() {
        qb.push(if i == 0 { "VALUES (" } else { ", (" });
        qb.bind(m.id.as_str()).push(", ").bind(m.customer_uid.as_str()).push(", ");
        qb.bind(m.workspace_id.clone()).push(", ").bind(m.origin.as_str()).push(", ");
        qb.bind(m.namespace.as_str()).push(", ").bind(m.name.as_str()).push(", TRUE, ");
        qb.bind(m.subject_kind.as_str()).push(", ").bind(m.subject_key.as_str());
        qb.push(", (SELECT id FROM users WHERE customer_uid = ").bind(m.customer_uid.as_str());
        qb.push(" AND email = ").bind(m.subject_key.as_str()).push("), ");
        qb.bind(m.deletion_policy.as_str()).push(", ").bind(m.spec_hash.as_str()).push(", ");
        qb.bind(m.applied_spec.as_str()).push(")");
    }
    qb.push(&on_conflict(MEMBERSHIP_INSERT, "id", create_only));
    Ok(qb.build().execute(&mut **tx).await.map_err(map_err)?.rows_affected())
}

/// Issue `invitations` (each with its message and the time it is queued at) in one
/// statement, and queue a message for each one issued. A re-issue (after revocation, expiry
/// or failure) starts over: new issue number, no times; the old issue's tokens stay, so they
/// are refused as replaced, not unknown. A live invitation is left as it is: one per
/// subject per scope. Rows written: one per invitation issued and per message queued.
async fn issue_invitations(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    invitations: &[(&InvitationRecord, &str, i64)],
) -> Result<u64> {
    let mut qb = Sql::for_backend(
        backend,
        "INSERT INTO invitations (customer_uid, membership_id, scope_key, subject_key, email, issue, state, \
         attempts, created_at) ",
    );
    for (n, (i, _, _)) in invitations.iter().enumerate() {
        qb.push(if n == 0 { "VALUES (" } else { ", (" });
        qb.bind(i.customer_uid.as_str()).push(", ").bind(i.membership_id.as_str()).push(", ");
        qb.bind(i.scope_key.as_str()).push(", ").bind(i.subject_key.as_str()).push(", ");
        qb.bind(i.email.as_str()).push(", ").bind(i.issue).push(", 'Pending', 0, ").bind(i.created_at).push(")");
    }
    qb.push(
        " ON CONFLICT (scope_key, subject_key) DO UPDATE SET membership_id = excluded.membership_id, \
         email = excluded.email, issue = excluded.issue, state = 'Pending', attempts = 0, reissues = 0, \
         created_at = excluded.created_at, sent_at = NULL, expires_at = NULL, accepted_at = NULL, \
         accepted_by = NULL, accepted_account_type = NULL, last_error = NULL \
         WHERE invitations.state IN ('Revoked', 'Expired', 'Failed') RETURNING id, scope_key, subject_key",
    );
    let issued = qb.build().fetch_all(&mut **tx).await.map_err(map_err)?;
    if issued.is_empty() {
        return Ok(0);
    }
    // The rows come back in no promised order: matched to their invitations by key.
    let mut by_key: std::collections::HashMap<(String, String), &(&InvitationRecord, &str, i64)> =
        invitations.iter().map(|inv| ((inv.0.scope_key.clone(), inv.0.subject_key.clone()), inv)).collect();
    let mut queued = Vec::with_capacity(issued.len());
    for row in &issued {
        let key: (String, String) = (get(row, "scope_key")?, get(row, "subject_key")?);
        let Some((i, payload, at)) = by_key.remove(&key) else {
            return Err(StoreError::Database(format!("the store returned an invitation it was not given: {key:?}")));
        };
        let key = invitation_key(&i.membership_id, &i.scope_key, i.issue);
        queued.push((key, *payload, *at, get::<i64>(row, "id")?));
    }
    let mut qb = Sql::for_backend(backend, OUTBOX_INSERT);
    qb.values(&queued, |(key, payload, at, id)| {
        vec![
            "invitation".into(),
            key.as_str().into(),
            (*payload).into(),
            "Pending".into(),
            0.into(),
            (*at).into(),
            (*at).into(),
            (*id).into(),
        ]
    });
    qb.push(OUTBOX_CONFLICT);
    let queued_rows = qb.build().execute(&mut **tx).await.map_err(map_err)?.rows_affected();
    Ok(issued.len() as u64 + queued_rows)
}

/// Rows per multi-row INSERT of deferred rows (well under both backends' parameter limits).
const DEFERRED_ROWS_PER_INSERT: usize = 1000;

impl Deferred<'_> {
    async fn flush(&self, tx: &mut Transaction<'static, Any>, backend: Backend) -> Result<u64> {
        let mut rows = 0;
        let per = rows_per_statement(self.users.iter().map(|u| (&u.customer_uid, &u.email)));
        for chunk in self.users.chunks(per) {
            rows += put_users(tx, backend, chunk).await?;
        }
        // In order, a run of new rows or of updates at a time (see `put_memberships`).
        let per = rows_per_statement(self.memberships.iter().map(|(m, _)| &m.id));
        for run in self.memberships.chunk_by(|a, b| a.1 == b.1) {
            let create_only = run[0].1;
            for chunk in run.chunks(per) {
                let records: Vec<&MembershipRecord> = chunk.iter().map(|(m, _)| *m).collect();
                let n = put_memberships(tx, backend, &records, create_only).await?;
                if create_only && n < records.len() as u64 {
                    let found = records.len() as u64 - n;
                    let msg = format!("{found} of {} new memberships were created concurrently", records.len());
                    return Err(StoreError::Conflict(msg));
                }
                rows += n;
            }
        }
        let per = rows_per_statement(self.invitations.iter().map(|(i, _, _)| (&i.scope_key, &i.subject_key)));
        for chunk in self.invitations.chunks(per) {
            rows += issue_invitations(tx, backend, chunk).await?;
        }
        for chunk in self.roles.chunks(DEFERRED_ROWS_PER_INSERT) {
            rows += insert_roles(tx, backend, chunk).await?;
        }
        for chunk in self.grants.chunks(DEFERRED_ROWS_PER_INSERT) {
            rows += insert_grants(tx, backend, chunk).await?;
        }
        for chunk in self.audit.chunks(DEFERRED_ROWS_PER_INSERT) {
            rows += insert_audit(tx, backend, chunk).await?;
        }
        Ok(rows)
    }
}

/// Whether a change only adds (so its batch may be merged with others in one transaction).
fn additive(change: &Change) -> bool {
    matches!(
        change,
        Change::PutCustomer(_)
            | Change::PutWorkspace(_)
            | Change::PutUser(_)
            | Change::PutMembership(_)
            | Change::AddRole { .. }
            | Change::AddGrant { .. }
            | Change::IssueInvitation { .. }
            | Change::PutPolicy(_)
    )
}

/// `INSERT ... ON CONFLICT`: an upsert that updates every inserted column, or, for the row a
/// new object creates (`create_only`), an insert that affects nothing if the row exists, which
/// the caller reports as a conflict (someone created it concurrently).
fn upsert(insert: &str, key: &str, create_only: bool) -> String {
    format!("{insert}{}", on_conflict(insert, key, create_only))
}

/// The `ON CONFLICT` clause of [`upsert`], for the columns `insert` names.
fn on_conflict(insert: &str, key: &str, create_only: bool) -> String {
    if create_only {
        return format!(" ON CONFLICT ({key}) DO NOTHING");
    }
    let open = insert.find('(').unwrap_or(0);
    let close = insert.find(')').unwrap_or(insert.len());
    let set: Vec<String> = insert[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|c| *c != key && *c != "managed")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(" ON CONFLICT ({key}) DO UPDATE SET managed = TRUE, {}", set.join(", "))
}

/// The id of the row a change puts, if it is a guarded table's row.
fn put_id(change: &Change) -> Option<&str> {
    match change {
        Change::PutCustomer(c) => Some(&c.uid),
        Change::PutWorkspace(w) => Some(&w.id),
        Change::PutMembership(m) => Some(&m.id),
        Change::PutPolicy(p) => Some(&p.uid),
        _ => None,
    }
}

async fn execute(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    change: &Change,
    now: i64,
    create_only: bool,
) -> Result<u64> {
    let conn = &mut **tx;
    let r = match change {
        Change::PutCustomer(c) => {
            sqlx::query(AssertSqlSafe(upsert(
                "INSERT INTO customers (uid, namespace, name, managed, display_name, agreement_kind, agreement_id, \
                 start_date, end_date, administration_model, admin_group_id, settings, newsletters, phase, \
                 deletion_policy, spec_hash, applied_spec) \
                 VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                "uid",
                create_only,
            )))
            .bind(&c.uid)
            .bind(&c.namespace)
            .bind(&c.name)
            .bind(&c.display_name)
            .bind(&c.agreement_kind)
            .bind(&c.agreement_id)
            .bind(&c.start_date)
            .bind(&c.end_date)
            .bind(&c.administration_model)
            .bind(&c.admin_group_id)
            .bind(&c.settings)
            .bind(&c.newsletters)
            .bind(&c.phase)
            .bind(&c.deletion_policy)
            .bind(&c.spec_hash)
            .bind(&c.applied_spec)
            .execute(conn)
            .await
        }
        Change::DeleteCustomer { uid } => {
            sqlx::query("DELETE FROM customers WHERE uid = $1").bind(uid).execute(conn).await
        }
        Change::PutWorkspace(w) => sqlx::query(AssertSqlSafe(upsert(
            "INSERT INTO workspaces (id, customer_uid, namespace, name, managed, origin, display_name, description, \
                 is_default, allow_personal, personal_allowed, support_benefits, deletion_policy, spec_hash, \
                 applied_spec) VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            "id",
            create_only,
        )))
        .bind(&w.id)
        .bind(&w.customer_uid)
        .bind(&w.namespace)
        .bind(&w.name)
        .bind(&w.origin)
        .bind(&w.display_name)
        .bind(&w.description)
        .bind(w.is_default)
        .bind(w.allow_personal)
        .bind(w.personal_allowed)
        .bind(&w.support_benefits)
        .bind(&w.deletion_policy)
        .bind(&w.spec_hash)
        .bind(&w.applied_spec)
        .execute(conn)
        .await,
        Change::DeleteWorkspace { id } => {
            let revoked = sqlx::query(AssertSqlSafe(format!(
                "UPDATE invitations SET state = 'Revoked' WHERE scope_key = $1 AND state IN {LIVE_INVITATION}"
            )))
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
            let deleted =
                sqlx::query("DELETE FROM workspaces WHERE id = $1").bind(id).execute(conn).await.map_err(map_err)?;
            return Ok(revoked.rows_affected() + deleted.rows_affected());
        }
        Change::PutUser(u) => return put_users(tx, backend, &[u]).await,
        Change::PutMembership(m) => return put_memberships(tx, backend, &[m], create_only).await,
        Change::DeleteMembership { id } => {
            let revoked = sqlx::query(AssertSqlSafe(format!(
                "UPDATE invitations SET state = 'Revoked' WHERE membership_id = $1 AND state IN {LIVE_INVITATION}"
            )))
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
            let deleted =
                sqlx::query("DELETE FROM memberships WHERE id = $1").bind(id).execute(conn).await.map_err(map_err)?;
            return Ok(revoked.rows_affected() + deleted.rows_affected());
        }
        Change::AddRole { membership_id, role } => {
            sqlx::query("INSERT INTO role_assignments (membership_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(membership_id)
                .bind(role.as_str())
                .execute(conn)
                .await
        }
        Change::RemoveRole { membership_id, role } => {
            sqlx::query("DELETE FROM role_assignments WHERE membership_id = $1 AND role = $2")
                .bind(membership_id)
                .bind(role.as_str())
                .execute(conn)
                .await
        }
        Change::AddGrant { membership_id, grant } => {
            sqlx::query(
                "INSERT INTO grants (membership_id, permission, source, scope) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(membership_id)
            .bind(grant.permission.as_str())
            .bind(grant.source.label())
            .bind(matrix::row_of(grant.permission).scope.as_str())
            .execute(conn)
            .await
        }
        Change::RemoveGrant { membership_id, grant } => {
            sqlx::query("DELETE FROM grants WHERE membership_id = $1 AND permission = $2 AND source = $3")
                .bind(membership_id)
                .bind(grant.permission.as_str())
                .bind(grant.source.label())
                .execute(conn)
                .await
        }
        Change::IssueInvitation { invitation, payload } => {
            return issue_invitations(tx, backend, &[(invitation, payload, now)]).await;
        }
        Change::RevokeInvitation { scope_key, subject_key } => {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE invitations SET state = 'Revoked' WHERE scope_key = $1 AND subject_key = $2 \
                 AND state IN {LIVE_INVITATION}"
            )))
            .bind(scope_key)
            .bind(subject_key)
            .execute(conn)
            .await
        }
        Change::PutPolicy(p) => {
            sqlx::query(AssertSqlSafe(upsert(
                "INSERT INTO lockbox_policies (uid, customer_uid, namespace, name, managed, enabled, approvers, \
                 pending_ttl_seconds, max_access_seconds, workloads, recipients, spec_hash, applied_spec) \
                 VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7, $8, $9, $10, $11, $12)",
                "uid",
                create_only,
            )))
            .bind(&p.uid)
            .bind(&p.customer_uid)
            .bind(&p.namespace)
            .bind(&p.name)
            .bind(p.enabled)
            .bind(&p.approvers)
            .bind(p.pending_ttl_seconds)
            .bind(p.max_access_seconds)
            .bind(&p.workloads)
            .bind(&p.recipients)
            .bind(&p.spec_hash)
            .bind(&p.applied_spec)
            .execute(conn)
            .await
        }
        Change::DeletePolicy { uid } => {
            sqlx::query("DELETE FROM lockbox_policies WHERE uid = $1").bind(uid).execute(conn).await
        }
        Change::Release { table, id } => {
            let (t, key) = table.table();
            sqlx::query(AssertSqlSafe(format!("UPDATE {t} SET managed = FALSE WHERE {key} = $1")))
                .bind(id)
                .execute(conn)
                .await
        }
    };
    r.map(|r| r.rows_affected()).map_err(map_err)
}

pub(super) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let msg = db.message().to_owned();
            match code.as_str() {
                // SQLite busy/locked, PostgreSQL serialization failure and deadlock: someone else won.
                "5" | "6" | "517" | "40001" | "40P01" => StoreError::Conflict(msg),
                // Unique violations.
                "2067" | "1555" | "23505" => unique_violation(&msg),
                "787" | "23503" => StoreError::Constraint(format!("a referenced row is missing: {msg}")),
                _ => StoreError::Database(msg),
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

fn unique_violation(msg: &str) -> StoreError {
    if msg.contains("workspaces_one_default") || msg.contains("workspaces.customer_uid") {
        StoreError::Constraint("the customer already has a default workspace".into())
    } else if msg.contains("lockbox_policies_one_per_customer") || msg.contains("lockbox_policies.customer_uid") {
        StoreError::Constraint("the customer already has a LockboxPolicy".into())
    } else if msg.contains("workspaces_managed_name") || msg.contains("workspaces.namespace") {
        StoreError::Constraint("a workspace with this name already exists in the namespace".into())
    } else if msg.contains("customers_managed_name") || msg.contains("customers.namespace") {
        StoreError::Constraint("a customer with this name already exists in the namespace".into())
    } else if msg.contains("memberships_managed_name") || msg.contains("memberships.namespace") {
        StoreError::Constraint("a membership with this name already exists in the namespace".into())
    } else {
        StoreError::Conflict(format!("created concurrently: {msg}"))
    }
}

/// Create a missing SQLite file empty (a valid empty database) and readable by its owner
/// only, before SQLite opens it: the store holds invitation token hashes and the audit log,
/// and SQLite gives its `-wal` and `-shm` files the database file's permissions.
fn create_private_file(file: &std::path::Path) -> std::io::Result<()> {
    match crate::files::create_private(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn map_connect_error(url: &StoreUrl, e: sqlx::Error) -> StoreError {
    // The driver's message may quote the URL or one of its parameters.
    match map_err(e) {
        StoreError::Unavailable(m) | StoreError::Database(m) => {
            StoreError::Unavailable(format!("{url}: {}", url.scrub(&m)))
        }
        StoreError::Conflict(m) => StoreError::Conflict(url.scrub(&m)),
        StoreError::Constraint(m) => StoreError::Constraint(url.scrub(&m)),
        StoreError::Corrupt(m) => StoreError::Corrupt(url.scrub(&m)),
        other => other,
    }
}

/// A statement built at run time with `$N` placeholders, which both backends accept.
/// (sqlx's `QueryBuilder<Any>` emits `?`, which PostgreSQL rejects.)
#[derive(Default)]
pub(super) struct Sql {
    text: String,
    args: Vec<Arg>,
    /// Plain `?` placeholders: sqlx's SQLite driver resolves `$N` by name for every
    /// parameter, which dominates the cost of a 400-parameter multi-row INSERT.
    positional: bool,
}

/// On SQLite, statements with more parameters than this are not kept prepared (see
/// [`Sql::build`]): a reconcile's hundred-row grant and audit inserts are, the thousand-row
/// statements of a bulk apply are not.
const SQLITE_KEPT_PREPARED_ARGS: usize = 1024;

/// A bound value.
pub(super) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(v)
    }
}

impl Sql {
    pub(super) fn new(text: impl Into<String>) -> Sql {
        Sql { text: text.into(), args: Vec::new(), positional: false }
    }

    /// A statement using the cheapest placeholder style of `backend`.
    pub(super) fn for_backend(backend: Backend, text: impl Into<String>) -> Sql {
        Sql { positional: backend == Backend::Sqlite, ..Sql::new(text) }
    }

    /// Append SQL text.
    pub(super) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Append a placeholder bound to `v`.
    pub(super) fn bind(&mut self, v: impl Into<Arg>) -> &mut Sql {
        self.args.push(v.into());
        if self.positional {
            self.text.push('?');
        } else {
            self.text.push('$');
            self.text.push_str(&self.args.len().to_string());
        }
        self
    }

    /// Append `(…), (…)` rows of placeholders, one tuple per item.
    pub(super) fn values<T>(&mut self, items: &[T], mut row: impl FnMut(&T) -> Vec<Arg>) -> &mut Sql {
        for (i, item) in items.iter().enumerate() {
            self.push(if i == 0 { "VALUES (" } else { ", (" });
            for (j, a) in row(item).into_iter().enumerate() {
                if j > 0 {
                    self.push(", ");
                }
                self.bind(a);
            }
            self.push(")");
        }
        self
    }

    pub(super) fn build(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments> {
        // On SQLite a prepared bulk statement (a thousand rows, thousands of parameters) kept
        // per connection costs megabytes and preparing it again costs little; a reconcile's
        // statements are small and run again and again, so they stay prepared. On PostgreSQL
        // everything stays prepared: parsing and planning the bulk statements again took a
        // first apply from 12.6 s to 21.1 s.
        let keep = !self.positional || self.args.len() <= SQLITE_KEPT_PREPARED_ARGS;
        let mut q = sqlx::query(AssertSqlSafe(self.text.clone())).persistent(keep);
        for a in &self.args {
            q = match a {
                Arg::Text(v) => q.bind(v.clone()),
                Arg::Int(v) => q.bind(*v),
                Arg::Bool(v) => q.bind(*v),
            };
        }
        q
    }
}

const OUTBOX_INSERT: &str = "INSERT INTO outbox (kind, idempotency_key, payload, state, attempts, next_attempt_at, \
     created_at, invitation_id) ";
/// A second enqueue of the same message (same idempotency key) is a no-op.
const OUTBOX_CONFLICT: &str = " ON CONFLICT (idempotency_key) DO NOTHING";

/// The idempotency key of an invitation's delivery: the membership uid, the scope (workspace
/// id or customer uid) and the issue number. It is the message's Message-ID and delivery id.
pub fn invitation_key(membership_id: &str, scope_key: &str, issue: i64) -> String {
    format!("invitation/{membership_id}/{scope_key}/{issue}")
}

/// Queue a message in the outbox, in the caller's transaction. The idempotency key makes a
/// second enqueue of the same message a no-op; rows written.
pub(super) async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    key: &str,
    payload: &str,
    at: i64,
    invitation_id: Option<i64>,
) -> Result<u64> {
    let sql = format!("{OUTBOX_INSERT}VALUES ($1, $2, $3, 'Pending', 0, $4, $4, $5){OUTBOX_CONFLICT}");
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(kind)
        .bind(key)
        .bind(payload)
        .bind(at)
        .bind(invitation_id)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}

const AUDIT_INSERT: &str =
    "INSERT INTO audit (at, actor, channel, subject, action, kind, object, drift, before, after) ";

/// The values of an audit entry, in [`AUDIT_INSERT`]'s column order.
fn audit_row(e: &AuditEntry) -> Vec<Arg> {
    vec![
        e.at.into(),
        e.actor.as_str().into(),
        e.channel.as_str().into(),
        e.subject.as_str().into(),
        e.action.as_str().into(),
        e.kind.as_str().into(),
        e.object.as_str().into(),
        e.drift.into(),
        e.before.clone().into(),
        e.after.clone().into(),
    ]
}

/// One audit entry, in the caller's transaction (the entries of a planned batch go through
/// the multi-row `insert_audit` instead).
pub(super) async fn audit_entry(conn: &mut sqlx::AnyConnection, e: &AuditEntry) -> Result<()> {
    let mut qb = Sql::new(AUDIT_INSERT);
    qb.values(std::slice::from_ref(e), audit_row);
    qb.build().execute(conn).await.map_err(map_err)?;
    Ok(())
}

/// Audit entries, in the caller's transaction, a multi-row INSERT per hundred.
pub(super) async fn audit_entries(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    entries: &[AuditEntry],
) -> Result<u64> {
    let mut rows = 0;
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let mut qb = Sql::for_backend(backend, AUDIT_INSERT);
        qb.values(chunk, audit_row);
        rows += qb.build().execute(&mut *conn).await.map_err(map_err)?.rows_affected();
    }
    Ok(rows)
}

/// Append ` IN (…)` binding `items`.
pub(super) fn in_list<T: Clone + Into<Arg>>(qb: &mut Sql, items: &[T]) {
    qb.push(" IN (");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.bind(item.clone());
    }
    qb.push(")");
}

/// Open a write transaction: on SQLite `BEGIN IMMEDIATE`, so the write lock is taken up
/// front and two writers queue instead of failing halfway with `SQLITE_BUSY`.
pub(super) async fn begin(pool: &AnyPool, backend: Backend) -> Result<Transaction<'static, Any>> {
    let tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    };
    tx.map_err(map_err)
}

/// Decode helpers shared with the read queries.
pub(super) fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(col).map_err(map_err)
}

pub(super) fn role(s: &str) -> Result<Role> {
    Role::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown role {s:?}")))
}

pub(super) fn grant(permission: &str, source: &str) -> Result<Grant> {
    let permission = Permission::parse(permission)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown permission {permission:?}")))?;
    let source =
        Source::parse(source).ok_or_else(|| StoreError::Corrupt(format!("unknown grant source {source:?}")))?;
    Ok(Grant { permission, source })
}

pub(super) type Map<T> = BTreeMap<String, T>;

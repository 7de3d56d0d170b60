//! The store: the system of record the operator reconciles against.
//!
//! One [`Store`] trait; one SQL implementation ([`sql::SqlStore`]) serving SQLite (the default,
//! a file in WAL mode) and PostgreSQL (production), each with its own embedded migrations.
//! Every change a reconcile makes is one [`Batch`] applied in ONE transaction, guarded by the
//! row version of the object that owns it, so two writers cannot interleave on one object;
//! a lost race surfaces as [`StoreError::Conflict`], which callers retry.

mod change;
mod records;
mod snapshot;
pub mod sql;
mod sql_console;
mod sql_group;
mod sql_lockbox;
mod sql_outbox;
mod sql_read;
mod url;

pub use change::{Batch, Change, Guard, GuardTable, Step};
pub use records::*;
pub use snapshot::{Snapshot, Versioned};
pub use sql::invitation_key;
pub use sql_console::{InvitationView, OIDC_LOGIN_VALIDITY, PendingLogin, SIGNIN_VALIDITY, Session};
pub use sql_outbox::ClaimRequest;
pub use url::StoreUrl;

use async_trait::async_trait;

/// The default store: a SQLite file in the working directory.
pub const DEFAULT_STORE_URL: &str = "sqlite://servicehub.db";

/// Errors from the store. Each has a [`category`](StoreError::category) used as metric label.
/// Cloned for each batch of a group commit that failed as a whole.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy. Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Another writer changed the same object first. Retryable: re-read and re-plan.
    #[error("conflict: {0}; re-read and retry")]
    Conflict(String),
    /// A domain rule enforced by the schema (e.g. one default workspace per customer).
    #[error("{0}")]
    Constraint(String),
    /// The store was migrated by a newer servicehub; this binary refuses to touch it.
    #[error(
        "store schema version {found} is newer than this binary supports (up to {supported}): \
         upgrade servicehub; the store was not modified"
    )]
    SchemaTooNew {
        /// The newest migration recorded in the store.
        found: i64,
        /// The newest migration this binary carries.
        supported: i64,
    },
    /// The store URL is not usable.
    #[error("invalid store URL: {0}")]
    InvalidUrl(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// Data in the store that this binary cannot read.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("store error: {0}")]
    Database(String),
}

impl StoreError {
    /// Short label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "store_unavailable",
            StoreError::Conflict(_) => "store_conflict",
            StoreError::Constraint(_) => "store_constraint",
            StoreError::SchemaTooNew { .. } => "store_schema_too_new",
            StoreError::InvalidUrl(_) => "store_url",
            StoreError::Migration(_) => "store_migration",
            StoreError::Corrupt(_) => "store_corrupt",
            StoreError::Database(_) => "store_error",
        }
    }

    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }
}

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// What a migration run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// Schema version before.
    pub from: i64,
    /// Schema version after.
    pub to: i64,
}

/// Filter for the audit log.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only entries of this kind (`Customer`, `Membership`, `lockbox`, ...).
    pub kind: Option<String>,
    /// Only entries of this namespace's customers.
    pub namespace: Option<String>,
    /// Only entries at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// At most this many, newest last.
    pub limit: Option<i64>,
    /// Only entries about this object (a uid, or a Lockbox request id).
    pub object: Option<String>,
    /// Only entries of this customer (its uid): its objects, users, invitations, grants,
    /// Lockbox requests, and the console sign-ins of its people.
    pub customer_uid: Option<String>,
}

/// Filter for the Lockbox history.
#[derive(Clone, Debug, Default)]
pub struct LockboxFilter {
    /// Only requests of customers in this namespace.
    pub namespace: Option<String>,
    /// Only requests of the customer with this name.
    pub customer: Option<String>,
    /// Only requests in this state.
    pub state: Option<crate::domain::lockbox::State>,
    /// Only requests opened at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only requests opened by this person (a normalized email).
    pub requester: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<i64>,
}

/// A customer's Lockbox requests at a glance, for the LockboxPolicy status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockboxSummary {
    /// Requests waiting for a decision.
    pub pending: i64,
    /// Requests giving access now (approved or not requiring approval).
    pub active: i64,
    /// The earliest deadline of a live request (Unix seconds).
    pub next_deadline: Option<i64>,
}

/// Which part of a customer a plan reads. The controller plans one object per reconcile, and
/// loading all of a customer's memberships for each would make a rollout of N memberships
/// cost O(N²) reads; a focus loads only what that object's planner can look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Focus {
    /// Everything (bulk runs of `servicehub apply`, which plan every object).
    All,
    /// A Customer: the memberships it implies (origin `Customer`), and all users and
    /// invitations (its status counts them).
    Customer,
    /// A Workspace: the memberships in it and its named administrators.
    Workspace {
        /// The workspace's uid.
        id: String,
        /// Subject keys the spec names.
        subjects: Vec<String>,
    },
    /// A Membership: itself and the Workspace Administrators of its workspace.
    Membership {
        /// The membership's uid.
        id: String,
        /// The workspace it names, if any.
        workspace: Option<String>,
        /// Its subject key.
        subjects: Vec<String>,
    },
    /// The customer, its workspaces and policies, no memberships: what a LockboxPolicy's
    /// plan reads, and the deletion of a Customer or Workspace (whose rows go by cascade).
    NoMemberships,
}

impl Focus {
    /// Subject keys named by the focused object's spec.
    pub fn subjects(&self) -> &[String] {
        match self {
            Focus::Workspace { subjects, .. } | Focus::Membership { subjects, .. } => subjects,
            Focus::All | Focus::Customer | Focus::NoMemberships => &[],
        }
    }
}

/// The system of record.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// SQLite or PostgreSQL.
    fn backend(&self) -> Backend;

    /// The URL, password redacted.
    fn url(&self) -> &StoreUrl;

    /// Apply the embedded migrations. Refuses a store whose schema is newer than this binary.
    async fn migrate(&self) -> Result<MigrationReport>;

    /// The newest migration applied to the store (0 for an empty store).
    async fn schema_version(&self) -> Result<i64>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<()>;

    /// What the store holds for one customer (by namespace and name) that a plan with this
    /// focus reads: the customer, its workspaces and policies, and the memberships, users and
    /// invitations the focus selects (a superset of what the planner looks at).
    async fn load(&self, namespace: &str, name: &str, focus: &Focus) -> Result<Snapshot>;

    /// Everything the store holds for one customer (by namespace and name), for planning.
    async fn load_customer(&self, namespace: &str, name: &str) -> Result<Snapshot> {
        self.load(namespace, name, &Focus::All).await
    }

    /// Every managed object of a kind in a namespace: name -> uid, so objects applied without
    /// a cluster (which have no `metadata.uid`) keep their identity across runs.
    async fn uids(&self, kind: GuardTable, namespace: &str) -> Result<std::collections::HashMap<String, String>>;

    /// Apply one batch in one transaction: all or nothing. An empty batch writes nothing.
    async fn apply(&self, batch: &Batch) -> Result<ApplyOutcome>;

    /// Apply several batches in one transaction, paying the commit once (bulk runs of
    /// `servicehub apply`). Each batch stays all or nothing: if one fails, the transaction is
    /// rolled back and every batch is applied on its own, so one bad batch cannot take the
    /// others with it. Returns one result per batch.
    async fn apply_all(&self, batches: &[Batch]) -> Result<Vec<Result<ApplyOutcome>>>;

    /// Customers, optionally of one namespace.
    async fn customers(&self, namespace: Option<&str>) -> Result<Vec<CustomerRow>>;

    /// Workspaces, optionally of one namespace.
    async fn workspaces(&self, namespace: Option<&str>) -> Result<Vec<WorkspaceRow>>;

    /// Memberships with their roles, optionally of one namespace.
    async fn memberships(&self, namespace: Option<&str>) -> Result<Vec<MembershipRow>>;

    /// Invitations, optionally of one namespace.
    async fn invitations(&self, namespace: Option<&str>) -> Result<Vec<InvitationRow>>;

    /// Grants, optionally of one namespace.
    async fn grants(&self, namespace: Option<&str>) -> Result<Vec<GrantRow>>;

    /// Write one audit entry on its own: an adoption (`servicehub.io/adopt`: by whom, when,
    /// which object), a console sign-in or sign-out, a summary of refused guesses.
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()>;

    /// Users known to each customer (of one namespace), with their memberships.
    async fn users(&self, namespace: Option<&str>) -> Result<Vec<UserRow>>;

    /// Managed Lockbox policies (of one namespace), with their open requests.
    async fn policies(&self, namespace: Option<&str>) -> Result<Vec<PolicyRow>>;

    /// Audit entries matching `filter`, oldest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;

    /// Members of one workspace with their effective permissions (including customer-level
    /// roles that reach every workspace, such as CSAM and Incident Manager).
    async fn workspace_members(&self, workspace_id: &str) -> Result<Vec<MemberView>>;

    /// What one subject (a normalized email or `group:<id>`) can see: per workspace, and at
    /// customer level (workspace `None`), the "All workspaces" view.
    async fn visible_to(&self, customer_uid: &str, subject_key: &str) -> Result<Vec<ScopeView>>;

    /// The earliest pending deadline: an outbox entry's next attempt, a sent invitation's
    /// expiry, a live lockbox request's deadline. Each comes from a partial index on the
    /// deadline column (`MIN` over it), never from a scan of all rows.
    async fn next_deadline(&self) -> Result<Option<i64>>;

    /// Number of rows written since the store was opened (for zero-write checks).
    fn rows_written(&self) -> u64;

    /// The customer's uid (by namespace and name) and its Lockbox policy, with approver
    /// roles resolved to the users holding them now; `None` when the customer is unknown.
    async fn lockbox_policy(
        &self,
        namespace: &str,
        customer: &str,
    ) -> Result<Option<(String, Option<crate::domain::lockbox::Policy>)>>;

    /// Store a new Lockbox request, its audit entry and its notification in one
    /// transaction; its id.
    async fn lockbox_insert(
        &self,
        request: &crate::domain::lockbox::Request,
        actor: &crate::domain::actor::Actor,
    ) -> Result<i64>;

    /// Move a request from `before` (as read) to `after` at `at`, with its audit entry and
    /// notification. `Conflict` if someone moved it first: of two concurrent decisions,
    /// exactly one wins.
    async fn lockbox_transition(
        &self,
        before: &crate::domain::lockbox::Request,
        after: &crate::domain::lockbox::Request,
        actor: &crate::domain::actor::Actor,
        at: i64,
    ) -> Result<()>;

    /// One request.
    async fn lockbox_get(&self, id: i64) -> Result<Option<crate::domain::lockbox::Request>>;

    /// Live requests due at or before `at` (optionally of one customer uid), oldest deadline
    /// first, at most `limit`, read through the `due_at` index (never a scan of all requests).
    async fn lockbox_due(
        &self,
        at: i64,
        customer_uid: Option<&str>,
        limit: i64,
    ) -> Result<Vec<crate::domain::lockbox::Request>>;

    /// The request history, newest first.
    async fn lockbox_list(&self, filter: &LockboxFilter) -> Result<Vec<crate::domain::lockbox::Request>>;

    /// The earliest deadline of any live request (`MIN` over the `due_at` partial index).
    async fn lockbox_next_due(&self) -> Result<Option<i64>>;

    /// Counts and next deadline of one customer's requests.
    async fn lockbox_summary(&self, customer_uid: &str) -> Result<LockboxSummary>;

    /// One subject's invitations in one customer (through the `invitations_subject` index).
    async fn invitations_of(&self, customer_uid: &str, subject_key: &str) -> Result<Vec<InvitationRow>>;

    /// Grants of `permission` that hold in one workspace: its own memberships', and
    /// customer-level memberships' of workspace scope (they reach every workspace).
    async fn holders(&self, customer_uid: &str, workspace_id: &str, permission: &str) -> Result<Vec<GrantRow>>;

    /// The roles any of `subject_keys` (a normalized email, `group:<id>`) holds in the
    /// customer, at customer level or in any workspace, each once.
    async fn roles_of(&self, customer_uid: &str, subject_keys: &[String]) -> Result<Vec<crate::api::Role>>;

    /// Outbox entries due at `at`, oldest deadline first, at most `limit` (through the
    /// `outbox_due` partial index).
    async fn outbox_due(&self, at: i64, limit: i64) -> Result<Vec<OutboxEntry>>;

    /// Claim one delivery attempt at `at` for each request (see [`Claim`]), in one
    /// transaction (a drain claims what it is about to send together): the attempt is counted
    /// and the next one scheduled at the request's `retry_at` before anything is sent, so a
    /// crash mid-send is retried; an invitation's token hash is stored and its expiry fixed at
    /// `validity` seconds after its first attempt. Each entry is claimed as on its own (one
    /// another worker took is `Taken`, with nothing written for it); one claim per request.
    async fn outbox_claim_all(&self, requests: &[ClaimRequest<'_>], at: i64, validity: i64) -> Result<Vec<Claim>>;

    /// Mark entries delivered, in one transaction; an invitation becomes `Sent` (once).
    /// Audited as `by` (the operator's worker, or the CLI that delivered). The Membership to
    /// refresh per entry.
    async fn outbox_sent_all(
        &self,
        entries: &[&OutboxEntry],
        at: i64,
        by: &crate::domain::actor::Actor,
    ) -> Result<Vec<Option<MembershipRef>>>;

    /// Record a failed attempt: retry at `retry_at`, or give up (`None`): the invitation is `Failed`.
    async fn outbox_failed(
        &self,
        entry: &OutboxEntry,
        at: i64,
        error: &str,
        retry_at: Option<i64>,
        by: &crate::domain::actor::Actor,
    ) -> Result<Option<MembershipRef>>;

    /// Expire sent invitations not accepted by `at`, re-issuing those with fewer than
    /// `max_reissues` re-issues; at most `limit`.
    async fn invitations_expire(
        &self,
        at: i64,
        max_reissues: i64,
        limit: i64,
        by: &crate::domain::actor::Actor,
    ) -> Result<Vec<ExpiredInvitation>>;

    /// Send `Failed` and `Expired` invitations of one person again with new tokens, within
    /// the re-issue limit and the agreement's dates; every invitation of theirs with what was
    /// done, or why not.
    async fn invitations_resend(
        &self,
        of: &ResendOf<'_>,
        max_reissues: i64,
        at: i64,
        by: &crate::domain::actor::Actor,
    ) -> Result<Vec<Resend>>;

    /// The earliest delivery deadline (next attempt or invitation expiry).
    async fn outbox_next_due(&self) -> Result<Option<i64>>;

    /// Memberships whose invitation was accepted at or after `since` (Unix seconds), through
    /// the `invitations_accepted` partial index; at most `limit`.
    async fn invitations_accepted_since(&self, since: i64, limit: i64) -> Result<Vec<MembershipRef>>;

    /// Accept an invitation by its token's hash; refusals are audited and returned.
    async fn invitation_accept(
        &self,
        acceptance: &Acceptance,
        at: i64,
    ) -> Result<std::result::Result<Accepted, AcceptRefusal>>;

    /// What the invitation page shows about a token (by its hash), before anyone signs in.
    async fn invitation_view(&self, token_hash: &str) -> Result<Option<InvitationView>>;

    /// Store a new console session and audit the sign-in (`session.start`) as `by`.
    async fn session_insert(&self, session: &Session, by: &crate::domain::actor::Actor) -> Result<()>;

    /// The live session whose id hashes to `id_hash` at `now`, seen within `idle` seconds.
    async fn session_find(&self, id_hash: &str, now: i64, idle: i64) -> Result<Option<Session>>;

    /// End one session (by id hash) or every live session of `email`, auditing each with
    /// `action` (`session.end` for a sign-out, `session.revoke`) as `by`; how many ended.
    async fn sessions_end(
        &self,
        id_hash: Option<&str>,
        email: Option<&str>,
        at: i64,
        by: &crate::domain::actor::Actor,
        action: &str,
    ) -> Result<u64>;

    /// Sessions not ended and before their absolute end at `now`, optionally of one email.
    async fn sessions(&self, email: Option<&str>, now: i64) -> Result<Vec<Session>>;

    /// Queue an emailed sign-in link for `email`, leading to `return_to` (a console path).
    async fn signin_request(&self, email: &str, return_to: &str, at: i64) -> Result<()>;

    /// Use a sign-in token (by hash) at `at`: its email and `return_to`, once, within its
    /// 15 minutes.
    async fn signin_consume(&self, token_hash: &str, at: i64) -> Result<Option<(String, String)>>;

    /// Store an authorization request sent to the OpenID provider.
    async fn oidc_begin(&self, login: &PendingLogin) -> Result<()>;

    /// Take the authorization request with this `state` hash, once, if it has not run out.
    async fn oidc_take(&self, state_hash: &str, at: i64) -> Result<Option<PendingLogin>>;
}

/// Open the store at `url` and apply migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    let store = sql::SqlStore::connect(url.parse()?).await?;
    store.migrate().await?;
    Ok(std::sync::Arc::new(store))
}

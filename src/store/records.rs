//! What the store holds, as plain records. Enum-like columns hold the API's names
//! (`Premier`, `WorkspaceAdministrator`, ...) so the database is readable on its own.

use crate::api::{Permission, Role};
use crate::domain::rules::Source;
use serde::Serialize;
use std::collections::BTreeSet;

/// A customer row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRecord {
    /// `metadata.uid` of the Customer object.
    pub uid: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// `Premier` or `Unified`.
    pub agreement_kind: String,
    /// Agreement id.
    pub agreement_id: String,
    /// Start date, `YYYY-MM-DD`.
    pub start_date: String,
    /// End date, `YYYY-MM-DD`.
    pub end_date: Option<String>,
    /// `Direct` or `Delegated`.
    pub administration_model: String,
    /// Entra group receiving the administrator role when delegated.
    pub admin_group_id: Option<String>,
    /// Customer settings as JSON.
    #[serde(serialize_with = "nested_json")]
    pub settings: String,
    /// Newsletter subscriptions as JSON.
    #[serde(serialize_with = "nested_json")]
    pub newsletters: String,
    /// `Pending`, `Active` or `Expired`.
    pub phase: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: String,
    /// Hash of the spec this row was last written from (drift detection).
    pub spec_hash: String,
    /// The spec this row was last written from, as JSON (`managementPolicy` at its default):
    /// what `servicehub import` writes back. Empty for a row implied by another object.
    /// Not shown in audit entries (the spec hash stands for it there).
    #[serde(skip)]
    pub applied_spec: String,
}

/// A workspace row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRecord {
    /// `metadata.uid` of the Workspace, or `default:<customer uid>` for one the operator created.
    pub id: String,
    /// The customer's uid.
    pub customer_uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Workspace` (from an object) or `Customer` (created as the default workspace).
    pub origin: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
    /// The customer's default workspace.
    pub is_default: bool,
    /// The MSA exception as written (`None`: follow the agreement).
    pub allow_personal: Option<bool>,
    /// Whether personal accounts are accepted, after the agreement's default.
    pub personal_allowed: bool,
    /// Support benefits as JSON.
    #[serde(serialize_with = "nested_json")]
    pub support_benefits: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: String,
    /// Hash of the spec this row was last written from.
    pub spec_hash: String,
    /// The spec this row was last written from, as JSON (`managementPolicy` at its default):
    /// what `servicehub import` writes back. Empty for a row implied by another object.
    /// Not shown in audit entries (the spec hash stands for it there).
    #[serde(skip)]
    pub applied_spec: String,
}

/// A user of a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    /// The customer's uid.
    pub customer_uid: String,
    /// Normalized (lower-case) email, unique per customer.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `WorkOrSchool` or `Personal`.
    pub account_type: String,
}

/// One grant a membership holds: a permission and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The permission.
    pub permission: Permission,
    /// `role:<Role>` or `individual`.
    #[serde(serialize_with = "source_label")]
    #[schemars(with = "String")]
    pub source: Source,
}

/// A column that holds JSON text, shown as the JSON it holds (not as a string to decode).
fn nested_json<S: serde::Serializer>(text: &str, ser: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.serialize(ser),
        Err(_) => ser.serialize_str(text),
    }
}

fn nested_json_opt<S: serde::Serializer>(text: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
    match text {
        Some(t) => nested_json(t, ser),
        None => ser.serialize_none(),
    }
}

fn source_label<S: serde::Serializer>(s: &Source, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&s.label())
}

/// A membership row with its roles and grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipRecord {
    /// `metadata.uid` of the Membership, or a key derived from the Customer or Workspace that
    /// implies it (`<uid>/serviceAdministrator`, `<uid>/admin/<email>`, ...).
    pub id: String,
    /// The customer's uid.
    pub customer_uid: String,
    /// The workspace id for workspace scope; `None` at customer level.
    pub workspace_id: Option<String>,
    /// `Membership`, `Customer` or `Workspace`: which object implies it.
    pub origin: String,
    /// Namespace of that object.
    pub namespace: String,
    /// Name of that object.
    pub name: String,
    /// `User` or `Group`.
    pub subject_kind: String,
    /// Normalized email, or `group:<id>`.
    pub subject_key: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: String,
    /// Hash of the desired roles and grants this row was last written from.
    pub spec_hash: String,
    /// The spec this row was last written from, as JSON (`managementPolicy` at its default):
    /// what `servicehub import` writes back. Empty for a row implied by another object.
    /// Not shown in audit entries (the spec hash stands for it there).
    #[serde(skip)]
    pub applied_spec: String,
    /// Roles held.
    pub roles: BTreeSet<Role>,
    /// Grants held.
    pub grants: BTreeSet<Grant>,
}

/// Invitation states.
pub mod invitation_state {
    /// Written, not yet delivered.
    pub const PENDING: &str = "Pending";
    /// Delivered.
    pub const SENT: &str = "Sent";
    /// Accepted by its recipient.
    pub const ACCEPTED: &str = "Accepted";
    /// Not accepted in time.
    pub const EXPIRED: &str = "Expired";
    /// Cancelled because the membership went away.
    pub const REVOKED: &str = "Revoked";
    /// Delivery gave up.
    pub const FAILED: &str = "Failed";

    /// Whether an invitation in `state` can still be accepted or is on its way.
    pub fn is_live(state: &str) -> bool {
        state == PENDING || state == SENT
    }
}

/// An invitation: one per subject per scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationRecord {
    /// The customer's uid.
    pub customer_uid: String,
    /// The membership that caused it.
    pub membership_id: String,
    /// The workspace id, or the customer uid for customer level.
    pub scope_key: String,
    /// Normalized email of the invitee.
    pub subject_key: String,
    /// Where the invitation goes.
    pub email: String,
    /// How many times it was issued (1 for the first).
    pub issue: i64,
    /// See [`invitation_state`].
    pub state: String,
    /// Delivery attempts.
    pub attempts: i64,
    /// When it was issued (Unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::domain::time::as_rfc3339")]
    #[schemars(with = "String")]
    pub created_at: i64,
    /// When it was delivered.
    #[serde(serialize_with = "crate::domain::time::as_rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub sent_at: Option<i64>,
    /// When it stops being acceptable.
    #[serde(serialize_with = "crate::domain::time::as_rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<i64>,
    /// When it was accepted.
    #[serde(serialize_with = "crate::domain::time::as_rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub accepted_at: Option<i64>,
    /// The account that accepted it.
    pub accepted_by: Option<String>,
    /// Why the last delivery attempt failed.
    pub last_error: Option<String>,
}

/// A lockbox policy row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRecord {
    /// `metadata.uid` of the LockboxPolicy.
    pub uid: String,
    /// The customer's uid.
    pub customer_uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Whether approval is required.
    pub enabled: bool,
    /// Approvers as JSON (`{"emails": [...], "roles": [...]}`).
    #[serde(serialize_with = "nested_json")]
    pub approvers: String,
    /// How long a request waits for a decision.
    pub pending_ttl_seconds: i64,
    /// Longest access an approval may give.
    pub max_access_seconds: i64,
    /// Covered workloads as JSON.
    #[serde(serialize_with = "nested_json")]
    pub workloads: String,
    /// Extra notification recipients as JSON.
    #[serde(serialize_with = "nested_json")]
    pub recipients: String,
    /// Hash of the spec this row was last written from.
    pub spec_hash: String,
    /// The spec this row was last written from, as JSON (`managementPolicy` at its default):
    /// what `servicehub import` writes back. Empty for a row implied by another object.
    /// Not shown in audit entries (the spec hash stands for it there).
    #[serde(skip)]
    pub applied_spec: String,
}

/// What one apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Rows inserted, updated or deleted (audit entries included).
    pub rows: u64,
    /// Invitations newly issued.
    pub invitations: u64,
}

/// A customer with counts, for `get customers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRow {
    /// The stored customer.
    #[serde(flatten)]
    pub record: CustomerRecord,
    /// Managed workspaces.
    pub workspaces: i64,
    /// Known users.
    pub users: i64,
    /// Invitations not yet accepted (`Pending` or `Sent`).
    pub pending_invitations: i64,
}

/// A workspace with its member count, for `get workspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRow {
    /// The stored workspace.
    #[serde(flatten)]
    pub record: WorkspaceRecord,
    /// Customer name.
    pub customer: String,
    /// Distinct subjects with a membership in it.
    pub members: i64,
}

/// A membership with its scope, for `get memberships`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipRow {
    /// The stored membership.
    #[serde(flatten)]
    pub record: MembershipRecord,
    /// Customer name.
    pub customer: String,
    /// Workspace name, if workspace-level.
    pub workspace: Option<String>,
}

/// An invitation with names, for `get invitations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationRow {
    /// The stored invitation.
    #[serde(flatten)]
    pub record: InvitationRecord,
    /// Namespace of the customer.
    pub namespace: String,
    /// Customer name.
    pub customer: String,
    /// Workspace name, or `None` at customer level.
    pub workspace: Option<String>,
}

/// A user with names and counts, for `get users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRow {
    /// The stored user.
    #[serde(flatten)]
    pub record: UserRecord,
    /// Namespace of the customer.
    pub namespace: String,
    /// Customer name.
    pub customer: String,
    /// Managed memberships naming the user.
    pub memberships: i64,
    /// Invitations the user accepted.
    pub accepted: i64,
}

/// A Lockbox policy with its customer and open requests, for `get lockboxpolicies`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRow {
    /// The stored policy.
    #[serde(flatten)]
    pub record: PolicyRecord,
    /// Customer name.
    pub customer: String,
    /// Requests pending or approved.
    pub open_requests: i64,
}

/// A grant with names, for `get grants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantRow {
    /// Namespace.
    pub namespace: String,
    /// Customer name.
    pub customer: String,
    /// Workspace name; `None` at customer level or for every workspace.
    pub workspace: Option<String>,
    /// `customer` or `workspace`.
    pub scope: String,
    /// Subject key.
    pub subject: String,
    /// The grant.
    #[serde(flatten)]
    pub grant: Grant,
    /// The membership holding it (`Kind/name`).
    pub membership: String,
    /// Whether the holder may export this data: `false` for the matrix's footnote 1 (a
    /// membership with a Microsoft role sees it and cannot export it), as in the
    /// Membership's `status.effectivePermissions`.
    pub export_allowed: bool,
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When (Unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::domain::time::as_rfc3339")]
    pub at: i64,
    /// Who: `operator`, `cli:<user>`, or a person's email.
    pub actor: String,
    /// The front door the change came through.
    pub channel: crate::domain::actor::Channel,
    /// What that channel authenticated: OIDC `issuer#sub`, the signed-in email, the OS user
    /// and host of a CLI run, the operator's pod.
    pub subject: String,
    /// What was done, e.g. `grant.add`.
    pub action: String,
    /// The kind of object touched.
    pub kind: String,
    /// Which object.
    pub object: String,
    /// Whether this corrected a change made behind the operator's back.
    pub drift: bool,
    /// The state before, as JSON.
    #[serde(serialize_with = "nested_json_opt")]
    pub before: Option<String>,
    /// The state after, as JSON.
    #[serde(serialize_with = "nested_json_opt")]
    pub after: Option<String>,
}

impl AuditEntry {
    /// An entry to write (its id is assigned by the store).
    pub fn new(
        at: i64,
        actor: &crate::domain::actor::Actor,
        action: &str,
        kind: &str,
        object: &str,
        before: Option<String>,
        after: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            id: 0,
            at,
            actor: actor.name.clone(),
            channel: actor.channel,
            subject: actor.subject.clone(),
            action: action.to_owned(),
            kind: kind.to_owned(),
            object: object.to_owned(),
            drift: false,
            before,
            after,
        }
    }
}

/// One member of a workspace with what they may do there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// Normalized email or `group:<id>`.
    pub subject: String,
    /// Grants that apply in the workspace, from every membership of the subject.
    pub grants: Vec<Grant>,
}

/// What a subject may do in one scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeView {
    /// Workspace id, or `None` for customer level.
    pub workspace_id: Option<String>,
    /// Workspace name.
    pub workspace: Option<String>,
    /// Grants that apply there.
    pub grants: Vec<Grant>,
    /// Permissions held there that may be seen and not exported: every membership holding
    /// them there has a Microsoft role, and the matrix marks them (footnote 1).
    pub no_export: Vec<crate::api::Permission>,
}

/// A message waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Row id.
    pub id: i64,
    /// `invitation` or `lockbox`.
    pub kind: String,
    /// The idempotency key: the message's Message-ID and delivery id.
    pub key: String,
    /// What the message says, as JSON.
    pub payload: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The invitation it delivers, for `invitation` entries.
    pub invitation_id: Option<i64>,
}

/// A Membership object (namespace and name) whose invitation changed, so the controller can
/// refresh its status at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MembershipRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Membership` for Membership objects; `Customer` or `Workspace` for the members those imply.
    pub origin: String,
}

/// What claiming an outbox entry for one delivery attempt decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Send it; this is attempt number `attempt`.
    Send {
        /// The attempt number (1 for the first).
        attempt: i64,
        /// For an invitation: when its token stops being acceptable (Unix seconds).
        expires_at: Option<i64>,
    },
    /// Nothing to send: the invitation was revoked, re-issued, accepted or deleted, or the
    /// entry was already delivered. The entry is closed.
    Cancelled,
    /// Another worker claimed this attempt first; nothing was changed.
    Taken,
}

/// An invitation whose token expired unaccepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredInvitation {
    /// Its recipient.
    pub email: String,
    /// Whether it was re-issued with a new token (issue number `issue`).
    pub reissued: bool,
    /// The issue number after this expiry.
    pub issue: i64,
    /// The Membership to refresh.
    pub membership: Option<MembershipRef>,
}

/// Whose invitations to send again: one person's, in the customers of a namespace,
/// optionally of one workspace (by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResendOf<'a> {
    /// The namespace of the customers.
    pub namespace: &'a str,
    /// Only this customer (by name).
    pub customer: Option<&'a str>,
    /// The invitee's email.
    pub email: &'a str,
    /// Only this workspace's invitation.
    pub workspace: Option<&'a str>,
}

/// What a resend did with one invitation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resend {
    /// The invitee.
    pub email: String,
    /// Customer name.
    pub customer: String,
    /// Workspace name; `None` at customer level.
    pub workspace: Option<String>,
    /// Its state after the resend (`Pending` when sent again).
    pub state: String,
    /// Its issue number after the resend.
    pub issue: i64,
    /// Why it was left as it is; `None` when it is sent again.
    pub refused: Option<String>,
    /// The Membership to refresh.
    #[serde(skip)]
    #[schemars(skip)]
    pub membership: Option<MembershipRef>,
}

/// Who accepts an invitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The account that signs in (normalized email).
    pub account: String,
    /// `WorkOrSchool` or `Personal`.
    pub account_type: String,
    /// Who accepts, through which channel. When the channel authenticated them (the console,
    /// a bearer token), the account must be the invited address: an invitation is bound to
    /// the person it was sent to. The CLI is an administrator's tool and is not bound.
    pub by: crate::domain::actor::Actor,
    /// Whether an unknown token gets an audit entry. Unauthenticated front doors audit only
    /// the first unknown token per client address and window (and count the rest), so that
    /// guessing cannot grow the append-only log without bound.
    pub audit_unknown: bool,
}

/// An accepted invitation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// Namespace of the customer.
    pub namespace: String,
    /// The customer (object name).
    pub customer: String,
    /// The workspace (object name), or none for customer level.
    pub workspace: Option<String>,
    /// The invitee.
    pub email: String,
    /// The account that accepted.
    pub account: String,
    /// When (Unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::domain::time::as_rfc3339")]
    #[schemars(with = "String")]
    pub accepted_at: i64,
}

/// Why an invitation cannot be accepted. The messages say what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcceptRefusal {
    /// No invitation has this token.
    #[error("the token matches no invitation: check that it was copied whole from the newest invitation message")]
    UnknownToken,
    /// Accepted already.
    #[error("this invitation was already accepted (on {0}); each invitation can be used once")]
    Used(String),
    /// The membership went away.
    #[error(
        "this invitation was revoked: the membership was removed; ask the workspace administrator to invite you again"
    )]
    Revoked,
    /// A newer invitation replaced this one.
    #[error("this invitation was replaced by a newer one (issue {0}); use the link in the newest message")]
    Superseded(i64),
    /// Not accepted in time.
    #[error("this invitation expired on {0}; ask the workspace administrator to invite you again")]
    Expired(String),
    /// Signed in as someone other than the invitee.
    #[error(
        "this invitation was sent to {invited}; you are signed in as someone else. Sign out and sign in as \
         {invited}, or ask the administrator to invite the address you signed in with"
    )]
    WrongAccount {
        /// The invited address.
        invited: String,
    },
    /// A personal account where the workspace takes work or school accounts only.
    #[error(
        "workspace {workspace} does not accept personal (Microsoft) accounts: it belongs to a Unified agreement, \
         which takes work or school accounts only. Sign in with a work or school account, or ask an administrator \
         to allow personal accounts in this workspace (spec.allowPersonalAccounts: true on Workspace {workspace})"
    )]
    PersonalNotAllowed {
        /// The workspace (object name).
        workspace: String,
    },
    /// A personal account at customer level of an agreement that takes work or school accounts only.
    #[error(
        "customer {customer} has a Unified agreement, which takes work or school accounts only at customer level: \
         sign in with a work or school account"
    )]
    PersonalNotAllowedAtCustomer {
        /// The customer (object name).
        customer: String,
    },
}

/// What decides whether an invitation can be accepted, as the store holds it. One rule for
/// the acceptance itself and for the page that shows the invitation before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptFacts<'a> {
    /// The invited address.
    pub invited: &'a str,
    /// The invitation's current issue, when the token belongs to an earlier one.
    pub superseded_by: Option<i64>,
    /// The invitation's state.
    pub state: &'a str,
    /// When it was accepted.
    pub accepted_at: Option<i64>,
    /// Until when it can be accepted.
    pub expires_at: Option<i64>,
    /// The workspace (object name), or none at customer level.
    pub workspace: Option<&'a str>,
    /// The customer (object name).
    pub customer: &'a str,
    /// Whether the scope takes personal accounts.
    pub personal_allowed: bool,
}

impl AcceptFacts<'_> {
    /// Why `account` (of `account_type`) cannot accept at `now`, if it cannot. `bound`: the
    /// account was authenticated, so it must be the invited one (checked first: a stranger
    /// learns nothing about the invitation's state).
    pub fn refusal(&self, account: &str, account_type: &str, bound: bool, now: i64) -> Option<AcceptRefusal> {
        let time = |t: Option<i64>| t.map(crate::domain::time::rfc3339).unwrap_or_default();
        if bound && !self.invited.eq_ignore_ascii_case(account) {
            Some(AcceptRefusal::WrongAccount { invited: self.invited.to_owned() })
        } else if let Some(issue) = self.superseded_by {
            Some(AcceptRefusal::Superseded(issue))
        } else if self.state == invitation_state::ACCEPTED {
            Some(AcceptRefusal::Used(time(self.accepted_at)))
        } else if self.state == invitation_state::REVOKED {
            Some(AcceptRefusal::Revoked)
        } else if self.state == invitation_state::EXPIRED || self.expires_at.is_none_or(|t| t <= now) {
            Some(AcceptRefusal::Expired(time(self.expires_at)))
        } else if account_type == "Personal" && !self.personal_allowed {
            Some(match self.workspace {
                Some(w) => AcceptRefusal::PersonalNotAllowed { workspace: w.to_owned() },
                None => AcceptRefusal::PersonalNotAllowedAtCustomer { customer: self.customer.to_owned() },
            })
        } else {
            None
        }
    }
}

impl AcceptRefusal {
    /// A short machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AcceptRefusal::UnknownToken => "UnknownToken",
            AcceptRefusal::Used(_) => "AlreadyAccepted",
            AcceptRefusal::Revoked => "Revoked",
            AcceptRefusal::Superseded(_) => "Superseded",
            AcceptRefusal::Expired(_) => "Expired",
            AcceptRefusal::WrongAccount { .. } => "WrongAccount",
            AcceptRefusal::PersonalNotAllowed { .. } | AcceptRefusal::PersonalNotAllowedAtCustomer { .. } => {
                "PersonalAccountNotAllowed"
            }
        }
    }
}

#[cfg(test)]
mod accept_tests {
    use super::*;

    fn facts(state: &'static str, expires_at: Option<i64>) -> AcceptFacts<'static> {
        AcceptFacts {
            invited: "lee@contoso.com",
            superseded_by: None,
            state,
            accepted_at: None,
            expires_at,
            workspace: Some("emea"),
            customer: "contoso",
            personal_allowed: false,
        }
    }

    #[test]
    fn a_stranger_learns_only_who_was_invited_and_the_invitee_learns_why() {
        let expired = facts(invitation_state::SENT, Some(10));
        let stranger = expired.refusal("megan@contoso.com", "WorkOrSchool", true, 20);
        assert_eq!(stranger, Some(AcceptRefusal::WrongAccount { invited: "lee@contoso.com".into() }));
        // The CLI (not bound) is an administrator's tool: the state decides.
        assert!(matches!(
            expired.refusal("megan@contoso.com", "WorkOrSchool", false, 20),
            Some(AcceptRefusal::Expired(_))
        ));
        assert!(matches!(
            expired.refusal("Lee@Contoso.com", "WorkOrSchool", true, 20),
            Some(AcceptRefusal::Expired(_))
        ));
        let live = facts(invitation_state::SENT, Some(100));
        assert_eq!(live.refusal("lee@contoso.com", "WorkOrSchool", true, 20), None);
        let personal = live.refusal("lee@contoso.com", "Personal", true, 20);
        assert_eq!(personal, Some(AcceptRefusal::PersonalNotAllowed { workspace: "emea".into() }));
        let replaced = AcceptFacts { superseded_by: Some(2), ..live.clone() };
        assert_eq!(replaced.refusal("lee@contoso.com", "WorkOrSchool", true, 20), Some(AcceptRefusal::Superseded(2)));
    }
}

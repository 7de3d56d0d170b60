//! The Customer Lockbox request lifecycle as a pure state machine: the time is a parameter
//! (Unix seconds; deadlines are whole seconds, fixed when a request is opened or decided).
//!
//! ```text
//! Pending --approve--> Approved --complete--> Completed
//!    |                    |-----revoke-----> Revoked
//!    |--deny--> Denied    `--deadline------> AccessExpired
//!    `--deadline--> Expired (by inaction)
//! NotRequired (policy disabled or absent; access at once, still time-bound)
//!    |--complete / revoke / deadline--> Completed / Revoked / AccessExpired
//! ```
//!
//! Decisions depend only on the request (its approvers are a snapshot taken when it was
//! opened), never on the policy's current state: disabling a policy leaves pending requests
//! decidable until their deadline, and only new requests become `NotRequired`.

use std::fmt;

/// A request's state.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub enum State {
    /// Waiting for an approver until the pending deadline.
    Pending,
    /// Access granted until the access deadline.
    Approved,
    /// An approver refused.
    Denied,
    /// No decision before the pending deadline (expired by inaction).
    Expired,
    /// The engineer closed it before the access deadline.
    Completed,
    /// An approver ended the access early.
    Revoked,
    /// The access deadline passed.
    AccessExpired,
    /// Approval not required (policy disabled or absent): access at once, time-bound.
    NotRequired,
}

impl State {
    /// Every state.
    pub const ALL: [State; 8] = [
        State::Pending,
        State::Approved,
        State::Denied,
        State::Expired,
        State::Completed,
        State::Revoked,
        State::AccessExpired,
        State::NotRequired,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Approved => "Approved",
            State::Denied => "Denied",
            State::Expired => "Expired",
            State::Completed => "Completed",
            State::Revoked => "Revoked",
            State::AccessExpired => "AccessExpired",
            State::NotRequired => "NotRequired",
        }
    }

    /// Parse a stored or typed name (case-insensitive).
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether the engineer has access in this state.
    pub fn has_access(self) -> bool {
        matches!(self, State::Approved | State::NotRequired)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Store id (0 before it is stored).
    pub id: i64,
    /// The customer's uid.
    pub customer_uid: String,
    /// The support engineer (normalized email).
    pub requester: String,
    /// `ExchangeOnline`, `SharePointOnline` or `OneDriveForBusiness`.
    pub workload: String,
    /// The support case.
    pub case_id: String,
    /// Why access is needed.
    pub reason: String,
    /// Access asked for, in seconds.
    pub requested_seconds: i64,
    /// Who may decide (normalized emails), as of when the request was opened.
    pub approvers: Vec<String>,
    /// Current state.
    pub state: State,
    /// When it was opened.
    #[serde(serialize_with = "super::time::as_rfc3339")]
    #[schemars(with = "String")]
    pub created_at: i64,
    /// Until when it waits for a decision (pending requests).
    #[serde(serialize_with = "super::time::as_rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub pending_deadline: Option<i64>,
    /// When it was approved or denied.
    #[serde(serialize_with = "super::time::as_rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub decided_at: Option<i64>,
    /// Who approved or denied (or revoked).
    pub decided_by: Option<String>,
    /// The decider's reason.
    pub decision_reason: Option<String>,
    /// Until when access lasts (approved and not-required requests).
    #[serde(serialize_with = "super::time::as_rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub access_deadline: Option<i64>,
    /// When it reached a final state (for an expiry: the deadline, not when it was noticed).
    #[serde(serialize_with = "super::time::as_rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub closed_at: Option<i64>,
    /// Expired without a decision.
    pub expired_by_inaction: bool,
    /// Row version, for optimistic concurrency.
    #[serde(skip)]
    pub version: i64,
}

impl Request {
    /// The next deadline of a live request; `None` once it is final.
    pub fn due_at(&self) -> Option<i64> {
        match self.state {
            State::Pending => self.pending_deadline,
            State::Approved | State::NotRequired => self.access_deadline,
            _ => None,
        }
    }
}

/// What a customer's policy says, with role approvers resolved to people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Approval required.
    pub enabled: bool,
    /// How long a request waits for a decision, in seconds.
    pub pending_ttl: i64,
    /// Longest access an approval may give, in seconds.
    pub max_access: i64,
    /// Covered workloads.
    pub workloads: Vec<String>,
    /// Approvers (normalized emails): named ones and holders of the approver roles.
    pub approvers: Vec<String>,
}

/// Longest access when a customer has no policy (the API's default `maxAccessDuration`).
pub const DEFAULT_MAX_ACCESS: i64 = 8 * 3600;

/// What a support engineer asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRequest {
    /// The engineer (an email).
    pub requester: String,
    /// The workload.
    pub workload: String,
    /// The support case.
    pub case_id: String,
    /// Why.
    pub reason: String,
    /// Access asked for, in seconds.
    pub duration: i64,
}

/// A decision or closing action on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// An approver grants access.
    Approve,
    /// An approver refuses.
    Deny,
    /// An approver ends granted access early.
    Revoke,
    /// The requester closes the request: the issue is fixed.
    Complete,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 4] = [Action::Approve, Action::Deny, Action::Revoke, Action::Complete];

    /// The action named by its verb (`approve`, ...).
    pub fn parse(verb: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == verb)
    }

    /// The verb, for messages and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Deny => "deny",
            Action::Revoke => "revoke",
            Action::Complete => "complete",
        }
    }
}

/// Why a request or an action is refused. Each message says what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The workload is not one the policy covers.
    #[error("workload {workload} is not covered by the customer's Lockbox policy (it covers: {covered})")]
    WorkloadNotCovered {
        /// Asked for.
        workload: String,
        /// Covered.
        covered: String,
    },
    /// The duration is out of bounds.
    #[error("requested access of {asked} exceeds the policy's maxAccessDuration of {max}; ask for {max} or less")]
    TooLong {
        /// Asked for.
        asked: String,
        /// The bound.
        max: String,
    },
    /// A field is empty or not positive.
    #[error("{0}")]
    Invalid(String),
    /// The actor may not take this action.
    #[error("{actor} may not {action} request {id}: {why}")]
    NotAllowed {
        /// Who tried.
        actor: String,
        /// What.
        action: &'static str,
        /// Which request.
        id: i64,
        /// Why not.
        why: String,
    },
    /// The request is not in a state that allows the action.
    #[error("request {id} is {state}; it cannot be {done} (only {allowed} requests can)")]
    WrongState {
        /// Which request.
        id: i64,
        /// Its state.
        state: State,
        /// The action in past tense.
        done: &'static str,
        /// States that allow it.
        allowed: &'static str,
    },
    /// The deadline has passed.
    #[error("request {id} expired at {at}; a decision after the deadline is refused")]
    PastDeadline {
        /// Which request.
        id: i64,
        /// The deadline (RFC 3339).
        at: String,
    },
}

/// Human form of a number of seconds (`12h`, `90m`, `45s`).
pub fn human(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub use super::time::rfc3339;

/// Open a request at `now` under `policy` (`None`: the customer has none, so approval is
/// not required).
pub fn open(policy: Option<&Policy>, customer_uid: &str, new: NewRequest, now: i64) -> Result<Request, Refusal> {
    let requester = new.requester.trim().to_ascii_lowercase();
    if requester.is_empty() || !requester.contains('@') {
        return Err(Refusal::Invalid(format!("--as: the requester must be an email address, not {:?}", new.requester)));
    }
    if new.case_id.trim().is_empty() {
        return Err(Refusal::Invalid("--case: a support case id is required".into()));
    }
    if new.reason.trim().is_empty() {
        return Err(Refusal::Invalid("--reason: say why access to customer content is needed".into()));
    }
    if new.duration <= 0 {
        return Err(Refusal::Invalid("--duration: the requested access must be longer than zero".into()));
    }
    let max = policy.map_or(DEFAULT_MAX_ACCESS, |p| p.max_access);
    if let Some(p) = policy
        && !p.workloads.iter().any(|w| w == &new.workload)
    {
        return Err(Refusal::WorkloadNotCovered { workload: new.workload, covered: p.workloads.join(", ") });
    }
    if new.duration > max {
        return Err(Refusal::TooLong { asked: human(new.duration), max: human(max) });
    }
    let enabled = policy.is_some_and(|p| p.enabled);
    let mut r = Request {
        id: 0,
        customer_uid: customer_uid.to_owned(),
        requester,
        workload: new.workload,
        case_id: new.case_id.trim().to_owned(),
        reason: new.reason.trim().to_owned(),
        requested_seconds: new.duration,
        approvers: policy.map(|p| p.approvers.clone()).unwrap_or_default(),
        state: State::NotRequired,
        created_at: now,
        pending_deadline: None,
        decided_at: None,
        decided_by: None,
        decision_reason: None,
        access_deadline: None,
        closed_at: None,
        expired_by_inaction: false,
        version: 1,
    };
    match policy {
        Some(p) if enabled => {
            r.state = State::Pending;
            r.pending_deadline = Some(now + p.pending_ttl);
        }
        _ => r.access_deadline = Some(now + new.duration),
    }
    Ok(r)
}

/// Take `action` on `req` as `actor` at `now`: the request after it, or why not.
pub fn decide(
    req: &Request,
    action: Action,
    actor: &str,
    reason: Option<String>,
    now: i64,
) -> Result<Request, Refusal> {
    let actor = actor.trim().to_ascii_lowercase();
    let not_allowed =
        |why: String| Refusal::NotAllowed { actor: actor.clone(), action: action.as_str(), id: req.id, why };
    let is_approver = req.approvers.contains(&actor);
    let approvers = if req.approvers.is_empty() { "none".to_owned() } else { req.approvers.join(", ") };
    let mut next = req.clone();
    match action {
        Action::Approve | Action::Deny => {
            if req.state != State::Pending {
                let done = if action == Action::Approve { "approved" } else { "denied" };
                return Err(Refusal::WrongState { id: req.id, state: req.state, done, allowed: "Pending" });
            }
            if let Some(deadline) = req.pending_deadline
                && now >= deadline
            {
                return Err(Refusal::PastDeadline { id: req.id, at: rfc3339(deadline) });
            }
            if actor == req.requester {
                return Err(not_allowed("a requester can never decide their own request".into()));
            }
            if !is_approver {
                return Err(not_allowed(format!("only the policy's approvers may decide (approvers: {approvers})")));
            }
            next.decided_at = Some(now);
            next.decided_by = Some(actor.clone());
            next.decision_reason = reason;
            if action == Action::Approve {
                next.state = State::Approved;
                next.access_deadline = Some(now + req.requested_seconds);
            } else {
                next.state = State::Denied;
                next.closed_at = Some(now);
            }
        }
        Action::Revoke | Action::Complete => {
            if !req.state.has_access() {
                let done = if action == Action::Revoke { "revoked" } else { "completed" };
                return Err(Refusal::WrongState {
                    id: req.id,
                    state: req.state,
                    done,
                    allowed: "Approved or NotRequired",
                });
            }
            if let Some(deadline) = req.access_deadline
                && now >= deadline
            {
                return Err(Refusal::PastDeadline { id: req.id, at: rfc3339(deadline) });
            }
            if action == Action::Revoke {
                if !is_approver {
                    return Err(not_allowed(format!(
                        "only the policy's approvers may revoke (approvers: {approvers})"
                    )));
                }
                next.state = State::Revoked;
                next.decided_by = Some(actor.clone());
                next.decision_reason = reason;
            } else {
                if actor != req.requester {
                    return Err(not_allowed(format!("only the requester ({}) completes a request", req.requester)));
                }
                next.state = State::Completed;
            }
            next.closed_at = Some(now);
        }
    }
    Ok(next)
}

/// The transition a deadline causes, if `req` is due at `now`, stamped with the time it
/// became due (not `now`): after downtime each overdue request closes when it should have.
pub fn expire(req: &Request, now: i64) -> Option<Request> {
    let due = req.due_at()?;
    if due > now {
        return None;
    }
    let mut next = req.clone();
    next.closed_at = Some(due);
    match req.state {
        State::Pending => {
            next.state = State::Expired;
            next.expired_by_inaction = true;
        }
        State::Approved | State::NotRequired => next.state = State::AccessExpired,
        _ => return None,
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            enabled: true,
            pending_ttl: 12 * 3600,
            max_access: 8 * 3600,
            workloads: vec!["ExchangeOnline".into(), "SharePointOnline".into()],
            approvers: vec!["ga@contoso.com".into(), "sa@contoso.com".into()],
        }
    }

    fn new(duration: i64) -> NewRequest {
        NewRequest {
            requester: "Engineer@Microsoft.com".into(),
            workload: "ExchangeOnline".into(),
            case_id: "2611220010001".into(),
            reason: "mailbox repair".into(),
            duration,
        }
    }

    #[test]
    fn a_pending_request_expires_exactly_at_its_deadline() {
        let r = open(Some(&policy()), "c", new(3600), T).expect("open");
        assert_eq!(
            (r.state, r.pending_deadline, r.requester.as_str()),
            (State::Pending, Some(T + 43_200), "engineer@microsoft.com")
        );
        assert_eq!(expire(&r, T + 43_199), None, "still pending at 11:59:59");
        let e = expire(&r, T + 43_200).expect("expired at 12:00:00");
        assert_eq!(
            (e.state, e.closed_at, e.expired_by_inaction, e.due_at()),
            (State::Expired, Some(T + 43_200), true, None)
        );
        // Noticed two days late, it still closes at its deadline.
        assert_eq!(expire(&r, T + 3 * 86_400).expect("late").closed_at, Some(T + 43_200));
    }

    #[test]
    fn approved_access_ends_at_approval_plus_duration() {
        let r = open(Some(&policy()), "c", new(4 * 3600), T).expect("open");
        let a = decide(&r, Action::Approve, "GA@contoso.com", Some("ok".into()), T + 600).expect("approve");
        assert_eq!(
            (a.state, a.access_deadline, a.decided_by.as_deref()),
            (State::Approved, Some(T + 600 + 14_400), Some("ga@contoso.com"))
        );
        assert_eq!(expire(&a, T + 600 + 14_399), None);
        assert_eq!(expire(&a, T + 600 + 14_400).expect("over").state, State::AccessExpired);
        let done = decide(&a, Action::Complete, "engineer@microsoft.com", None, T + 1200).expect("complete");
        assert_eq!((done.state, done.closed_at, done.due_at()), (State::Completed, Some(T + 1200), None));
    }

    #[test]
    fn refusals_say_why() {
        let p = policy();
        let r = open(Some(&p), "c", new(3600), T).expect("open");
        let late = decide(&r, Action::Approve, "ga@contoso.com", None, T + 43_200).expect_err("late");
        assert!(late.to_string().contains("a decision after the deadline is refused"), "{late}");
        let stranger = decide(&r, Action::Approve, "someone@contoso.com", None, T).expect_err("not an approver");
        assert!(
            stranger
                .to_string()
                .contains("only the policy's approvers may decide (approvers: ga@contoso.com, sa@contoso.com)"),
            "{stranger}"
        );
        let mut own = r.clone();
        own.approvers.push("engineer@microsoft.com".into());
        let selfish = decide(&own, Action::Approve, "engineer@microsoft.com", None, T).expect_err("own");
        assert!(selfish.to_string().contains("a requester can never decide their own request"), "{selfish}");
        let too_long = open(Some(&p), "c", new(9 * 3600), T).expect_err("too long");
        assert_eq!(
            too_long.to_string(),
            "requested access of 9h exceeds the policy's maxAccessDuration of 8h; ask for 8h or less"
        );
        let mut other = new(3600);
        other.workload = "OneDriveForBusiness".into();
        let uncovered = open(Some(&p), "c", other, T).expect_err("uncovered");
        assert!(
            uncovered
                .to_string()
                .contains("not covered by the customer's Lockbox policy (it covers: ExchangeOnline, SharePointOnline)")
        );
        let denied = decide(&r, Action::Deny, "sa@contoso.com", Some("no".into()), T).expect("deny");
        let again = decide(&denied, Action::Approve, "ga@contoso.com", None, T).expect_err("final");
        assert!(again.to_string().contains("request 0 is Denied; it cannot be approved"), "{again}");
        let a = decide(&r, Action::Approve, "ga@contoso.com", None, T).expect("approve");
        let not_mine = decide(&a, Action::Complete, "ga@contoso.com", None, T + 1).expect_err("not the requester");
        assert!(not_mine.to_string().contains("only the requester (engineer@microsoft.com) completes a request"));
        let revoked = decide(&a, Action::Revoke, "sa@contoso.com", None, T + 1).expect("revoke");
        assert_eq!((revoked.state, revoked.closed_at), (State::Revoked, Some(T + 1)));
    }

    #[test]
    fn without_an_enabled_policy_access_is_not_required_but_time_bound() {
        let mut p = policy();
        p.enabled = false;
        let r = open(Some(&p), "c", new(3600), T).expect("open");
        assert_eq!((r.state, r.access_deadline, r.pending_deadline), (State::NotRequired, Some(T + 3600), None));
        assert_eq!(expire(&r, T + 3600).expect("over").state, State::AccessExpired);
        let none = open(None, "c", new(3600), T).expect("no policy");
        assert_eq!(none.state, State::NotRequired);
        assert!(open(None, "c", new(DEFAULT_MAX_ACCESS + 1), T).is_err(), "still bounded");
        // A request opened while the policy was enabled stays decidable after it is disabled:
        // decisions read the request, never the policy.
        let pending = open(Some(&policy()), "c", new(3600), T).expect("open");
        assert_eq!(
            decide(&pending, Action::Approve, "ga@contoso.com", None, T + 5).expect("approve").state,
            State::Approved
        );
    }
}

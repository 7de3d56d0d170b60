//! Customer Lockbox operations: the pure lifecycle ([`crate::domain::lockbox`]) over the
//! store. The CLI (`servicehub lockbox ...`) and the controller's expiry worker share them.
//!
//! Requests live in the store only: they are not desired state and never appear in GitOps
//! YAML. Every transition is one guarded transaction with its audit entry and notification.

use crate::domain::actor::{Actor, Channel};
use crate::domain::lockbox::{self, Action, NewRequest, Refusal, Request};
use crate::store::{Store, StoreError};

/// The expiry of requests past their deadline (the operator's sweep, or a late decision that
/// closes the request first): recorded as `lockbox-expiry` through the operator channel.
fn expiry() -> Actor {
    Actor { name: "lockbox-expiry".into(), channel: Channel::Operator, subject: crate::telemetry::host() }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The customer is not in the store.
    #[error("customer {0} is not in the store")]
    UnknownCustomer(String),
    /// No such request.
    #[error("lockbox request {0} does not exist")]
    NotFound(i64),
    /// A rule refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The person may not open requests for this customer.
    #[error(
        "{who} may not open Customer Lockbox requests for {customer}: requests come from Microsoft engineers, an \
         address at {domains} or a Customer Success Account Manager or Incident Manager of this customer"
    )]
    NotRequester {
        /// Who asked.
        who: String,
        /// The customer (namespace/name).
        customer: String,
        /// The configured domains, joined.
        domains: String,
    },
    /// The store failed (a `Conflict` means someone else acted first).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who may open requests: Microsoft engineers, known by the domain of their address or by a
/// Microsoft role (CSAM, Incident Manager) they hold for the customer. A customer's own users
/// never open requests against their own content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requesters {
    /// Mail domains of Microsoft engineers (lowercase, exact match of the part after `@`).
    pub domains: Vec<String>,
}

impl Default for Requesters {
    /// `microsoft.com`.
    fn default() -> Self {
        Requesters { domains: vec!["microsoft.com".into()] }
    }
}

impl Requesters {
    /// Requesters from the given domains (`--lockbox-requester-domain`), trimmed and lowercased.
    pub fn from_domains(domains: &[String]) -> Requesters {
        let domains: Vec<String> = domains
            .iter()
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        if domains.is_empty() { Requesters::default() } else { Requesters { domains } }
    }

    /// Whether `email`'s domain is one of the engineers' domains.
    pub fn by_domain(&self, email: &str) -> bool {
        let email = email.trim().to_ascii_lowercase();
        email.rsplit_once('@').is_some_and(|(_, d)| self.domains.iter().any(|x| x == d))
    }

    /// Whether `email` may open requests for the customer `customer_uid`: by domain, or by a
    /// Microsoft role held there (directly or through one of `groups`).
    pub async fn allows(
        &self,
        store: &dyn Store,
        customer_uid: &str,
        email: &str,
        groups: &[String],
    ) -> Result<bool, StoreError> {
        if self.by_domain(email) {
            return Ok(true);
        }
        let roles = store.roles_of(customer_uid, &subject_keys(email, groups)).await?;
        Ok(roles.iter().any(|r| r.is_microsoft()))
    }
}

/// The subject keys of a person: their normalized email and `group:<id>` per group.
pub fn subject_keys(email: &str, groups: &[String]) -> Vec<String> {
    let mut keys = vec![email.trim().to_ascii_lowercase()];
    keys.extend(groups.iter().map(|g| format!("group:{g}")));
    keys
}

/// Who opens a request: the actor, and the groups their sign-in proved (none on the CLI).
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    /// The engineer.
    pub actor: &'a Actor,
    /// Group object ids from their session.
    pub groups: &'a [String],
}

impl<'a> Requester<'a> {
    /// An actor with no groups.
    pub fn person(actor: &'a Actor) -> Requester<'a> {
        Requester { actor, groups: &[] }
    }
}

/// Open a request for the customer `namespace/customer` at `now` (Unix seconds), as `by`, if
/// `requesters` allows them to.
pub async fn request(
    store: &dyn Store,
    namespace: &str,
    customer: &str,
    new: NewRequest,
    by: Requester<'_>,
    requesters: &Requesters,
    now: i64,
) -> Result<Request, Error> {
    let (uid, policy) = store
        .lockbox_policy(namespace, customer)
        .await?
        .ok_or_else(|| Error::UnknownCustomer(format!("{namespace}/{customer}")))?;
    let new = NewRequest { requester: by.actor.name.clone(), ..new };
    let mut r = lockbox::open(policy.as_ref(), &uid, new, now)?;
    if !requesters.allows(store, &uid, &r.requester, by.groups).await? {
        return Err(Error::NotRequester {
            who: r.requester,
            customer: format!("{namespace}/{customer}"),
            domains: requesters.domains.join(", "),
        });
    }
    r.id = store.lockbox_insert(&r, by.actor).await?;
    Ok(r)
}

/// Take `action` on request `id` as `actor` at `now`. Of two concurrent decisions exactly
/// one wins; the other gets a `Conflict` naming the request.
pub async fn act(
    store: &dyn Store,
    id: i64,
    action: Action,
    actor: &Actor,
    reason: Option<String>,
    now: i64,
) -> Result<Request, Error> {
    let before = store.lockbox_get(id).await?.ok_or(Error::NotFound(id))?;
    // A request already past its deadline is closed first, as the sweep would have: the
    // caller then sees why the action is refused.
    if let Some(expired) = lockbox::expire(&before, now) {
        match store.lockbox_transition(&before, &expired, &expiry(), now).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let after = lockbox::decide(&before, action, &actor.name, reason, now)?;
    store.lockbox_transition(&before, &after, actor, now).await?;
    Ok(Request { version: before.version + 1, ..after })
}

/// One transition a sweep applied (or, in a dry run, would apply).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Swept {
    /// The request before.
    pub before: Request,
    /// The request after (closed at its deadline).
    pub after: Request,
}

/// Requests read per statement by a sweep.
const PAGE: i64 = 1000;

/// Apply every transition due at or before `at` (of one customer uid, or all), in deadline
/// order, each once. With `dry_run`, write nothing and report what would happen. The work
/// is proportional to what is due, never to the number of requests stored.
pub async fn sweep(
    store: &dyn Store,
    at: i64,
    customer_uid: Option<&str>,
    dry_run: bool,
) -> Result<Vec<Swept>, StoreError> {
    let mut out = Vec::new();
    if dry_run {
        for before in store.lockbox_due(at, customer_uid, i64::MAX).await? {
            if let Some(after) = lockbox::expire(&before, at) {
                out.push(Swept { before, after });
            }
        }
        return Ok(out);
    }
    loop {
        let page = store.lockbox_due(at, customer_uid, PAGE).await?;
        let mut progressed = false;
        for before in &page {
            let Some(after) = lockbox::expire(before, at) else { continue };
            match store.lockbox_transition(before, &after, &expiry(), at).await {
                Ok(()) => {
                    progressed = true;
                    out.push(Swept { before: before.clone(), after });
                }
                // Decided or swept by someone else meanwhile: the next page reads it fresh.
                Err(StoreError::Conflict(_)) => progressed = true,
                Err(e) => return Err(e),
            }
        }
        if (page.len() as i64) < PAGE || !progressed {
            return Ok(out);
        }
    }
}

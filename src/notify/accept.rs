//! Accepting an invitation: the checks shared by `servicehub invitation accept` and
//! `POST /v1/invitations/accept`. The token is hashed at once and never logged or stored.

use crate::domain::actor::Actor;
use crate::store::{AcceptRefusal, Acceptance, Accepted, Store, StoreError};

/// What a caller gives.
#[derive(Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// The token from the invitation message.
    pub token: String,
    /// The account signing in (email).
    pub account: String,
    /// `WorkOrSchool` or `Personal`.
    pub account_type: String,
}

impl std::fmt::Debug for Request {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("account", &self.account).field("account_type", &self.account_type).finish()
    }
}

/// Why a request is malformed: names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct InvalidRequest {
    /// The field.
    pub field: &'static str,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// The outcome of an acceptance.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// A well-formed request the invitation refuses.
    #[error(transparent)]
    Refused(#[from] AcceptRefusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Check the request's shape: a 43-character URL-safe token, an email, a known account type;
/// the acceptance is made `by` that actor.
pub fn check(r: &Request, by: Actor) -> Result<Acceptance, InvalidRequest> {
    let token = r.token.trim();
    if token.len() != 43 || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(InvalidRequest {
            field: "token",
            rule: "must be the 43-character token from the invitation message",
        });
    }
    let account = r.account.trim().to_ascii_lowercase();
    if account.parse::<lettre::Address>().is_err() {
        return Err(InvalidRequest { field: "account", rule: "must be an email address such as lee@contoso.com" });
    }
    if r.account_type != "WorkOrSchool" && r.account_type != "Personal" {
        return Err(InvalidRequest { field: "accountType", rule: "must be WorkOrSchool or Personal" });
    }
    Ok(Acceptance {
        token_hash: super::token::hash(token),
        account,
        account_type: r.account_type.clone(),
        by,
        audit_unknown: true,
    })
}

/// Accept at `now` (Unix seconds) as `by`. When `audit_unknown` is false, an unknown token is
/// refused without an audit entry (the caller counts it; see [`Acceptance::audit_unknown`]).
pub async fn accept(
    store: &dyn Store,
    r: &Request,
    by: Actor,
    audit_unknown: bool,
    now: i64,
) -> Result<Accepted, Error> {
    let acceptance = Acceptance { audit_unknown, ..check(r, by)? };
    let accepted = store.invitation_accept(&acceptance, now).await??;
    tracing::info!(account = %accepted.account, email = %accepted.email, customer = %accepted.customer,
        workspace = ?accepted.workspace, "invitation accepted");
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: &str, account: &str, kind: &str) -> Request {
        Request { token: token.into(), account: account.into(), account_type: kind.into() }
    }

    fn check_(r: &Request) -> Result<Acceptance, InvalidRequest> {
        check(r, Actor::cli(None, "test", "host"))
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let good = "a".repeat(43);
        assert_eq!(check_(&req("short", "lee@contoso.com", "Personal")).expect_err("invalid").field, "token");
        assert_eq!(check_(&req(&"+".repeat(43), "lee@contoso.com", "Personal")).expect_err("invalid").field, "token");
        assert_eq!(check_(&req(&good, "not an email", "Personal")).expect_err("invalid").field, "account");
        assert_eq!(check_(&req(&good, "lee@contoso.com", "MSA")).expect_err("invalid").field, "accountType");
        let ok = check_(&req(&good, " Lee@Contoso.com ", "WorkOrSchool")).expect("valid");
        assert_eq!(ok.account, "lee@contoso.com");
        assert_eq!(ok.token_hash, super::super::token::hash(&good));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let shown = format!("{:?}", req("SECRET-TOKEN", "lee@contoso.com", "Personal"));
        assert!(!shown.contains("SECRET-TOKEN") && shown.contains("lee@contoso.com"), "{shown}");
    }
}

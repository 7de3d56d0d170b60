//! ID-token claims -> the signed-in person. The account type comes from the token (for
//! Microsoft Entra ID, the tenant), never from the person, so a personal account cannot
//! pass itself off as a work account in a workspace that takes work or school accounts only.
//! Entra's `email` claim is optional and not verified by every tenant, which is why the
//! claims tried for the address, and their order, are configuration.

use crate::api::AccountType;
use serde_json::{Map, Value};

/// The tenant id of personal Microsoft accounts (MSA) in Microsoft Entra ID tokens (`tid`).
pub const MICROSOFT_CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Mail domains whose addresses are personal accounts, for email-link sign-in (where no
/// identity provider says which kind an account is): Microsoft's consumer domains and the
/// large consumer mail providers. Configurable; every other domain is work or school.
pub const DEFAULT_CONSUMER_DOMAINS: &[&str] = &[
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "passport.com",
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "gmx.de",
    "web.de",
    "mail.com",
    "yandex.com",
];

/// How the account type is read from a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountTypeRule {
    /// Microsoft Entra ID: `tid` is the consumer tenant for a personal account, any other
    /// tenant for a work or school account; a token without `tid` is refused.
    EntraTenant,
    /// Another provider: the claim `name` equal to `personal` (a string, or one of a list)
    /// means a personal account; otherwise work or school.
    Claim {
        /// The claim.
        name: String,
        /// The value that means personal.
        personal: String,
    },
}

/// Which claims say who the person is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRules {
    /// Claims tried in order for the email address (`email`, then `preferred_username`, then `upn`).
    pub email_claims: Vec<String>,
    /// How the account type is decided.
    pub account_type: AccountTypeRule,
    /// The claim holding group object ids (`groups`).
    pub groups_claim: String,
}

impl Default for ClaimRules {
    fn default() -> Self {
        ClaimRules {
            email_claims: ["email", "preferred_username", "upn"].map(String::from).to_vec(),
            account_type: AccountTypeRule::EntraTenant,
            groups_claim: "groups".into(),
        }
    }
}

/// A signed-in person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// The email address (normalized: trimmed, lower case): the identity the store's grants name.
    pub email: String,
    /// Work or school, or personal: from the token, not from the person.
    pub account_type: AccountType,
    /// Group object ids from the token, for Memberships whose subject is a Group.
    pub groups: Vec<String>,
    /// The provider did not list every group (Entra's "groups overage": more than fit in a
    /// token); group-based access must then be looked up, not assumed absent.
    pub groups_incomplete: bool,
}

/// Why a token does not identify a person. The messages name the claim.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// None of the email claims holds an address.
    #[error("the token carries no email address (looked at {0}); configure the claim that holds it")]
    NoEmail(String),
    /// An email claim holds something that is not an address.
    #[error("claim {claim}: {value:?} is not an email address")]
    NotAnEmail {
        /// The claim.
        claim: String,
        /// What it held (cut to 100 characters).
        value: String,
    },
    /// An Entra token without a tenant.
    #[error("claim tid: missing; a Microsoft Entra ID token names its tenant, which decides the account type")]
    NoTenant,
}

/// The person an ID token's (already verified) claims identify.
pub fn signed_in(claims: &Map<String, Value>, rules: &ClaimRules) -> Result<SignedIn, ClaimError> {
    let mut email = None;
    for claim in &rules.email_claims {
        if let Some(v) = claims.get(claim).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty()) {
            if !is_email(v) {
                let value = crate::validate::shown(v);
                return Err(ClaimError::NotAnEmail { claim: claim.clone(), value });
            }
            email = Some(v.to_ascii_lowercase());
            break;
        }
    }
    let email = email.ok_or_else(|| ClaimError::NoEmail(rules.email_claims.join(", ")))?;
    let account_type = match &rules.account_type {
        AccountTypeRule::EntraTenant => match claims.get("tid").and_then(Value::as_str) {
            None => return Err(ClaimError::NoTenant),
            Some(t) if t.eq_ignore_ascii_case(MICROSOFT_CONSUMER_TENANT) => AccountType::Personal,
            Some(_) => AccountType::WorkOrSchool,
        },
        AccountTypeRule::Claim { name, personal } => {
            let is = |v: &Value| v.as_str() == Some(personal.as_str());
            match claims.get(name) {
                Some(Value::Array(items)) if items.iter().any(is) => AccountType::Personal,
                Some(v) if is(v) => AccountType::Personal,
                _ => AccountType::WorkOrSchool,
            }
        }
    };
    let groups = claims
        .get(&rules.groups_claim)
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).map(str::to_ascii_lowercase).collect())
        .unwrap_or_default();
    // Entra replaces the list by a pointer to Graph when it is too long for a token.
    let groups_incomplete = claims
        .get("_claim_names")
        .and_then(Value::as_object)
        .is_some_and(|names| names.contains_key(&rules.groups_claim))
        || claims.get("hasgroups").and_then(Value::as_bool) == Some(true);
    Ok(SignedIn { email, account_type, groups, groups_incomplete })
}

/// The account type of an address signed in by email link: personal when its domain is
/// one of `consumer_domains` (any letter case), else work or school.
pub fn account_type_of_email(email: &str, consumer_domains: &[&str]) -> AccountType {
    let domain = email.trim().rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
    if consumer_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
        AccountType::Personal
    } else {
        AccountType::WorkOrSchool
    }
}

/// One `@`, something on both sides, a dot in the domain, no spaces.
fn is_email(v: &str) -> bool {
    match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !v.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_tenant_decides_the_account_type_not_the_person() {
        let rules = ClaimRules::default();
        let msa = claims(serde_json::json!({ "email": "Sam@Outlook.com", "tid": MICROSOFT_CONSUMER_TENANT }));
        let who = signed_in(&msa, &rules).expect("msa");
        assert_eq!((who.email.as_str(), who.account_type), ("sam@outlook.com", AccountType::Personal));
        let work =
            claims(serde_json::json!({ "email": "sam@outlook.com", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47" }));
        assert_eq!(signed_in(&work, &rules).expect("work").account_type, AccountType::WorkOrSchool);
        let none = claims(serde_json::json!({ "email": "a@contoso.com" }));
        assert_eq!(signed_in(&none, &rules), Err(ClaimError::NoTenant));
    }

    #[test]
    fn email_falls_back_through_the_configured_claims() {
        let rules = ClaimRules::default();
        let upn = claims(serde_json::json!({ "upn": "Adele.Vance@contoso.com", "tid": "t" }));
        assert_eq!(signed_in(&upn, &rules).expect("upn").email, "adele.vance@contoso.com");
        let preferred = claims(
            serde_json::json!({ "email": " ", "preferred_username": "lee@contoso.com", "upn": "x@y.z", "tid": "t" }),
        );
        assert_eq!(signed_in(&preferred, &rules).expect("preferred").email, "lee@contoso.com");
        let nothing = claims(serde_json::json!({ "sub": "123", "tid": "t" }));
        let e = signed_in(&nothing, &rules).expect_err("no email");
        assert!(e.to_string().contains("email, preferred_username, upn"), "{e}");
        let bad = claims(serde_json::json!({ "email": "not an address", "tid": "t" }));
        let e = signed_in(&bad, &rules).expect_err("bad");
        assert!(e.to_string().starts_with("claim email:"), "{e}");
    }

    #[test]
    fn another_provider_says_personal_through_a_configured_claim() {
        let rules = ClaimRules {
            account_type: AccountTypeRule::Claim { name: "acct".into(), personal: "consumer".into() },
            ..ClaimRules::default()
        };
        let personal = claims(serde_json::json!({ "email": "a@b.co", "acct": ["x", "consumer"] }));
        assert_eq!(signed_in(&personal, &rules).expect("p").account_type, AccountType::Personal);
        let work = claims(serde_json::json!({ "email": "a@b.co", "acct": "enterprise" }));
        assert_eq!(signed_in(&work, &rules).expect("w").account_type, AccountType::WorkOrSchool);
        let absent = claims(serde_json::json!({ "email": "a@b.co" }));
        assert_eq!(signed_in(&absent, &rules).expect("a").account_type, AccountType::WorkOrSchool);
    }

    #[test]
    fn groups_are_kept_and_an_overage_is_flagged() {
        let rules = ClaimRules::default();
        let g = "6F1C2F4E-2B7A-4D0C-9A51-3E8F0C2D9B10";
        let with = claims(serde_json::json!({ "email": "a@b.co", "tid": "t", "groups": [g] }));
        let who = signed_in(&with, &rules).expect("groups");
        assert_eq!((who.groups, who.groups_incomplete), (vec![g.to_ascii_lowercase()], false));
        let overage = claims(serde_json::json!({
            "email": "a@b.co", "tid": "t", "_claim_names": { "groups": "src1" }, "_claim_sources": {}
        }));
        assert!(signed_in(&overage, &rules).expect("overage").groups_incomplete);
    }

    #[test]
    fn email_link_accounts_are_personal_at_consumer_domains_only() {
        assert_eq!(account_type_of_email("Sam@Outlook.COM", DEFAULT_CONSUMER_DOMAINS), AccountType::Personal);
        assert_eq!(account_type_of_email("x@gmail.com", DEFAULT_CONSUMER_DOMAINS), AccountType::Personal);
        assert_eq!(account_type_of_email("adele@contoso.com", DEFAULT_CONSUMER_DOMAINS), AccountType::WorkOrSchool);
        // A subdomain is another domain: a company's own mail.outlook.com-like host is work.
        assert_eq!(account_type_of_email("a@corp.outlook.com", DEFAULT_CONSUMER_DOMAINS), AccountType::WorkOrSchool);
        assert_eq!(account_type_of_email("a@example.org", &["example.org"]), AccountType::Personal);
    }
}

//! Who may hold what: role scopes, effective permissions with their sources, refusals with
//! reasons, and the personal-account policy. Pure functions over the [`matrix`](super::matrix).

use super::matrix::{self, Access, Scope};
use crate::api::customer::AgreementKind;
use crate::api::membership::EffectivePermission;
use crate::api::{AccountType, Permission, Role};

/// Where a permission held by a member comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Inherited from holding a role.
    Role(Role),
    /// Granted to the member individually.
    Individual,
}

impl Source {
    /// `role:<Role>` or `individual`, as stored and shown.
    pub fn label(self) -> String {
        match self {
            Source::Role(r) => format!("role:{r}"),
            Source::Individual => "individual".to_owned(),
        }
    }

    /// Parse a stored label.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "individual" => Some(Source::Individual),
            _ => s.strip_prefix("role:").and_then(Role::parse).map(Source::Role),
        }
    }
}

/// Whether a Membership may assign `role` in `scope`. The service administrator role is
/// assigned only through the Customer's `serviceAdministrator`.
pub fn membership_may_assign(role: Role, scope: Scope) -> bool {
    match role {
        Role::ServiceAdministrator => false,
        Role::WorkspaceAdministrator => scope == Scope::Workspace,
        Role::GlobalAdministrator | Role::CustomerSuccessAccountManager | Role::IncidentManager => {
            scope == Scope::Customer
        }
        Role::User => true,
    }
}

/// Roles a Membership may assign in a scope, for messages.
pub fn assignable_roles(scope: Scope) -> Vec<Role> {
    Role::ALL.into_iter().filter(|r| membership_may_assign(*r, scope)).collect()
}

/// What a member holds in one scope.
#[derive(Clone, Debug, Default)]
pub struct Holding<'a> {
    /// Roles held that reach this scope. For a workspace this includes customer-level roles
    /// whose permissions apply in every workspace (CSAM, IM) and the service administrator.
    pub roles: &'a [Role],
    /// Permissions granted individually in this scope.
    pub individual: &'a [Permission],
    /// Whether the scope is the customer's default workspace (footnote 2 of the matrix).
    pub in_default_workspace: bool,
}

/// Why an individual grant is refused, or a warning about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantCheck {
    /// The grant is allowed.
    Allowed,
    /// Accepted with a warning, never granted.
    Deprecated(String),
    /// Refused, with a reason naming the permission, the roles and what would allow it.
    Refused(String),
}

/// Check one individual grant against the matrix for a member holding `roles` in `scope`.
pub fn check_individual(scope: Scope, roles: &[Role], permission: Permission) -> GrantCheck {
    let row = matrix::row_of(permission);
    if row.deprecated {
        return GrantCheck::Deprecated(format!(
            "permission {permission} is deprecated: it is accepted but never granted; remove it"
        ));
    }
    if row.scope != scope {
        let fix = match row.scope {
            Scope::Customer => "grant it in a Membership without workspaceRef",
            Scope::Workspace => "grant it in a Membership with a workspaceRef",
        };
        return GrantCheck::Refused(format!(
            "permission {permission} is a {}-level permission and cannot be granted at {} level: {fix}",
            row.scope.as_str(),
            scope.as_str()
        ));
    }
    let held = held_with_user(roles);
    let allowed = held.iter().any(|r| row.cells[r.column()].access != Access::None);
    if allowed {
        return GrantCheck::Allowed;
    }
    let with_it: Vec<String> = Role::ALL
        .into_iter()
        .filter(|r| row.cells[r.column()].access == Access::Inherited && membership_may_assign(*r, scope))
        .map(|r| r.to_string())
        .collect();
    let fix = if with_it.is_empty() {
        "no role a Membership can assign in this scope gives it".to_owned()
    } else {
        format!("it comes only with role {}; add that role instead", with_it.join(" or "))
    };
    GrantCheck::Refused(format!(
        "permission {permission} cannot be granted individually to a member holding {}: {fix}",
        names(&held)
    ))
}

/// Effective permissions in one scope: what the roles inherit plus the allowed individual
/// grants, each with every source, sorted by permission.
pub fn effective(scope: Scope, holding: &Holding<'_>) -> Vec<EffectivePermission> {
    let microsoft = holding.roles.iter().any(|r| r.is_microsoft());
    sources(scope, holding)
        .into_iter()
        .map(|(permission, sources)| EffectivePermission {
            permission,
            sources: sources.iter().map(|s| s.label()).collect(),
            export_allowed: !(microsoft && matrix::export_restricted(permission)),
        })
        .collect()
}

/// The grants to store for a member: one `(permission, source)` pair per source.
pub fn grants(scope: Scope, holding: &Holding<'_>) -> Vec<(Permission, Source)> {
    sources(scope, holding).into_iter().flat_map(|(p, sources)| sources.into_iter().map(move |s| (p, s))).collect()
}

/// Every permission held in `scope` with its sources, in matrix order.
fn sources(scope: Scope, holding: &Holding<'_>) -> Vec<(Permission, Vec<Source>)> {
    let held = held_with_user(holding.roles);
    let mut out = Vec::new();
    for row in matrix::MATRIX.iter().filter(|r| r.scope == scope && !r.deprecated) {
        let mut sources: Vec<Source> = held
            .iter()
            .filter(|r| {
                let cell = row.cells[r.column()];
                cell.access == Access::Inherited && (!cell.default_workspace_only || holding.in_default_workspace)
            })
            .map(|r| Source::Role(*r))
            .collect();
        if holding.individual.contains(&row.permission)
            && check_individual(scope, holding.roles, row.permission) == GrantCheck::Allowed
        {
            sources.push(Source::Individual);
        }
        if !sources.is_empty() {
            out.push((row.permission, sources));
        }
    }
    out
}

/// Whether a workspace accepts personal (MSA) accounts: its own exception if set, else the
/// agreement's default (Premier yes, Unified no).
pub fn personal_accounts_allowed(agreement: AgreementKind, exception: Option<bool>) -> bool {
    exception.unwrap_or(agreement.allows_personal_accounts_by_default())
}

/// Refuse a personal account where personal accounts are not allowed, saying why and what
/// the administrator can change.
pub fn check_account(
    account: AccountType,
    who: &str,
    workspace: &str,
    agreement: AgreementKind,
    exception: Option<bool>,
) -> Result<(), String> {
    if account != AccountType::Personal || personal_accounts_allowed(agreement, exception) {
        return Ok(());
    }
    let why = match exception {
        Some(false) => "the workspace sets allowPersonalAccounts: false".to_owned(),
        _ => format!("{} agreements accept only work or school accounts", agreement.as_str()),
    };
    Err(format!(
        "personal (MSA) account {who} is not allowed in workspace {workspace}: {why}; \
         an administrator can set spec.allowPersonalAccounts: true on the Workspace (the MSA exception)"
    ))
}

fn held_with_user(roles: &[Role]) -> Vec<Role> {
    let mut held: Vec<Role> = roles.to_vec();
    if !held.contains(&Role::User) {
        held.push(Role::User);
    }
    held.sort();
    held.dedup();
    held
}

fn names(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

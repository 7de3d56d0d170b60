//! The Services Hub permission matrix (seed 004), as ONE table.
//!
//! Rows are permissions, columns are roles in the order of [`Role::ALL`]:
//! `SA, WA, GA, CSAM, IM, User`. A cell says whether holding the role gives the permission
//! (`X`), whether it may be granted individually to a holder of the role (`G`), or neither
//! (`__`). The suffix `1` marks data that Microsoft users cannot export (footnote 1); `X2`
//! marks what the service administrator holds as workspace administrator of the default
//! workspace only (footnote 2). Correcting a cell is a one-line change here.

use crate::api::{Permission, Role};

/// Where a permission applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole customer (Admin Center features).
    Customer,
    /// One workspace.
    Workspace,
}

impl Scope {
    /// `customer` or `workspace`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Customer => "customer",
            Scope::Workspace => "workspace",
        }
    }
}

/// How a role relates to a permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Neither inherited nor grantable.
    None,
    /// Inherited by holding the role.
    Inherited,
    /// May be granted individually to a holder of the role.
    Grantable,
}

/// One cell of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Inherited, grantable or neither.
    pub access: Access,
    /// Footnote 1: Microsoft users cannot export this data.
    pub no_export: bool,
    /// Footnote 2: held only in the customer's default workspace.
    pub default_workspace_only: bool,
}

const fn cell(access: Access, no_export: bool, default_workspace_only: bool) -> Cell {
    Cell { access, no_export, default_workspace_only }
}

const __: Cell = cell(Access::None, false, false);
const X: Cell = cell(Access::Inherited, false, false);
const X1: Cell = cell(Access::Inherited, true, false);
const X2: Cell = cell(Access::Inherited, false, true);
const G: Cell = cell(Access::Grantable, false, false);
const G1: Cell = cell(Access::Grantable, true, false);

/// One row of the matrix.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// The permission.
    pub permission: Permission,
    /// Where it applies.
    pub scope: Scope,
    /// Deprecated: accepted on input with a warning, never granted.
    pub deprecated: bool,
    /// One cell per role, in the order of [`Role::ALL`].
    pub cells: [Cell; 6],
}

const fn row(permission: Permission, scope: Scope, cells: [Cell; 6]) -> Row {
    Row { permission, scope, deprecated: false, cells }
}

const fn deprecated(permission: Permission) -> Row {
    Row { permission, scope: Scope::Workspace, deprecated: true, cells: [__; 6] }
}

use Permission as P;
use Scope::{Customer as C, Workspace as W};

/// The matrix. Columns: SA, WA, GA, CSAM, IM, User.
#[rustfmt::skip]
pub const MATRIX: &[Row] = &[
    //   permission                                      scope   SA  WA  GA  CSAM IM  User
    row(P::CustomerLevelAdministrator,                   C,    [__, __, X,  __, __, __]),
    row(P::MicrosoftCustomerLevelAdministrator,          C,    [__, __, __, X,  __, __]),
    row(P::ViewOpenCanvas,                               C,    [X,  __, X,  X1, __, G1]),
    row(P::ManageOpenCanvas,                             C,    [X,  __, X,  X,  __, G ]),
    row(P::ViewCloudSupportRequestVisibilityDashboard,   C,    [X,  __, X,  X,  __, __]),
    row(P::ManageCloudSupportRequestVisibilityDashboard, C,    [X,  __, X,  __, __, __]),
    row(P::ViewEngagements,                              C,    [X,  __, X,  __, __, G ]),
    row(P::SupportContact,                               W,    [__, __, __, __, __, G ]),
    row(P::ViewAllSupportCases,                          W,    [X2, X,  __, X1, X,  G1]),
    row(P::LearningManager,                              W,    [X2, X,  __, X,  __, G ]),
    row(P::Learning,                                     W,    [X2, X,  __, X,  X,  G ]),
    row(P::CustomerActivity,                             W,    [X2, X,  __, X1, __, G1]),
    row(P::Programs,                                     W,    [X2, X,  __, X,  X,  G ]),
    row(P::InviteUsers,                                  W,    [X2, X,  __, X,  X,  G ]),
    row(P::ManageUsers,                                  W,    [X2, X,  __, X,  __, __]),
    row(P::Health,                                       W,    [X2, X,  __, X,  X,  G ]),
    row(P::SharedFiles,                                  W,    [X2, X,  __, X,  X,  G ]),
    deprecated(P::CustomerPulseSurvey),
    deprecated(P::ContractDetails),
];

/// The row of a permission. Every [`Permission`] has exactly one (a test checks it).
pub fn row_of(permission: Permission) -> &'static Row {
    MATRIX
        .iter()
        .find(|r| r.permission == permission)
        .unwrap_or_else(|| unreachable!("permission {permission} missing from MATRIX"))
}

/// The cell for a role and a permission.
pub fn cell_of(role: Role, permission: Permission) -> Cell {
    row_of(permission).cells[role.column()]
}

/// Whether the row holds footnote 1 anywhere: Microsoft users cannot export this data.
pub fn export_restricted(permission: Permission) -> bool {
    row_of(permission).cells.iter().any(|c| c.no_export)
}

/// Permissions of one scope that are not deprecated.
pub fn permissions_in(scope: Scope) -> impl Iterator<Item = Permission> {
    MATRIX.iter().filter(move |r| r.scope == scope && !r.deprecated).map(|r| r.permission)
}

/// The CEL rule a Membership's permissions must pass, generated from [`MATRIX`]: each
/// permission is deprecated (accepted with a warning), or held or grantable for `User` (which
/// every member holds), or for one of the roles the Membership assigns. The CRD carries a copy
/// of this text (`api::membership::permission_grantable_rule`); a test keeps them equal, so a
/// corrected cell tells you to paste the new text there.
pub fn grantable_cel_rule() -> String {
    let allowed = |role: Role| -> Vec<Permission> {
        MATRIX
            .iter()
            .filter(|r| !r.deprecated && r.cells[role.column()].access != Access::None)
            .map(|r| r.permission)
            .collect()
    };
    let quoted = |ps: &[Permission]| ps.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ");
    let mut always: Vec<Permission> = allowed(Role::User);
    always.extend(MATRIX.iter().filter(|r| r.deprecated).map(|r| r.permission));
    let user = allowed(Role::User);
    let by_role: Vec<String> = Role::ALL
        .into_iter()
        .filter(|r| !matches!(r, Role::User | Role::ServiceAdministrator))
        .filter_map(|role| {
            let extra: Vec<Permission> = allowed(role).into_iter().filter(|p| !user.contains(p)).collect();
            (!extra.is_empty()).then(|| format!("('{role}' in self.roles && p in [{}])", quoted(&extra)))
        })
        .collect();
    let by_role = if by_role.is_empty() { "false".to_owned() } else { by_role.join(" || ") };
    format!(
        "!has(self.permissions) || self.permissions.all(p, p in [{}] || (has(self.roles) && ({by_role})))",
        quoted(&always)
    )
}

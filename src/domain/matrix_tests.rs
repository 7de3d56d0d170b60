//! Every cell of the permission matrix, checked through behaviour (`effective`,
//! `check_individual`) against an independent copy of the table in DOMAIN.md.

use super::matrix::{Scope, export_restricted};
use super::rules::{GrantCheck, Holding, check_individual, effective};
use crate::api::{Permission, Role};

/// DOMAIN.md's tables, copied by hand. Columns: SA, WA, GA, CSAM, IM, User.
const EXPECTED: &str = "
C | CustomerLevelAdministrator                   |    |   | X |    |   |
C | MicrosoftCustomerLevelAdministrator          |    |   |   | X  |   |
C | ViewOpenCanvas                               | X  |   | X | X1 |   | G1
C | ManageOpenCanvas                             | X  |   | X | X  |   | G
C | ViewCloudSupportRequestVisibilityDashboard   | X  |   | X | X  |   |
C | ManageCloudSupportRequestVisibilityDashboard | X  |   | X |    |   |
C | ViewEngagements                              | X  |   | X |    |   | G
W | SupportContact                               |    |   |   |    |   | G
W | ViewAllSupportCases                          | X2 | X |   | X1 | X | G1
W | LearningManager                              | X2 | X |   | X  |   | G
W | Learning                                     | X2 | X |   | X  | X | G
W | CustomerActivity                             | X2 | X |   | X1 |   | G1
W | Programs                                     | X2 | X |   | X  | X | G
W | InviteUsers                                  | X2 | X |   | X  | X | G
W | ManageUsers                                  | X2 | X |   | X  |   |
W | Health                                       | X2 | X |   | X  | X | G
W | SharedFiles                                  | X2 | X |   | X  | X | G
";

fn expected() -> Vec<(Scope, Permission, Vec<String>)> {
    EXPECTED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<String> = line.split('|').map(|c| c.trim().to_owned()).collect();
            let scope = if cols[0] == "C" { Scope::Customer } else { Scope::Workspace };
            let p = Permission::parse(&cols[1]).expect("known permission");
            (scope, p, cols[2..].to_vec())
        })
        .collect()
}

fn holds(
    scope: Scope,
    role: Role,
    p: Permission,
    in_default: bool,
) -> Option<crate::api::membership::EffectivePermission> {
    let roles = [role];
    let h = Holding { roles: &roles, individual: &[], in_default_workspace: in_default };
    effective(scope, &h).into_iter().find(|e| e.permission == p)
}

#[test]
fn every_cell_behaves_as_the_domain_table_says() {
    let rows = expected();
    assert_eq!(rows.len(), 17, "17 live permissions");
    let mut cells = 0;
    for (scope, p, cols) in &rows {
        for (role, cell) in Role::ALL.iter().zip(cols.iter()) {
            cells += 1;
            let label = format!("{p} x {role} ({cell:?})");
            let got = holds(*scope, *role, *p, true);
            match cell.as_str() {
                "X" | "X1" => {
                    let e = got.unwrap_or_else(|| panic!("{label}: should be inherited"));
                    assert!(e.sources.contains(&format!("role:{role}")), "{label}");
                    // Footnote 1 restricts the data for every Microsoft user, whichever cell gives it.
                    let row_restricted = cols.iter().any(|c| c.ends_with('1'));
                    assert_eq!(export_restricted(*p), row_restricted, "{label}: footnote 1 on the row");
                    assert_eq!(e.export_allowed, !(role.is_microsoft() && row_restricted), "{label}: export flag");
                }
                "X2" => {
                    assert!(got.is_some(), "{label}: inherited in the default workspace");
                    assert!(holds(*scope, *role, *p, false).is_none(), "{label}: only in the default workspace");
                }
                "G" | "G1" => {
                    assert!(got.is_none(), "{label}: grantable is not inherited");
                    assert_eq!(check_individual(*scope, &[*role], *p), GrantCheck::Allowed, "{label}");
                    let granted = Holding { roles: &[*role], individual: &[*p], in_default_workspace: false };
                    let e = effective(*scope, &granted).into_iter().find(|e| e.permission == *p);
                    assert_eq!(e.map(|e| e.sources), Some(vec!["individual".to_owned()]), "{label}");
                    assert_eq!(cell == "G1", export_restricted(*p), "{label}: footnote 1 on the row");
                }
                "" => {
                    assert!(got.is_none(), "{label}: must not be inherited");
                    if *role == Role::User {
                        assert!(
                            matches!(check_individual(*scope, &[Role::User], *p), GrantCheck::Refused(_)),
                            "{label}: must not be grantable to a plain user"
                        );
                    }
                }
                other => panic!("bad expected cell {other:?}"),
            }
        }
    }
    assert_eq!(cells, 17 * 6);
}

#[test]
fn a_microsoft_member_cannot_export_footnote_one_data_even_when_granted() {
    let roles = [Role::IncidentManager];
    let h = Holding { roles: &roles, individual: &[Permission::CustomerActivity], in_default_workspace: false };
    let e = effective(Scope::Workspace, &h);
    let ca = e.iter().find(|e| e.permission == Permission::CustomerActivity).expect("granted");
    assert!(!ca.export_allowed);
    let learning = e.iter().find(|e| e.permission == Permission::Learning).expect("inherited");
    assert!(learning.export_allowed, "no footnote on Learning");
}

#[test]
fn deprecated_permissions_warn_and_are_never_granted() {
    for p in [Permission::CustomerPulseSurvey, Permission::ContractDetails] {
        for role in Role::ALL {
            assert!(matches!(check_individual(Scope::Workspace, &[role], p), GrantCheck::Deprecated(_)));
            let h = Holding { roles: &[role], individual: &[p], in_default_workspace: true };
            assert!(effective(Scope::Workspace, &h).iter().all(|e| e.permission != p));
        }
    }
}

#[test]
fn every_permission_has_exactly_one_row() {
    for row in super::matrix::MATRIX {
        let n = super::matrix::MATRIX.iter().filter(|r| r.permission == row.permission).count();
        assert_eq!(n, 1, "{}", row.permission);
        assert_eq!(Permission::parse(row.permission.as_str()), Some(row.permission));
    }
    assert_eq!(super::matrix::MATRIX.len(), 19);
}

#[test]
fn refusals_name_the_permission_the_roles_and_the_fix() {
    let GrantCheck::Refused(msg) = check_individual(Scope::Workspace, &[Role::User], Permission::ManageUsers) else {
        panic!("ManageUsers is not grantable")
    };
    assert!(msg.contains("ManageUsers") && msg.contains("User") && msg.contains("WorkspaceAdministrator"), "{msg}");
    let GrantCheck::Refused(msg) = check_individual(Scope::Workspace, &[], Permission::ViewOpenCanvas) else {
        panic!("customer permission in a workspace")
    };
    assert!(msg.contains("customer-level") && msg.contains("without workspaceRef"), "{msg}");
    let GrantCheck::Refused(msg) = check_individual(Scope::Customer, &[], Permission::CustomerLevelAdministrator)
    else {
        panic!("CLA is not grantable")
    };
    assert!(msg.contains("GlobalAdministrator"), "{msg}");
}

#[test]
fn membership_cel_scope_lists_match_the_domain() {
    use super::rules::assignable_roles;
    use crate::api::membership::{CUSTOMER_ROLES, WORKSPACE_ROLES, permission_scope_rule, role_scope_rule};
    assert_eq!(assignable_roles(Scope::Workspace), WORKSPACE_ROLES);
    assert_eq!(assignable_roles(Scope::Customer), CUSTOMER_ROLES);
    for r in WORKSPACE_ROLES.iter().chain(CUSTOMER_ROLES) {
        assert!(role_scope_rule().contains(&format!("'{r}'")), "{r} in the CEL rule");
    }
    for p in super::matrix::permissions_in(Scope::Customer) {
        assert!(permission_scope_rule().contains(&format!("'{p}'")), "{p} listed as customer-level in CEL");
    }
    for p in super::matrix::permissions_in(Scope::Workspace) {
        assert!(!permission_scope_rule().contains(&format!("'{p}'")), "{p} must not be listed as customer-level");
    }
}

#[test]
fn personal_accounts_follow_the_agreement_unless_the_workspace_says_otherwise() {
    use super::rules::{check_account, personal_accounts_allowed};
    use crate::api::AccountType::{Personal, WorkOrSchool};
    use crate::api::customer::AgreementKind::{Premier, Unified};
    assert!(personal_accounts_allowed(Premier, None));
    assert!(!personal_accounts_allowed(Unified, None));
    assert!(personal_accounts_allowed(Unified, Some(true)));
    assert!(!personal_accounts_allowed(Premier, Some(false)));
    assert!(check_account(WorkOrSchool, "a@b.c", "ns/ws", Unified, Some(false)).is_ok());
    let err = check_account(Personal, "a@outlook.com", "ns/ws", Unified, None).expect_err("refused");
    assert!(err.contains("a@outlook.com") && err.contains("allowPersonalAccounts: true"), "{err}");
    let err = check_account(Personal, "a@outlook.com", "ns/ws", Premier, Some(false)).expect_err("refused");
    assert!(err.contains("allowPersonalAccounts: false"), "{err}");
}

/// The CRD's grantability rule is the one the matrix generates.
#[test]
fn the_crds_grantability_rule_is_generated_from_the_matrix() {
    let generated = super::matrix::grantable_cel_rule();
    assert!(
        crate::api::membership::permission_grantable_rule() == generated,
        "the matrix changed: set PERMISSION_GRANTABLE_RULE in src/api/membership.rs to\n{generated}\nand regenerate crds/"
    );
}

/// Evaluated as the API server does, the rule accepts exactly what the planner's check
/// accepts, for every permission and every set of roles a Membership can hold.
#[test]
fn the_grantability_rule_decides_like_the_matrix() {
    let assignable = [
        Role::WorkspaceAdministrator,
        Role::GlobalAdministrator,
        Role::CustomerSuccessAccountManager,
        Role::IncidentManager,
        Role::User,
    ];
    let mut checked = 0;
    for mask in 0u32..(1 << assignable.len()) {
        let roles: Vec<Role> =
            assignable.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, r)| *r).collect();
        for row in super::matrix::MATRIX {
            let p = row.permission;
            let expected = !matches!(check_individual(row.scope, &roles, p), GrantCheck::Refused(_));
            let spec = serde_json::json!({
                "customerRef": { "name": "c" },
                "subject": { "kind": "User", "email": "kim@fabrikam.com" },
                "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "permissions": [p.as_str()],
            });
            let m = crate::api::Membership::new("kim", serde_json::from_value(spec).expect("spec"));
            let refused = match m.validate_cel() {
                Ok(()) => false,
                Err(e) => {
                    e.into_vec().iter().any(|e| e.message == crate::api::membership::PERMISSION_GRANTABLE_MESSAGE)
                }
            };
            assert_eq!(!refused, expected, "{p} with roles {roles:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 32 * super::matrix::MATRIX.len());
}

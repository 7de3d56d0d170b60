//! "What can this person see, in which workspace?" and "who holds permission P in workspace
//! W?": the answers `servicehub get access` and the console's access pages share, read from
//! the store's grants (never recomputed from specs), and who may ask them.

use crate::api::{Permission, Role};
use crate::domain::rules::Source;
use crate::store::{CustomerRow, GrantRow, Store, StoreError};
use std::collections::BTreeSet;

/// One permission a subject holds in one scope.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLine {
    /// Namespace of the customer.
    pub namespace: String,
    /// Customer name.
    pub customer: String,
    /// The workspace, or `None` at customer level.
    pub workspace: Option<String>,
    /// The permission.
    pub permission: Permission,
    /// `role:<Role>` or `individual`, one per source.
    pub sources: Vec<String>,
    /// The group it comes through (a `groups` claim of the session), if not the person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub through_group: Option<String>,
    /// `false` for data a Microsoft role may see and not export (the matrix's footnote 1).
    pub export_allowed: bool,
}

/// Every permission `subjects` (a normalized email, `group:<id>`) hold in the customers of
/// `namespace` (all when `None`), or of `customers` when given: customer level first, then
/// workspaces by name, permissions in the matrix's order.
pub async fn lines(
    db: &dyn Store,
    customers: &[CustomerRow],
    subjects: &[String],
) -> Result<Vec<AccessLine>, StoreError> {
    let mut items = Vec::new();
    for c in customers {
        for subject in subjects {
            for view in db.visible_to(&c.record.uid, subject).await? {
                let mut by_permission: Vec<(Permission, Vec<String>)> = Vec::new();
                for g in &view.grants {
                    match by_permission.iter_mut().find(|(p, _)| *p == g.permission) {
                        Some((_, sources)) => sources.push(g.source.label()),
                        None => by_permission.push((g.permission, vec![g.source.label()])),
                    }
                }
                items.extend(by_permission.into_iter().map(|(permission, sources)| AccessLine {
                    namespace: c.record.namespace.clone(),
                    customer: c.record.name.clone(),
                    workspace: view.workspace.clone(),
                    permission,
                    sources,
                    through_group: subject.strip_prefix("group:").map(str::to_owned),
                    export_allowed: !view.no_export.contains(&permission),
                }));
            }
        }
    }
    items.sort_by(|a, b| {
        (&a.namespace, &a.customer, &a.workspace, a.permission, &a.through_group).cmp(&(
            &b.namespace,
            &b.customer,
            &b.workspace,
            b.permission,
            &b.through_group,
        ))
    });
    Ok(items)
}

/// Why a holders question cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum HoldersError {
    /// No such permission.
    #[error("unknown permission {0:?}; see `servicehub explain membership.spec.permissions`")]
    UnknownPermission(String),
    /// No such workspace in the customer(s).
    #[error("workspace {0} is not in the store")]
    UnknownWorkspace(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who holds `permission` in the workspace `namespace/workspace`, directly or through a role,
/// including customer-level members whose permission reaches every workspace.
pub async fn holders(
    db: &dyn Store,
    namespace: &str,
    workspace: &str,
    permission: &str,
) -> Result<Vec<GrantRow>, HoldersError> {
    let p = Permission::parse(permission).ok_or_else(|| HoldersError::UnknownPermission(permission.to_owned()))?;
    let found = db.workspaces(Some(namespace)).await?.into_iter().find(|x| x.record.name == workspace);
    let unknown = || HoldersError::UnknownWorkspace(format!("{namespace}/{workspace}"));
    let found = found.ok_or_else(unknown)?;
    Ok(db.holders(&found.record.customer_uid, &found.record.id, p.as_str()).await?)
}

/// How far a person's look-ups reach in one customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Everything: a Global Administrator or CSAM at customer level.
    Customer,
    /// Only these workspaces (by name): a Workspace Administrator there.
    Workspaces(BTreeSet<String>),
    /// Nothing.
    Nothing,
}

impl Reach {
    /// Whether the workspace named `w` (customer level when `None`) is within reach.
    pub fn covers(&self, w: Option<&str>) -> bool {
        match (self, w) {
            (Reach::Customer, _) => true,
            (Reach::Workspaces(set), Some(w)) => set.contains(w),
            _ => false,
        }
    }
}

/// How far `subjects` (the person's email and groups) reach in `customer`: Global
/// Administrators and CSAM at customer level see everyone there; Workspace Administrators
/// see the workspaces they administer.
pub async fn reach(db: &dyn Store, customer: &CustomerRow, subjects: &[String]) -> Result<Reach, StoreError> {
    let mut workspaces = BTreeSet::new();
    for subject in subjects {
        for view in db.visible_to(&customer.record.uid, subject).await? {
            let holds = |role: Role| view.grants.iter().any(|g| g.source == Source::Role(role));
            match &view.workspace {
                None if holds(Role::GlobalAdministrator) || holds(Role::CustomerSuccessAccountManager) => {
                    return Ok(Reach::Customer);
                }
                Some(w) if holds(Role::WorkspaceAdministrator) => {
                    workspaces.insert(w.clone());
                }
                _ => {}
            }
        }
    }
    Ok(if workspaces.is_empty() { Reach::Nothing } else { Reach::Workspaces(workspaces) })
}

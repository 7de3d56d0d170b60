//! Role and permission names as they appear in YAML. What each role inherits and what may be
//! granted individually is decided by the permission matrix in `crate::domain::matrix`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Services Hub role.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum Role {
    /// Service Administrator (customer): workspace administrator of the default workspace and
    /// full access to the Cloud Support Request Visibility dashboard. Set by the Customer's
    /// `serviceAdministrator`, never by a Membership.
    ServiceAdministrator,
    /// Workspace Administrator (customer): every permission within one workspace.
    WorkspaceAdministrator,
    /// Services Hub Global Administrator (customer): administration and feature access at customer level.
    GlobalAdministrator,
    /// Customer Success Account Manager (Microsoft): administration at customer level and in
    /// each of the customer's workspaces. Cannot export data.
    CustomerSuccessAccountManager,
    /// Incident Manager (Microsoft): access to each of the customer's workspaces with a subset
    /// of permissions. Cannot export data.
    IncidentManager,
    /// User (customer): only what is granted individually. Every member holds it implicitly.
    User,
}

impl Role {
    /// Every role, in the column order of the permission matrix.
    pub const ALL: [Role; 6] = [
        Role::ServiceAdministrator,
        Role::WorkspaceAdministrator,
        Role::GlobalAdministrator,
        Role::CustomerSuccessAccountManager,
        Role::IncidentManager,
        Role::User,
    ];

    /// The name as written in YAML and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ServiceAdministrator => "ServiceAdministrator",
            Role::WorkspaceAdministrator => "WorkspaceAdministrator",
            Role::GlobalAdministrator => "GlobalAdministrator",
            Role::CustomerSuccessAccountManager => "CustomerSuccessAccountManager",
            Role::IncidentManager => "IncidentManager",
            Role::User => "User",
        }
    }

    /// Parse a stored or typed role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Index of the role's column in the permission matrix.
    pub fn column(self) -> usize {
        self as usize
    }

    /// Microsoft-side roles (CSAM, IM): holders cannot export data from the hub.
    pub fn is_microsoft(self) -> bool {
        matches!(self, Role::CustomerSuccessAccountManager | Role::IncidentManager)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Services Hub permission. Customer-level permissions apply to the whole customer;
/// workspace-level permissions apply within one workspace.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum Permission {
    /// Customer level: Customer Level Administrator.
    CustomerLevelAdministrator,
    /// Customer level: Microsoft Customer Level Administrator.
    MicrosoftCustomerLevelAdministrator,
    /// Customer level: view Open Canvas.
    ViewOpenCanvas,
    /// Customer level: manage Open Canvas.
    ManageOpenCanvas,
    /// Customer level: view the Cloud Support Request Visibility dashboard.
    ViewCloudSupportRequestVisibilityDashboard,
    /// Customer level: manage the Cloud Support Request Visibility dashboard.
    ManageCloudSupportRequestVisibilityDashboard,
    /// Customer level: view engagements.
    ViewEngagements,
    /// Workspace level: Support Contact, open and view one's own support requests.
    SupportContact,
    /// Workspace level: view all support cases of the workspace (may still not show cases
    /// whose cloud assets lack consent).
    ViewAllSupportCases,
    /// Workspace level: Learning Manager.
    LearningManager,
    /// Workspace level: Learning.
    Learning,
    /// Workspace level: Customer Activity.
    CustomerActivity,
    /// Workspace level: Programs.
    Programs,
    /// Workspace level: invite users to the workspace.
    InviteUsers,
    /// Workspace level: manage the workspace's users.
    ManageUsers,
    /// Workspace level: Health (on-demand assessments).
    Health,
    /// Workspace level: Shared Files.
    SharedFiles,
    /// Deprecated: accepted with a warning and never granted.
    CustomerPulseSurvey,
    /// Deprecated: accepted with a warning and never granted.
    ContractDetails,
}

impl Permission {
    /// The name as written in YAML and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::CustomerLevelAdministrator => "CustomerLevelAdministrator",
            Permission::MicrosoftCustomerLevelAdministrator => "MicrosoftCustomerLevelAdministrator",
            Permission::ViewOpenCanvas => "ViewOpenCanvas",
            Permission::ManageOpenCanvas => "ManageOpenCanvas",
            Permission::ViewCloudSupportRequestVisibilityDashboard => "ViewCloudSupportRequestVisibilityDashboard",
            Permission::ManageCloudSupportRequestVisibilityDashboard => "ManageCloudSupportRequestVisibilityDashboard",
            Permission::ViewEngagements => "ViewEngagements",
            Permission::SupportContact => "SupportContact",
            Permission::ViewAllSupportCases => "ViewAllSupportCases",
            Permission::LearningManager => "LearningManager",
            Permission::Learning => "Learning",
            Permission::CustomerActivity => "CustomerActivity",
            Permission::Programs => "Programs",
            Permission::InviteUsers => "InviteUsers",
            Permission::ManageUsers => "ManageUsers",
            Permission::Health => "Health",
            Permission::SharedFiles => "SharedFiles",
            Permission::CustomerPulseSurvey => "CustomerPulseSurvey",
            Permission::ContractDetails => "ContractDetails",
        }
    }

    /// Parse a stored or typed permission name.
    pub fn parse(s: &str) -> Option<Permission> {
        crate::domain::matrix::MATRIX.iter().map(|row| row.permission).find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

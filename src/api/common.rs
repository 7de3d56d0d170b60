//! Types shared by several kinds.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CEL rule text shared by every email field. Deliberately simple (one `@`, a dot in the
/// domain, no spaces): the Services Hub itself decides what a valid account is.
pub const EMAIL_RULE: &str = r"self.matches('^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$')";
/// Message shown when [`EMAIL_RULE`] fails.
pub const EMAIL_MESSAGE: &str = "must be an email address such as ada@contoso.com";

/// An email address used to sign in to the Services Hub, e.g. `ada@contoso.com`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct Email(pub String);

impl JsonSchema for Email {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Email".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 3,
            "maxLength": 254,
            "x-kubernetes-validations": [{ "rule": EMAIL_RULE, "message": EMAIL_MESSAGE }],
        })
    }
}

impl Email {
    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address lower-cased: the store compares emails case-insensitively.
    pub fn normalized(&self) -> String {
        self.0.trim().to_ascii_lowercase()
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Email {
    fn from(s: &str) -> Self {
        Email(s.to_owned())
    }
}

/// Kind of sign-in account.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum AccountType {
    /// A work or school account (Microsoft Entra ID). Accepted in every workspace.
    #[default]
    WorkOrSchool,
    /// A personal Microsoft account (MSA). Accepted in Premier workspaces; in Unified
    /// workspaces only where `allowPersonalAccounts` is true.
    Personal,
}

impl AccountType {
    /// The name as written in YAML and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::WorkOrSchool => "WorkOrSchool",
            AccountType::Personal => "Personal",
        }
    }
}

/// A person named in a spec: invited by email, shown by display name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Sign-in email address. The invitation is sent here.
    pub email: Email,
    /// Name shown in the Services Hub and in the invitation. Defaults to the email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// Kind of account: `WorkOrSchool` (the default) or `Personal` (a Microsoft account).
    #[serde(default)]
    pub account_type: AccountType,
}

impl Person {
    /// The display name, falling back to the email address.
    pub fn shown_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(self.email.as_str())
    }
}

/// A reference to another object of this API in the same namespace. Immutable once set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: delete and re-create the object to move it"))]
pub struct LocalRef {
    /// Name of the referenced object, in this object's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl From<&str> for LocalRef {
    fn from(name: &str) -> Self {
        LocalRef { name: name.to_owned() }
    }
}

/// What happens in the Services Hub when this object is deleted from the cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove what this object provisioned: revoke grants, cancel pending invitations,
    /// remove workspaces. User records and the audit log are kept. The default, so that
    /// removing an object from Git removes the access it gave.
    #[default]
    Delete,
    /// Leave everything in the Services Hub as it is; only stop managing it.
    Orphan,
}

/// Whether the operator makes the store match the object, or only reports how it differs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Make the store match this object (the default).
    #[default]
    Manage,
    /// Change nothing: report how the store differs from this object (status `differences`,
    /// condition `Synced=False` with reason `DriftDetected`). Switching to `Manage` applies
    /// what is reported.
    Observe,
}

impl ManagementPolicy {
    /// Whether this is the default, `Manage` (left out when serializing, so a spec's hash, and
    /// with it the store's record of the spec, is the same as before the field existed).
    pub fn is_manage(&self) -> bool {
        *self == ManagementPolicy::Manage
    }
}

/// The status fields every kind shares (flattened into each status): how an observed object
/// differs from the store, and the store id an adopted object is kept under.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tracking {
    /// With `managementPolicy: Observe`: how the store differs from this object (the first 20;
    /// `differenceCount` has them all). Empty when it matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub differences: Vec<String>,
    /// With `managementPolicy: Observe`: how many differences there are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference_count: Option<i64>,
    /// The id the store keeps this object's rows under, when it is not `metadata.uid`: the id
    /// adopted through the `servicehub.io/adopt` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
}

/// A duration written as a Go duration string (`12h`, `90m`, `1h30m`), as Kubernetes APIs
/// write them. The text is kept as the user wrote it, so it round-trips unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: std::time::Duration,
}

impl GoDuration {
    /// A duration from a literal known to be valid (defaults).
    pub(crate) fn from_static(text: &'static str) -> GoDuration {
        text.parse().unwrap_or_else(|e| unreachable!("static duration {text}: {e}"))
    }

    /// The parsed length.
    pub fn get(&self) -> std::time::Duration {
        self.value
    }

    /// Whole seconds (deadlines are kept at whole-second precision).
    pub fn seconds(&self) -> i64 {
        i64::try_from(self.value.as_secs()).unwrap_or(i64::MAX)
    }
}

impl std::str::FromStr for GoDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d: kube::core::Duration = s.parse().map_err(|e| format!("invalid duration {s:?}: {e}"))?;
        if d.is_negative() {
            return Err(format!("duration {s:?} must not be negative"));
        }
        let value = std::time::Duration::from(d);
        Ok(GoDuration { text: s.to_owned(), value })
    }
}

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Not `format: duration`: that format means ISO 8601 in OpenAPI.
        schemars::json_schema!({ "type": "string", "maxLength": 32 })
    }
}

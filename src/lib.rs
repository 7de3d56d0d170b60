//! servicehub-operator: declarative provisioning of Services Hub customers, workspaces,
//! memberships and Customer Lockbox policies.

pub mod api;
pub mod cli;
pub mod domain;
pub mod engine;
pub mod plan;
pub mod store;
pub mod telemetry;
pub mod validate;

/// RFC 3339 text of a Unix-seconds time, for tables.
pub fn plan_time(seconds: i64) -> Option<String> {
    jiff::Timestamp::from_second(seconds).ok().map(|t| t.to_string())
}

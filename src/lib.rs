//! servicehub-operator: declarative provisioning of Services Hub customers, workspaces,
//! memberships and Customer Lockbox policies.

pub mod access;
pub mod api;
pub mod auth;
pub mod cli;
pub mod controller;
pub mod domain;
pub mod engine;
pub mod files;
pub mod http;
pub mod lockbox;
pub mod notify;
pub mod plan;
pub mod store;
pub mod telemetry;
pub mod validate;
pub mod web;

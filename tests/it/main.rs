//! All integration tests in one binary (one link, shared helpers), one module per capability.

mod adopt;
mod api;
#[path = "../apiserver/mod.rs"]
mod apiserver;
mod apply;
mod browser;
mod cel_cost;
mod chart;
mod cli;
mod cluster;
mod console;
mod console_access;
mod console_lockbox;
mod controller;
mod crash;
mod crds;
mod emulator;
mod emulator_http;
mod focus;
mod helm;
mod hostile;
mod import;
mod invitations;
mod lockbox;
mod notify;
mod observe;
mod oidc;
mod output;
mod pause;
mod race;
mod readme;
mod shutdown;
mod store;
mod support;
mod validate;

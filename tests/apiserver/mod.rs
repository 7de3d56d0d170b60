//! An in-process Kubernetes API server emulation for tests and benchmarks. It lives with the
//! tests (included by `tests/it` and `benches/emulator.rs` through `#[path]`), never in the
//! shipped binary.
//!
//! [`http::ApiServer::start`] serves, on a loopback port, what kube-rs and kubectl need:
//! - discovery (`/version`, `/api`, `/apis`, group-version resource lists with short names
//!   and categories), the built-in kinds the operator touches (Namespaces, Leases, Events —
//!   written through events.k8s.io/v1, readable through core/v1 as `kubectl describe` does —
//!   CustomResourceDefinitions) and the four servicehub.io CRDs;
//! - get, list (label selectors, `limit`/`continue`), create, update, delete, and patches:
//!   merge, JSON and server-side apply (field managers, 409 on conflicting owners, `force`,
//!   removal of fields a manager stops applying);
//! - watches: newline-delimited ADDED/MODIFIED/DELETED events, resume from a version,
//!   BOOKMARKs when allowed, 410 as an ERROR event when the version is compacted;
//! - object semantics ([`registry`]): one cluster-wide resourceVersion, generation on spec
//!   changes only, the status subresource, finalizers and deletionTimestamp, 409 on stale
//!   updates, schema and CEL validation with 422s, pruning or strict unknown fields;
//! - failure injection: failing requests, latency, dropped watches, a restart with the same
//!   data; request counts.
//!
//! Simplifications, none of which the operator depends on: list pages read current state
//! (not a snapshot of the first page's version); in server-side apply, lists are atomic and
//! update or merge-patch writes do not take field ownership; `managedFields` has the size
//! and shape a real server gives it (a client's Update of the spec, the finalizer's Update,
//! the status Apply) but does not track who wrote what; there is no OpenAPI document, so kubectl runs with `--validate=false`.

pub mod http;
pub mod registry;

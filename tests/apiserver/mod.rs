//! An in-process Kubernetes API server emulation for tests and benchmarks (issue 5, in
//! progress). It lives with the tests, never in the shipped binary.
//!
//! This first slice is the object registry: the API semantics the operator relies on,
//! without HTTP. Resource versions are one cluster-wide counter; `metadata.generation`
//! moves on spec changes only; the `status` subresource changes only status and the main
//! resource ignores status; a delete of an object with finalizers only sets
//! `deletionTimestamp`, and the object goes when its last finalizer is removed; a stale
//! `resourceVersion` on update is a 409; a watch resumed from a compacted version is a 410.

pub mod http;
pub mod registry;

//! All integration tests in one binary (one link, shared helpers), one module per capability.

mod apply;
mod crash;
mod crds;
mod store;
mod support;
mod validate;

//! All integration tests in one binary (one link, shared helpers), one module per capability.

mod crds;
mod support;
mod validate;

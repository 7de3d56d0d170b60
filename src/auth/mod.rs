//! Identity: who is acting, from what a sign-in proved.
//!
//! - [`claims`]: ID-token claims and sign-in email addresses mapped to a person (pure).
//! - [`oidc`]: OpenID Connect sign-in (authorization code with PKCE) and bearer ID tokens.
//! - [`session`]: session cookies, CSRF tokens, lifetimes.
//! - [`ratelimit`]: per-address and per-email limits of the unauthenticated endpoints.
//!
//! The console ([`crate::web`]) puts these together; the store keeps sessions and sign-in
//! links as hashes only.

pub mod claims;
pub mod oidc;
pub mod ratelimit;
pub mod session;

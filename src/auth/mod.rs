//! Identity: who is acting, from what a sign-in proved.
//!
//! This is the first, pure part of the sign-in work (issue 15): ID-token claims and sign-in
//! email addresses mapped to a [`claims::SignedIn`] person, unit-tested without a provider.
//! The OpenID Connect flow, email-link sign-in, sessions and CSRF build on it; nothing in
//! the binary calls it yet.

pub mod claims;

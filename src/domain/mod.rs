//! Pure domain rules: the permission matrix, account-type policy, refusals and the Lockbox
//! request lifecycle. No I/O.

pub mod actor;
pub mod lockbox;
pub mod matrix;
pub mod rules;
pub mod time;

#[cfg(test)]
mod matrix_tests;

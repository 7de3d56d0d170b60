//! Pure domain rules: the permission matrix, account-type policy and refusals. No I/O.

pub mod matrix;
pub mod rules;

#[cfg(test)]
mod matrix_tests;

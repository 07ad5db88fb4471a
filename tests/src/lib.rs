//! Holder crate for the end-to-end tests in `tests/e2e/` (one test binary).

pub mod pg;

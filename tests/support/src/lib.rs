//! Test support for every suite of the workspace (unit tests, integration and end-to-end
//! tests, benchmarks, examples): one synthetic sales history, one place that trains the small
//! LightGBM boosters the tests serve, one manifest builder, and scoring payloads written
//! directly.
//!
//! A dev-dependency only. It links LightGBM and computes check rows with the trainer's own
//! `check_rows`, so a test manifest carries what `demand train` would have written.

// A failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod booster;
pub mod manifest;
pub mod payload;
pub mod synthetic;
pub mod trained;

pub use synthetic::FEATURES;

//! GPU test suite: one binary, so one device and one pipeline cache serve every test (pipeline
//! compilation dominates on lavapipe).
//!
//! Without an adapter every test prints `SKIPPED (no GPU adapter)`; with `NSHAP_REQUIRE_GPU=1`
//! (CI, with lavapipe installed) a missing adapter fails them instead.

mod blocks;
mod common;
mod device;
mod errors;
mod fixtures;
mod ops;
mod reference;
mod split;
mod tables;

//! Oracles for the stream framer: what the differential tests
//! (`tests/framer_diff.rs`) and the `framer_diff` fuzz target compare it with.

pub mod expat;
pub mod rxml;

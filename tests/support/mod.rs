//! Shared test support: the daemon as a child process, a raw XEP-0114 client, and
//! the record of tests that could not run here.
#![allow(dead_code)]

pub mod comp;
pub mod daemon;
pub mod not_run;

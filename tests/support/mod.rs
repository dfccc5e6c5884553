//! Shared test support: the daemon as a child process, and a raw XEP-0114 client.
#![allow(dead_code)]

pub mod comp;
pub mod daemon;

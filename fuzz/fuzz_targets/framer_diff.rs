//! The stream framer against the rxml-based framer it replaced (the oracle in
//! `crates/test-support/src/oracle/rxml.rs`, shared with `tests/framer_diff.rs`)
//! and against expat (`crates/test-support/src/oracle/expat.rs`, the system
//! libexpat).
//!
//! Input: byte 0 says how to feed the rest. Bit 0: put a valid stream header
//! before it (so the stanza-level code is reached); bits 1-2: the limits;
//! bits 3-7: the chunk size (0: whole input only; 1-16: that many bytes;
//! 17-31: multiples of 61). Checked, as in `tests/framer_diff.rs`: the new
//! framer gives the same frames and error fed whole and in chunks, and the
//! same as the oracle, up to the differences the oracle's documentation allows.
//! A failure panics with both outcomes and the input as a byte-string literal,
//! shortened by deleting bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

use test_support::fuzz_limits as limits;
use test_support::oracle::{expat as expat_oracle, rxml as rxml_oracle};
use test_support::stanza::DECL_HEADER_A;

const HEADER: &[u8] = DECL_HEADER_A.as_bytes();

fuzz_target!(|input: &[u8]| {
    let Some((&how, rest)) = input.split_first() else {
        return;
    };
    let data = if how & 1 == 1 {
        [HEADER, rest].concat()
    } else {
        rest.to_vec()
    };
    let limits = limits::pick((how >> 1) & 3);
    let chunk = match (how >> 3) as usize {
        0 => None,
        n @ 1..=16 => Some(n),
        n => Some((n - 16) * 61),
    };
    let chunkings: Vec<Vec<usize>> = chunk.into_iter().map(|n| vec![n]).collect();
    if let Err(msg) = rxml_oracle::check_input_minimized(&data, &chunkings, limits) {
        panic!("{msg}");
    }
    if let Err(msg) = expat_oracle::check_minimized(&data, limits) {
        panic!("{msg}");
    }
});

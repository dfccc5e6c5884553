//! The wire: bytes on a socket to frames and back, for both sockets the router
//! has (component connections and upstream links).
//!
//! - [`xml`]: the framer, a zero-allocation XML scanner giving the byte spans of
//!   top-level elements and what routing reads of them.
//! - [`stanza`]: what the router itself writes: headers, stream errors, bounces.
//! - `reader`: one framed reader (the read half, the framer, read sizing).
//! - `writer`: one writer (batching, keepalive, write stall, graceful close)
//!   that hands back what it did not write; `out`: what it writes, stanzas
//!   with what the framer read of them.
//! - `socket`: the options of every socket (keepalive, `TCP_USER_TIMEOUT`).

pub(crate) mod out;
pub(crate) mod reader;
pub(crate) mod socket;
pub mod stanza;
pub(crate) mod writer;
pub mod xml;

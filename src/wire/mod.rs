//! The wire: bytes on a socket to frames and back, for both sockets the router
//! has (component connections and upstream links).
//!
//! - [`xml`]: the framer, a zero-allocation XML scanner giving the byte spans of
//!   top-level elements and what routing reads of them.
//! - [`stanza`]: what the router itself writes: headers, stream errors, bounces.
//! - `reader`: one framed reader (the read half, the framer, read sizing).
//! - `socket`: the options of every socket (keepalive, `TCP_USER_TIMEOUT`).

pub(crate) mod reader;
pub(crate) mod socket;
pub mod stanza;
pub mod xml;

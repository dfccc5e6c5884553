//! The wire: bytes on a socket to frames and back, for both sockets the router
//! has (component connections and upstream links).
//!
//! - [`xml`]: the framer, a zero-allocation XML scanner giving the byte spans of
//!   top-level elements and what routing reads of them.
//! - [`stanza`]: what the router itself writes: headers, stream errors, bounces.

pub mod stanza;
pub mod xml;

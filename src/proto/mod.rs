//! The vocabulary of the protocol, shared by every layer above it: namespace
//! names ([`ns`]), the stream and stanza error conditions ([`condition`]), the
//! XEP-0114 handshake digest and stream ids ([`handshake`]), and just enough JID
//! parsing for routing ([`jid`]). Nothing here does I/O or knows a connection.

pub mod condition;
pub mod handshake;
pub mod jid;
pub mod ns;

pub use condition::{ErrorType, StanzaCondition, StreamCondition};
pub use handshake::{handshake_digest, handshake_matches, handshake_token, new_stream_id};

//! xmpp-component-router: a XEP-0114 component router and gateway in front of Prosody.
//!
//! Layers, each importing only from the ones above it in this list (the README's
//! code map has every file):
//! - counters: [`metrics`] (per-connection and per-domain counters, Prometheus
//!   exposition, the status document and client, the health check); it imports
//!   nothing of the router, and every layer below counts into it.
//! - vocabulary: [`proto`] (namespaces, error conditions, the XEP-0114 handshake
//!   digest and stream ids, JIDs for routing); [`config`] and [`prosody_config`]
//!   (the TOML config and the declarative subset of prosody.cfg.lua it can read).
//! - wire: [`wire`]: the stream framer (a zero-allocation XML scanner giving byte
//!   spans of top-level stanzas, every well-formedness check, limits), what the
//!   router writes (headers, stream errors, bounces), one framed reader and one
//!   writer for both kinds of socket, socket options.
//! - sessions: `session`: the bounded outbox, a connection's control (kill with
//!   a stream error), the detach gate, the upstream link's handle.
//! - routing: `router`: the routing table, one served domain (its set of
//!   sessions, its upstream link, its hold while its component restarts), how a
//!   balanced set is shared, and the one routing decision.
//! - protocol sides: `accept` (a component's connection, XEP-0114 server side)
//!   and `upstream` (a domain's link to the XMPP server, client side).
//! - daemon: [`daemon`]: listeners and admission, signals, reload (the one place
//!   that changes the running daemon), shutdown.
//! - beside them: [`cli`] (command line, exit codes, `--check`, `status`),
//!   [`logging`], `systemd` (sd_notify).

mod accept;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod metrics;
pub mod prosody_config;
pub mod proto;
mod router;
mod session;
mod systemd;
mod upstream;
pub mod wire;

/// The framer, at the crate root for the tests, benchmarks and fuzz targets
/// that drive it directly.
pub use wire::xml;

/// How a balanced domain's stanzas are spread, for its benchmark.
#[doc(hidden)]
pub use router::balance;

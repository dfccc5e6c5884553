//! xmpp-component-router: a XEP-0114 component router and gateway in front of Prosody.
//!
//! Module map (one concept each):
//! - [`cli`]: command line (clap), exit codes, `--check` output.
//! - [`config`]: the TOML config: parse, validate, diff.
//! - [`prosody_config`]: the declarative subset of prosody.cfg.lua that declares components.
//! - [`proto`]: the protocol's vocabulary: namespaces, error conditions, the
//!   XEP-0114 handshake digest and stream ids, JID parsing for routing.
//! - [`wire`]: stream framing (a zero-allocation XML scanner giving byte spans of
//!   top-level stanzas, every well-formedness check, limits) and what the router
//!   writes (headers, stream errors, bounces).
//! - [`router`]: routing table, registrations, sessions and their bounded outboxes.
//! - `accept`: one component connection (XEP-0114 server side).
//! - [`upstream`]: one XEP-0114 client link per component to the upstream server.
//! - [`daemon`]: listeners and admission, signals, reload (the one place that
//!   changes the running daemon), shutdown.
//! - [`systemd`]: the sd_notify protocol.
//! - [`metrics`]: Prometheus metrics, the status document and client, the health check
//!   (depends on no other module; the daemon feeds it).
//! - [`logging`]: tracing setup.

mod accept;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod metrics;
pub mod prosody_config;
pub mod proto;
pub mod router;
mod session;
pub mod systemd;
pub mod upstream;
pub mod wire;

/// The framer, at the crate root for the tests, benchmarks and fuzz targets
/// that drive it directly.
pub use wire::xml;

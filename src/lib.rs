//! xmpp-component-router: a XEP-0114 component router and gateway in front of Prosody.
//!
//! Module map (one concept each):
//! - [`cli`]: command line (clap) and exit codes.
//! - [`config`]: the TOML config: parse, validate, diff.
//! - [`prosody_config`]: the declarative subset of prosody.cfg.lua that declares components.
//! - [`jid`]: just enough JID parsing for routing (domain extraction, validity).
//! - [`xml`]: stream framing on rxml: byte spans of top-level stanzas, limits.
//! - [`stanza`]: stream-error and stanza-error (bounce) serialisation.
//! - [`router`]: routing table, registrations, sessions and their bounded outboxes.
//! - [`component`]: one component connection's state machine (XEP-0114 server side).
//! - [`server`]: listeners, accept loop, signals, shutdown.
//! - [`logging`]: tracing setup.

pub mod prosody_config;

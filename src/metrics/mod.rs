//! Observability: Prometheus metrics, the `status` command and the health check.
//!
//! This module depends on nothing else of the daemon; the daemon plugs into it:
//! - [`model`]: what the daemon fills. Each authenticated connection owns a
//!   [`SessionMetrics`] (from [`DomainMetrics::open_session`]) and counts every
//!   stanza it reads (`stanza_in`) and writes (`stanza_out`) and every bounce it
//!   causes (`bounce`) with relaxed atomics on counters no other connection
//!   touches (a load and a store for stanzas: one writer per direction). Each served domain has a [`DomainMetrics`] (connections
//!   and their peers, totals of ended connections, upstream attempts). Every
//!   open connection holds a [`ConnectionMetrics`] from [`Globals`], which also
//!   counts refusals, handshakes, stream errors and reloads.
//! - [`Source`]: implemented by the daemon; at scrape time it lists one
//!   [`DomainRow`] per domain with what only the daemon knows (held or not,
//!   queue depth, upstream link state and next retry).
//! - [`exposition`]: `/metrics` in the Prometheus text format or OpenMetrics
//!   (`prometheus-client`, custom collectors), with the `process_*` metrics.
//! - [`http`]: the listener ([`MetricsServer`]: bind, rebind on reload, stop
//!   last at shutdown), bounded so it never disturbs component traffic.
//! - [`status`]: the `/status` document and the `status` command's client and
//!   table.
//!
//! The metric families, their labels and naming rules are listed in
//! [`exposition`].

pub mod client;
pub mod exporter;
pub mod exposition;
pub mod http;
pub mod labels;
pub mod model;
pub mod process;
pub mod status;

pub use exporter::Exporter;
pub use exposition::Format;
pub use http::{HttpLimits, ListenError, MetricsServer};
pub use labels::{
    ConnectionState, Direction, DomainState, Outcome, RefusedReason, StanzaErrorCondition,
    StreamErrorCondition,
};
pub use model::{
    ConnectionMetrics, DomainMetrics, DomainRow, GlobalTotals, Globals, Peer, SessionCounters,
    SessionMetrics, Snapshot, Source, Totals, UpstreamRow,
};

/// The `[metrics]` table of the config file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where the HTTP listener binds, `host:port` (IPv6 `[::1]:9617`).
    pub listen: std::net::SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        metrics: Option<MetricsConfig>,
    }

    #[test]
    fn metrics_table_parses_and_refuses_unknown_keys() {
        let f: File = toml::from_str("[metrics]\nlisten = \"127.0.0.1:9617\"\n").unwrap();
        assert_eq!(f.metrics.unwrap().listen.port(), 9617);
        let f: File = toml::from_str("[metrics]\nlisten = \"[::1]:9617\"\n").unwrap();
        assert!(f.metrics.unwrap().listen.is_ipv6());
        assert!(toml::from_str::<File>("[metrics]\nlisten = \"nowhere\"\n").is_err());
        assert!(toml::from_str::<File>("[metrics]\nlisten = \"127.0.0.1:1\"\nx = 1\n").is_err());
        assert!(toml::from_str::<File>("").unwrap().metrics.is_none());
    }
}

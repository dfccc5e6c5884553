//! The daemon's library as the tests, benchmarks and fuzz targets see it: the one
//! place outside `src/` that names its module paths. Test code imports
//! `test_support::xcr::xml::Framer`, never `xmpp_component_router::…`, so when a
//! module of the daemon moves, only the `pub use` lines below change.
//!
//! Grouped by what the tests use it for, not by where it lives in `src/`.

/// The stream framer: the tests' subject (`tests/framer_*.rs`, the oracles, the
/// fuzz targets and benchmarks), never the test client's reader (that is
/// [`crate::reader`], on rxml).
pub mod xml {
    pub use xmpp_component_router::xml::{
        Attrs, Excess, Frame, FrameError, Framer, Head, Limits, Name, Ns, Skipped, Stanza, Value,
    };
}

/// Stream-level answers: conditions and the headers the router writes.
pub mod stanza {
    pub use xmpp_component_router::proto::StreamCondition;
    pub use xmpp_component_router::wire::stanza::{accept_header, error_header};
}

/// The router's side of the XEP-0114 handshake (the test client computes its
/// own digest: [`crate::stanza::handshake_token`]).
pub mod component {
    pub use xmpp_component_router::proto::{handshake_matches, handshake_token, new_stream_id};
}

/// JID parsing and the routing key.
pub mod jid {
    pub use xmpp_component_router::proto::jid::{parse, routing_key, valid_domain};
}

/// The TOML config parser.
pub mod config {
    pub use xmpp_component_router::config::{parse, ConfigError, Declared};
}

/// The Prosody config reader.
pub mod prosody_config {
    pub use xmpp_component_router::prosody_config::parse_str;
}

/// The metrics listener, its model and its HTTP client.
pub mod metrics {
    pub use xmpp_component_router::metrics::{
        client, exposition, status, DomainMetrics, DomainRow, DomainState, Exporter, Format,
        Globals, HttpLimits, MetricsServer, Outcome, RefusedReason, SessionCounters,
        SessionMetrics, Source, StanzaErrorCondition, StreamErrorCondition,
    };
}

/// The command line definition (the man page is rendered from it).
pub mod cli {
    pub use xmpp_component_router::cli::Cli;
}

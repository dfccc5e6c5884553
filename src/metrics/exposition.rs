//! `/metrics`: a [`Snapshot`] and the process's own figures, encoded by
//! `prometheus-client` through custom collectors built for each scrape, in the
//! Prometheus text format or OpenMetrics (content negotiation on `Accept`).
//!
//! Every router family is prefixed `xmpp_component_router_`; counters end in
//! `_total` (the encoder appends it); values are in base units (bytes, seconds).
//! The only label whose value is not a fixed word is `domain`, and it only ever
//! holds a configured component domain. Per-domain bounce series appear at the
//! first bounce of that condition (22 conditions times every domain would be
//! mostly zeros); every other label set of a known domain or a fixed word is
//! always present, starting at 0.
//!
//! | family (after the prefix) | type | labels |
//! |---|---|---|
//! | `build_info` | info | `version` |
//! | `component_state` | gauge, 1 for the current state | `domain`, `state` (`connected`/`held`/`offline`/`detached`) |
//! | `component_connections` | gauge | `domain` |
//! | `component_queue_stanzas`, `component_queue_bytes` | gauge | `domain` |
//! | `held_stanzas` | gauge | `domain` |
//! | `component_stanzas_total`, `component_bytes_total` | counter | `domain`, `direction` (`in`/`out`) |
//! | `bounces_total` | counter | `domain`, `condition` (RFC 6120 stanza error) |
//! | `upstream_link_up`, `upstream_next_retry_seconds` | gauge | `domain` (only with an upstream server) |
//! | `upstream_reconnects_total` | counter | `domain` (only with an upstream server) |
//! | `connections` | gauge | `state` (`unauthenticated`/`authenticated`/`detached`) |
//! | `refused_connections_total` | counter | `reason` (`limit` or the stream error sent) |
//! | `handshakes_total`, `reloads_total` | counter | `result` (`ok`/`failed`) |
//! | `stream_errors_total` | counter | `condition` (RFC 6120 stream error) |
//! | `last_reload_success_timestamp_seconds` | gauge | |
//!
//! Unprefixed: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_start_time_seconds`,
//! `process_open_fds`, `process_max_fds`.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, text, DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet,
    NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::labels::{
    ConnectionState, Direction, DomainState, Outcome, RefusedReason, StanzaErrorCondition,
    StreamErrorCondition,
};
use super::model::{DomainRow, GlobalTotals, Snapshot};
use super::process;

/// The prefix of every router family.
pub const PREFIX: &str = "xmpp_component_router";

/// The two exposition formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// OpenMetrics when `accept` prefers it (by `q`) to plain text, as
    /// Prometheus' scraper does; the text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut om, mut plain) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= plain {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// Encodes `snapshot` and the process metrics in `format`.
pub fn render(snapshot: Snapshot, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessFamilies));
    registry
        .sub_registry_with_prefix(PREFIX)
        .register_collector(Box::new(RouterFamilies(snapshot)));
    // About 1 KiB of fixed families plus a few hundred bytes per domain.
    let mut out = String::with_capacity(8 << 10);
    match format {
        Format::Prometheus => prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// One family: its descriptor, then one sample per `(labels, value)`.
fn family<S, V>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: Kind,
    samples: impl IntoIterator<Item = (S, V)>,
) -> fmt::Result
where
    S: EncodeLabelSet,
    V: EncodeCounterValue + EncodeGaugeValue,
{
    let ty = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in samples {
        let mut f = m.encode_family(&labels)?;
        match kind {
            Kind::Counter => f.encode_counter::<NoLabelSet, V, u64>(&v, None)?,
            Kind::Gauge => f.encode_gauge(&v)?,
        }
    }
    Ok(())
}

type One<'a> = [(&'static str, &'a str); 1];
type Two<'a> = [(&'static str, &'a str); 2];

fn dom(r: &DomainRow) -> One<'_> {
    [("domain", &*r.domain)]
}

fn dom2<'a>(r: &'a DomainRow, key: &'static str, v: &'static str) -> Two<'a> {
    [("domain", &*r.domain), (key, v)]
}

/// The router's families of one scrape.
#[derive(Debug)]
struct RouterFamilies(Snapshot);

impl Collector for RouterFamilies {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        enc.encode_descriptor("build", "The router's version.", None, MetricType::Info)?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        component_families(&mut enc, &s.domains)?;
        traffic_families(&mut enc, &s.domains)?;
        upstream_families(&mut enc, s)?;
        if let Some(g) = &s.globals {
            global_families(&mut enc, g)?;
        }
        Ok(())
    }
}

fn component_families(enc: &mut DescriptorEncoder, rows: &[DomainRow]) -> fmt::Result {
    family(
        enc,
        "component_state",
        "1 for the state the component domain is in (connected, held, offline, detached), 0 for the others.",
        Kind::Gauge,
        rows.iter().flat_map(|r| {
            DomainState::ALL
                .iter()
                .map(move |st| (dom2(r, "state", st.as_str()), u64::from(r.state == *st)))
        }),
    )?;
    family(
        enc,
        "component_connections",
        "Authenticated connections of the component domain now.",
        Kind::Gauge,
        rows.iter().map(|r| (dom(r), r.connections() as u64)),
    )?;
    family(
        enc,
        "component_queue_stanzas",
        "Stanzas queued for the component's connections, not yet written.",
        Kind::Gauge,
        rows.iter().map(|r| (dom(r), r.queue_stanzas)),
    )?;
    family(
        enc,
        "component_queue_bytes",
        "Bytes of the stanzas queued for the component's connections, not yet written.",
        Kind::Gauge,
        rows.iter().map(|r| (dom(r), r.queue_bytes)),
    )?;
    family(
        enc,
        "held_stanzas",
        "Stanzas held for the component domain while it is held (its connection restarting).",
        Kind::Gauge,
        rows.iter().map(|r| (dom(r), r.held_stanzas)),
    )
}

fn traffic_families(enc: &mut DescriptorEncoder, rows: &[DomainRow]) -> fmt::Result {
    let by_dir = |r: &DomainRow, d: Direction| match d {
        Direction::In => (r.totals.stanzas_in, r.totals.bytes_in),
        Direction::Out => (r.totals.stanzas_out, r.totals.bytes_out),
    };
    family(
        enc,
        "component_stanzas",
        "Stanzas read from (in) and written to (out) the component's connections.",
        Kind::Counter,
        rows.iter().flat_map(|r| {
            Direction::ALL
                .iter()
                .map(move |d| (dom2(r, "direction", d.as_str()), by_dir(r, *d).0))
        }),
    )?;
    family(
        enc,
        "component_bytes",
        "Bytes of those stanzas (not stream headers, handshakes or whitespace).",
        Kind::Counter,
        rows.iter().flat_map(|r| {
            Direction::ALL
                .iter()
                .map(move |d| (dom2(r, "direction", d.as_str()), by_dir(r, *d).1))
        }),
    )?;
    family(
        enc,
        "bounces",
        "Stanza errors the router generated for the component's stanzas, by RFC 6120 condition.",
        Kind::Counter,
        rows.iter().flat_map(|r| {
            StanzaErrorCondition::ALL.iter().filter_map(move |c| {
                let n = r.totals.bounces_of(*c);
                (n > 0).then(|| (dom2(r, "condition", c.as_str()), n))
            })
        }),
    )
}

fn upstream_families(enc: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let linked = || {
        s.domains
            .iter()
            .filter_map(|r| r.upstream.as_ref().map(|u| (r, u)))
    };
    family(
        enc,
        "upstream_link_up",
        "1 while the component's link to the upstream server is authenticated.",
        Kind::Gauge,
        linked().map(|(r, u)| (dom(r), u64::from(u.up))),
    )?;
    family(
        enc,
        "upstream_reconnects",
        "Connect attempts of the component's upstream link (the first one included).",
        Kind::Counter,
        linked().map(|(r, u)| (dom(r), u.reconnects)),
    )?;
    family(
        enc,
        "upstream_next_retry_seconds",
        "Seconds until the upstream link's next connect attempt while it is down (0 when up or trying).",
        Kind::Gauge,
        linked().map(|(r, u)| (dom(r), s.next_retry_seconds(u))),
    )
}

fn global_families(enc: &mut DescriptorEncoder, g: &GlobalTotals) -> fmt::Result {
    family(
        enc,
        "connections",
        "Open component connections by state.",
        Kind::Gauge,
        ConnectionState::ALL
            .iter()
            .map(|s| ([("state", s.as_str())], g.connections[s.index()])),
    )?;
    family(
        enc,
        "refused_connections",
        "Component connections closed before authentication: the stream error sent, or limit when refused at accept.",
        Kind::Counter,
        (0..RefusedReason::COUNT).filter_map(|i| {
            RefusedReason::from_index(i).map(|r| ([("reason", r.as_str())], g.refused[i]))
        }),
    )?;
    family(
        enc,
        "handshakes",
        "Component handshakes checked, by result.",
        Kind::Counter,
        Outcome::ALL
            .iter()
            .map(|o| ([("result", o.as_str())], g.handshakes[o.index()])),
    )?;
    family(
        enc,
        "stream_errors",
        "Stream errors the router sent, by RFC 6120 condition.",
        Kind::Counter,
        StreamErrorCondition::ALL
            .iter()
            .map(|c| ([("condition", c.as_str())], g.stream_errors[c.index()])),
    )?;
    family(
        enc,
        "reloads",
        "Config reloads (SIGHUP), by result.",
        Kind::Counter,
        Outcome::ALL
            .iter()
            .map(|o| ([("result", o.as_str())], g.reloads[o.index()])),
    )?;
    let last = g
        .last_reload_success
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    family(
        enc,
        "last_reload_success_timestamp_seconds",
        "Unix time the config was last loaded successfully (at start or by a reload).",
        Kind::Gauge,
        [(NO_LABELS, last)],
    )
}

const NO_LABELS: [(&str, &str); 0] = [];

/// `process_*`, unprefixed; left out when `/proc` cannot be read.
#[derive(Debug)]
struct ProcessFamilies;

impl Collector for ProcessFamilies {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let Ok(p) = process::read() else {
            return Ok(());
        };
        let one = |v: f64| [(NO_LABELS, v)];
        let e = &mut enc;
        family(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            Kind::Counter,
            one(p.cpu_seconds),
        )?;
        family(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Kind::Gauge,
            one(p.resident_memory_bytes as f64),
        )?;
        family(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            Kind::Gauge,
            one(p.virtual_memory_bytes as f64),
        )?;
        family(
            e,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Kind::Gauge,
            one(p.start_time_seconds),
        )?;
        family(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            Kind::Gauge,
            one(p.open_fds as f64),
        )?;
        if let Some(max) = p.max_fds {
            family(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                Kind::Gauge,
                one(max as f64),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::model::{DomainMetrics, Globals, Source};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant, SystemTime};

    #[test]
    fn negotiation_follows_q_values() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=1, application/openmetrics-text;q=0.5")),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Prometheus
        );
    }

    struct One(std::sync::Arc<DomainMetrics>);
    impl Source for One {
        fn domains(&self, out: &mut Vec<DomainRow>) {
            let mut r = DomainRow::new(&self.0, DomainState::Connected).with_upstream(
                &self.0,
                false,
                Some(Instant::now() + Duration::from_secs(24)),
            );
            r.queue_stanzas = 3;
            r.queue_bytes = 300;
            out.push(r);
        }
    }

    fn sample() -> Snapshot {
        let d = DomainMetrics::new("irc.example.org");
        let s = d.open_session(SocketAddr::from(([127, 0, 0, 1], 4000)), SystemTime::now());
        s.stanza_in(120);
        s.stanza_out(80);
        s.stanza_out(20);
        s.bounce(StanzaErrorCondition::ServiceUnavailable);
        d.upstream_attempt();
        let g = Globals::new();
        g.handshake(Outcome::Failed);
        g.refused(RefusedReason::Stream(StreamErrorCondition::NotAuthorized));
        let _c = g.connection_opened();
        Snapshot::take(&One(d), &g)
    }

    #[test]
    fn text_format_names_and_values() {
        let out = render(sample(), Format::Prometheus).unwrap();
        for line in [
            "# TYPE xmpp_component_router_component_stanzas_total counter",
            "xmpp_component_router_component_stanzas_total{domain=\"irc.example.org\",direction=\"in\"} 1",
            "xmpp_component_router_component_stanzas_total{domain=\"irc.example.org\",direction=\"out\"} 2",
            "xmpp_component_router_component_bytes_total{domain=\"irc.example.org\",direction=\"out\"} 100",
            "xmpp_component_router_bounces_total{domain=\"irc.example.org\",condition=\"service-unavailable\"} 1",
            "xmpp_component_router_component_connections{domain=\"irc.example.org\"} 1",
            "xmpp_component_router_component_state{domain=\"irc.example.org\",state=\"connected\"} 1",
            "xmpp_component_router_component_state{domain=\"irc.example.org\",state=\"held\"} 0",
            "xmpp_component_router_component_queue_stanzas{domain=\"irc.example.org\"} 3",
            "xmpp_component_router_upstream_link_up{domain=\"irc.example.org\"} 0",
            "xmpp_component_router_upstream_reconnects_total{domain=\"irc.example.org\"} 1",
            "xmpp_component_router_handshakes_total{result=\"failed\"} 1",
            "xmpp_component_router_refused_connections_total{reason=\"not-authorized\"} 1",
            "xmpp_component_router_refused_connections_total{reason=\"limit\"} 0",
            "xmpp_component_router_connections{state=\"unauthenticated\"} 1",
            "xmpp_component_router_last_reload_success_timestamp_seconds 0.0",
            "# TYPE process_cpu_seconds_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(
            !out.contains("condition=\"bad-request\"} 0"),
            "zero bounces are left out"
        );
        assert!(!out.contains("# EOF"));
        let retry = out
            .lines()
            .find_map(|l| l.strip_prefix("xmpp_component_router_upstream_next_retry_seconds{domain=\"irc.example.org\"} "))
            .unwrap();
        let retry: f64 = retry.parse().unwrap();
        assert!(retry > 20.0 && retry <= 24.0, "{retry}");
    }

    #[test]
    fn openmetrics_format_ends_with_eof() {
        let out = render(sample(), Format::OpenMetrics).unwrap();
        assert!(out.ends_with("# EOF\n"), "{out}");
        assert!(out.contains("# TYPE xmpp_component_router_component_stanzas counter\n"));
        assert!(out.contains("xmpp_component_router_build_info{version=\""));
    }
}

//! `status`: the document `GET /status` serves (JSON), the client that fetches
//! it from a running daemon, and the table it prints for a person.
//!
//! Peer addresses and connection times are here, not in `/metrics`: they are
//! chosen by peers and change with every reconnect, so they must not be labels.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::client::{self, ClientError};
use super::model::{DomainRow, Snapshot};

/// Exit code of `status` when the daemon cannot be asked (not running, or no
/// metrics listener configured).
pub const EXIT_UNAVAILABLE: u8 = 3;
/// The whole exchange with the daemon must finish within this.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest status document accepted (about 300 bytes per domain).
pub const MAX_STATUS_BYTES: usize = 64 << 20;

/// The status document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// The daemon's version.
    pub version: String,
    /// `false` once shutdown began.
    pub serving: bool,
    /// One entry per attached component and per detached domain with an open
    /// connection, sorted by domain.
    pub domains: Vec<DomainStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainStatus {
    pub domain: String,
    /// `connected`, `held`, `offline` or `detached`.
    pub state: String,
    pub peers: Vec<PeerStatus>,
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub bounces: u64,
    pub queue_stanzas: u64,
    pub queue_bytes: u64,
    pub held_stanzas: u64,
    /// Absent when no upstream server is configured.
    pub upstream: Option<UpstreamStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// `ip:port` of the component's end of the connection.
    pub addr: String,
    /// When it authenticated, seconds since the Unix epoch.
    pub since_unix: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    pub up: bool,
    pub reconnects: u64,
    /// While down: seconds until the next attempt (`None`: one is under way).
    pub next_retry_seconds: Option<f64>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl StatusDoc {
    pub fn new(s: &Snapshot, serving: bool) -> StatusDoc {
        StatusDoc {
            version: env!("CARGO_PKG_VERSION").to_string(),
            serving,
            domains: s.domains.iter().map(|r| domain_status(s, r)).collect(),
        }
    }
}

fn domain_status(s: &Snapshot, r: &DomainRow) -> DomainStatus {
    DomainStatus {
        domain: r.domain.to_string(),
        state: r.state.as_str().to_string(),
        peers: r
            .peers
            .iter()
            .map(|p| PeerStatus {
                addr: p.addr.to_string(),
                since_unix: unix(p.since),
            })
            .collect(),
        stanzas_in: r.totals.stanzas_in,
        stanzas_out: r.totals.stanzas_out,
        bytes_in: r.totals.bytes_in,
        bytes_out: r.totals.bytes_out,
        bounces: r.totals.bounces_total(),
        queue_stanzas: r.queue_stanzas,
        queue_bytes: r.queue_bytes,
        held_stanzas: r.held_stanzas,
        upstream: r.upstream.as_ref().map(|u| UpstreamStatus {
            up: u.up,
            reconnects: u.reconnects,
            next_retry_seconds: (!u.up && u.next_retry.is_some()).then(|| s.next_retry_seconds(u)),
        }),
    }
}

/// Why `status` could not show the daemon's state.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(
        "{} has no [metrics] listen address: the status command asks the daemon through its \
         metrics listener (add [metrics] listen = \"127.0.0.1:9617\" and reload)", .config.display()
    )]
    NoListener { config: std::path::PathBuf },
    #[error(
        "cannot reach the daemon's metrics listener at {addr}: {source} (is the daemon running?)"
    )]
    Unreachable {
        addr: SocketAddr,
        source: ClientError,
    },
    #[error("{addr} answered HTTP {status} to GET /status: is it this router's metrics listener?")]
    BadStatus { addr: SocketAddr, status: u16 },
    #[error("{addr} sent a status document this version cannot read: {source}")]
    BadDocument {
        addr: SocketAddr,
        source: serde_json::Error,
    },
}

/// Fetches the status document from the metrics listener at `addr`.
pub async fn fetch(addr: SocketAddr) -> Result<StatusDoc, StatusError> {
    let reply = client::get(
        addr,
        "/status",
        Some("application/json"),
        STATUS_TIMEOUT,
        MAX_STATUS_BYTES,
    )
    .await
    .map_err(|source| StatusError::Unreachable { addr, source })?;
    if reply.status != 200 {
        return Err(StatusError::BadStatus {
            addr,
            status: reply.status,
        });
    }
    serde_json::from_slice(&reply.body).map_err(|source| StatusError::BadDocument { addr, source })
}

/// The `status` command: asks the daemon whose config is `config` (metrics
/// listener `listen`) and prints the table to `out`. Returns the exit code: 0,
/// or [`EXIT_UNAVAILABLE`] with the reason on `err`.
pub fn run(
    config: &Path,
    listen: Option<SocketAddr>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = match listen {
        None => Err(StatusError::NoListener {
            config: config.to_path_buf(),
        }),
        Some(addr) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(fetch(addr)).map(|d| (addr, d)),
            Err(e) => {
                let _ = writeln!(err, "xmpp-component-router: cannot start the runtime: {e}");
                return 1;
            }
        },
    };
    match result {
        Ok((addr, doc)) => {
            let _ = write!(out, "{}", render(&doc, addr, SystemTime::now()));
            0
        }
        Err(e) => {
            let _ = writeln!(err, "xmpp-component-router: {e}");
            EXIT_UNAVAILABLE
        }
    }
}

const HEADER: [&str; 12] = [
    "DOMAIN",
    "STATE",
    "CONN",
    "PEERS",
    "CONNECTED SINCE",
    "IN",
    "OUT",
    "BOUNCES",
    "QUEUE",
    "HELD",
    "UPSTREAM",
    "NEXT RETRY",
];

/// The table for a person: a summary line, then one aligned row per domain.
pub fn render(doc: &StatusDoc, addr: SocketAddr, now: SystemTime) -> String {
    let connected = doc
        .domains
        .iter()
        .filter(|d| d.state == "connected")
        .count();
    let mut s = format!(
        "xmpp-component-router {} at {addr}{}: {} domains, {} connected\n",
        doc.version,
        if doc.serving { "" } else { " (shutting down)" },
        doc.domains.len(),
        connected
    );
    let rows: Vec<[String; 12]> = doc.domains.iter().map(|d| row(d, now)).collect();
    let mut widths = HEADER.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                l.push_str(&format!("{:<w$}  ", cell, w = widths[i]));
            } else {
                l.push_str(cell);
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(&HEADER);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    s
}

fn row(d: &DomainStatus, now: SystemTime) -> [String; 12] {
    let dash = || "-".to_string();
    let since = d.peers.iter().map(|p| p.since_unix).min();
    let peers = d.peers.iter().map(|p| p.addr.as_str()).collect::<Vec<_>>();
    // A domain without a connection has no upstream link (none is tried).
    let linked = matches!(d.state.as_str(), "connected" | "held");
    let (link, retry) = match &d.upstream {
        None => (dash(), dash()),
        Some(u) if !u.up && !linked && u.next_retry_seconds.is_none() => {
            ("none".to_string(), dash())
        }
        Some(u) if u.up => ("up".to_string(), dash()),
        Some(u) => (
            "down".to_string(),
            u.next_retry_seconds.map_or("trying".to_string(), |s| {
                format!("in {}", duration(s.ceil() as u64))
            }),
        ),
    };
    let now = unix(now);
    [
        d.domain.clone(),
        d.state.clone(),
        d.peers.len().to_string(),
        if peers.is_empty() {
            dash()
        } else {
            peers.join(",")
        },
        since.map_or_else(dash, |t| {
            format!("{} ({} ago)", utc(t), duration(now.saturating_sub(t)))
        }),
        d.stanzas_in.to_string(),
        d.stanzas_out.to_string(),
        d.bounces.to_string(),
        format!("{} ({})", d.queue_stanzas, bytes(d.queue_bytes)),
        d.held_stanzas.to_string(),
        link,
        retry,
    ]
}

/// `90061` → `1d1h1m1s`, leading zero units left out.
fn duration(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .map(|(n, u)| format!("{n}{u}"))
        .collect()
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SSZ` (UTC), by the civil-from-days
/// algorithm (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn utc(t: u64) -> String {
    let (days, rem) = (t / 86_400, t % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_764_072_005), "2025-11-25 12:00:05Z");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59Z");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(24), "24s");
        assert_eq!(duration(3600), "1h0m0s");
        assert_eq!(duration(90_061), "1d1h1m1s");
        assert_eq!(bytes(300), "300 B");
        assert_eq!(bytes(4 << 20), "4.0 MiB");
    }

    fn doc() -> StatusDoc {
        let d = |domain: &str, state: &str| DomainStatus {
            domain: domain.into(),
            state: state.into(),
            peers: vec![],
            stanzas_in: 0,
            stanzas_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            bounces: 0,
            queue_stanzas: 0,
            queue_bytes: 0,
            held_stanzas: 0,
            upstream: None,
        };
        let mut irc = d("irc.example.org", "connected");
        irc.peers = vec![
            PeerStatus {
                addr: "127.0.0.1:40001".into(),
                since_unix: 1_764_072_005,
            },
            PeerStatus {
                addr: "[::1]:40002".into(),
                since_unix: 1_764_072_000,
            },
        ];
        irc.stanzas_in = 12;
        irc.bounces = 2;
        irc.queue_stanzas = 3;
        irc.queue_bytes = 2048;
        irc.upstream = Some(UpstreamStatus {
            up: true,
            reconnects: 1,
            next_retry_seconds: None,
        });
        let mut muc = d("muc.example.org", "offline");
        muc.upstream = Some(UpstreamStatus {
            up: false,
            reconnects: 4,
            next_retry_seconds: Some(23.2),
        });
        StatusDoc {
            version: "9.9.9".into(),
            serving: true,
            domains: vec![irc, muc],
        }
    }

    #[test]
    fn table_for_a_person() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9617));
        let t = render(
            &doc(),
            addr,
            UNIX_EPOCH + Duration::from_secs(1_764_072_060),
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "xmpp-component-router 9.9.9 at 127.0.0.1:9617: 2 domains, 1 connected"
        );
        assert!(
            lines[1].starts_with("DOMAIN           STATE      CONN  PEERS"),
            "{t}"
        );
        assert!(lines[2].contains("127.0.0.1:40001,[::1]:40002"), "{t}");
        assert!(lines[2].contains("2025-11-25 12:00:00Z (1m0s ago)"), "{t}");
        assert!(lines[2].contains("3 (2.0 KiB)"), "{t}");
        assert!(lines[2].ends_with(" up        -"), "{t}");
        assert!(lines[3].ends_with("down      in 24s"), "{t}");
        // Columns line up.
        let col = |l: &str| {
            l.find("STATE")
                .or_else(|| l.find("connected"))
                .or_else(|| l.find("offline"))
        };
        assert_eq!(col(lines[1]), col(lines[2]));
        assert_eq!(col(lines[1]), col(lines[3]));
    }

    #[test]
    fn no_listener_is_exit_3_with_a_reason() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(Path::new("/etc/x/config.toml"), None, &mut out, &mut err);
        assert_eq!(code, EXIT_UNAVAILABLE);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("/etc/x/config.toml has no [metrics] listen address"),
            "{err}"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn document_round_trips_through_json() {
        let d = doc();
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<StatusDoc>(&j).unwrap(), d);
    }
}

//! The TOML config file: parse, validate, diff.
//!
//! Everything a config file can get wrong is caught here, before anything is
//! started or changed, and reported as a [`ConfigError`] naming the file, the
//! line and the problem (docs/behaviour.md#configuration). A reload (SIGHUP)
//! goes through exactly the same path, so an invalid file never changes a running
//! daemon (docs/behaviour.md#reload).
//!
//! [`parse`] reads the TOML into raw structs that keep every value's position,
//! then checks one section at a time, each in its own function of `sections`:
//! the top-level keys, `[upstream]`, each `[components."DOMAIN"]` and the
//! components of the Prosody file `prosody_config` names. Every default is in
//! [`defaults`]; every integer key's range is an [`IntKey`] in [`keys`]. To add a
//! key: a field in the raw struct of its section, its default, an `IntKey` if it
//! is an integer, one line in its section's function, and a field in [`Config`]
//! (or [`ComponentConfig`]).
//!
//! Domains are canonicalised to ASCII lower case here, once; every lookup in the
//! router uses that form.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::prosody_config;
use crate::proto::jid;

mod sections;

use sections::{RawConfig, Source};

/// RFC 6120 §13.12: a server must accept stanzas of at least 10000 bytes.
pub const MIN_STANZA_SIZE: usize = 10_000;
pub const DEFAULT_CONFIG_PATH: &str = "/etc/xmpp-component-router/config.toml";
/// Largest `secret_file` read.
const MAX_SECRET_FILE: usize = 64 * 1024;

/// The default of every key (README "Configuration" and "Limits"), and nowhere else.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

    use super::OnConflict;

    pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5347));
    pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
    pub const MAX_STANZA_SIZE: usize = 512 * 1024;
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const MAX_STANZA_DEPTH: usize = 64;
    pub const MAX_ATTRIBUTES: usize = 256;
    pub const MAX_QUEUE_STANZAS: usize = 4096;
    pub const MAX_QUEUE_BYTES: usize = 4 << 20;
    pub const KEEPALIVE_INTERVAL_SECS: u64 = 60;
    pub const DEAD_PEER_TIMEOUT_SECS: u64 = 120;
    /// `[upstream] max_stanza_size`: what the server relays comes from anyone
    /// on the network and is re-escaped (an apostrophe becomes six bytes).
    pub const UPSTREAM_MAX_STANZA_SIZE: usize = 16 << 20;
    /// `[upstream] keepalive_interval`: the links' liveness interval.
    pub const UPSTREAM_KEEPALIVE_INTERVAL_SECS: u64 = 30;
    pub const LOG_LEVEL: &str = "info";
    /// Per component.
    pub const ON_CONFLICT: OnConflict = OnConflict::Replace;
    /// Per component.
    pub const ENABLED: bool = true;
    /// Per component with `on_conflict = "balance"`: connections in its set.
    pub const MAX_INSTANCES: usize = 16;
    /// Per component: seconds a domain is held after its last connection
    /// ended (0: not held).
    pub const HOLD_SECONDS: u64 = 0;
}

/// An integer key: its name and accepted range, and the unit its error names.
/// Every range is non-negative, so a checked value fits in `u64` and `usize`.
pub struct IntKey {
    pub name: &'static str,
    pub min: i64,
    pub max: i64,
    pub unit: &'static str,
}

impl IntKey {
    const fn new(name: &'static str, min: i64, max: i64, unit: &'static str) -> Self {
        assert!(0 <= min && min <= max);
        IntKey {
            name,
            min,
            max,
            unit,
        }
    }
}

/// The integer keys and their ranges (README "Limits").
pub mod keys {
    use super::{IntKey, MIN_STANZA_SIZE};

    pub const HANDSHAKE_TIMEOUT: IntKey = IntKey::new("handshake_timeout", 1, 3600, "seconds");
    pub const MAX_STANZA_SIZE: IntKey = IntKey::new(
        "max_stanza_size",
        MIN_STANZA_SIZE as i64,
        64 << 20,
        "bytes; RFC 6120 §13.12 sets the floor",
    );
    pub const MAX_CONNECTIONS: IntKey = IntKey::new("max_connections", 1, 1_000_000, "connections");
    pub const MAX_STANZA_DEPTH: IntKey = IntKey::new("max_stanza_depth", 1, 10_000, "levels");
    pub const MAX_ATTRIBUTES: IntKey = IntKey::new("max_attributes", 1, 100_000, "attributes");
    pub const MAX_QUEUE_STANZAS: IntKey = IntKey::new("max_queue_stanzas", 1, 1_000_000, "stanzas");
    pub const MAX_QUEUE_BYTES: IntKey = IntKey::new("max_queue_bytes", 1024, 1 << 30, "bytes");
    pub const KEEPALIVE_INTERVAL: IntKey =
        IntKey::new("keepalive_interval", 0, 86_400, "seconds; 0 turns it off");
    pub const DEAD_PEER_TIMEOUT: IntKey = IntKey::new("dead_peer_timeout", 1, 86_400, "seconds");
    pub const UPSTREAM_MAX_STANZA_SIZE: IntKey = IntKey::new(
        "upstream.max_stanza_size",
        MIN_STANZA_SIZE as i64,
        1 << 30,
        "bytes",
    );
    pub const UPSTREAM_KEEPALIVE_INTERVAL: IntKey =
        IntKey::new("upstream.keepalive_interval", 1, 86_400, "seconds");
    /// Per component (`components."DOMAIN".max_instances`).
    pub const MAX_INSTANCES: IntKey = IntKey::new("max_instances", 1, 1024, "connections");
    /// Per component (`components."DOMAIN".hold_seconds`).
    pub const HOLD_SECONDS: IntKey =
        IntKey::new("hold_seconds", 0, 3600, "seconds; 0 turns it off");
}

/// The accepted values of `log_level`.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// A secret that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: &str) -> Self {
        Secret(Arc::from(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// The old session gets `conflict` and the new one is accepted (Prosody's `kick_old`).
    Replace,
    /// The new session gets `conflict` (Prosody's default `kick_new`).
    Reject,
    /// The new session joins the domain's set (up to `max_instances`);
    /// stanzas to the domain are spread over the set with affinity by the
    /// bare `from` (README, "Several connections for one domain").
    Balance,
}

impl Default for OnConflict {
    fn default() -> Self {
        defaults::ON_CONFLICT
    }
}

impl fmt::Display for OnConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnConflict::Replace => "replace",
            OnConflict::Reject => "reject",
            OnConflict::Balance => "balance",
        })
    }
}

/// Where a component was declared, for `--check` and log lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One component as the router serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentConfig {
    /// Canonical (ASCII lower-case) domain.
    pub domain: String,
    pub secret: Secret,
    /// Secret for the upstream link; defaults to `secret`.
    pub upstream_secret: Secret,
    pub on_conflict: OnConflict,
    /// With `on_conflict = "balance"`: connections the set may hold.
    pub max_instances: usize,
    /// How long the domain is held once its last connection ended (zero:
    /// not held; README, "Restart without loss").
    pub hold: std::time::Duration,
    pub enabled: bool,
    pub origin: Origin,
}

impl ComponentConfig {
    /// Settings that matter to a live registration (everything but where it was declared).
    pub fn same_settings(&self, other: &ComponentConfig) -> bool {
        self.secret == other.secret
            && self.upstream_secret == other.upstream_secret
            && self.on_conflict == other.on_conflict
            && self.max_instances == other.max_instances
            && self.hold == other.hold
            && self.enabled == other.enabled
    }
}

/// One declared component domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Declared {
    /// A component with its secret; served when `enabled`.
    Component(ComponentConfig),
    /// A Prosody `Component` that is disabled (`enabled = false`) and has no
    /// `component_secret`: listed by `--check`, never served. (Enabled without a
    /// secret, it is a config error.)
    DisabledWithoutSecret { domain: String, origin: Origin },
}

impl Declared {
    pub fn domain(&self) -> &str {
        match self {
            Declared::Component(c) => &c.domain,
            Declared::DisabledWithoutSecret { domain, .. } => domain,
        }
    }

    pub fn origin(&self) -> &Origin {
        match self {
            Declared::Component(c) => &c.origin,
            Declared::DisabledWithoutSecret { origin, .. } => origin,
        }
    }

    pub fn enabled(&self) -> bool {
        self.served().is_some()
    }

    /// The component if it is served (declared with a secret and enabled).
    pub fn served(&self) -> Option<&ComponentConfig> {
        match self {
            Declared::Component(c) if c.enabled => Some(c),
            _ => None,
        }
    }

    /// The conflict policy that applies (Prosody-declared components use the default).
    pub fn on_conflict(&self) -> OnConflict {
        match self {
            Declared::Component(c) => c.on_conflict,
            Declared::DisabledWithoutSecret { .. } => defaults::ON_CONFLICT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub address: String,
    /// Largest stanza the links buffer and deliver; a larger one is skipped
    /// and its sender gets `policy-violation`.
    pub max_stanza_size: usize,
    /// The links' liveness interval: a whitespace keepalive after this long
    /// without writing, a ping after this long without reading (README,
    /// "In front of Prosody").
    pub keepalive_interval: Duration,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub handshake_timeout: Duration,
    pub max_stanza_size: usize,
    /// Component connections open at once (authenticated or not); beyond it new
    /// ones get `resource-constraint` and are closed.
    pub max_connections: usize,
    /// Element depth inside a stanza (the stanza itself is depth 1).
    pub max_stanza_depth: usize,
    /// Attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Bounds of each session's outgoing queue.
    pub max_queue_stanzas: usize,
    pub max_queue_bytes: usize,
    /// Whitespace keepalive after this long without writing (`None`: off).
    pub keepalive_interval: Option<Duration>,
    /// `TCP_USER_TIMEOUT`: a peer that acknowledges nothing for this long is gone.
    pub dead_peer_timeout: Duration,
    pub log_level: String,
    pub prosody_config: Option<PathBuf>,
    pub upstream: Option<UpstreamConfig>,
    /// `[metrics]`: the HTTP listener for `/metrics`, `/health` and `/status`
    /// (README, "Monitoring"); none by default.
    pub metrics: Option<crate::metrics::MetricsConfig>,
    /// Every declared component, enabled or not, keyed by canonical domain.
    pub components: BTreeMap<String, Declared>,
    /// Warnings found while loading (e.g. from the Prosody config file).
    pub warnings: Vec<String>,
    /// The Prosody config file as parsed, when `prosody_config` is set (a reload
    /// compares the old and new one, see [`prosody_config::reload_warnings`]).
    pub prosody: Option<prosody_config::ProsodyConfig>,
}

impl Config {
    /// Every key at its default ([`defaults`]), no components.
    fn with_defaults(path: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            listen: vec![defaults::LISTEN],
            handshake_timeout: Duration::from_secs(defaults::HANDSHAKE_TIMEOUT_SECS),
            max_stanza_size: defaults::MAX_STANZA_SIZE,
            max_connections: defaults::MAX_CONNECTIONS,
            max_stanza_depth: defaults::MAX_STANZA_DEPTH,
            max_attributes: defaults::MAX_ATTRIBUTES,
            max_queue_stanzas: defaults::MAX_QUEUE_STANZAS,
            max_queue_bytes: defaults::MAX_QUEUE_BYTES,
            keepalive_interval: Some(Duration::from_secs(defaults::KEEPALIVE_INTERVAL_SECS)),
            dead_peer_timeout: Duration::from_secs(defaults::DEAD_PEER_TIMEOUT_SECS),
            log_level: defaults::LOG_LEVEL.to_string(),
            prosody_config: None,
            upstream: None,
            metrics: None,
            components: BTreeMap::new(),
            warnings: Vec::new(),
            prosody: None,
        }
    }

    /// Components that are served (declared with a secret, and enabled).
    pub fn enabled_components(&self) -> impl Iterator<Item = &ComponentConfig> {
        self.components.values().filter_map(Declared::served)
    }

    /// The served component of `domain` (canonical form), if any.
    pub fn served(&self, domain: &str) -> Option<&ComponentConfig> {
        self.components.get(domain).and_then(Declared::served)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Read and validate the config file at `path` (and the Prosody config it names).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parse and validate config text; `path` names the file in errors and anchors
/// relative paths (`secret_file`, `prosody_config`).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let src = Source::new(text, path);
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        src.error(offset, e.message().trim())
    })?;
    let mut c = Config::with_defaults(path);
    src.top_level(&raw, &mut c)?;
    c.upstream = match &raw.upstream {
        Some(u) => Some(src.upstream(u.get_ref())?),
        None => None,
    };
    c.metrics = match &raw.metrics {
        Some(m) => Some(src.metrics(m.get_ref())?),
        None => None,
    };
    c.components = src.components(&raw.components)?;
    if let Some(p) = &raw.prosody_config {
        src.prosody_components(p, &mut c)?;
    }
    Ok(c)
}

/// Canonical routing form of a configured domain: a valid JID domainpart, ASCII
/// lower case, without a trailing dot.
pub fn canonical_domain(s: &str) -> Option<String> {
    let d = s.strip_suffix('.').unwrap_or(s);
    if jid::valid_domain(d) {
        Some(d.to_ascii_lowercase())
    } else {
        None
    }
}

/// The difference between two configs, as a reload applies it
/// (docs/behaviour.md#reload).
#[derive(Debug, Default)]
pub struct Diff {
    /// Served now, not served before (new, or newly enabled).
    pub added: Vec<ComponentConfig>,
    /// Served before, not served now (removed, or disabled).
    pub removed: Vec<String>,
    /// Served before and now, with different settings.
    pub changed: Vec<ComponentConfig>,
    pub unchanged: usize,
}

pub fn diff(old: &Config, new: &Config) -> Diff {
    let mut d = Diff::default();
    for c in new.enabled_components() {
        match old.served(&c.domain) {
            None => d.added.push(c.clone()),
            Some(o) if !o.same_settings(c) => d.changed.push(c.clone()),
            Some(_) => d.unchanged += 1,
        }
    }
    for o in old.enabled_components() {
        if new.served(&o.domain).is_none() {
            d.removed.push(o.domain.clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/tmp/test.toml"))
    }

    pub(super) fn err_line(text: &str) -> (usize, String) {
        match p(text) {
            Err(ConfigError::Invalid { line, reason, .. }) => (line, reason),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("config accepted: {text}"),
        }
    }

    #[test]
    fn defaults() {
        let c = p("[components.\"A.Example\"]\nsecret = \"x\"\n").unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:5347".parse().unwrap()]);
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.max_stanza_size, 524288);
        let a = c.served("a.example").expect("served");
        assert_eq!(a.on_conflict, OnConflict::Replace);
        assert!(a.enabled);
        assert_eq!(a.upstream_secret.expose(), "x");
        assert_eq!(a.origin.line, 1);
    }

    #[test]
    fn every_default_comes_from_defaults() {
        let c = p("[components.a]\nsecret = \"a\"\n").unwrap();
        assert_eq!(c.listen, [defaults::LISTEN]);
        assert_eq!(
            c.handshake_timeout,
            Duration::from_secs(defaults::HANDSHAKE_TIMEOUT_SECS)
        );
        assert_eq!(c.max_stanza_size, defaults::MAX_STANZA_SIZE);
        assert_eq!(c.log_level, defaults::LOG_LEVEL);
        let a = c.served("a").unwrap();
        assert_eq!(
            (a.on_conflict, a.enabled),
            (defaults::ON_CONFLICT, defaults::ENABLED)
        );
        // Each default is inside its key's range.
        for (key, default) in [
            (keys::HANDSHAKE_TIMEOUT, defaults::HANDSHAKE_TIMEOUT_SECS),
            (keys::MAX_STANZA_SIZE, defaults::MAX_STANZA_SIZE as u64),
            (keys::MAX_CONNECTIONS, defaults::MAX_CONNECTIONS as u64),
            (keys::MAX_STANZA_DEPTH, defaults::MAX_STANZA_DEPTH as u64),
            (keys::MAX_ATTRIBUTES, defaults::MAX_ATTRIBUTES as u64),
            (keys::MAX_QUEUE_STANZAS, defaults::MAX_QUEUE_STANZAS as u64),
            (keys::MAX_QUEUE_BYTES, defaults::MAX_QUEUE_BYTES as u64),
            (keys::KEEPALIVE_INTERVAL, defaults::KEEPALIVE_INTERVAL_SECS),
            (keys::DEAD_PEER_TIMEOUT, defaults::DEAD_PEER_TIMEOUT_SECS),
        ] {
            let d = i64::try_from(default).unwrap();
            assert!((key.min..=key.max).contains(&d), "{}", key.name);
        }
    }

    /// A Prosody component that is disabled and has no secret is declared, listed
    /// and never served; enabled without a secret it is an error.
    #[test]
    fn diff_semantics() {
        let old = p("[components.a]\nsecret=\"a\"\n[components.b]\nsecret=\"b\"\n[components.d]\nsecret=\"d\"\nenabled=false\n[components.e]\nsecret=\"e\"\n").unwrap();
        let new = p("[components.a]\nsecret=\"a\"\n[components.c]\nsecret=\"c\"\n[components.d]\nsecret=\"d\"\n[components.e]\nsecret=\"E\"\n").unwrap();
        let d = diff(&old, &new);
        let added: Vec<_> = d.added.iter().map(|c| c.domain.as_str()).collect();
        assert_eq!(added, ["c", "d"]);
        assert_eq!(d.removed, ["b"]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].domain, "e");
        assert_eq!(d.unchanged, 1);
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}

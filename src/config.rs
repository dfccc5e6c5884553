//! The TOML config file: parse, validate, diff.
//!
//! Everything a config file can get wrong is caught here, before anything is
//! started or changed, and reported as a [`ConfigError`] naming the file, the
//! line and the problem (SPEC §2–3). A reload (SIGHUP) goes through exactly the
//! same path, so an invalid file never changes a running daemon (SPEC §6).
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
use toml::Spanned;

use crate::jid;
use crate::prosody_config;

/// RFC 6120 §13.12: a server must accept stanzas of at least 10000 bytes.
pub const MIN_STANZA_SIZE: usize = 10_000;
pub const DEFAULT_CONFIG_PATH: &str = "/etc/xmpp-component-router/config.toml";
/// Largest `secret_file` read.
const MAX_SECRET_FILE: usize = 64 * 1024;

/// Defaults of the limits (README "Limits").
pub mod defaults {
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
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// The old session gets `conflict` and the new one is accepted (Prosody's `kick_old`).
    #[default]
    Replace,
    /// The new session gets `conflict` (Prosody's default `kick_new`).
    Reject,
}

impl fmt::Display for OnConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnConflict::Replace => "replace",
            OnConflict::Reject => "reject",
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
    pub enabled: bool,
    pub origin: Origin,
}

impl ComponentConfig {
    /// Settings that matter to a live registration (everything but where it was declared).
    pub fn same_settings(&self, other: &ComponentConfig) -> bool {
        self.secret == other.secret
            && self.upstream_secret == other.upstream_secret
            && self.on_conflict == other.on_conflict
            && self.enabled == other.enabled
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub address: String,
    /// Largest stanza the links buffer and deliver; a larger one is skipped
    /// and its sender gets `policy-violation`.
    pub max_stanza_size: usize,
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
    /// Every declared component, enabled or not, keyed by canonical domain.
    pub components: BTreeMap<String, ComponentConfig>,
    /// Warnings found while loading (e.g. from the Prosody config file).
    pub warnings: Vec<String>,
    /// The Prosody config file as parsed, when `prosody_config` is set (a reload
    /// compares the old and new one, see [`prosody_config::reload_warnings`]).
    pub prosody: Option<prosody_config::ProsodyConfig>,
}

impl Config {
    /// Components that are served (declared and enabled).
    pub fn enabled_components(&self) -> impl Iterator<Item = &ComponentConfig> {
        self.components.values().filter(|c| c.enabled)
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

impl ConfigError {
    fn at(file: &Path, text: &str, offset: usize, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line: line_of(text, offset),
            reason: reason.into(),
        }
    }
}

/// Offsets of every newline, for many line look-ups in one text.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        LineIndex(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// 1-based line number of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    handshake_timeout: Option<Spanned<i64>>,
    #[serde(default)]
    max_stanza_size: Option<Spanned<i64>>,
    #[serde(default)]
    max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    max_stanza_depth: Option<Spanned<i64>>,
    #[serde(default)]
    max_attributes: Option<Spanned<i64>>,
    #[serde(default)]
    max_queue_stanzas: Option<Spanned<i64>>,
    #[serde(default)]
    max_queue_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    keepalive_interval: Option<Spanned<i64>>,
    #[serde(default)]
    dead_peer_timeout: Option<Spanned<i64>>,
    #[serde(default)]
    log_level: Option<Spanned<String>>,
    #[serde(default)]
    prosody_config: Option<Spanned<String>>,
    #[serde(default)]
    upstream: Option<Spanned<RawUpstream>>,
    #[serde(default)]
    components: BTreeMap<Spanned<String>, Spanned<RawComponent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    address: Spanned<String>,
    max_stanza_size: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    // Secrets are read as any TOML value and checked to be strings here: serde's
    // "invalid type" error would quote the value (`integer `12345``), and a
    // config error must not print a secret, whatever its type.
    secret: Option<Spanned<toml::Value>>,
    secret_file: Option<Spanned<String>>,
    upstream_secret: Option<Spanned<toml::Value>>,
    #[serde(default)]
    on_conflict: OnConflict,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
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
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        ConfigError::at(path, text, offset, e.message().trim().to_string())
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));

    let listen = match raw.listen {
        None => vec![SocketAddr::from(([127, 0, 0, 1], 5347))],
        Some(list) => {
            if list.get_ref().is_empty() {
                return Err(ConfigError::at(
                    path,
                    text,
                    list.span().start,
                    "listen: at least one address is required",
                ));
            }
            let mut out = Vec::new();
            for a in list.get_ref() {
                let addr: SocketAddr = a.get_ref().parse().map_err(|_| {
                    ConfigError::at(
                        path,
                        text,
                        a.span().start,
                        format!(
                            "listen: {:?} is not an IP address with a port (e.g. \"127.0.0.1:5347\" or \"[::1]:5347\")",
                            a.get_ref()
                        ),
                    )
                })?;
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
            out
        }
    };

    let handshake_timeout = match raw.handshake_timeout {
        None => Duration::from_secs(10),
        Some(v) => {
            let secs = *v.get_ref();
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::at(
                    path,
                    text,
                    v.span().start,
                    format!("handshake_timeout: {secs} is out of range (1..=3600 seconds)"),
                ));
            }
            Duration::from_secs(secs as u64)
        }
    };

    let max_stanza_size = match raw.max_stanza_size {
        None => 524_288,
        Some(v) => {
            let n = *v.get_ref();
            if n < MIN_STANZA_SIZE as i64 || n > (64 << 20) {
                return Err(ConfigError::at(
                    path,
                    text,
                    v.span().start,
                    format!(
                        "max_stanza_size: {n} is out of range ({MIN_STANZA_SIZE}..={} bytes; RFC 6120 §13.12 sets the floor)",
                        64 << 20
                    ),
                ));
            }
            n as usize
        }
    };

    let int = |v: &Option<Spanned<i64>>,
               key: &str,
               range: std::ops::RangeInclusive<i64>,
               unit: &str,
               default: i64|
     -> Result<i64, ConfigError> {
        match v {
            None => Ok(default),
            Some(v) => {
                let n = *v.get_ref();
                if range.contains(&n) {
                    Ok(n)
                } else {
                    Err(ConfigError::at(
                        path,
                        text,
                        v.span().start,
                        format!(
                            "{key}: {n} is out of range ({}..={} {unit})",
                            range.start(),
                            range.end()
                        ),
                    ))
                }
            }
        }
    };
    // Every value fits in usize/u64 once range-checked (ranges are non-negative).
    let max_connections = int(
        &raw.max_connections,
        "max_connections",
        1..=1_000_000,
        "connections",
        defaults::MAX_CONNECTIONS as i64,
    )? as usize;
    let max_stanza_depth = int(
        &raw.max_stanza_depth,
        "max_stanza_depth",
        1..=10_000,
        "levels",
        defaults::MAX_STANZA_DEPTH as i64,
    )? as usize;
    let max_attributes = int(
        &raw.max_attributes,
        "max_attributes",
        1..=100_000,
        "attributes",
        defaults::MAX_ATTRIBUTES as i64,
    )? as usize;
    let max_queue_stanzas = int(
        &raw.max_queue_stanzas,
        "max_queue_stanzas",
        1..=1_000_000,
        "stanzas",
        defaults::MAX_QUEUE_STANZAS as i64,
    )? as usize;
    let max_queue_bytes = int(
        &raw.max_queue_bytes,
        "max_queue_bytes",
        1024..=(1 << 30),
        "bytes",
        defaults::MAX_QUEUE_BYTES as i64,
    )? as usize;
    let keepalive_interval = match int(
        &raw.keepalive_interval,
        "keepalive_interval",
        0..=86_400,
        "seconds; 0 turns it off",
        defaults::KEEPALIVE_INTERVAL_SECS as i64,
    )? {
        0 => None,
        n => Some(Duration::from_secs(n as u64)),
    };
    let dead_peer_timeout = Duration::from_secs(int(
        &raw.dead_peer_timeout,
        "dead_peer_timeout",
        1..=86_400,
        "seconds",
        defaults::DEAD_PEER_TIMEOUT_SECS as i64,
    )? as u64);

    let log_level = match raw.log_level {
        None => "info".to_string(),
        Some(v) => {
            let l = v.get_ref().to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                return Err(ConfigError::at(
                    path,
                    text,
                    v.span().start,
                    format!(
                        "log_level: {:?} is not one of error, warn, info, debug, trace",
                        v.get_ref()
                    ),
                ));
            }
            l
        }
    };

    let upstream = match raw.upstream {
        None => None,
        Some(u) => {
            let addr = &u.get_ref().address;
            if !valid_host_port(addr.get_ref()) {
                return Err(ConfigError::at(
                    path,
                    text,
                    addr.span().start,
                    format!(
                        "upstream.address: {:?} is not host:port (e.g. \"127.0.0.1:5348\")",
                        addr.get_ref()
                    ),
                ));
            }
            let max_stanza_size = int(
                &u.get_ref().max_stanza_size,
                "upstream.max_stanza_size",
                MIN_STANZA_SIZE as i64..=(1 << 30),
                "bytes",
                defaults::UPSTREAM_MAX_STANZA_SIZE as i64,
            )? as usize;
            Some(UpstreamConfig {
                address: addr.get_ref().clone(),
                max_stanza_size,
            })
        }
    };

    let mut components: BTreeMap<String, ComponentConfig> = BTreeMap::new();
    // Every component records its line: index the newlines once (counting from
    // the start for each would make big configs quadratic to load).
    let lines = LineIndex::new(text);
    // In file order, so a duplicate is reported at its second occurrence.
    let mut declared: Vec<_> = raw.components.iter().collect();
    declared.sort_by_key(|(k, _)| k.span().start);
    for (key, comp) in declared {
        let offset = key.span().start;
        let domain = canonical_domain(key.get_ref()).ok_or_else(|| {
            ConfigError::at(
                path,
                text,
                offset,
                format!("components.{:?}: not a valid domain", key.get_ref()),
            )
        })?;
        if components.contains_key(&domain) {
            return Err(ConfigError::at(
                path,
                text,
                offset,
                format!(
                    "components.{:?}: duplicate component (domains compare case-insensitively; {domain} is already declared)",
                    key.get_ref()
                ),
            ));
        }
        let c = comp.get_ref();
        let comp_line = lines.line_of(offset);
        let secret_str = |v: &Option<Spanned<toml::Value>>, key: &str| match v {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                toml::Value::String(s) => Ok(Some(Spanned::new(v.span(), s.clone()))),
                other => Err(ConfigError::at(
                    path,
                    text,
                    v.span().start,
                    format!(
                        "components.{domain}: {key} must be a string, not {} (value not shown)",
                        other.type_str()
                    ),
                )),
            },
        };
        let c_secret = secret_str(&c.secret, "secret")?;
        let c_upstream_secret = secret_str(&c.upstream_secret, "upstream_secret")?;
        let secret = match (&c_secret, &c.secret_file) {
            (Some(_), Some(f)) => {
                return Err(ConfigError::at(
                    path,
                    text,
                    f.span().start,
                    format!("components.{domain}: set either secret or secret_file, not both"),
                ))
            }
            (Some(s), None) => {
                if s.get_ref().is_empty() {
                    return Err(ConfigError::at(
                        path,
                        text,
                        s.span().start,
                        format!("components.{domain}: secret is empty"),
                    ));
                }
                Secret::new(s.get_ref())
            }
            (None, Some(f)) => read_secret_file(base, f, &domain, path, text)?,
            _ => {
                return Err(ConfigError::at(
                    path,
                    text,
                    offset,
                    format!("components.{domain}: secret or secret_file is required"),
                ))
            }
        };
        let upstream_secret = match &c_upstream_secret {
            None => secret.clone(),
            Some(s) if s.get_ref().is_empty() => {
                return Err(ConfigError::at(
                    path,
                    text,
                    s.span().start,
                    format!("components.{domain}: upstream_secret is empty"),
                ))
            }
            Some(s) => Secret::new(s.get_ref()),
        };
        components.insert(
            domain.clone(),
            ComponentConfig {
                domain,
                secret,
                upstream_secret,
                on_conflict: c.on_conflict,
                enabled: c.enabled,
                origin: Origin {
                    file: path.to_path_buf(),
                    line: comp_line,
                },
            },
        );
    }

    let mut warnings = Vec::new();
    let mut prosody = None;
    let prosody_config = match raw.prosody_config {
        None => None,
        Some(p) => {
            let pc_path = base.join(p.get_ref());
            let pc = prosody_config::load(&pc_path).map_err(|e| ConfigError::Invalid {
                file: e.file().to_path_buf(),
                line: e.line().unwrap_or(0),
                reason: format!(
                    "{e} (prosody_config, from {}:{})",
                    path.display(),
                    line_of(text, p.span().start)
                ),
            })?;
            warnings.extend(pc.warnings.iter().cloned());
            for pcomp in &pc.components {
                let origin = Origin {
                    file: pcomp.file.clone(),
                    line: pcomp.line,
                };
                let domain =
                    canonical_domain(&pcomp.domain).ok_or_else(|| ConfigError::Invalid {
                        file: origin.file.clone(),
                        line: origin.line,
                        reason: format!("Component {:?}: not a valid domain", pcomp.domain),
                    })?;
                if let Some(existing) = components.get(&domain) {
                    return Err(ConfigError::Invalid {
                        file: origin.file.clone(),
                        line: origin.line,
                        reason: format!(
                            "Component {domain:?} is also declared at {}; declare it in one file only",
                            existing.origin
                        ),
                    });
                }
                let secret = match pcomp.secret.as_deref() {
                    Some(s) if !s.is_empty() => Secret::new(s),
                    _ if !pcomp.enabled => Secret::new("\u{0}disabled-without-secret"),
                    _ => {
                        return Err(ConfigError::Invalid {
                            file: origin.file.clone(),
                            line: origin.line,
                            reason: format!("Component {domain:?} has no component_secret"),
                        })
                    }
                };
                components.insert(
                    domain.clone(),
                    ComponentConfig {
                        domain,
                        upstream_secret: secret.clone(),
                        secret,
                        on_conflict: OnConflict::Replace,
                        enabled: pcomp.enabled,
                        origin,
                    },
                );
            }
            prosody = Some(pc);
            Some(pc_path)
        }
    };

    Ok(Config {
        path: path.to_path_buf(),
        listen,
        handshake_timeout,
        max_stanza_size,
        max_connections,
        max_stanza_depth,
        max_attributes,
        max_queue_stanzas,
        max_queue_bytes,
        keepalive_interval,
        dead_peer_timeout,
        log_level,
        prosody_config,
        upstream,
        components,
        warnings,
        prosody,
    })
}

fn read_secret_file(
    base: &Path,
    f: &Spanned<String>,
    domain: &str,
    path: &Path,
    text: &str,
) -> Result<Secret, ConfigError> {
    use std::io::Read;
    let file = base.join(f.get_ref());
    // Read at most one byte past the limit: a secret_file pointing at something
    // endless (/dev/zero, a huge file by mistake) is an error, not a hang.
    let mut content = String::new();
    let read = std::fs::File::open(&file).and_then(|fh| {
        fh.take(MAX_SECRET_FILE as u64 + 1)
            .read_to_string(&mut content)
    });
    read.map_err(|e| {
        ConfigError::at(
            path,
            text,
            f.span().start,
            format!(
                "components.{domain}: cannot read secret_file {}: {e}",
                file.display()
            ),
        )
    })?;
    if content.len() > MAX_SECRET_FILE {
        return Err(ConfigError::at(
            path,
            text,
            f.span().start,
            format!(
                "components.{domain}: secret_file {} is larger than {MAX_SECRET_FILE} bytes",
                file.display()
            ),
        ));
    }
    // A trailing newline (as `echo secret > file` writes) is not part of the secret.
    let s = content
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&content);
    if s.is_empty() {
        return Err(ConfigError::at(
            path,
            text,
            f.span().start,
            format!(
                "components.{domain}: secret_file {} is empty",
                file.display()
            ),
        ));
    }
    Ok(Secret::new(s))
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

fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(':')
                && jid::valid_domain(host)
                && port.parse::<u16>().map(|p| p != 0).unwrap_or(false)
        }
        None => false,
    }
}

/// The difference between two configs, as a reload applies it (SPEC §6).
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
        match old.components.get(&c.domain).filter(|o| o.enabled) {
            None => d.added.push(c.clone()),
            Some(o) if !o.same_settings(c) => d.changed.push(c.clone()),
            Some(_) => d.unchanged += 1,
        }
    }
    for o in old.enabled_components() {
        if !new
            .components
            .get(&o.domain)
            .map(|c| c.enabled)
            .unwrap_or(false)
        {
            d.removed.push(o.domain.clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/tmp/test.toml"))
    }

    fn err_line(text: &str) -> (usize, String) {
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
        let a = &c.components["a.example"];
        assert_eq!(a.on_conflict, OnConflict::Replace);
        assert!(a.enabled);
        assert_eq!(a.upstream_secret.expose(), "x");
        assert_eq!(a.origin.line, 1);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(err_line("listen = [\"nope\"]\n").0, 1);
        let (line, reason) = err_line("\n\nbogus = 1\n");
        assert_eq!(line, 3);
        assert!(reason.contains("bogus"), "{reason}");
        assert_eq!(err_line("max_stanza_size = 9999\n").0, 1);
        let (line, reason) = err_line(
            "[components.\"a.x\"]\nsecret = \"1\"\n[components.\"A.X\"]\nsecret = \"2\"\n",
        );
        assert_eq!(line, 3);
        assert!(reason.contains("duplicate"), "{reason}");
        let (line, reason) = err_line("[components.\"a.x\"]\n\nsecret = \"\"\n");
        assert_eq!(line, 3);
        assert!(reason.contains("empty"));
        assert!(err_line("[components.\"a.x\"]\n").1.contains("required"));
        assert!(
            err_line("[components.\"a.x\"]\nsecret=\"a\"\nsecret_file=\"/x\"\n")
                .1
                .contains("not both")
        );
        assert!(
            err_line("[components.\"a.x\"]\nsecret_file=\"/nonexistent/x\"\n")
                .1
                .contains("cannot read")
        );
        assert!(err_line("[components.\"a b\"]\nsecret=\"a\"\n")
            .1
            .contains("valid domain"));
        assert!(err_line("[components.\"a.x\"]\nsecret=\"a\"\non_conflict=\"x\"\n").0 == 3);
        assert!(err_line("[upstream]\naddress = \"nope\"\n").0 == 2);
        assert_eq!(
            err_line("[upstream]\naddress = \"h:1\"\nmax_stanza_size = 9999\n").0,
            3
        );
        assert!(err_line("[components.\"a.x\"]\nsecret=\"a\"\nfoo=1\n").0 == 3);
    }

    #[test]
    fn non_string_secret_is_an_error_that_does_not_echo_it() {
        for body in [
            "[components.\"a.x\"]\nsecret = 60219457\n",
            "[components.\"a.x\"]\nsecret = \"a\"\nupstream_secret = [\"60219457\"]\n",
        ] {
            let (line, reason) = err_line(body);
            assert_eq!(
                line,
                2 + body.matches("upstream_secret").count(),
                "{reason}"
            );
            assert!(reason.contains("must be a string"), "{reason}");
            assert!(!reason.contains("60219457"), "{reason}");
        }
    }

    #[test]
    fn line_index_agrees_with_counting() {
        let text = "a\n\nbb\nccc\n";
        let idx = LineIndex::new(text);
        for off in 0..=text.len() {
            assert_eq!(idx.line_of(off), line_of(text, off), "offset {off}");
        }
    }

    #[test]
    fn secret_file_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "hunter2\n").unwrap();
        let cfg = dir.path().join("c.toml");
        let c = parse("[components.\"a.x\"]\nsecret_file = \"s\"\n", &cfg).unwrap();
        assert_eq!(c.components["a.x"].secret.expose(), "hunter2");
        // Something endless is an error, not a hang.
        let e = parse("[components.\"a.x\"]\nsecret_file = \"/dev/zero\"\n", &cfg).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

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
    fn limit_keys_defaults_ranges_and_zero_keepalive() {
        let c = p("").unwrap();
        assert_eq!(c.max_connections, defaults::MAX_CONNECTIONS);
        assert_eq!(c.max_stanza_depth, 64);
        assert_eq!(c.max_attributes, 256);
        assert_eq!(c.max_queue_stanzas, defaults::MAX_QUEUE_STANZAS);
        assert_eq!(c.max_queue_bytes, defaults::MAX_QUEUE_BYTES);
        assert_eq!(c.keepalive_interval, Some(Duration::from_secs(60)));
        assert_eq!(c.dead_peer_timeout, Duration::from_secs(120));
        let c = p("max_connections = 5\nmax_stanza_depth = 3\nmax_attributes = 7\nmax_queue_stanzas = 9\nmax_queue_bytes = 2048\nkeepalive_interval = 0\ndead_peer_timeout = 4\n").unwrap();
        assert_eq!(
            (c.max_connections, c.max_stanza_depth, c.max_attributes),
            (5, 3, 7)
        );
        assert_eq!((c.max_queue_stanzas, c.max_queue_bytes), (9, 2048));
        assert_eq!(c.keepalive_interval, None);
        assert_eq!(c.dead_peer_timeout, Duration::from_secs(4));
        let u = |t: &str| p(t).unwrap().upstream.unwrap().max_stanza_size;
        assert_eq!(
            u("[upstream]\naddress = \"h:1\"\n"),
            defaults::UPSTREAM_MAX_STANZA_SIZE
        );
        assert_eq!(
            u("[upstream]\naddress = \"h:1\"\nmax_stanza_size = 10000\n"),
            10_000
        );
        for (body, key) in [
            ("\nmax_connections = 0\n", "max_connections"),
            ("\nmax_stanza_depth = -1\n", "max_stanza_depth"),
            ("\nmax_attributes = 0\n", "max_attributes"),
            ("\nmax_queue_stanzas = 0\n", "max_queue_stanzas"),
            ("\nmax_queue_bytes = 1023\n", "max_queue_bytes"),
            ("\nkeepalive_interval = -5\n", "keepalive_interval"),
            ("\ndead_peer_timeout = 0\n", "dead_peer_timeout"),
        ] {
            let (line, reason) = err_line(body);
            assert_eq!(line, 2, "{reason}");
            assert!(
                reason.starts_with(key) && reason.contains("out of range"),
                "{reason}"
            );
        }
        assert!(err_line("max_conections = 5\n")
            .1
            .contains("max_conections"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}

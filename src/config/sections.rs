//! One function per section of the config file, over one [`Source`] (the text's
//! path and line index): the top-level keys, `listen`, `log_level`, `[upstream]`,
//! every `[components."DOMAIN"]` with its secret, and the components of the Prosody
//! file `prosody_config` names. Each checks its values and reports a [`ConfigError`]
//! at the line of the value it refuses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    canonical_domain, defaults, keys, ComponentConfig, Config, ConfigError, Declared, IntKey,
    OnConflict, Origin, Secret, UpstreamConfig, LOG_LEVELS, MAX_SECRET_FILE,
};
use crate::metrics::MetricsConfig;
use crate::prosody_config;
use crate::proto::jid;

/// The file as TOML, every value with its position.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
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
    pub(super) prosody_config: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) upstream: Option<Spanned<RawUpstream>>,
    #[serde(default)]
    pub(super) metrics: Option<Spanned<RawMetrics>>,
    #[serde(default)]
    pub(super) components: BTreeMap<Spanned<String>, Spanned<RawComponent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    address: Spanned<String>,
    max_stanza_size: Option<Spanned<i64>>,
    keepalive_interval: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComponent {
    // Secrets are read as any TOML value and checked to be strings here: serde's
    // "invalid type" error would quote the value (`integer `12345``), and a
    // config error must not print a secret, whatever its type.
    secret: Option<Spanned<toml::Value>>,
    secret_file: Option<Spanned<String>>,
    upstream_secret: Option<Spanned<toml::Value>>,
    #[serde(default)]
    on_conflict: OnConflict,
    max_instances: Option<Spanned<i64>>,
    hold_seconds: Option<Spanned<i64>>,
    #[serde(default = "default_enabled")]
    enabled: bool,
}

fn default_enabled() -> bool {
    defaults::ENABLED
}

/// The text being parsed, where it came from, and where its lines start.
pub(super) struct Source<'a> {
    path: &'a Path,
    /// The directory relative paths resolve against.
    base: &'a Path,
    /// Offsets of every newline (indexed once: a big config stays linear to load).
    newlines: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(super) fn new(text: &str, path: &'a Path) -> Self {
        Source {
            path,
            base: path.parent().unwrap_or_else(|| Path::new(".")),
            newlines: memchr::memchr_iter(b'\n', text.as_bytes()).collect(),
        }
    }

    /// 1-based line number of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }

    /// A config error at the line of `offset`.
    pub(super) fn error(&self, offset: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.to_path_buf(),
            line: self.line(offset),
            reason: reason.into(),
        }
    }

    /// The value of an integer key if it is set, checked against its range.
    fn int(&self, v: &Option<Spanned<i64>>, key: &IntKey) -> Result<Option<u64>, ConfigError> {
        let Some(v) = v else {
            return Ok(None);
        };
        let n = *v.get_ref();
        if !(key.min..=key.max).contains(&n) {
            return Err(self.error(
                v.span().start,
                format!(
                    "{}: {n} is out of range ({}..={} {})",
                    key.name, key.min, key.max, key.unit
                ),
            ));
        }
        // Never `None`: ranges are non-negative (checked in `IntKey::new`).
        Ok(u64::try_from(n).ok())
    }

    /// The top-level keys (everything but the tables and `prosody_config`).
    pub(super) fn top_level(&self, raw: &RawConfig, c: &mut Config) -> Result<(), ConfigError> {
        if let Some(list) = &raw.listen {
            c.listen = self.listen(list)?;
        }
        let secs = Duration::from_secs;
        if let Some(n) = self.int(&raw.handshake_timeout, &keys::HANDSHAKE_TIMEOUT)? {
            c.handshake_timeout = secs(n);
        }
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(n) = self.int(&raw.max_stanza_size, &keys::MAX_STANZA_SIZE)? {
            c.max_stanza_size = size(n);
        }
        if let Some(n) = self.int(&raw.max_connections, &keys::MAX_CONNECTIONS)? {
            c.max_connections = size(n);
        }
        if let Some(n) = self.int(&raw.max_stanza_depth, &keys::MAX_STANZA_DEPTH)? {
            c.max_stanza_depth = size(n);
        }
        if let Some(n) = self.int(&raw.max_attributes, &keys::MAX_ATTRIBUTES)? {
            c.max_attributes = size(n);
        }
        if let Some(n) = self.int(&raw.max_queue_stanzas, &keys::MAX_QUEUE_STANZAS)? {
            c.max_queue_stanzas = size(n);
        }
        if let Some(n) = self.int(&raw.max_queue_bytes, &keys::MAX_QUEUE_BYTES)? {
            c.max_queue_bytes = size(n);
        }
        if let Some(n) = self.int(&raw.keepalive_interval, &keys::KEEPALIVE_INTERVAL)? {
            c.keepalive_interval = (n > 0).then(|| secs(n));
        }
        if let Some(n) = self.int(&raw.dead_peer_timeout, &keys::DEAD_PEER_TIMEOUT)? {
            c.dead_peer_timeout = secs(n);
        }
        if let Some(level) = &raw.log_level {
            c.log_level = self.log_level(level)?;
        }
        Ok(())
    }

    /// `listen`: at least one address; repeated ones count once.
    fn listen(&self, list: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<SocketAddr>, ConfigError> {
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span().start,
                "listen: at least one address is required",
            ));
        }
        let mut out = Vec::new();
        for a in list.get_ref() {
            let addr: SocketAddr = a.get_ref().parse().map_err(|_| {
                self.error(
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
        Ok(out)
    }

    fn log_level(&self, v: &Spanned<String>) -> Result<String, ConfigError> {
        let l = v.get_ref().to_ascii_lowercase();
        if !LOG_LEVELS.contains(&l.as_str()) {
            return Err(self.error(
                v.span().start,
                format!(
                    "log_level: {:?} is not one of {}",
                    v.get_ref(),
                    LOG_LEVELS.join(", ")
                ),
            ));
        }
        Ok(l)
    }

    /// `[upstream]`.
    pub(super) fn upstream(&self, u: &RawUpstream) -> Result<UpstreamConfig, ConfigError> {
        let addr = &u.address;
        if !valid_host_port(addr.get_ref()) {
            return Err(self.error(
                addr.span().start,
                format!(
                    "upstream.address: {:?} is not host:port (e.g. \"127.0.0.1:5348\")",
                    addr.get_ref()
                ),
            ));
        }
        let max_stanza_size = self
            .int(&u.max_stanza_size, &keys::UPSTREAM_MAX_STANZA_SIZE)?
            .map_or(defaults::UPSTREAM_MAX_STANZA_SIZE, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            });
        let keepalive_interval = Duration::from_secs(
            self.int(&u.keepalive_interval, &keys::UPSTREAM_KEEPALIVE_INTERVAL)?
                .unwrap_or(defaults::UPSTREAM_KEEPALIVE_INTERVAL_SECS),
        );
        Ok(UpstreamConfig {
            address: addr.get_ref().clone(),
            max_stanza_size,
            keepalive_interval,
        })
    }

    /// `[metrics]`.
    pub(super) fn metrics(&self, m: &RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let a = &m.listen;
        let listen = a.get_ref().parse().map_err(|_| {
            self.error(
                a.span().start,
                format!(
                    "metrics.listen: {:?} is not an IP address with a port (e.g. \"127.0.0.1:9617\" or \"[::1]:9617\")",
                    a.get_ref()
                ),
            )
        })?;
        Ok(MetricsConfig { listen })
    }

    /// Every `[components."DOMAIN"]`, in file order, so that a duplicate is reported
    /// at its second occurrence.
    pub(super) fn components(
        &self,
        raw: &BTreeMap<Spanned<String>, Spanned<RawComponent>>,
    ) -> Result<BTreeMap<String, Declared>, ConfigError> {
        let mut declared: Vec<_> = raw.iter().collect();
        declared.sort_by_key(|(k, _)| k.span().start);
        let mut out = BTreeMap::new();
        for (key, comp) in declared {
            let offset = key.span().start;
            let domain = canonical_domain(key.get_ref()).ok_or_else(|| {
                self.error(
                    offset,
                    format!("components.{:?}: not a valid domain", key.get_ref()),
                )
            })?;
            if out.contains_key(&domain) {
                return Err(self.error(
                    offset,
                    format!(
                        "components.{:?}: duplicate component (domains compare case-insensitively; {domain} is already declared)",
                        key.get_ref()
                    ),
                ));
            }
            let c = self.component(domain.clone(), offset, comp.get_ref())?;
            out.insert(domain, Declared::Component(c));
        }
        Ok(out)
    }

    /// One `[components."DOMAIN"]` table, declared at `offset`.
    fn component(
        &self,
        domain: String,
        offset: usize,
        c: &RawComponent,
    ) -> Result<ComponentConfig, ConfigError> {
        // Both secrets are checked to be strings before either is used.
        let given = self.string_secret(&domain, "secret", &c.secret)?;
        let upstream = self.string_secret(&domain, "upstream_secret", &c.upstream_secret)?;
        let secret = self.secret(&domain, offset, given, c.secret_file.as_ref())?;
        let upstream_secret = match upstream {
            None => secret.clone(),
            Some(s) if s.get_ref().is_empty() => {
                return Err(self.error(
                    s.span().start,
                    format!("components.{domain}: upstream_secret is empty"),
                ))
            }
            Some(s) => Secret::new(s.get_ref()),
        };
        let max_instances = self.max_instances(&domain, c)?;
        let hold = self.int(&c.hold_seconds, &keys::HOLD_SECONDS)?;
        Ok(ComponentConfig {
            secret,
            upstream_secret,
            on_conflict: c.on_conflict,
            max_instances,
            hold: Duration::from_secs(hold.unwrap_or(defaults::HOLD_SECONDS)),
            enabled: c.enabled,
            origin: Origin {
                file: self.path.to_path_buf(),
                line: self.line(offset),
            },
            domain,
        })
    }

    /// `max_instances`: only with `on_conflict = "balance"`.
    fn max_instances(&self, domain: &str, c: &RawComponent) -> Result<usize, ConfigError> {
        let Some(v) = &c.max_instances else {
            return Ok(defaults::MAX_INSTANCES);
        };
        if c.on_conflict != OnConflict::Balance {
            return Err(self.error(
                v.span().start,
                format!("components.{domain}: max_instances needs on_conflict = \"balance\" (it is \"{}\")", c.on_conflict),
            ));
        }
        let n = self.int(&c.max_instances, &keys::MAX_INSTANCES)?;
        Ok(n.map_or(defaults::MAX_INSTANCES, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        }))
    }

    /// The component's secret: exactly one of `secret` and `secret_file`, not empty.
    fn secret(
        &self,
        domain: &str,
        offset: usize,
        secret: Option<Spanned<String>>,
        secret_file: Option<&Spanned<String>>,
    ) -> Result<Secret, ConfigError> {
        match (secret, secret_file) {
            (Some(_), Some(f)) => Err(self.error(
                f.span().start,
                format!("components.{domain}: set either secret or secret_file, not both"),
            )),
            (Some(s), None) if s.get_ref().is_empty() => Err(self.error(
                s.span().start,
                format!("components.{domain}: secret is empty"),
            )),
            (Some(s), None) => Ok(Secret::new(s.get_ref())),
            (None, Some(f)) => self.read_secret_file(domain, f),
            (None, None) => Err(self.error(
                offset,
                format!("components.{domain}: secret or secret_file is required"),
            )),
        }
    }

    /// A secret given as any TOML value: a string, or an error that does not show it.
    fn string_secret(
        &self,
        domain: &str,
        key: &str,
        v: &Option<Spanned<toml::Value>>,
    ) -> Result<Option<Spanned<String>>, ConfigError> {
        match v {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                toml::Value::String(s) => Ok(Some(Spanned::new(v.span(), s.clone()))),
                other => Err(self.error(
                    v.span().start,
                    format!(
                        "components.{domain}: {key} must be a string, not {} (value not shown)",
                        other.type_str()
                    ),
                )),
            },
        }
    }

    fn read_secret_file(&self, domain: &str, f: &Spanned<String>) -> Result<Secret, ConfigError> {
        use std::io::Read;
        let file = self.base.join(f.get_ref());
        let at = f.span().start;
        // Read at most one byte past the limit: a secret_file pointing at something
        // endless (/dev/zero, a huge file by mistake) is an error, not a hang.
        let mut content = String::new();
        std::fs::File::open(&file)
            .and_then(|fh| {
                fh.take(MAX_SECRET_FILE as u64 + 1)
                    .read_to_string(&mut content)
            })
            .map_err(|e| {
                self.error(
                    at,
                    format!(
                        "components.{domain}: cannot read secret_file {}: {e}",
                        file.display()
                    ),
                )
            })?;
        if content.len() > MAX_SECRET_FILE {
            return Err(self.error(
                at,
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
            return Err(self.error(
                at,
                format!(
                    "components.{domain}: secret_file {} is empty",
                    file.display()
                ),
            ));
        }
        Ok(Secret::new(s))
    }

    /// `prosody_config`: the external components of that Prosody file, added to
    /// `c.components` (a domain declared in both files is an error).
    pub(super) fn prosody_components(
        &self,
        p: &Spanned<String>,
        c: &mut Config,
    ) -> Result<(), ConfigError> {
        let pc_path = self.base.join(p.get_ref());
        let pc = prosody_config::load(&pc_path).map_err(|e| ConfigError::Invalid {
            file: e.file().to_path_buf(),
            line: e.line().unwrap_or(0),
            reason: format!(
                "{e} (prosody_config, from {}:{})",
                self.path.display(),
                self.line(p.span().start)
            ),
        })?;
        c.warnings.extend(pc.warnings.iter().cloned());
        for pcomp in &pc.components {
            let declared = prosody_component(pcomp, &c.components)?;
            c.components.insert(declared.domain().to_string(), declared);
        }
        c.prosody = Some(pc);
        c.prosody_config = Some(pc_path);
        Ok(())
    }
}

/// One component of the Prosody file, checked against those already declared.
fn prosody_component(
    pcomp: &prosody_config::ProsodyComponent,
    declared: &BTreeMap<String, Declared>,
) -> Result<Declared, ConfigError> {
    let origin = Origin {
        file: pcomp.file.clone(),
        line: pcomp.line,
    };
    let invalid = |reason: String| ConfigError::Invalid {
        file: origin.file.clone(),
        line: origin.line,
        reason,
    };
    let domain = canonical_domain(&pcomp.domain)
        .ok_or_else(|| invalid(format!("Component {:?}: not a valid domain", pcomp.domain)))?;
    if let Some(existing) = declared.get(&domain) {
        return Err(invalid(format!(
            "Component {domain:?} is also declared at {}; declare it in one file only",
            existing.origin()
        )));
    }
    let secret = match pcomp.secret.as_deref() {
        Some(s) if !s.is_empty() => Secret::new(s),
        _ if !pcomp.enabled => return Ok(Declared::DisabledWithoutSecret { domain, origin }),
        _ => {
            return Err(invalid(format!(
                "Component {domain:?} has no component_secret"
            )))
        }
    };
    Ok(Declared::Component(ComponentConfig {
        domain,
        upstream_secret: secret.clone(),
        secret,
        on_conflict: defaults::ON_CONFLICT,
        max_instances: defaults::MAX_INSTANCES,
        hold: Duration::from_secs(defaults::HOLD_SECONDS),
        enabled: pcomp.enabled,
        origin,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::config::tests::{err_line, p};

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
    fn line_numbers_start_at_one_and_count_newlines() {
        let src = Source::new("a\n\nbb\n", Path::new("/x.toml"));
        let lines: Vec<usize> = (0..=7).map(|off| src.line(off)).collect();
        // a \n | \n | b b \n | (end)
        assert_eq!(lines, [1, 1, 2, 3, 3, 3, 4, 4]);
    }

    #[test]
    fn prosody_components_without_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let lua = dir.path().join("prosody.cfg.lua");
        let cfg = dir.path().join("c.toml");
        let toml = "prosody_config = \"prosody.cfg.lua\"\n[components.\"b.x\"]\nsecret = \"b\"\n";
        std::fs::write(
            &lua,
            "VirtualHost \"x\"\nComponent \"a.x\"\n  enabled = false\nComponent \"c.x\"\n  component_secret = \"c\"\n",
        )
        .unwrap();
        let c = parse(toml, &cfg).unwrap();
        assert_eq!(
            c.components["a.x"],
            Declared::DisabledWithoutSecret {
                domain: "a.x".into(),
                origin: Origin {
                    file: lua.clone(),
                    line: 2
                }
            }
        );
        assert!(c.served("a.x").is_none());
        let served: Vec<_> = c.enabled_components().map(|c| c.domain.as_str()).collect();
        assert_eq!(served, ["b.x", "c.x"]);
        assert_eq!(c.served("c.x").unwrap().upstream_secret.expose(), "c");

        std::fs::write(&lua, "VirtualHost \"x\"\n\nComponent \"a.x\"\n").unwrap();
        let e = parse(toml, &cfg).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3: ", lua.display())), "{e}");
        assert!(e.contains("has no component_secret"), "{e}");

        std::fs::write(
            &lua,
            "VirtualHost \"x\"\nComponent \"B.x\"\n  enabled = false\n",
        )
        .unwrap();
        let e = parse(toml, &cfg).unwrap_err().to_string();
        assert!(e.contains("also declared at"), "{e}");
    }

    #[test]
    fn metrics_listen_is_optional_and_checked() {
        assert_eq!(p("").unwrap().metrics, None);
        let c = p("[metrics]\nlisten = \"[::1]:9617\"\n").unwrap();
        assert_eq!(c.metrics.unwrap().listen, "[::1]:9617".parse().unwrap());
        let (line, reason) = err_line("log_level = \"info\"\n[metrics]\nlisten = \"localhost\"\n");
        assert_eq!(line, 3);
        assert!(reason.contains("metrics.listen"), "{reason}");
        let (line, reason) = err_line("[metrics]\nlisten = \"127.0.0.1:1\"\nport = 3\n");
        assert_eq!(line, 3);
        assert!(reason.contains("port"), "{reason}");
    }

    #[test]
    fn secret_file_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "hunter2\n").unwrap();
        let cfg = dir.path().join("c.toml");
        let c = parse("[components.\"a.x\"]\nsecret_file = \"s\"\n", &cfg).unwrap();
        assert_eq!(c.served("a.x").unwrap().secret.expose(), "hunter2");
        // Something endless is an error, not a hang.
        let e = parse("[components.\"a.x\"]\nsecret_file = \"/dev/zero\"\n", &cfg).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
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
        let k = |t: &str| p(t).unwrap().upstream.unwrap().keepalive_interval;
        assert_eq!(
            k("[upstream]\naddress = \"h:1\"\n"),
            Duration::from_secs(defaults::UPSTREAM_KEEPALIVE_INTERVAL_SECS)
        );
        assert_eq!(
            k("[upstream]\naddress = \"h:1\"\nkeepalive_interval = 1\n"),
            Duration::from_secs(1)
        );
        let (line, reason) = err_line("[upstream]\naddress = \"h:1\"\nkeepalive_interval = 0\n");
        assert_eq!(line, 3, "{reason}");
        assert!(
            reason.starts_with("upstream.keepalive_interval"),
            "{reason}"
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
    fn hold_seconds() {
        let c = p("[components.\"a.x\"]\nsecret = \"a\"\n").unwrap();
        assert_eq!(c.served("a.x").unwrap().hold, Duration::ZERO);
        let c = p("[components.\"a.x\"]\nsecret = \"a\"\nhold_seconds = 30\n").unwrap();
        assert_eq!(c.served("a.x").unwrap().hold, Duration::from_secs(30));
        for n in ["-1", "3601", "\"30\""] {
            let (line, reason) = err_line(&format!(
                "[components.\"a.x\"]\nsecret = \"a\"\nhold_seconds = {n}\n"
            ));
            assert_eq!(line, 3, "{reason}");
        }
        let (_, reason) = err_line("[components.\"a.x\"]\nsecret = \"a\"\nhold_seconds = 3601\n");
        assert!(
            reason.starts_with("hold_seconds") && reason.contains("out of range"),
            "{reason}"
        );
    }

    #[test]
    fn balance_and_max_instances() {
        let c = p("[components.\"a.x\"]\nsecret = \"a\"\non_conflict = \"balance\"\n").unwrap();
        let a = c.served("a.x").unwrap();
        assert_eq!(a.on_conflict, OnConflict::Balance);
        assert_eq!(a.max_instances, defaults::MAX_INSTANCES);
        let c = p(
            "[components.\"a.x\"]\nsecret = \"a\"\non_conflict = \"balance\"\nmax_instances = 3\n",
        )
        .unwrap();
        assert_eq!(c.served("a.x").unwrap().max_instances, 3);
        let (line, reason) = err_line("[components.\"a.x\"]\nsecret = \"a\"\nmax_instances = 3\n");
        assert_eq!(line, 3, "{reason}");
        assert!(
            reason.contains("needs on_conflict = \"balance\""),
            "{reason}"
        );
        for n in [0, 1025] {
            let (line, reason) = err_line(&format!(
                "[components.\"a.x\"]\nsecret = \"a\"\non_conflict = \"balance\"\nmax_instances = {n}\n"
            ));
            assert_eq!(line, 4, "{reason}");
            assert!(
                reason.starts_with("max_instances") && reason.contains("out of range"),
                "{reason}"
            );
        }
    }
}

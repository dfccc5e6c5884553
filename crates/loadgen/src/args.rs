//! Hand-written command-line parsing: `loadgen MODE [--flag value | --flag=value]...`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// Parsed command line: the mode and its `--flag value` pairs.
#[derive(Debug)]
pub struct Args {
    pub mode: String,
    flags: HashMap<String, String>,
}

impl Args {
    /// Parses `argv[1..]`. `known` lists the flags the mode accepts
    /// (without the leading `--`); anything else is a usage error.
    pub fn parse(
        argv: &[String],
        known: impl Fn(&str) -> &'static [&'static str],
    ) -> Result<Args, String> {
        let mut it = argv.iter();
        let mode = match it.next() {
            Some(m) if !m.starts_with('-') => m.clone(),
            Some(m) => return Err(format!("expected a mode before `{m}`")),
            None => return Err("missing mode".into()),
        };
        let allowed = known(&mode);
        let mut flags = HashMap::new();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument `{a}`"));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it
                        .next()
                        .ok_or_else(|| format!("flag --{name} needs a value"))?;
                    (name.to_string(), v.clone())
                }
            };
            if !allowed.contains(&name.as_str()) {
                return Err(format!("unknown flag --{name} for mode `{mode}`"));
            }
            flags.insert(name, value);
        }
        Ok(Args { mode, flags })
    }

    pub fn str(&self, key: &str, default: &str) -> String {
        self.flags
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub fn opt_str(&self, key: &str) -> Option<String> {
        self.flags.get(key).cloned()
    }

    pub fn has(&self, key: &str) -> bool {
        self.flags.contains_key(key)
    }

    pub fn get<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.flags.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid value for --{key}: `{v}`")),
        }
    }

    pub fn opt<T: FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.flags.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("invalid value for --{key}: `{v}`")),
        }
    }
}

fn ip_is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Resolves `s` (e.g. `127.0.0.1:5347`, `localhost:5347`, `[::1]:5347`) and
/// refuses anything that is not a loopback address: this tool only ever
/// talks to servers on this machine.
pub fn loopback_addrs(flag: &str, s: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("--{flag} `{s}`: cannot resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("--{flag} `{s}`: resolves to no address"));
    }
    if let Some(bad) = addrs.iter().find(|a| !ip_is_loopback(a.ip())) {
        return Err(format!(
            "--{flag} `{s}`: {bad} is not a loopback address; loadgen only targets 127.0.0.0/8 or ::1"
        ));
    }
    Ok(addrs)
}

/// Expands `{i}` (and `{domain}` when given) in a pattern.
pub fn expand(pattern: &str, i: usize, domain: Option<&str>) -> String {
    let s = pattern.replace("{i}", &i.to_string());
    match domain {
        Some(d) => s.replace("{domain}", d),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(_: &str) -> &'static [&'static str] {
        &["addr", "n"]
    }

    #[test]
    fn parses_flags() {
        let argv: Vec<String> = ["throughput", "--addr", "127.0.0.1:1", "--n=5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = Args::parse(&argv, known).unwrap();
        assert_eq!(a.mode, "throughput");
        assert_eq!(a.get::<u64>("n", 1).unwrap(), 5);
        assert_eq!(a.str("addr", "x"), "127.0.0.1:1");
        assert!(Args::parse(&["m".into(), "--bogus".into(), "1".into()], known).is_err());
        assert!(Args::parse(&["m".into(), "--n".into()], known).is_err());
        assert!(a.get::<u64>("addr", 0).is_err());
    }

    #[test]
    fn loopback_only() {
        assert!(loopback_addrs("addr", "127.0.0.1:5347").is_ok());
        assert!(loopback_addrs("addr", "127.1.2.3:5347").is_ok());
        assert!(loopback_addrs("addr", "[::1]:5347").is_ok());
        assert!(loopback_addrs("addr", "10.0.0.1:5347").is_err());
        assert!(loopback_addrs("addr", "192.168.1.1:5347").is_err());
        assert!(loopback_addrs("addr", "[::ffff:127.0.0.1]:5347").is_ok());
        assert!(loopback_addrs("addr", "nonsense").is_err());
    }

    #[test]
    fn expands_patterns() {
        assert_eq!(expand("c{i}.bench.local", 7, None), "c7.bench.local");
        assert_eq!(
            expand("secret-{domain}", 1, Some("s1.bench.local")),
            "secret-s1.bench.local"
        );
    }
}

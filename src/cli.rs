//! The command line (docs/behaviour.md#command-line) and `--check`'s summary.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};

/// Exit code for an invalid config (sysexits.h EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for any other fatal error (e.g. a listen address in use).
pub const EXIT_FATAL: u8 = 1;

/// XEP-0114 component router: components connect here instead of to the XMPP
/// server; stanzas between them are routed directly, everything else goes to the
/// upstream server (e.g. Prosody) over one component link per domain.
/// SIGHUP re-reads the config; SIGTERM/SIGINT shut down.
#[derive(Debug, Parser)]
#[command(
    name = "xmpp-component-router",
    version,
    about,
    long_about = None,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Config file (TOML) to serve. Re-read on SIGHUP (`systemctl reload`).
    ///
    /// It names the addresses components connect to (`listen`), each component's
    /// domain and secret, and optionally the upstream XMPP server (`[upstream]`) and
    /// a Prosody config whose external components are served too (`prosody_config`).
    /// On SIGHUP the file is re-read and only the difference is applied; an invalid
    /// file changes nothing. The Debian package installs a commented example there.
    #[arg(short, long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH, global = true)]
    pub config: PathBuf,

    /// Validate the config, print what would be served (never a secret), and exit:
    /// 0 if valid, 78 if not.
    ///
    /// Prints the listen and upstream addresses and one row per component: domain,
    /// enabled, conflict policy, upstream link on or off, and where it is declared.
    /// Errors name the file, line and problem. Binds nothing and touches no running
    /// instance, so it is safe before `systemctl reload` (the unit also runs it before
    /// every start).
    #[arg(long)]
    pub check: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask the running daemon what it serves and print a table.
    ///
    /// One row per component: state, connections, peers, connected since,
    /// stanzas in and out, bounces, queue, upstream link and its next retry.
    /// The daemon is asked through its metrics listener, `[metrics] listen` in
    /// the config file. Exit 0; 3 when the daemon is not running or the config
    /// has no `[metrics] listen`; 78 when the config is invalid.
    Status,
}

/// The `--check` output: listen and upstream addresses, then one aligned row per component.
pub fn summary(c: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "config: {} is valid", c.path.display());
    for a in &c.listen {
        let _ = writeln!(s, "listen: {a}");
    }
    let _ = writeln!(
        s,
        "upstream: {}",
        c.upstream
            .as_ref()
            .map(|u| u.address.as_str())
            .unwrap_or("none")
    );
    if let Some(p) = &c.prosody_config {
        let _ = writeln!(s, "prosody_config: {}", p.display());
    }
    let _ = writeln!(
        s,
        "handshake_timeout: {}s, max_stanza_size: {} bytes",
        c.handshake_timeout.as_secs(),
        c.max_stanza_size
    );
    let up = if c.upstream.is_some() { "on" } else { "off" };
    let rows: Vec<[String; 5]> = c
        .components
        .values()
        .map(|comp| {
            [
                comp.domain().to_string(),
                if comp.enabled() { "yes" } else { "no" }.to_string(),
                comp.on_conflict().to_string(),
                up.to_string(),
                comp.origin().to_string(),
            ]
        })
        .collect();
    let header = [
        "DOMAIN",
        "ENABLED",
        "ON_CONFLICT",
        "UPSTREAM",
        "DECLARED AT",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                let _ = write!(l, "{:<w$}  ", cell, w = widths[i]);
            } else {
                l.push_str(cell);
            }
        }
        l
    };
    let _ = writeln!(
        s,
        "components: {} ({} enabled)",
        rows.len(),
        c.enabled_components().count()
    );
    let _ = writeln!(s, "{}", line(header));
    for r in &rows {
        let _ = writeln!(s, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    for w in &c.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

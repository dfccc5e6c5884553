//! Test harness that runs a real ejabberd (Debian's 23.01 package) on loopback.
//!
//! Every instance gets its own temporary directory holding the generated
//! `ejabberd.yml`, the Mnesia spool, the logs and the Erlang crash dump, and
//! its own pair of loopback ports: c2s and XEP-0114 (`ejabberd_service`).
//! Instances never share anything, so tests may run in parallel.
//!
//! Gotchas found while writing this (ejabberd 23.01, Erlang 25, run as root in CI):
//! * `ejabberdctl` needs a distributed node (epmd, a cookie, a node name shared
//!   by every test); the harness runs `/usr/bin/erl -s ejabberd` directly as a
//!   non-distributed node (`nonode@nohost`), so nothing listens but its two
//!   ports, and `ejabberdctl register` cannot reach it. Users therefore log in
//!   through anonymous authentication by login (`auth_method: [anonymous]`,
//!   `anonymous_protocol: login_anon`): any user name with any password logs in
//!   with SASL PLAIN, which ejabberd offers on a plain TCP stream once
//!   `starttls` is off. [`crate::c2s::C2s`] logs in unchanged.
//! * As root it runs as the `ejabberd` user (as `ejabberdctl` does), with the
//!   temporary directory handed to that user.
//! * `erl`, `erlexec` and `beam.smp` exec each other, so the child's PID is
//!   the VM's: SIGTERM stops ejabberd cleanly (about 1 s).
//! * ejabberd has no "component unavailable": a stanza for a component domain
//!   without a link is routed like any remote domain, over s2s. s2s is refused
//!   here (`s2s_access` denies all), so it bounces at once, `auth`/`forbidden`
//!   "Access denied by service policy", instead of after a DNS lookup
//!   (`remote-server-not-found`); Prosody answers `wait`/`remote-server-timeout`
//!   "Component unavailable".

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{chown, Uid, User};

use crate::child::{log_and_console_tail, pick_port, probe_c2s, probe_tcp, read_from, Kept};
use crate::not_run;

pub const ERL_BIN: &str = "/usr/bin/erl";
/// Where Debian puts ejabberd's Erlang applications (`ERL_LIBS`).
pub const ERL_LIBS: &str = "/usr/lib/x86_64-linux-gnu";
/// How long `start`/`restart` wait for both ports to serve XMPP (about 1 s on
/// an idle 2-core machine; over 30 s was seen with both cores saturated while
/// other tests started their own ejabberd).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `stop` waits after SIGTERM before sending SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const CONFIG_FILE: &str = "ejabberd.yml";
const LOG_FILE: &str = "ejabberd.log";
const CONSOLE_FILE: &str = "console.log";

/// What the generated `ejabberd.yml` contains.
#[derive(Clone, Debug)]
pub struct EjabberdOptions {
    /// The single host, e.g. `"localhost"`.
    pub host: String,
    /// Component domains on the `ejabberd_service` listener: `(domain, password)`.
    pub components: Vec<(String, String)>,
    /// The service listener's `global_routes`. `false` here (the README's
    /// advice for a router in front of ejabberd); ejabberd's own default is `true`.
    pub global_routes: bool,
}

impl EjabberdOptions {
    pub fn new(host: &str) -> Self {
        EjabberdOptions {
            host: host.to_string(),
            components: Vec::new(),
            global_routes: false,
        }
    }

    pub fn component(mut self, domain: &str, password: &str) -> Self {
        self.components
            .push((domain.to_string(), password.to_string()));
        self
    }

    pub fn global_routes(mut self, on: bool) -> Self {
        self.global_routes = on;
        self
    }
}

/// The directory of ejabberd's Erlang application, if installed.
fn ejabberd_app_dir() -> Option<PathBuf> {
    fs::read_dir(ERL_LIBS)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("ebin").join("ejabberd.app").is_file())
}

/// Are Erlang and ejabberd installed?
pub fn available() -> bool {
    Path::new(ERL_BIN).is_file() && ejabberd_app_dir().is_some()
}

/// Call first in every test that needs ejabberd. Returns `true` when it is
/// installed. When it is missing: fails under CI (`CI=true`); otherwise records
/// that the test did not run (see [`not_run`]) and returns `false` (the test
/// should then return early).
#[track_caller]
pub fn require() -> bool {
    if available() {
        return true;
    }
    not_run::missing(
        &format!(
            "ejabberd tests in {}",
            std::panic::Location::caller().file()
        ),
        "ejabberd is not installed: apt-get install ejabberd",
    );
    false
}

/// A running ejabberd. Dropping it stops the process.
pub struct Ejabberd {
    pub c2s_port: u16,
    pub service_port: u16,
    pub dir: tempfile::TempDir,
    /// How long the last (re)start took until both ports served.
    pub last_start_duration: Duration,
    opts: EjabberdOptions,
    child: Option<Kept>,
}

impl Ejabberd {
    /// Write a private config, start ejabberd and wait until its c2s and
    /// service ports serve.
    pub fn start(opts: &EjabberdOptions) -> io::Result<Ejabberd> {
        if !available() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "ejabberd is not installed",
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("ejabberd-harness-")
            .tempdir()?;
        fs::create_dir_all(dir.path().join("spool"))?;
        let mut e = Ejabberd {
            c2s_port: pick_port()?,
            service_port: pick_port()?,
            dir,
            last_start_duration: Duration::ZERO,
            opts: opts.clone(),
            child: None,
        };
        fs::write(e.config_path(), e.render_config())?;
        hand_to_ejabberd_user(e.dir.path())?;
        e.spawn_and_wait()?;
        Ok(e)
    }

    pub fn options(&self) -> &EjabberdOptions {
        &self.opts
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    pub fn c2s_addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.c2s_port))
    }

    pub fn service_addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.service_port))
    }

    /// PID of the running VM, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Kept::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.exited().is_none())
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.stop(STOP_GRACE);
        }
    }

    /// Stop and start again with the same config on the same ports.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn_and_wait()
    }

    /// Its log (all starts of this instance, info level).
    pub fn read_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last 60 lines of its log, plus what the VM printed (for a failing
    /// test's message).
    pub fn log_tail(&self) -> String {
        let console = self.dir.path().join(CONSOLE_FILE);
        log_and_console_tail(&self.log_path(), &console, "erl stdout/stderr")
    }

    // ---- internals ----

    fn failure(&self, what: &str) -> io::Error {
        io::Error::other(format!(
            "{what} (c2s port {}, service port {}, dir {})\n{}",
            self.c2s_port,
            self.service_port,
            self.dir.path().display(),
            self.log_tail()
        ))
    }

    fn render_config(&self) -> String {
        let mut c = String::from(
            "# Generated by crates/test-support/src/ejabberd.rs; private to one test instance.\n",
        );
        c.push_str(&format!("hosts: [{}]\n", yaml_str(&self.opts.host)));
        c.push_str("loglevel: info\ncertfiles: []\nacl: {}\napi_permissions: {}\n");
        c.push_str("access_rules:\n  no_s2s: {deny: all}\ns2s_access: no_s2s\n");
        c.push_str("auth_method: [anonymous]\nanonymous_protocol: login_anon\n");
        c.push_str("modules:\n  mod_disco: {}\n  mod_ping: {}\n");
        c.push_str("listen:\n");
        c.push_str(&format!(
            "  - port: {}\n    ip: \"127.0.0.1\"\n    module: ejabberd_c2s\n    starttls: false\n",
            self.c2s_port
        ));
        c.push_str(&format!(
            "  - port: {}\n    ip: \"127.0.0.1\"\n    module: ejabberd_service\n    global_routes: {}\n",
            self.service_port, self.opts.global_routes
        ));
        c.push_str("    hosts:");
        if self.opts.components.is_empty() {
            c.push_str(" {}");
        }
        c.push('\n');
        for (domain, password) in &self.opts.components {
            c.push_str(&format!(
                "      {}: {{password: {}}}\n",
                yaml_str(domain),
                yaml_str(password)
            ));
        }
        c
    }

    fn command(&self) -> io::Result<Command> {
        let d = self.dir.path();
        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join(CONSOLE_FILE))?;
        writeln!(&console, "--- starting ejabberd ---")?;
        let mut cmd = Command::new(ERL_BIN);
        cmd.args(["-noinput", "-noshell", "-mnesia", "dir"])
            .arg(format!("\"{}\"", d.join("spool").display()))
            .args(["-s", "ejabberd"])
            .current_dir(d)
            .env("HOME", d)
            .env("EJABBERD_CONFIG_PATH", self.config_path())
            .env("EJABBERD_LOG_PATH", self.log_path())
            .env("ERL_LIBS", ERL_LIBS)
            .env("ERL_CRASH_DUMP", d.join("erl_crash.dump"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(console.try_clone()?))
            .stderr(Stdio::from(console));
        if let Some(user) = ejabberd_user() {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        Ok(cmd)
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let started = Instant::now();
        let log_offset = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        self.child = Some(Kept::spawn(self.command()?, "ejabberd")?);
        let markers = [
            format!("127.0.0.1:{} for ejabberd_c2s", self.c2s_port),
            format!("127.0.0.1:{} for ejabberd_service", self.service_port),
        ];
        let deadline = started + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(Kept::exited) {
                let err = self.failure(&format!("ejabberd exited during startup ({status})"));
                self.stop();
                return Err(err);
            }
            let log = read_from(&self.log_path(), log_offset);
            if markers.iter().all(|m| log.contains(m))
                && probe_c2s(self.c2s_port, &self.opts.host).is_ok()
                && probe_tcp(self.service_port)
            {
                self.last_start_duration = started.elapsed();
                return Ok(());
            }
            if Instant::now() >= deadline {
                let err = self.failure(&format!(
                    "ejabberd did not serve its ports within {START_TIMEOUT:?}"
                ));
                self.stop();
                return Err(err);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `ejabberd` system user when we are root (ejabberd then runs as it), else `None`.
fn ejabberd_user() -> Option<User> {
    if !Uid::effective().is_root() {
        return None;
    }
    User::from_name("ejabberd").ok().flatten()
}

/// Give `dir` and what it holds to the `ejabberd` user when ejabberd will run as it.
fn hand_to_ejabberd_user(dir: &Path) -> io::Result<()> {
    let Some(user) = ejabberd_user() else {
        return Ok(());
    };
    for entry in [dir.to_path_buf(), dir.join("spool"), dir.join(CONFIG_FILE)] {
        chown(&entry, Some(user.uid), Some(user.gid)).map_err(io::Error::from)?;
    }
    Ok(())
}

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

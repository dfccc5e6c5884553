//! Test harness that runs a real Prosody (Debian's 0.12 package) on loopback.
//!
//! Every instance gets its own temporary directory holding the generated
//! config, data store (internal storage, so `prosodyctl register` works),
//! pidfile, certificate directory (empty) and logs, and its own pair of
//! loopback ports (c2s and XEP-0114 component). Instances never share
//! anything, so tests may run in parallel.
//!
//! Gotchas found while writing this (Prosody 0.12.3, run as root in CI):
//! * Prosody refuses to run as root (mod_posix) and prosodyctl switches to the
//!   `prosody` user unless the config says `run_as_root = true`.
//! * Without `certificates = "<dir>"` pointing at an existing directory,
//!   certmanager logs an error about indexing the default `certs` directory.
//!   No certificate is needed: mod_tls is not loaded and
//!   `c2s_require_encryption = false` + `allow_unencrypted_plain_auth = true`
//!   allow SASL PLAIN over plain TCP.
//! * s2s is autoloaded; it is disabled (with `s2s_ports = {}`) so nothing binds
//!   port 5269. `offline` is disabled so nothing is stored for offline users.
//! * Signal handlers are installed by a timer once the event loop runs; a
//!   SIGHUP before that would kill Prosody, so readiness is checked with a
//!   real stream exchange, not only a TCP connect.
//! * `pgrep -a prosody` does not see it: the process name is `lua5.4`; use
//!   `pgrep -af /usr/bin/prosody`.

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::child::{log_and_console_tail, pick_port, probe_c2s, probe_tcp, read_from, Kept};
use crate::not_run;

pub const PROSODY_BIN: &str = "/usr/bin/prosody";
pub const PROSODYCTL_BIN: &str = "/usr/bin/prosodyctl";
/// How long `start`/`restart` wait for both ports to serve XMPP.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `stop` waits after SIGTERM before sending SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const LOG_FILE: &str = "prosody.log";
const WARN_LOG_FILE: &str = "warnings.log";
const CONSOLE_FILE: &str = "console.log";
const CONFIG_FILE: &str = "prosody.cfg.lua";
const PID_FILE: &str = "prosody.pid";

/// What the generated Prosody config contains.
#[derive(Clone, Debug)]
pub struct ProsodyOptions {
    /// The single `VirtualHost`, e.g. `"localhost"`.
    pub virtual_host: String,
    /// `Component` sections: `(domain, component_secret)`.
    pub components: Vec<(String, String)>,
    /// Accounts on `virtual_host`: `(user, password)`.
    pub users: Vec<(String, String)>,
    /// `component_conflict_resolve` of every `Component`: `"kick_old"` (the
    /// README's recommendation, the default here) or Prosody's own default
    /// `"kick_new"`.
    pub conflict_resolve: String,
    /// Extra modules loaded on every `Component`: `(name, Lua source)`,
    /// written to a private plugin directory.
    pub component_modules: Vec<(String, String)>,
}

impl Default for ProsodyOptions {
    fn default() -> Self {
        ProsodyOptions::new("localhost")
    }
}

impl ProsodyOptions {
    pub fn new(virtual_host: &str) -> Self {
        ProsodyOptions {
            virtual_host: virtual_host.to_string(),
            components: Vec::new(),
            users: Vec::new(),
            conflict_resolve: "kick_old".to_string(),
            component_modules: Vec::new(),
        }
    }

    pub fn conflict_resolve(mut self, policy: &str) -> Self {
        self.conflict_resolve = policy.to_string();
        self
    }

    /// Load the module `name` (Lua `source`) on every `Component`.
    pub fn component_module(mut self, name: &str, source: &str) -> Self {
        self.component_modules
            .push((name.to_string(), source.to_string()));
        self
    }

    pub fn component(mut self, domain: &str, secret: &str) -> Self {
        self.components
            .push((domain.to_string(), secret.to_string()));
        self
    }

    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.users.push((user.to_string(), password.to_string()));
        self
    }
}

/// Is Prosody installed?
pub fn available() -> bool {
    Path::new(PROSODY_BIN).is_file() && Path::new(PROSODYCTL_BIN).is_file()
}

/// Call first in every test that needs Prosody. Returns `true` when Prosody
/// is installed. When it is missing: fails under CI (`CI=true`), since CI
/// must never silently skip; otherwise records that the test did not run (see
/// `not_run.rs`) and returns `false` (the test should then return early).
#[track_caller]
pub fn require() -> bool {
    if available() {
        return true;
    }
    not_run::missing(
        &format!("Prosody tests in {}", std::panic::Location::caller().file()),
        &format!("{PROSODY_BIN} is not installed: apt-get install prosody"),
    );
    false
}

/// A running Prosody instance. Dropping it stops the process.
pub struct Prosody {
    pub c2s_port: u16,
    pub component_port: u16,
    pub dir: tempfile::TempDir,
    /// How long the last (re)start took until both ports served XMPP.
    pub last_start_duration: Duration,
    opts: ProsodyOptions,
    /// Dies with the test process even if Drop never runs.
    child: Option<Kept>,
}

impl Prosody {
    /// Write a private config, register users, start Prosody in the
    /// foreground and wait until its c2s and component ports serve XMPP.
    pub fn start(opts: &ProsodyOptions) -> io::Result<Prosody> {
        if !available() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{PROSODY_BIN} is not installed"),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("prosody-harness-")
            .tempdir()?;
        fs::create_dir_all(dir.path().join("data"))?;
        fs::create_dir_all(dir.path().join("certs"))?;
        let c2s_port = pick_port()?;
        let component_port = pick_port()?;
        let mut prosody = Prosody {
            c2s_port,
            component_port,
            dir,
            last_start_duration: Duration::ZERO,
            opts: opts.clone(),
            child: None,
        };
        prosody.write_config()?;
        prosody.register_users()?;
        prosody.spawn_and_wait()?;
        Ok(prosody)
    }

    pub fn options(&self) -> &ProsodyOptions {
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

    pub fn component_addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.component_port))
    }

    /// PID of the running Prosody process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Is the process still alive?
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.exited().is_none())
    }

    /// Register (or re-register, which overwrites the password) an account on
    /// the virtual host with prosodyctl. Works while Prosody runs, too:
    /// internal storage is read from disk on each login.
    pub fn register_user(&mut self, user: &str, password: &str) -> io::Result<()> {
        let host = self.opts.virtual_host.clone();
        self.prosodyctl(&["register", user, &host, password])?;
        if !self.opts.users.iter().any(|(u, _)| u == user) {
            self.opts
                .users
                .push((user.to_string(), password.to_string()));
        }
        Ok(())
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Idempotent.
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

    /// Stop, rewrite the config from `opts` (keeping ports, data and dir),
    /// register `opts.users`, start again. This is how a test makes Prosody
    /// learn a new component domain: Prosody 0.12 does not activate hosts
    /// added to the config on SIGHUP.
    pub fn restart_with(&mut self, opts: &ProsodyOptions) -> io::Result<()> {
        self.stop();
        self.opts = opts.clone();
        self.write_config()?;
        self.register_users()?;
        self.spawn_and_wait()
    }

    /// Rewrite the config with a new component list and send SIGHUP; returns
    /// once Prosody has reloaded it. Prosody 0.12 applies changed options of
    /// existing hosts (e.g. `component_secret`) but does NOT activate added
    /// or deactivate removed hosts: use `restart_with` for that.
    pub fn reload_config(&mut self, components: Vec<(String, String)>) -> io::Result<()> {
        self.opts.components = components;
        self.write_config()?;
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other("reload_config: Prosody is not running"))?;
        let marker = "Reloading configuration file";
        let before = self.read_log().matches(marker).count();
        kill(Pid::from_raw(pid as i32), Signal::SIGHUP).map_err(io::Error::other)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while self.read_log().matches(marker).count() <= before {
            if !self.is_running() {
                return Err(self.failure("Prosody exited after SIGHUP"));
            }
            if Instant::now() >= deadline {
                return Err(self.failure("Prosody did not log a config reload after SIGHUP"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reload runs synchronously in one loop step; a stream exchange
        // afterwards proves it has completed.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match probe_c2s(self.c2s_port, &self.opts.virtual_host) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(self.failure(&format!("Prosody unresponsive after SIGHUP: {e}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Last 60 lines of Prosody's (debug level) log, plus anything it printed
    /// on stdout/stderr.
    pub fn log_tail(&self) -> String {
        let console = self.dir.path().join(CONSOLE_FILE);
        log_and_console_tail(&self.log_path(), &console, "prosody stdout/stderr")
    }

    /// Full debug log (all starts of this instance).
    pub fn read_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Lines logged at level warn or error (all starts of this instance).
    pub fn warnings(&self) -> String {
        fs::read_to_string(self.dir.path().join(WARN_LOG_FILE)).unwrap_or_default()
    }

    // ---- internals ----

    fn failure(&self, what: &str) -> io::Error {
        io::Error::other(format!(
            "{what} (c2s port {}, component port {}, dir {})\n{}",
            self.c2s_port,
            self.component_port,
            self.dir.path().display(),
            self.log_tail()
        ))
    }

    fn render_config(&self) -> String {
        let d = self.dir.path();
        let p = |name: &str| lua_str(&d.join(name).to_string_lossy());
        let mut c = String::new();
        c.push_str(
            "-- Generated by crates/test-support/src/prosody.rs; private to one test instance.\n",
        );
        c.push_str(
            "run_as_root = true -- CI runs as root; without this Prosody refuses to start\n",
        );
        c.push_str("daemonize = false\n");
        if !self.opts.component_modules.is_empty() {
            c.push_str(&format!("plugin_paths = {{ {} }}\n", p("plugins")));
        }
        c.push_str(&format!("pidfile = {}\n", p(PID_FILE)));
        c.push_str(&format!("data_path = {}\n", p("data")));
        c.push_str(&format!("certificates = {}\n", p("certs")));
        c.push_str("log = {\n");
        c.push_str(&format!(
            "\t{{ levels = {{ min = \"debug\" }}, to = \"file\", filename = {} }};\n",
            p(LOG_FILE)
        ));
        c.push_str(&format!(
            "\t{{ levels = {{ min = \"warn\" }}, to = \"file\", filename = {} }};\n",
            p(WARN_LOG_FILE)
        ));
        c.push_str("}\n");
        for key in [
            "interfaces",
            "local_interfaces",
            "c2s_interfaces",
            "component_interfaces",
        ] {
            c.push_str(&format!("{key} = {{ \"127.0.0.1\" }}\n"));
        }
        c.push_str(&format!("c2s_ports = {{ {} }}\n", self.c2s_port));
        c.push_str(&format!(
            "component_ports = {{ {} }}\n",
            self.component_port
        ));
        for key in [
            "c2s_direct_tls_ports",
            "legacy_ssl_ports",
            "s2s_ports",
            "s2s_direct_tls_ports",
        ] {
            c.push_str(&format!("{key} = {{ }}\n"));
        }
        c.push_str(
            "modules_enabled = { \"roster\"; \"saslauth\"; \"disco\"; \"ping\"; \"version\"; }\n",
        );
        c.push_str("modules_disabled = { \"s2s\"; \"s2s_auth_certs\"; \"offline\"; }\n");
        c.push_str("storage = \"internal\"\n");
        c.push_str("authentication = \"internal_plain\"\n");
        c.push_str("c2s_require_encryption = false\n");
        c.push_str("allow_unencrypted_plain_auth = true\n");
        c.push_str("s2s_require_encryption = false\n");
        c.push('\n');
        c.push_str(&format!(
            "VirtualHost {}\n",
            lua_str(&self.opts.virtual_host)
        ));
        for (domain, secret) in &self.opts.components {
            c.push('\n');
            c.push_str(&format!("Component {}\n", lua_str(domain)));
            c.push_str(&format!("\tcomponent_secret = {}\n", lua_str(secret)));
            c.push_str(&format!(
                "\tcomponent_conflict_resolve = {}\n",
                lua_str(&self.opts.conflict_resolve)
            ));
            if !self.opts.component_modules.is_empty() {
                let names: Vec<String> = self
                    .opts
                    .component_modules
                    .iter()
                    .map(|(n, _)| lua_str(n))
                    .collect();
                c.push_str(&format!("\tmodules_enabled = {{ {} }}\n", names.join("; ")));
            }
        }
        c
    }

    fn write_config(&self) -> io::Result<()> {
        if !self.opts.component_modules.is_empty() {
            let dir = self.dir.path().join("plugins");
            fs::create_dir_all(&dir)?;
            for (name, source) in &self.opts.component_modules {
                fs::write(dir.join(format!("mod_{name}.lua")), source)?;
            }
        }
        // Write-then-rename so a concurrent reload never sees half a file.
        let tmp = self.dir.path().join(format!("{CONFIG_FILE}.tmp"));
        fs::write(&tmp, self.render_config())?;
        fs::rename(&tmp, self.config_path())
    }

    fn prosodyctl(&self, args: &[&str]) -> io::Result<()> {
        let out = Command::new(PROSODYCTL_BIN)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "prosodyctl {} failed ({}): {}{}",
                args.first().copied().unwrap_or(""),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    fn register_users(&mut self) -> io::Result<()> {
        let host = self.opts.virtual_host.clone();
        for (user, password) in self.opts.users.clone() {
            self.prosodyctl(&["register", &user, &host, &password])?;
        }
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let started = Instant::now();
        let log_offset = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        // Stale pidfile from a killed run would not stop Prosody, but remove it anyway.
        let _ = fs::remove_file(self.dir.path().join(PID_FILE));
        let mut console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(CONSOLE_FILE))?;
        writeln!(console, "--- starting prosody ---")?;
        let mut cmd = Command::new(PROSODY_BIN);
        cmd.arg("-F")
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(console.try_clone()?))
            .stderr(Stdio::from(console));
        self.child = Some(Kept::spawn(cmd, "prosody")?);

        let deadline = started + START_TIMEOUT;
        let c2s_marker = format!("Activated service 'c2s' on [127.0.0.1]:{}", self.c2s_port);
        let comp_marker = format!(
            "Activated service 'component' on [127.0.0.1]:{}",
            self.component_port
        );
        let need_component = !self.opts.components.is_empty();
        loop {
            if !self.is_running() {
                let status = self.child.as_mut().and_then(|c| c.exited());
                let err = self.failure(&format!("Prosody exited during startup ({status:?})"));
                self.stop();
                return Err(err);
            }
            let log = read_from(&self.log_path(), log_offset);
            let activated =
                log.contains(&c2s_marker) && (!need_component || log.contains(&comp_marker));
            if activated
                && probe_c2s(self.c2s_port, &self.opts.virtual_host).is_ok()
                && (!need_component || probe_tcp(self.component_port))
            {
                self.last_start_duration = started.elapsed();
                return Ok(());
            }
            if Instant::now() >= deadline {
                let err = self.failure(&format!(
                    "Prosody did not serve its ports within {START_TIMEOUT:?}"
                ));
                self.stop();
                return Err(err);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lua string literal.
fn lua_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

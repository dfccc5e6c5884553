//! The router binary as a child process on a free loopback port with a
//! temporary config: start, signal, reload, stop; its log, and waits on it;
//! its memory.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::child::collect_lines;
use crate::events::{event, Event, LogMatch};

/// The router executable: in the router's own tests the one cargo built for
/// this run (cargo names it in `CARGO_BIN_EXE_xmpp-component-router`); else
/// `ROUTER_BIN`, a prebuilt one; else (another package's tests, e.g.
/// crates/interop-tests, or a test binary run by hand) cargo builds it now, in
/// the same profile (a no-op when it is up to date), and says where.
pub fn router_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        ["CARGO_BIN_EXE_xmpp-component-router", "ROUTER_BIN"]
            .iter()
            .find_map(|v| std::env::var_os(v).filter(|p| !p.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(cargo_build_router)
    })
}

/// `cargo build` the router binary (a no-op when it is up to date); its path
/// from cargo's JSON messages.
fn cargo_build_router() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "-p",
            "xmpp-component-router",
            "--bin",
            "xmpp-component-router",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(out.status.success(), "cargo build of the router failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "xmpp-component-router"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no router executable")
}

/// A `[components."DOMAIN"]` table of a router config: its secret, then any
/// `extra` lines.
pub fn component(domain: &str, secret: &str, extra: &str) -> String {
    format!("[components.\"{domain}\"]\nsecret = \"{secret}\"\n{extra}\n")
}

/// A router config: `log_level = "info"`, `[upstream]` at `upstream` if any,
/// then a component table per `(domain, secret, extra lines)`.
pub fn router_config(upstream: Option<SocketAddr>, comps: &[(&str, &str, &str)]) -> String {
    let mut s = String::from("log_level = \"info\"\n");
    if let Some(a) = upstream {
        s.push_str(&format!("[upstream]\naddress = \"{a}\"\n"));
    }
    for (domain, secret, extra) in comps {
        s.push_str(&component(domain, secret, extra));
    }
    s
}

/// What the router logs when `domain`'s upstream link comes up.
pub fn up_line(domain: &str) -> Event {
    crate::events::upstream_up(domain)
}

/// What the router logs when `domain`'s upstream link goes down.
pub fn down_line(domain: &str) -> Event {
    crate::events::upstream_down(domain)
}

/// KiB (as `/proc` gives them) in MiB, for printing.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Start with `body` as the config, after a `listen` line for a free port
    /// (unless `body` sets `listen` itself).
    pub fn start(body: &str) -> Daemon {
        Self::start_env(body, &[])
    }

    pub fn start_env(body: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_full(body, env, &[])
    }

    /// Start with extra files written next to the config first (e.g. a
    /// `prosody_config` file or a `secret_file`), as (name, content).
    pub fn start_with_files(body: &str, files: &[(&str, &str)]) -> Daemon {
        Self::start_full(body, &[], files)
    }

    pub fn start_full(body: &str, env: &[(&str, &str)], files: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        let port = free_port();
        let config_path = dir.path().join("config.toml");
        let text = if sets_listen(body) {
            body.to_string()
        } else {
            format!("listen = [\"127.0.0.1:{port}\"]\n{body}")
        };
        std::fs::write(&config_path, text).expect("write config");
        let mut cmd = Command::new(router_bin());
        cmd.arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn daemon");
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || collect_lines(stderr, log, "router"));
        }
        let mut d = Daemon {
            child: Some(child),
            port,
            dir,
            config_path,
            log,
        };
        if !sets_listen(body) {
            d.wait_listening();
        } else {
            d.wait_for_log(event("ready"), Duration::from_secs(10));
        }
        d
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.wait_for_log(event("ready"), Duration::from_millis(50)) {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("daemon exited early ({st}):\n{}", self.logs());
            }
        }
        panic!("daemon did not become ready:\n{}", self.logs());
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    pub fn sighup(&self) {
        self.signal(nix::sys::signal::Signal::SIGHUP);
    }

    /// Rewrite the config (keeping our listen line), send SIGHUP and wait until
    /// the reload's outcome (summary or failure) is logged.
    pub fn reload(&self, body: &str) {
        let text = if sets_listen(body) {
            body.to_string()
        } else {
            format!("listen = [\"127.0.0.1:{}\"]\n{body}", self.port)
        };
        std::fs::write(&self.config_path, text).expect("rewrite config");
        self.sighup_and_wait();
    }

    /// SIGHUP and wait for the reload's outcome line.
    pub fn sighup_and_wait(&self) {
        let before = self.reload_outcomes();
        self.sighup();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.reload_outcomes() > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("reload not logged:\n{}", self.logs());
    }

    fn reload_outcomes(&self) -> usize {
        let logs = self.logs();
        event("reload.done").count_in(&logs) + event("reload.failed").count_in(&logs)
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How often `pat` occurs in the log so far.
    pub fn count_log(&self, pat: impl LogMatch) -> usize {
        pat.count_in(&self.logs())
    }

    /// Whether `pat` occurs in the log within `timeout`.
    pub fn wait_for_log(&self, pat: impl LogMatch, timeout: Duration) -> bool {
        self.wait_log_count(pat, 1, timeout).is_some()
    }

    /// `pat` occurs in the log within `timeout`; panics with the log otherwise.
    pub fn expect_log(&self, pat: impl LogMatch, timeout: Duration) {
        assert!(
            self.wait_for_log(&pat, timeout),
            "log line {pat:?} missing after {timeout:?}:\n{}",
            self.logs()
        );
    }

    /// Wait until `pat` occurs at least `n` times in the log; how long that
    /// took, or `None` after `within`.
    pub fn wait_log_count(
        &self,
        pat: impl LogMatch,
        n: usize,
        within: Duration,
    ) -> Option<Duration> {
        let t0 = Instant::now();
        loop {
            if self.count_log(&pat) >= n {
                return Some(t0.elapsed());
            }
            if t0.elapsed() >= within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`Daemon::wait_log_count`], panicking with the log on a timeout.
    pub fn expect_log_count(&self, pat: impl LogMatch, n: usize, within: Duration) -> Duration {
        self.wait_log_count(&pat, n, within).unwrap_or_else(|| {
            panic!(
                "router log has {} × {pat:?} after {within:?}, wanted {n}:\n{}",
                self.count_log(&pat),
                self.logs()
            )
        })
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait(Duration::from_secs(10))
    }

    /// SIGTERM; the daemon must exit 0 within 10 s.
    pub fn stop_ok(&mut self) {
        match self.stop() {
            Some(st) => assert!(st.success(), "exit {st:?}\n{}", self.logs()),
            None => panic!("daemon did not exit\n{}", self.logs()),
        }
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// VmRSS of the daemon in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_of(self.pid())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// VmRSS of a process in KiB (0 once it is gone).
pub fn rss_of(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples a process's RSS every 20 ms and keeps the peak.
pub struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    pub fn start(pid: i32) -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss_of(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssPeak {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Whether a config body sets the top-level `listen` itself (a `listen` key
/// inside a section, such as `[metrics] listen`, does not count).
fn sets_listen(body: &str) -> bool {
    body.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with('['))
        .any(|l| {
            l.strip_prefix("listen")
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
}

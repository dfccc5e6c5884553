//! Start the built binary on a free loopback port with a temporary config.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_xmpp-component-router");

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
        let text = if body.contains("listen") {
            body.to_string()
        } else {
            format!("listen = [\"127.0.0.1:{port}\"]\n{body}")
        };
        std::fs::write(&config_path, text).expect("write config");
        let mut cmd = Command::new(BIN);
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
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if std::env::var_os("ROUTER_TEST_LOG").is_some() {
                        eprintln!("[router] {line}");
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let mut d = Daemon {
            child: Some(child),
            port,
            dir,
            config_path,
            log,
        };
        if !body.contains("listen") {
            d.wait_listening();
        } else {
            d.wait_for_log("ready", Duration::from_secs(10));
        }
        d
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.wait_for_log("ready", Duration::from_millis(50)) {
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
        let text = if body.contains("listen") {
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
        self.logs()
            .lines()
            .filter(|l| {
                (l.contains("reload: ") && l.contains(" unchanged")) || l.contains("reload failed")
            })
            .count()
    }

    pub fn count_log(&self, pat: &str) -> usize {
        self.logs().matches(pat).count()
    }

    pub fn logs(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn wait_for_log(&self, pat: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(pat) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait(Duration::from_secs(10))
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
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
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

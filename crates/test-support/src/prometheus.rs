//! Test harness that runs a real Prometheus server (Debian's `prometheus`
//! package) on loopback, scraping one target, and queries its HTTP API.
//!
//! Every instance gets its own temporary directory (config, TSDB, log) and its
//! own loopback port; instances share nothing, so tests may run in parallel.
//! The process is stopped by PID (SIGTERM, then SIGKILL) when dropped, and dies
//! with the test process (PR_SET_PDEATHSIG) if that is killed.
//!
//! Gotchas (Prometheus 2.42):
//! * It binds its port itself, so the port is picked by binding and releasing
//!   port 0; if another process takes it in between, Prometheus exits with
//!   "address already in use" and `start` tries again with another port.
//! * `/-/ready` answers 503 until the TSDB is open; the first scrape happens up
//!   to one scrape interval after that.
//! * It asks the target for OpenMetrics first (`Accept:
//!   application/openmetrics-text;version=1.0.0,...`), so scraping through it
//!   checks that format; `promtool check metrics` checks the text format.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::Kept;
use crate::daemon::free_port;
use crate::not_run;
use crate::xcr::metrics::client;

pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
pub const PROMTOOL_BIN: &str = "/usr/bin/promtool";
/// How long `start` waits for `/-/ready`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits after SIGTERM before sending SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_FILE: &str = "prometheus.log";

/// Call first in a test that needs `tool` (a path). `true` when it is
/// installed. When it is missing: fails under `CI=true` (CI never skips),
/// otherwise records that the test did not run (see [`not_run`]) and returns
/// `false` (the test should then return early).
#[track_caller]
pub fn require(tool: &str) -> bool {
    if Path::new(tool).is_file() {
        return true;
    }
    not_run::missing(
        &format!(
            "Prometheus tests in {}",
            std::panic::Location::caller().file()
        ),
        &format!("{tool} is not installed: apt-get install prometheus"),
    );
    false
}

/// `promtool check metrics` on an exposition in the text format; `Err` with
/// what promtool said (a clean exposition makes it print nothing at all).
pub fn check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new(PROMTOOL_BIN)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {PROMTOOL_BIN}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, text.as_bytes())
            .map_err(|e| format!("writing to promtool: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    promtool_result("check metrics", &out, true)
}

/// `promtool check rules` on the rules file `path`.
pub fn check_rules(path: &Path) -> Result<(), String> {
    let out = Command::new(PROMTOOL_BIN)
        .args(["check", "rules"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {PROMTOOL_BIN}: {e}"))?;
    promtool_result("check rules", &out, false)
}

fn promtool_result(what: &str, out: &std::process::Output, silent: bool) -> Result<(), String> {
    let quiet = out.stdout.is_empty() && out.stderr.is_empty();
    if out.status.success() && (quiet || !silent) {
        return Ok(());
    }
    Err(format!(
        "promtool {what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A running Prometheus scraping one target. Dropping it stops the process.
pub struct Prometheus {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Kept>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`/metrics`) every `interval`, and
    /// waits until it is ready.
    pub async fn start(target: SocketAddr, interval: Duration) -> io::Result<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-harness-")
            .tempdir()?;
        write_config(&dir.path().join("prometheus.yml"), target, interval)?;
        let mut p = Prometheus {
            port: 0,
            dir,
            child: None,
        };
        let mut last_err = None;
        for _ in 0..3 {
            p.port = free_port();
            match p.spawn_and_wait().await {
                Ok(()) => return Ok(p),
                Err(e) => {
                    p.stop();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("prometheus did not start")))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Its log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Kept::id)
    }

    async fn spawn_and_wait(&mut self) -> io::Result<()> {
        let log = fs::File::create(self.log_path())?;
        let mut cmd = Command::new(PROMETHEUS_BIN);
        cmd.arg(format!(
            "--config.file={}",
            self.dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            self.dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={}", self.addr()))
        .arg("--log.level=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        self.child = Some(Kept::spawn(cmd, "prometheus")?);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(Kept::exited) {
                return Err(io::Error::other(format!(
                    "prometheus exited ({status}):\n{}",
                    self.log()
                )));
            }
            if self.get("/-/ready").await.is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(io::Error::other(format!(
            "prometheus not ready within {START_TIMEOUT:?}:\n{}",
            self.log()
        )))
    }

    async fn get(&self, path: &str) -> Result<client::Reply, client::ClientError> {
        client::get(self.addr(), path, None, Duration::from_secs(5), 16 << 20).await
    }

    /// Runs an instant PromQL query; returns each result's labels (as JSON)
    /// and value.
    pub async fn query(&self, promql: &str) -> io::Result<Vec<(serde_json::Value, f64)>> {
        let path = format!("/api/v1/query?query={}", urlencode(promql));
        let reply = self.get(&path).await.map_err(io::Error::other)?;
        let doc: serde_json::Value =
            serde_json::from_slice(&reply.body).map_err(io::Error::other)?;
        if doc["status"] != "success" {
            return Err(io::Error::other(format!("query {promql:?} failed: {doc}")));
        }
        let results = doc["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(results
            .into_iter()
            .filter_map(|r| {
                let v = r["value"][1].as_str()?.parse::<f64>().ok()?;
                Some((r["metric"].clone(), v))
            })
            .collect())
    }

    /// Polls `promql` until it has exactly one result equal to `want`; returns
    /// the last value seen (or `None`) on timeout.
    pub async fn wait_for_value(
        &self,
        promql: &str,
        want: f64,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            match self.query(promql).await {
                Ok(r) if r.len() == 1 && r[0].1 == want => return Ok(()),
                Ok(r) => last = Some(format!("{r:?}")),
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "{promql} never became {want} within {timeout:?}; last: {last:?}\nprometheus log:\n{}",
            self.log()
        ))
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaps the process.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.stop(STOP_GRACE);
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_config(path: &Path, target: SocketAddr, interval: Duration) -> io::Result<()> {
    let ms = interval.as_millis().max(100);
    fs::write(
        path,
        format!(
            "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n  evaluation_interval: {ms}ms\n\
             scrape_configs:\n  - job_name: router\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

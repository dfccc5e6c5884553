//! The metrics of the real daemon (README, "Monitoring"): each test runs the
//! router binary with `[metrics] listen`, drives an event over real TCP (a
//! component connecting, a failed handshake, bounces, a full queue, an
//! upstream link going down and up against a real Prosody, reloads) and reads
//! the new value from `/metrics`; a real Prometheus scrapes it while traffic
//! flows, `promtool` checks a scrape, the `status` command reads it, and the
//! listener's abuse (idle connection flood, slow and malformed requests) is
//! shown not to disturb component traffic.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use test_support::comp::{round_trip, Comp, Got};
use test_support::daemon::{component, down_line, free_port, router_bin, Daemon};
use test_support::events::event;
use test_support::inspect::stanza_error_condition;
use test_support::prometheus;
use test_support::prosody::{self, Prosody, ProsodyOptions};
use test_support::stanza::msg;
use test_support::xcr::metrics::client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);
const P: &str = "xmpp_component_router_";

/// A router with a component listener and a metrics listener, each on a
/// free port, and `body` (components, limits) after them.
struct Router {
    d: Daemon,
    metrics: SocketAddr,
}

fn config(port: u16, metrics: SocketAddr, body: &str) -> String {
    format!("listen = [\"127.0.0.1:{port}\"]\nlog_level = \"debug\"\n{body}\n[metrics]\nlisten = \"{metrics}\"\n")
}

impl Router {
    fn start(body: &str) -> Router {
        let port = free_port();
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut d = Daemon::start(&config(port, metrics, body));
        d.port = port;
        d.expect_log(event("metrics.listening"), T);
        Router { d, metrics }
    }

    fn addr(&self) -> SocketAddr {
        self.d.addr()
    }

    /// Rewrite the config (same ports) and reload.
    fn reload(&self, body: &str) {
        self.d.reload(&config(self.d.port, self.metrics, body));
    }

    async fn scrape(&self) -> Scrape {
        scrape(self.metrics).await
    }

    /// Scrape until `series` has the value `want` (counters are updated by
    /// the connections' tasks, a moment after the client saw the effect).
    async fn expect(&self, series: &str, want: f64) -> Scrape {
        let deadline = Instant::now() + T;
        loop {
            let s = self.scrape().await;
            if s.get(series) == Some(want) || Instant::now() >= deadline {
                assert_eq!(s.get(series), Some(want), "{series}\n{}", s.0);
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One `/metrics` body (Prometheus text format).
struct Scrape(String);

impl Scrape {
    /// The value of `series` (name with its labels exactly as exposed; the
    /// prefix is added when `series` lacks it).
    fn get(&self, series: &str) -> Option<f64> {
        let series = if series.starts_with(P) || series.starts_with("process_") {
            series.to_string()
        } else {
            format!("{P}{series}")
        };
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (s, v) = l.rsplit_once(' ')?;
                (s == series).then(|| v.parse().ok())?
            })
    }

    fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.0))
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let r = client::get(addr, "/metrics", None, T, 64 << 20)
        .await
        .unwrap_or_else(|e| panic!("scrape {addr}: {e}"));
    assert_eq!(r.status, 200);
    Scrape(String::from_utf8(r.body.to_vec()).unwrap())
}

fn stanzas(domain: &str, dir: &str) -> String {
    format!("component_stanzas_total{{domain=\"{domain}\",direction=\"{dir}\"}}")
}

fn bytes(domain: &str, dir: &str) -> String {
    format!("component_bytes_total{{domain=\"{domain}\",direction=\"{dir}\"}}")
}

fn bounces(domain: &str, condition: &str) -> String {
    format!("bounces_total{{domain=\"{domain}\",condition=\"{condition}\"}}")
}

fn per_domain(family: &str, domain: &str) -> String {
    format!("{family}{{domain=\"{domain}\"}}")
}

fn state(domain: &str, st: &str) -> String {
    format!("component_state{{domain=\"{domain}\",state=\"{st}\"}}")
}

fn two_components() -> String {
    component("a.example", "sa", "") + &component("b.example", "sb", "")
}

/// `xmpp-component-router status --config CONFIG` (off the runtime).
async fn status_cmd(config: &std::path::Path) -> Output {
    let mut cmd = Command::new(router_bin());
    cmd.args(["status", "--config"])
        .arg(config)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().expect("run status"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stanzas_and_bytes_are_counted_per_domain() {
    let r = Router::start(&two_components());
    let s = r.scrape().await;
    assert_eq!(s.value(&state("a.example", "offline")), 1.0);
    assert_eq!(
        s.value(&per_domain("component_connections", "a.example")),
        0.0
    );
    assert_eq!(s.value("connections{state=\"authenticated\"}"), 0.0);
    assert!(s.value("last_reload_success_timestamp_seconds") > 1.7e9);

    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;
    let s = r.expect("connections{state=\"authenticated\"}", 2.0).await;
    assert_eq!(s.value("handshakes_total{result=\"ok\"}"), 2.0);
    assert_eq!(s.value(&state("a.example", "connected")), 1.0);
    assert_eq!(
        s.value(&per_domain("component_connections", "b.example")),
        1.0
    );

    let mut sent = 0usize;
    for i in 0..25 {
        let m = msg("x@a.example", "y@b.example", &format!("m{i}"));
        a.send(&m).await;
        sent += m.len();
        let got = b.stanza().await;
        assert_eq!(got, m);
    }
    let s = r.expect(&stanzas("b.example", "out"), 25.0).await;
    assert_eq!(s.value(&stanzas("a.example", "in")), 25.0);
    assert_eq!(s.value(&bytes("a.example", "in")), sent as f64);
    assert_eq!(s.value(&bytes("b.example", "out")), sent as f64);
    assert_eq!(s.value(&stanzas("a.example", "out")), 0.0);
    assert_eq!(s.value(&stanzas("b.example", "in")), 0.0);

    // An ended connection's counts stay; the gauges drop.
    a.close_cleanly("a closes").await;
    let s = r
        .expect(&per_domain("component_connections", "a.example"), 0.0)
        .await;
    assert_eq!(s.value(&stanzas("a.example", "in")), 25.0);
    assert_eq!(s.value(&state("a.example", "offline")), 1.0);
    r.expect("connections{state=\"authenticated\"}", 1.0).await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_and_refusals_by_reason() {
    let r = Router::start(&format!("max_connections = 2\n{}", two_components()));

    let mut wrong = Comp::connect(r.addr()).await;
    wrong.open_ok("a.example").await;
    let s = r
        .expect("connections{state=\"unauthenticated\"}", 1.0)
        .await;
    assert_eq!(s.value("handshakes_total{result=\"failed\"}"), 0.0);
    wrong.send_handshake("not the secret").await;
    assert_eq!(wrong.expect_stream_error().await, "not-authorized");
    let s = r.expect("handshakes_total{result=\"failed\"}", 1.0).await;
    assert_eq!(
        s.value("refused_connections_total{reason=\"not-authorized\"}"),
        1.0
    );
    assert_eq!(
        s.value("stream_errors_total{condition=\"not-authorized\"}"),
        1.0
    );

    let mut unknown = Comp::connect(r.addr()).await;
    unknown
        .send(&test_support::stanza::header("nobody.example"))
        .await;
    assert_eq!(unknown.expect_stream_error().await, "host-unknown");
    r.expect("refused_connections_total{reason=\"host-unknown\"}", 1.0)
        .await;

    // Two open connections: the third is refused at accept.
    let _a = Comp::login(r.addr(), "a.example", "sa").await;
    let _b = Comp::login(r.addr(), "b.example", "sb").await;
    let mut third = Comp::connect(r.addr()).await;
    assert_eq!(third.expect_stream_error().await, "resource-constraint");
    let s = r
        .expect("refused_connections_total{reason=\"limit\"}", 1.0)
        .await;
    assert_eq!(
        s.value("stream_errors_total{condition=\"resource-constraint\"}"),
        1.0
    );
    assert_eq!(s.value("handshakes_total{result=\"ok\"}"), 2.0);
    assert_eq!(s.value("connections{state=\"unauthenticated\"}"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_are_counted_by_condition_for_the_sender() {
    let r = Router::start(&(two_components() + &component("c.example", "sc", "")));
    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let cases = [
        // No upstream server: an unknown domain is not found.
        ("x@elsewhere.example", "remote-server-not-found"),
        // Served, but no component connected.
        ("x@c.example", "remote-server-timeout"),
        ("x@@c.example", "jid-malformed"),
    ];
    for (i, (to, cond)) in cases.iter().enumerate() {
        a.send(&msg("x@a.example", to, &format!("b{i}"))).await;
        let e = a.stanza().await;
        assert_eq!(stanza_error_condition(&e).as_deref(), Some(*cond), "{e}");
        r.expect(&bounces("a.example", cond), 1.0).await;
    }
    a.send("<message from='x@a.example' id='no-to'/>").await;
    let e = a.stanza().await;
    assert_eq!(stanza_error_condition(&e).as_deref(), Some("bad-request"));
    let s = r.expect(&bounces("a.example", "bad-request"), 1.0).await;
    // Every refused stanza was read; none was counted for another domain.
    assert_eq!(s.value(&stanzas("a.example", "in")), 4.0);
    assert_eq!(s.get(&bounces("c.example", "remote-server-timeout")), None);
    // An error stanza is never answered, but its refusal is counted.
    a.send("<message from='x@a.example' to='x@c.example' type='error' id='e'/>")
        .await;
    r.expect(&bounces("a.example", "remote-server-timeout"), 2.0)
        .await;
    a.expect_silence(Duration::from_millis(200)).await;
}

/// A component that does not read: its queue fills (the gauges show it),
/// then stanzas to it bounce `resource-constraint` for their sender; and
/// `/health` answers 503 from SIGTERM until the listener closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_fill_and_health_during_shutdown() {
    let r = Router::start(&format!(
        "max_queue_stanzas = 8\nmax_queue_bytes = 65536\n{}",
        two_components()
    ));
    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let b = Comp::login(r.addr(), "b.example", "sb").await; // never reads
    let body = "x".repeat(16 << 10);
    let mut full = false;
    for i in 0..2000 {
        a.send(&test_support::stanza::message(
            "x@a.example",
            "y@b.example",
            i,
            &body,
        ))
        .await;
        if let Got::Stanza(e) = a.recv_timeout(Duration::from_millis(5)).await {
            assert_eq!(
                stanza_error_condition(&e).as_deref(),
                Some("resource-constraint"),
                "{e}"
            );
            full = true;
            break;
        }
    }
    assert!(full, "b's queue never filled");
    let s = r
        .expect(&bounces("a.example", "resource-constraint"), 1.0)
        .await;
    let queued = s.value(&per_domain("component_queue_stanzas", "b.example"));
    let queued_bytes = s.value(&per_domain("component_queue_bytes", "b.example"));
    assert!((1.0..=8.0).contains(&queued), "{queued}\n{}", s.0);
    assert!(queued_bytes >= 16384.0, "{queued_bytes}");
    assert_eq!(
        s.value(&per_domain("component_queue_stanzas", "a.example")),
        0.0
    );

    let health = client::get(r.metrics, "/health", None, T, 1 << 20)
        .await
        .unwrap();
    assert_eq!(health.status, 200);
    // b's writer is stuck: shutdown takes a while, and says so on /health.
    r.d.signal(nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + T;
    let mut saw_503 = false;
    while Instant::now() < deadline {
        match client::get(r.metrics, "/health", None, T, 1 << 20).await {
            Ok(h) if h.status == 503 => {
                saw_503 = true;
                break;
            }
            Ok(h) => assert_eq!(h.status, 200),
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(saw_503, "/health never answered 503 during shutdown");
    drop(b);
}

/// A domain held while its component restarts: `held` state and the
/// stanzas kept for it, then `connected` again once they are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_state_and_held_stanzas() {
    let r = Router::start(
        &(component("a.example", "sa", "") + &component("b.example", "sb", "hold_seconds = 30")),
    );
    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;
    b.close_cleanly("b restarts").await;
    r.expect(&state("b.example", "held"), 1.0).await;
    for i in 0..3 {
        a.send(&msg("x@a.example", "y@b.example", &format!("h{i}")))
            .await;
    }
    let s = r
        .expect(&per_domain("held_stanzas", "b.example"), 3.0)
        .await;
    assert_eq!(
        s.value(&per_domain("component_connections", "b.example")),
        0.0
    );
    assert_eq!(s.get(&bounces("a.example", "remote-server-timeout")), None);
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;
    for _ in 0..3 {
        b.stanza().await;
    }
    let s = r
        .expect(&per_domain("held_stanzas", "b.example"), 0.0)
        .await;
    assert_eq!(s.value(&state("b.example", "connected")), 1.0);
    r.expect(&stanzas("b.example", "out"), 3.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_ok_and_failed_and_the_detached_state() {
    let r = Router::start(&two_components());
    let s = r.scrape().await;
    let loaded = s.value("last_reload_success_timestamp_seconds");
    assert_eq!(s.value("reloads_total{result=\"ok\"}"), 0.0);
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.reload(&component("a.example", "sa", ""));
    let s = r.expect("reloads_total{result=\"ok\"}", 1.0).await;
    assert!(s.value("last_reload_success_timestamp_seconds") >= loaded + 1.0);
    // b's connection stays open, detached.
    assert_eq!(s.value(&state("b.example", "detached")), 1.0);
    assert_eq!(s.value("connections{state=\"detached\"}"), 1.0);
    assert_eq!(s.value("connections{state=\"authenticated\"}"), 0.0);

    std::fs::write(&r.d.config_path, "this is [not toml").unwrap();
    r.d.sighup_and_wait();
    let s = r.expect("reloads_total{result=\"failed\"}", 1.0).await;
    assert_eq!(s.value("reloads_total{result=\"ok\"}"), 1.0);

    // Re-added while its old connection is open: one row, counted once.
    b.send(&msg("x@b.example", "y@a.example", "dropped")).await;
    let s = r.expect(&stanzas("b.example", "in"), 1.0).await;
    assert_eq!(s.0.matches(&stanzas("b.example", "in")).count(), 1);
    r.reload(&two_components());
    let s = r.expect("reloads_total{result=\"ok\"}", 2.0).await;
    assert_eq!(s.value(&stanzas("b.example", "in")), 1.0);
    drop(b);
}

/// `[metrics] listen` moves on reload: the new address serves, the old one
/// is closed; component traffic is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_the_metrics_listener() {
    let r = Router::start(&two_components());
    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;
    let new = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = format!(
        "listen = [\"127.0.0.1:{}\"]\n{}\n[metrics]\nlisten = \"{new}\"\n",
        r.d.port,
        two_components()
    );
    r.d.reload(&text);
    r.d.expect_log(event("metrics.moved"), T);
    assert_eq!(scrape(new).await.value("reloads_total{result=\"ok\"}"), 1.0);
    assert!(
        TcpStream::connect(r.metrics).await.is_err(),
        "old address still open"
    );
    round_trip(&mut a, "a.example", &mut b, "b.example", "after-move").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_against_a_running_daemon_and_without_one() {
    let r = Router::start(&(two_components() + &component("c.example", "sc", "")));
    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;
    for i in 0..3 {
        a.send(&msg("x@a.example", "y@b.example", &format!("s{i}")))
            .await;
        b.stanza().await;
    }
    r.expect(&stanzas("b.example", "out"), 3.0).await;
    let out = status_cmd(&r.d.config_path).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("3 domains, 2 connected"), "{text}");
    assert!(lines[1].starts_with("DOMAIN"), "{text}");
    let row = |d: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(d))
            .unwrap_or_else(|| panic!("{d}: {text}"))
    };
    let a_row: Vec<&str> = row("a.example").split_whitespace().collect();
    assert_eq!(a_row[1..3], ["connected", "1"], "{text}");
    assert!(a_row[3].starts_with("127.0.0.1:"), "{text}");
    let b_row = row("b.example");
    assert!(
        b_row.contains(" 0    3 ") || b_row.split_whitespace().any(|c| c == "3"),
        "{text}"
    );
    assert!(row("c.example").contains("offline"), "{text}");
    drop((a, b));

    // Not running: the same config, nothing listening.
    let mut d = r.d;
    d.stop_ok();
    let out = status_cmd(&d.config_path).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("is the daemon running?"), "{err}");
    assert!(out.stdout.is_empty());

    // No [metrics] listen: exit 3, saying what to add.
    std::fs::write(&d.config_path, two_components()).unwrap();
    let out = status_cmd(&d.config_path).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("no [metrics] listen"), "{err}");

    // An invalid config: 78, as everywhere.
    std::fs::write(&d.config_path, "[metrics]\nlisten = \"nowhere\"\n").unwrap();
    let out = status_cmd(&d.config_path).await;
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_checks_a_scrape_of_the_daemon() {
    if !prometheus::require(prometheus::PROMTOOL_BIN) {
        return;
    }
    let r = Router::start(&two_components());
    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;
    round_trip(&mut a, "a.example", &mut b, "b.example", "promtool").await;
    a.send(&msg("x@a.example", "y@nowhere.example", "bounce"))
        .await;
    a.stanza().await;
    let s = r
        .expect(&bounces("a.example", "remote-server-not-found"), 1.0)
        .await;
    if let Err(e) = prometheus::check_metrics(&s.0) {
        panic!("{e}");
    }
}

/// A real Prometheus scrapes the daemon while two components exchange
/// stanzas; what it stored matches what the test sent, and `up` is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_daemon_while_traffic_flows() {
    if !prometheus::require(prometheus::PROMETHEUS_BIN) {
        return;
    }
    let r = Router::start(&two_components());
    let prom = prometheus::Prometheus::start(r.metrics, Duration::from_millis(500))
        .await
        .unwrap();
    let wait = Duration::from_secs(30);
    prom.wait_for_value("up{job=\"router\"}", 1.0, wait)
        .await
        .unwrap();
    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;
    let (mut to_b, mut to_a, mut bytes_a) = (0, 0, 0);
    // Traffic flows across several scrapes.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for _ in 0..20 {
            let m = msg("x@a.example", "y@b.example", &format!("ab{to_b}"));
            a.send(&m).await;
            bytes_a += m.len();
            assert_eq!(b.stanza().await, m);
            to_b += 1;
        }
        let m = msg("y@b.example", "x@a.example", &format!("ba{to_a}"));
        b.send(&m).await;
        assert_eq!(a.stanza().await, m);
        to_a += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.send(&msg("x@a.example", "y@nowhere.example", "lost"))
        .await;
    a.stanza().await;
    let q = |s: String| format!("{P}{s}");
    prom.wait_for_value(&q(stanzas("a.example", "in")), (to_b + 1) as f64, wait)
        .await
        .unwrap();
    prom.wait_for_value(&q(stanzas("b.example", "out")), to_b as f64, wait)
        .await
        .unwrap();
    prom.wait_for_value(&q(stanzas("b.example", "in")), to_a as f64, wait)
        .await
        .unwrap();
    prom.wait_for_value(&q(stanzas("a.example", "out")), (to_a + 1) as f64, wait)
        .await
        .unwrap();
    let lost = msg("x@a.example", "y@nowhere.example", "lost").len();
    prom.wait_for_value(&q(bytes("a.example", "in")), (bytes_a + lost) as f64, wait)
        .await
        .unwrap();
    prom.wait_for_value(
        &q(bounces("a.example", "remote-server-not-found")),
        1.0,
        wait,
    )
    .await
    .unwrap();
    prom.wait_for_value(
        &q(per_domain("component_connections", "a.example")),
        1.0,
        wait,
    )
    .await
    .unwrap();
    prom.wait_for_value("up{job=\"router\"}", 1.0, wait)
        .await
        .unwrap();
    assert!(!prom.log().contains("level=error"), "{}", prom.log());
}

/// The metrics listener's abuse never reaches component traffic: while 200
/// idle HTTP connections, slow-loris requests, a scraper that never reads
/// and malformed requests hit it, two components keep exchanging stanzas,
/// the listener holds at most its connection limit, and it still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_abuse_does_not_disturb_components() {
    let r = Router::start(&two_components());
    let mut a = Comp::login(r.addr(), "a.example", "sa").await;
    let mut b = Comp::login(r.addr(), "b.example", "sb").await;
    let fds_before = scrape(r.metrics).await.value("process_open_fds");
    let mut held = Vec::new();
    for i in 0..200 {
        let Ok(mut s) = TcpStream::connect(r.metrics).await else {
            continue;
        };
        match i % 4 {
            0 => {} // idle
            1 => {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
                // never ends
            }
            2 => {
                // A scraper that never reads its (large enough) answer.
                let _ = s
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await;
            }
            _ => {
                let _ = s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n").await;
            }
        }
        held.push(s);
        if i % 20 == 0 {
            round_trip(
                &mut a,
                "a.example",
                &mut b,
                "b.example",
                &format!("flood{i}"),
            )
            .await;
        }
    }
    // Traffic flows at once, however many HTTP connections wait.
    let t0 = Instant::now();
    for i in 0..50 {
        round_trip(
            &mut a,
            "a.example",
            &mut b,
            "b.example",
            &format!("during{i}"),
        )
        .await;
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "50 round trips took {elapsed:?}"
    );
    // The listener answers, and holds at most its limit (64) of the 200.
    let s = scrape(r.metrics).await;
    let fds = s.value("process_open_fds");
    assert!(
        fds <= fds_before + 64.0 + 8.0,
        "open fds {fds_before} -> {fds}: the listener holds more than its limit"
    );
    // A malformed request line gets 400 and the connection closes.
    let mut bad = TcpStream::connect(r.metrics).await.unwrap();
    bad.write_all(b"GET\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(T, bad.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 400"),
        "{got:?}"
    );
    drop(held);
    round_trip(&mut a, "a.example", &mut b, "b.example", "after").await;
}

/// The upstream link's metrics against a real Prosody: up and one attempt
/// once the component is connected; down with a scheduled retry (in
/// `/metrics` and in `status`) while Prosody is stopped, and stanzas for it
/// bounce; up again, with more attempts, once Prosody is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_link_down_and_up_against_prosody() {
    if !prosody::require() {
        return;
    }
    let opts = ProsodyOptions::new("localhost").component("comp.localhost", "s");
    let mut p = Prosody::start(&opts).unwrap_or_else(|e| panic!("Prosody failed to start: {e}"));
    let r = Router::start(&format!(
        "[upstream]\naddress = \"{}\"\n{}{}",
        p.component_addr(),
        component("comp.localhost", "s", ""),
        component("idle.localhost", "i", "")
    ));
    let link_up = per_domain("upstream_link_up", "comp.localhost");
    let attempts = per_domain("upstream_reconnects_total", "comp.localhost");
    let retry = per_domain("upstream_next_retry_seconds", "comp.localhost");
    let s = r.scrape().await;
    assert_eq!(
        s.value(&per_domain("upstream_link_up", "idle.localhost")),
        0.0
    );
    assert_eq!(s.value(&attempts), 0.0);

    let mut c = Comp::login(r.addr(), "comp.localhost", "s").await;
    let s = r.expect(&link_up, 1.0).await;
    assert_eq!(s.value(&attempts), 1.0);
    assert_eq!(s.value(&retry), 0.0);

    p.stop();
    r.d.expect_log(down_line("comp.localhost"), T);
    let s = r.expect(&link_up, 0.0).await;
    let next = s.value(&retry);
    assert!(next > 0.0 && next <= 1.25, "first retry in {next} s");
    // status shows the next retry too.
    let out = status_cmd(&r.d.config_path).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("comp.localhost"))
        .unwrap_or("");
    assert!(row.contains(" down "), "{text}");
    assert!(row.ends_with('s') || row.ends_with("trying"), "{text}");
    let idle = text
        .lines()
        .find(|l| l.starts_with("idle.localhost"))
        .unwrap_or("");
    assert!(idle.contains(" none"), "{text}");

    // While down, stanzas for the server bounce, counted for the component.
    c.send(&msg("comp.localhost", "someone@localhost", "while-down"))
        .await;
    let e = c.stanza().await;
    assert_eq!(
        stanza_error_condition(&e).as_deref(),
        Some("remote-server-timeout"),
        "{e}"
    );
    r.expect(&bounces("comp.localhost", "remote-server-timeout"), 1.0)
        .await;
    // It retries (1 s, then 2 s, 4 s ... each ±25 %).
    let deadline = Instant::now() + T;
    while r.scrape().await.value(&attempts) < 2.0 {
        assert!(Instant::now() < deadline, "no retry:\n{}", r.d.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    p.restart()
        .unwrap_or_else(|e| panic!("Prosody restart: {e}"));
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = r.scrape().await;
        if s.value(&link_up) == 1.0 {
            assert!(s.value(&attempts) >= 2.0);
            assert_eq!(s.value(&retry), 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "link never came back:\n{}",
            r.d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(c);
}

/// The alert rules the README's "Monitoring" section offers are valid rules
/// for this Prometheus (`promtool check rules`).
#[test]
fn readme_alert_rules_pass_promtool() {
    if !prometheus::require(prometheus::PROMTOOL_BIN) {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme
        .find("**Alert rules**")
        .expect("README has alert rules");
    let start = readme[at..].find("```yaml\n").expect("a yaml block") + at + "```yaml\n".len();
    let end = readme[start..].find("```").expect("end of the block") + start;
    let rules = &readme[start..end];
    for name in [
        "ComponentDisconnected",
        "UpstreamLinkDown",
        "BouncesRising",
        "QueueNearFull",
    ] {
        assert!(rules.contains(name), "no {name} rule");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    std::fs::write(&path, rules).unwrap();
    if let Err(e) = prometheus::check_rules(&path) {
        panic!("{e}");
    }
}

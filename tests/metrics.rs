//! The metrics listener over real TCP: `/metrics` checked by `promtool` and
//! scraped by a real Prometheus, `/health`, `/status` and the `status` command,
//! and the listener's bounds (idle floods, slow-loris requests, malformed and
//! oversized requests, slow scrapers). The source is a test implementation of
//! `metrics::Source` over the real counter types, so each test sets exactly the
//! values it then reads back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use test_support::prometheus;
use test_support::xcr::metrics::{
    client, status, DomainMetrics, DomainRow, DomainState, Exporter, Globals, HttpLimits,
    MetricsServer, Outcome, RefusedReason, SessionMetrics, Source, StanzaErrorCondition,
    StreamErrorCondition,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Domain {
    m: Arc<DomainMetrics>,
    state: DomainState,
    queue: (u64, u64),
    held: u64,
    upstream: Option<(bool, Option<Instant>)>,
}

/// A `Source` whose rows the test sets.
#[derive(Default)]
struct TestSource {
    domains: Mutex<Vec<Domain>>,
    /// How long each snapshot takes (a stand-in for a slow source).
    delay: Mutex<Duration>,
}

impl TestSource {
    fn add(&self, name: &str, state: DomainState) -> Arc<DomainMetrics> {
        let m = DomainMetrics::new(name);
        self.domains.lock().unwrap().push(Domain {
            m: m.clone(),
            state,
            queue: (0, 0),
            held: 0,
            upstream: None,
        });
        m
    }

    fn edit(&self, name: &str, f: impl FnOnce(&mut Domain)) {
        let mut d = self.domains.lock().unwrap();
        f(d.iter_mut().find(|d| &**d.m.name() == name).unwrap());
    }
}

impl Source for TestSource {
    fn domains(&self, out: &mut Vec<DomainRow>) {
        std::thread::sleep(*self.delay.lock().unwrap());
        for d in self.domains.lock().unwrap().iter() {
            let mut r = DomainRow::new(&d.m, d.state);
            (r.queue_stanzas, r.queue_bytes) = d.queue;
            r.held_stanzas = d.held;
            if let Some((up, retry)) = d.upstream {
                r = r.with_upstream(&d.m, up, retry);
            }
            out.push(r);
        }
    }
}

struct Fixture {
    source: Arc<TestSource>,
    globals: Arc<Globals>,
    exporter: Arc<Exporter>,
    server: MetricsServer,
}

impl Fixture {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

fn loopback0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn start(limits: HttpLimits) -> Fixture {
    let source = Arc::new(TestSource::default());
    let globals = Globals::new();
    let exporter = Exporter::new(source.clone(), globals.clone());
    let server = MetricsServer::bind(loopback0(), exporter.clone(), limits).unwrap();
    Fixture {
        source,
        globals,
        exporter,
        server,
    }
}

/// A source with every kind of row: connected with two connections and an
/// upstream link, held, offline with its link down, detached.
fn populated(f: &Fixture) -> Vec<SessionMetrics> {
    let peer = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let irc = f.source.add("irc.example.org", DomainState::Connected);
    let s1 = irc.open_session(peer(40001), SystemTime::now());
    let s2 = irc.open_session(peer(40002), SystemTime::now());
    s1.stanza_in(100);
    s2.stanza_out(50);
    s2.bounce(StanzaErrorCondition::RemoteServerNotFound);
    irc.upstream_attempt();
    f.source.edit("irc.example.org", |d| {
        d.queue = (2, 400);
        d.upstream = Some((true, None));
    });
    f.source.add("held.example.org", DomainState::Held);
    f.source.edit("held.example.org", |d| d.held = 7);
    let muc = f.source.add("muc.example.org", DomainState::Offline);
    muc.upstream_attempt();
    muc.upstream_attempt();
    f.source.edit("muc.example.org", |d| {
        d.upstream = Some((false, Some(Instant::now() + Duration::from_secs(24))))
    });
    let gone = f.source.add("gone.example.org", DomainState::Detached);
    let s3 = gone.open_session(peer(40003), SystemTime::now());
    s3.stanza_in(10);
    f.globals.handshake(Outcome::Ok);
    f.globals.handshake(Outcome::Failed);
    f.globals.refused(RefusedReason::Limit);
    f.globals.stream_error(StreamErrorCondition::NotAuthorized);
    f.globals.reload(Outcome::Ok, SystemTime::now());
    vec![s1, s2, s3]
}

async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> client::Reply {
    client::get(addr, path, accept, Duration::from_secs(10), 64 << 20)
        .await
        .unwrap()
}

/// Writes `request` on a fresh connection and reads until the server closes it.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "server did not close within 10 s");
    String::from_utf8_lossy(&got).into_owned()
}

fn body(r: &client::Reply) -> String {
    String::from_utf8(r.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_text_passes_promtool() {
    if !prometheus::require(prometheus::PROMTOOL_BIN) {
        return;
    }
    let f = start(HttpLimits::default());
    let _sessions = populated(&f);
    let r = get(f.addr(), "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = body(&r);
    for line in [
        "xmpp_component_router_component_stanzas_total{domain=\"irc.example.org\",direction=\"in\"} 1",
        "xmpp_component_router_component_connections{domain=\"irc.example.org\"} 2",
        "xmpp_component_router_bounces_total{domain=\"irc.example.org\",condition=\"remote-server-not-found\"} 1",
        "xmpp_component_router_held_stanzas{domain=\"held.example.org\"} 7",
        "xmpp_component_router_component_state{domain=\"gone.example.org\",state=\"detached\"} 1",
        "xmpp_component_router_upstream_link_up{domain=\"muc.example.org\"} 0",
        "xmpp_component_router_upstream_reconnects_total{domain=\"muc.example.org\"} 2",
        "xmpp_component_router_refused_connections_total{reason=\"limit\"} 1",
        "xmpp_component_router_reloads_total{result=\"ok\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(text.contains(&format!("\n{family} ")), "missing {family}");
    }
    if let Err(e) = prometheus::check_metrics(&text) {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_when_the_scraper_asks_for_it() {
    let f = start(HttpLimits::default());
    let _sessions = populated(&f);
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let r = get(f.addr(), "/metrics", Some(accept)).await;
    assert_eq!(r.status, 200);
    assert!(r
        .content_type
        .as_deref()
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let text = body(&r);
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE xmpp_component_router_handshakes counter\n"));
    assert!(text.contains("xmpp_component_router_handshakes_total{result=\"failed\"} 1\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_200_while_serving_then_503() {
    let mut f = start(HttpLimits::default());
    let r = get(f.addr(), "/health", None).await;
    assert_eq!((r.status, body(&r).as_str()), (200, "serving\n"));
    f.exporter.begin_shutdown();
    let r = get(f.addr(), "/health", None).await;
    assert_eq!((r.status, body(&r).as_str()), (503, "shutting down\n"));
    // Metrics are still served until the listener is stopped, last.
    assert_eq!(get(f.addr(), "/metrics", None).await.status, 200);
    let addr = f.addr();
    f.server.stop().await;
    assert!(!f.server.is_running());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "stopped listener still accepts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_methods_and_malformed_requests() {
    let f = start(HttpLimits::default());
    let r = get(f.addr(), "/", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(get(f.addr(), "/metrics/x", None).await.status, 404);
    let post = raw(
        f.addr(),
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(
        post.to_ascii_lowercase()
            .contains("\r\nallow: get, head\r\n"),
        "{post}"
    );
    let head = raw(f.addr(), b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "HEAD answered with a body: {head}"
    );
    let bad = raw(f.addr(), b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let big = raw(f.addr(), huge.as_bytes()).await;
    assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
    // None of it disturbed the listener.
    assert_eq!(get(f.addr(), "/metrics", None).await.status, 200);
}

/// Counts the process's open file descriptors.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_stop_a_scrape() {
    let limits = HttpLimits::default();
    let max = limits.max_connections;
    let f = start(limits);
    let _sessions = populated(&f);
    let before = open_fds();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(f.addr()).await.unwrap());
    }
    let started = Instant::now();
    let r = get(f.addr(), "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert!(body(&r).contains("irc.example.org"));
    eprintln!(
        "scrape with 1000 idle connections open: {:?}",
        started.elapsed()
    );
    // The listener kept at most `max_connections` of them: the rest were closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut buf = [0u8; 16];
    let mut closed = 0;
    for s in &mut idle {
        let read = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await;
        closed += usize::from(matches!(read, Ok(Ok(0)) | Ok(Err(_))));
    }
    assert!(
        closed >= 1000 - max,
        "only {closed} of 1000 idle connections were closed"
    );
    let held = open_fds() - before;
    assert!(
        held <= 1000 + max + 8,
        "{held} descriptors for 1000 client sockets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_request_is_cut_off() {
    let f = start(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    });
    let mut s = TcpStream::connect(f.addr()).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let mut scraped = false;
    let cut = loop {
        // One header byte every 100 ms, never finishing the head.
        let _ = s.write_all(b"X").await;
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => assert!(started.elapsed() < Duration::from_secs(10), "never cut off"),
        }
        // A scrape works meanwhile.
        if !scraped && started.elapsed() > Duration::from_millis(300) {
            assert_eq!(get(f.addr(), "/health", None).await.status, 200);
            scraped = true;
        }
    };
    assert!(scraped);
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(5),
        "cut off after {cut:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scraper_that_stops_reading_is_cut_off() {
    let f = start(HttpLimits {
        connection_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    });
    for i in 0..20_000 {
        f.source.add(
            &format!("component-{i:05}.example.org"),
            DomainState::Offline,
        );
    }
    // The full size, from a listener without the 1 s deadline (rendering 20,000
    // rows in a debug build on a loaded machine can take longer than that).
    let mut unhurried =
        MetricsServer::bind(loopback0(), f.exporter.clone(), HttpLimits::default()).unwrap();
    let full = get(unhurried.local_addr(), "/metrics", None)
        .await
        .body
        .len();
    unhurried.stop().await;
    let mut s = TcpStream::connect(f.addr()).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        got.len() < full,
        "read {} of {full} bytes after the deadline",
        got.len()
    );
    // Scrapes go on.
    assert_eq!(get(f.addr(), "/health", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebind_moves_the_listener() {
    let mut f = start(HttpLimits::default());
    let old = f.addr();
    // To another port: the old one stops accepting.
    let free = std::net::TcpListener::bind(loopback0())
        .unwrap()
        .local_addr()
        .unwrap();
    f.server.rebind(free).await.unwrap();
    let new = f.addr();
    assert_ne!(old.port(), new.port());
    assert_eq!(get(new, "/health", None).await.status, 200);
    assert!(TcpStream::connect(old).await.is_err());
    // To the same port on another address (overlapping): works too.
    let wildcard = SocketAddr::from(([0, 0, 0, 0], new.port()));
    f.server.rebind(wildcard).await.unwrap();
    assert_eq!(f.addr(), wildcard);
    assert_eq!(get(new, "/health", None).await.status, 200);
    // To an address taken by someone else: an error, and the old one serves on.
    let taken = std::net::TcpListener::bind(loopback0()).unwrap();
    let err = f
        .server
        .rebind(taken.local_addr().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot listen for metrics on 127.0.0.1:"),
        "{err}"
    );
    assert_eq!(f.addr(), wildcard);
    assert_eq!(get(new, "/health", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_document_and_command() {
    let f = start(HttpLimits::default());
    let _sessions = populated(&f);
    let doc = status::fetch(f.addr()).await.unwrap();
    let names: Vec<&str> = doc.domains.iter().map(|d| d.domain.as_str()).collect();
    assert_eq!(
        names,
        [
            "gone.example.org",
            "held.example.org",
            "irc.example.org",
            "muc.example.org"
        ]
    );
    let irc = &doc.domains[2];
    assert_eq!(irc.peers.len(), 2);
    assert_eq!((irc.stanzas_in, irc.stanzas_out, irc.bounces), (1, 1, 1));
    let addr = f.addr();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = status::run(
            std::path::Path::new("/etc/x.toml"),
            Some(addr),
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with(": 4 domains, 1 connected"), "{out}");
    assert!(lines[1].starts_with("DOMAIN "), "{out}");
    let row = |d: &str| *lines.iter().find(|l| l.starts_with(d)).unwrap();
    assert!(
        row("irc.example.org").contains("127.0.0.1:40001,127.0.0.1:40002")
            || row("irc.example.org").contains("127.0.0.1:40002,127.0.0.1:40001"),
        "{out}"
    );
    assert!(row("muc.example.org").contains(" down "), "{out}");
    assert!(
        row("muc.example.org").contains("in 2"),
        "next retry shown: {out}"
    );
    assert!(row("gone.example.org").contains(" detached "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_when_the_daemon_is_not_running() {
    // A port nothing listens on.
    let addr = std::net::TcpListener::bind(loopback0())
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = status::run(
            std::path::Path::new("/etc/x.toml"),
            Some(addr),
            &mut out,
            &mut err,
        );
        (code, out, String::from_utf8(err).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(code, status::EXIT_UNAVAILABLE);
    assert!(out.is_empty());
    assert!(
        err.contains(&format!(
            "cannot reach the daemon's metrics listener at {addr}"
        )),
        "{err}"
    );
    assert!(err.contains("is the daemon running?"), "{err}");
}

/// A real Prometheus scrapes the listener (asking for OpenMetrics) while the
/// counters change; what it stored matches what the test counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_reads_back_the_counters() {
    if !prometheus::require(prometheus::PROMETHEUS_BIN) {
        return;
    }
    let f = start(HttpLimits::default());
    let a = f.source.add("a.example.org", DomainState::Connected);
    let session = a.open_session(SocketAddr::from(([127, 0, 0, 1], 5555)), SystemTime::now());
    for _ in 0..3 {
        session.stanza_in(200);
    }
    let prom = prometheus::Prometheus::start(f.addr(), Duration::from_millis(500))
        .await
        .unwrap();
    let wait = Duration::from_secs(30);
    prom.wait_for_value("up{job=\"router\"}", 1.0, wait)
        .await
        .unwrap();
    let stanzas_in =
        "xmpp_component_router_component_stanzas_total{domain=\"a.example.org\",direction=\"in\"}";
    prom.wait_for_value(stanzas_in, 3.0, wait).await.unwrap();
    for _ in 0..4 {
        session.stanza_in(50);
        session.stanza_out(10);
    }
    session.bounce(StanzaErrorCondition::ServiceUnavailable);
    f.globals.handshake(Outcome::Failed);
    prom.wait_for_value(stanzas_in, 7.0, wait).await.unwrap();
    let bytes_in =
        "xmpp_component_router_component_bytes_total{domain=\"a.example.org\",direction=\"in\"}";
    prom.wait_for_value(bytes_in, 800.0, wait).await.unwrap();
    let bounces = "xmpp_component_router_bounces_total{domain=\"a.example.org\",condition=\"service-unavailable\"}";
    prom.wait_for_value(bounces, 1.0, wait).await.unwrap();
    prom.wait_for_value(
        "xmpp_component_router_handshakes_total{result=\"failed\"}",
        1.0,
        wait,
    )
    .await
    .unwrap();
    // The connection ends: its counts stay, the connection gauge drops.
    drop(session);
    prom.wait_for_value(
        "xmpp_component_router_component_connections{domain=\"a.example.org\"}",
        0.0,
        wait,
    )
    .await
    .unwrap();
    prom.wait_for_value(stanzas_in, 7.0, wait).await.unwrap();
    let up = prom
        .query("process_resident_memory_bytes{job=\"router\"}")
        .await
        .unwrap();
    assert_eq!(up.len(), 1, "process metrics scraped");
    assert!(up[0].1 > 0.0);
    assert!(!prom.log().contains("level=error"), "{}", prom.log());
}

/// Rendering runs off the runtime: on a single-threaded runtime, `/health`
/// is answered while a scrape whose source takes a second is under way.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_scrape_does_not_block_the_runtime() {
    let f = start(HttpLimits::default());
    f.source.add("a.example.org", DomainState::Offline);
    *f.source.delay.lock().unwrap() = Duration::from_secs(1);
    let addr = f.addr();
    let started = Instant::now();
    let scrape = tokio::spawn(async move { get(addr, "/metrics", None).await.status });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let health = get(addr, "/health", None).await;
    let health_done = started.elapsed();
    assert_eq!(health.status, 200);
    assert_eq!(scrape.await.unwrap(), 200);
    let scrape_done = started.elapsed();
    assert!(scrape_done >= Duration::from_secs(1));
    assert!(
        health_done < Duration::from_millis(700),
        "/health answered after {health_done:?}: it waited for the scrape"
    );
}

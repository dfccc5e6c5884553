//! SIGHUP reload, black-box against the binary: docs/behaviour.md#reload and the
//! README's "Reloading (SIGHUP, systemctl reload)", case by case.
//!
//! Every test starts its own daemon on a free port, rewrites its config with
//! [`Daemon::reload`] (which waits for the reload's outcome line) and watches
//! what raw XEP-0114 components see. Every wait is bounded.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::comp::{header_refused, round_trip, Comp, CompRx, Got};
use test_support::daemon::{component as comp, free_port, Daemon};
use test_support::events::event;
use test_support::inspect::{attr, condition_of, stanza_error_condition};
use test_support::stanza::msg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a detached connection must be seen to stay open.
const DETACHED_OPEN: Duration = Duration::from_millis(2100);
/// How long to wait for something that must not arrive.
const QUIET: Duration = Duration::from_millis(700);
/// How long to wait for a log line.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// A new connection for `domain` gets a header, then this stream error for
/// its handshake with `secret`.
async fn handshake_refused(addr: SocketAddr, domain: &str, secret: &str) -> String {
    let mut c = Comp::connect(addr).await;
    c.open_ok(domain).await;
    c.send_handshake(secret).await;
    c.expect_stream_error().await
}

/// The connection stays open and silent for at least `t`: the peer can still
/// write, and reads time out instead of seeing `</stream:stream>` or EOF.
async fn stays_open_and_silent(c: &mut Comp, t: Duration, what: &str) {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        c.send_bytes(b" ")
            .await
            .unwrap_or_else(|e| panic!("{what}: write failed: {e}"));
        match c.recv_timeout(Duration::from_millis(300)).await {
            Got::Timeout => {}
            other => {
                panic!("{what}: expected the connection to stay open and silent, got {other:?}")
            }
        }
    }
}

/// The summaries the log holds so far: the messages of its `reload.done` lines
/// (the same text goes to systemd as `STATUS=`, so its wording is the interface).
fn summaries(d: &Daemon) -> Vec<String> {
    let logs = d.logs();
    event("reload.done")
        .lines(&logs)
        .filter_map(|l| {
            let from = l.find("reload: ")?;
            let to = l.find(" event=")?;
            Some(l[from..to].to_string())
        })
        .collect()
}

/// One of the reload summaries so far is exactly `summary`.
fn assert_summary(d: &Daemon, summary: &str) {
    assert!(
        summaries(d).iter().any(|s| s == summary),
        "no summary line {summary:?} in:\n{}",
        d.logs()
    );
}

fn last_summary(d: &Daemon) -> String {
    summaries(d)
        .pop()
        .unwrap_or_else(|| panic!("no summary line in:\n{}", d.logs()))
}

// ---------------------------------------------------------------------------
// Added / newly enabled
// ---------------------------------------------------------------------------

#[tokio::test]
async fn added_component_authenticates_after_reload() {
    let base = comp("a.example", "sa", "");
    let d = Daemon::start(&base);
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;

    // Before: c is not served; after: the same kind of connection authenticates.
    assert_eq!(header_refused(d.addr(), "c.example").await, "host-unknown");
    d.reload(&format!("{base}{}", comp("c.example", "sc", "")));
    assert_summary(
        &d,
        "reload: 1 added, 0 removed (0 connections detached), 0 changed, 1 unchanged",
    );
    let mut c = Comp::login(d.addr(), "c.example", "sc").await;
    round_trip(&mut a, "a.example", &mut c, "c.example", "ac").await;
}

#[tokio::test]
async fn newly_enabled_component_authenticates_after_reload() {
    let base = comp("a.example", "sa", "");
    let d = Daemon::start(&format!(
        "{base}{}",
        comp("c.example", "sc", "enabled = false")
    ));
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    assert_eq!(header_refused(d.addr(), "c.example").await, "host-unknown");

    d.reload(&format!(
        "{base}{}",
        comp("c.example", "sc", "enabled = true")
    ));
    assert_summary(
        &d,
        "reload: 1 added, 0 removed (0 connections detached), 0 changed, 1 unchanged",
    );
    let mut c = Comp::login(d.addr(), "c.example", "sc").await;
    round_trip(&mut a, "a.example", &mut c, "c.example", "ac").await;
}

#[tokio::test]
async fn component_added_disabled_is_not_served() {
    let base = comp("a.example", "sa", "");
    let d = Daemon::start(&base);
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;

    d.reload(&format!(
        "{base}{}",
        comp("c.example", "sc", "enabled = false")
    ));
    assert_summary(
        &d,
        "reload: 0 added, 0 removed (0 connections detached), 0 changed, 1 unchanged",
    );
    assert_eq!(header_refused(d.addr(), "c.example").await, "host-unknown");
    // And stanzas to it are routed like any unknown domain.
    a.send(&msg("u@a.example", "v@c.example", "to-c")).await;
    let s = a.stanza().await;
    assert_eq!(
        stanza_error_condition(&s).as_deref(),
        Some("remote-server-not-found"),
        "{s}"
    );
}

// ---------------------------------------------------------------------------
// Removed / disabled: detached, open, inert
// ---------------------------------------------------------------------------

/// Start with a, b, x; log in b and x; reload to `after` (which drops b from
/// the served set one way or another) and check every detached property.
async fn check_detached(after_b: &str) {
    let a_x = format!(
        "log_level = \"debug\"\n{}{}",
        comp("a.example", "sa", ""),
        comp("x.example", "sx", "")
    );
    let d = Daemon::start(&format!("{a_x}{}", comp("b.example", "sb", "")));
    let mut b = Comp::login(d.addr(), "b.example", "sb").await;
    let mut x = Comp::login(d.addr(), "x.example", "sx").await;
    round_trip(&mut b, "b.example", &mut x, "x.example", "before").await;

    d.reload(&format!("{a_x}{after_b}"));
    assert_summary(
        &d,
        "reload: 0 added, 1 removed (1 connection detached), 0 changed, 2 unchanged",
    );
    d.expect_log(
        event("reload.removed").with("connections_detached", 1),
        LOG_WAIT,
    );

    // Nothing routed from it: x receives nothing, and b gets no bounce either.
    let from_b = msg("u@b.example/r", "v@x.example", "from-detached");
    b.send(&from_b).await;
    x.expect_silence(QUIET).await;
    b.expect_silence(QUIET).await;
    d.expect_log(event("detached.discarded"), LOG_WAIT);
    assert_eq!(
        d.count_log(event("detached.discarded").with("discarded", 1)),
        1,
        "{}",
        d.logs()
    );

    // Nothing routed to it: its domain is an unknown domain now.
    x.send(&msg("v@x.example", "u@b.example/r", "to-detached"))
        .await;
    let s = x.stanza().await;
    assert_eq!(
        stanza_error_condition(&s).as_deref(),
        Some("remote-server-not-found"),
        "{s}"
    );
    assert!(
        s.contains("id='to-detached'") && s.contains("type='error'"),
        "{s}"
    );

    // New connections for it are refused.
    assert_eq!(header_refused(d.addr(), "b.example").await, "host-unknown");

    // Its TCP connection stays open (and inert) for at least two seconds.
    stays_open_and_silent(&mut b, DETACHED_OPEN, "detached b").await;
    b.send(&msg("u@b.example/r", "v@x.example", "still-nothing"))
        .await;
    x.expect_silence(QUIET).await;
    assert!(d.wait_for_log(
        event("detached.discarded").with("discarded", 2),
        Duration::from_secs(5)
    ));

    // The unchanged x still works, on the same connection.
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    round_trip(&mut a, "a.example", &mut x, "x.example", "after").await;

    // It ends when the peer closes.
    b.close_cleanly("detached b").await;
    d.expect_log(event("session.ended"), LOG_WAIT);
    assert!(
        d.logs()
            .lines()
            .any(|l| l.contains("component session ended") && l.contains("domain=b.example")),
        "{}",
        d.logs()
    );
}

#[tokio::test]
async fn removed_component_is_detached_but_stays_connected() {
    check_detached("").await;
}

#[tokio::test]
async fn disabled_component_is_detached_but_stays_connected() {
    check_detached(&comp("b.example", "sb", "enabled = false")).await;
}

#[tokio::test]
async fn detached_connection_ends_when_peer_drops_tcp() {
    let base = comp("a.example", "sa", "");
    let d = Daemon::start(&format!("{base}{}", comp("b.example", "sb", "")));
    let b = Comp::login(d.addr(), "b.example", "sb").await;
    d.reload(&base);
    assert_summary(
        &d,
        "reload: 0 added, 1 removed (1 connection detached), 0 changed, 1 unchanged",
    );
    drop(b);
    assert!(
        d.wait_for_log(event("session.ended"), Duration::from_secs(5)),
        "{}",
        d.logs()
    );
}

/// A connection that got its header but had not authenticated when the
/// component was removed cannot authenticate afterwards.
#[tokio::test]
async fn handshake_in_progress_when_removed_gets_host_unknown() {
    let base = comp("a.example", "sa", "");
    let d = Daemon::start(&format!("{base}{}", comp("b.example", "sb", "")));
    let mut b = Comp::connect(d.addr()).await;
    match b.open("b.example").await {
        Got::Stanza(h) if h.starts_with("HEADER") => {}
        other => panic!("header refused: {other:?}"),
    }
    d.reload(&base);
    assert_summary(
        &d,
        "reload: 0 added, 1 removed (0 connections detached), 0 changed, 1 unchanged",
    );
    match b.handshake("sb").await {
        Got::Stanza(s) if s.starts_with("<stream:error>") => {
            assert_eq!(condition_of(&s), "host-unknown", "{s}");
        }
        other => panic!("expected host-unknown, got {other:?}"),
    }
}

/// Detached connections are still connections: shutdown ends them with
/// `system-shutdown`, and the daemon exits 0.
#[tokio::test]
async fn shutdown_closes_detached_connections_too() {
    let base = comp("a.example", "sa", "");
    let mut d = Daemon::start(&format!("{base}{}", comp("b.example", "sb", "")));
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    let mut b = Comp::login(d.addr(), "b.example", "sb").await;
    d.reload(&base);
    let t0 = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let text = Some("The component router is shutting down".to_string());
    assert_eq!(
        b.stream_error().await,
        ("system-shutdown".to_string(), text.clone())
    );
    assert_eq!(
        a.stream_error().await,
        ("system-shutdown".to_string(), text)
    );
    let st = d.wait(Duration::from_secs(6)).expect("daemon did not exit");
    assert!(st.success(), "{st:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn detached_flood_is_read_and_discarded_in_bounded_memory() {
    let a_x = format!(
        "log_level = \"debug\"\n{}{}",
        comp("a.example", "sa", ""),
        comp("x.example", "sx", "")
    );
    let d = Daemon::start(&format!("{a_x}{}", comp("b.example", "sb", "")));
    let mut b = Comp::login(d.addr(), "b.example", "sb").await;
    let mut x = Comp::login(d.addr(), "x.example", "sx").await;
    d.reload(&a_x);

    // 32 MiB of valid stanzas for x: every byte must be read (the peer is not
    // stalled) and dropped (the daemon does not grow).
    let body = "z".repeat(8000);
    let mut chunk = String::new();
    for i in 0..16 {
        chunk.push_str(&format!(
            "<message from='u@b.example' to='v@x.example' id='f{i}'><body>{body}</body></message>"
        ));
    }
    let rounds = (32usize << 20) / chunk.len();
    let rss_before = d.rss_kib();
    let t0 = Instant::now();
    for _ in 0..rounds {
        tokio::time::timeout(Duration::from_secs(30), b.send_bytes(chunk.as_bytes()))
            .await
            .expect("the router stopped reading from the detached connection")
            .expect("write to the detached connection failed");
    }
    // A marker after the flood: once it is discarded, everything before it was read.
    b.send(&msg("u@b.example", "v@x.example", "marker")).await;
    let total = rounds * 16 + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if d.count_log(event("detached.discarded").with("discarded", total)) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "flood not consumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_after = d.rss_kib();
    eprintln!(
        "flood: {} MiB in {:?}, RSS {rss_before} -> {rss_after} KiB",
        (rounds * chunk.len()) >> 20,
        t0.elapsed()
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    x.expect_silence(QUIET).await;
    stays_open_and_silent(&mut b, Duration::from_millis(600), "flooding detached b").await;
    b.close_cleanly("flooding detached b").await;
}

/// Seen from outside, the detach is a clean cut: once the reload is logged,
/// a stanza routed to x afterwards is never followed by one from b.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detach_is_a_clean_cut_while_the_removed_component_sends() {
    let a_x = format!(
        "{}{}",
        comp("a.example", "sa", ""),
        comp("x.example", "sx", "")
    );
    let d = Arc::new(Daemon::start(&format!(
        "{a_x}{}",
        comp("b.example", "sb", "")
    )));
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    let mut b = Comp::login(d.addr(), "b.example", "sb").await;
    let mut x = Comp::login(d.addr(), "x.example", "sx").await;

    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut r, mut w) = b.stream.split();
            // b drains what it gets (bounces while x is busy), so it never stalls.
            let drain = async {
                let mut tmp = vec![0u8; 1 << 16];
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(100), r.read(&mut tmp)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                }
            };
            let send = async {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut batch = String::new();
                    for _ in 0..20 {
                        batch.push_str(&msg("u@b.example", "v@x.example", &format!("b{i}")));
                        i += 1;
                    }
                    if w.write_all(batch.as_bytes()).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            tokio::join!(drain, send);
        })
    };
    // x reads everything; after the (first) fence from a, it counts what
    // still comes from b until it has been quiet for a while.
    let reader = tokio::spawn(async move {
        let mut from_b_after_fence = 0usize;
        let mut fence_seen = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if fence_seen { QUIET.min(left) } else { left };
            let st = match x.recv_timeout(wait).await {
                Got::Timeout => break,
                Got::Stanza(st) => st,
                other => panic!("x lost its connection: {other:?}"),
            };
            if st.contains("id='fence") {
                fence_seen = true;
            } else if fence_seen && st.contains("from='u@b.example'") {
                from_b_after_fence += 1;
            }
        }
        assert!(fence_seen, "fence never arrived");
        from_b_after_fence
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d2 = d.clone();
    tokio::task::spawn_blocking(move || d2.reload(&a_x))
        .await
        .unwrap();
    // The fence is routed after the reload; while x is still busy with b's
    // earlier stanzas it may bounce (resource-constraint), so try again.
    for i in 0.. {
        a.send(&msg("u@a.example", "v@x.example", &format!("fence{i}")))
            .await;
        match a.recv_timeout(Duration::from_millis(300)).await {
            Got::Timeout => break,
            Got::Stanza(s)
                if stanza_error_condition(&s).as_deref() == Some("resource-constraint") =>
            {
                assert!(i < 50, "x never drained");
            }
            other => panic!("unexpected reply to the fence: {other:?}"),
        }
    }
    let after = reader.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    flood.await.unwrap();
    assert_summary(
        &d,
        "reload: 0 added, 1 removed (1 connection detached), 0 changed, 2 unchanged",
    );
    assert_eq!(
        after, 0,
        "stanzas from the detached b arrived after the fence"
    );
}

// ---------------------------------------------------------------------------
// Re-added
// ---------------------------------------------------------------------------

/// A re-added domain is a fresh registration, and a detached connection of it
/// that is still open is closed with `reset` ("Component re-added: reconnect")
/// instead of staying inert while its component believes it is connected.
#[tokio::test]
async fn re_added_component_resets_its_detached_connection_and_gets_a_fresh_registration() {
    let x_only = comp("x.example", "sx", "");
    let d = Daemon::start(&format!("{x_only}{}", comp("b.example", "sb", "")));
    let mut b1 = Comp::login(d.addr(), "b.example", "sb").await;
    let mut x = Comp::login(d.addr(), "x.example", "sx").await;

    d.reload(&x_only);
    assert_summary(
        &d,
        "reload: 0 added, 1 removed (1 connection detached), 0 changed, 1 unchanged",
    );
    stays_open_and_silent(&mut b1, QUIET, "detached b before the re-add").await;
    // Re-added with on_conflict = "reject": any live session for b would make
    // the new login fail.
    d.reload(&format!(
        "{x_only}{}",
        comp("b.example", "sb2", "on_conflict = \"reject\"")
    ));
    assert_summary(
        &d,
        "reload: 1 added, 0 removed (0 connections detached), 0 changed, 1 unchanged",
    );
    assert_eq!(
        b1.stream_error().await,
        (
            "reset".to_string(),
            Some("Component re-added: reconnect".to_string())
        )
    );
    assert_eq!(
        d.count_log(event("reload.reset").domain("b.example")),
        1,
        "{}",
        d.logs()
    );
    // The component reconnects, with the new secret.
    let mut b2 = Comp::login(d.addr(), "b.example", "sb2").await;
    round_trip(&mut b2, "b.example", &mut x, "x.example", "new").await;
    // With reject in force, a third connection for b is refused (b2 is live).
    assert_eq!(
        handshake_refused(d.addr(), "b.example", "sb2").await,
        "conflict"
    );
    // A later reload that changes nothing about b does not touch b2.
    d.sighup_and_wait();
    round_trip(&mut b2, "b.example", &mut x, "x.example", "still").await;
}

/// A domain removed and re-added while no connection of it was left open:
/// nothing to reset, the re-add is an ordinary add.
#[tokio::test]
async fn re_added_component_without_a_detached_connection_is_an_ordinary_add() {
    let x_only = comp("x.example", "sx", "");
    let both = format!("{x_only}{}", comp("b.example", "sb", ""));
    let d = Daemon::start(&both);
    let b1 = Comp::login(d.addr(), "b.example", "sb").await;
    d.reload(&x_only);
    drop(b1);
    d.expect_log(event("session.ended"), LOG_WAIT);
    d.reload(&both);
    assert_summary(
        &d,
        "reload: 1 added, 0 removed (0 connections detached), 0 changed, 1 unchanged",
    );
    assert_eq!(d.count_log(event("reload.reset")), 0, "{}", d.logs());
    let mut b2 = Comp::login(d.addr(), "b.example", "sb").await;
    let mut x = Comp::login(d.addr(), "x.example", "sx").await;
    round_trip(&mut b2, "b.example", &mut x, "x.example", "fresh").await;
}

// ---------------------------------------------------------------------------
// Changed settings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn changed_secret_keeps_the_session_and_applies_to_the_next_handshake() {
    let x = comp("x.example", "sx", "");
    let d = Daemon::start(&format!("{x}{}", comp("a.example", "old", "")));
    let mut a = Comp::login(d.addr(), "a.example", "old").await;
    let mut xc = Comp::login(d.addr(), "x.example", "sx").await;

    // A connection that has its header but not yet sent its handshake.
    let mut pending = Comp::connect(d.addr()).await;
    assert!(matches!(pending.open("a.example").await, Got::Stanza(h) if h.starts_with("HEADER")));

    d.reload(&format!("{x}{}", comp("a.example", "new", "")));
    assert_summary(
        &d,
        "reload: 0 added, 0 removed (0 connections detached), 1 changed, 1 unchanged",
    );
    d.expect_log(event("reload.changed"), LOG_WAIT);
    // Its handshake is checked against the secret in force now.
    match pending.handshake("old").await {
        Got::Stanza(s) if s.starts_with("<stream:error>") => {
            assert_eq!(condition_of(&s), "not-authorized", "{s}");
        }
        other => panic!("expected not-authorized, got {other:?}"),
    }
    // The live session stays and keeps routing.
    round_trip(&mut a, "a.example", &mut xc, "x.example", "live").await;
    // The old secret no longer authenticates; the new one does.
    assert_eq!(
        handshake_refused(d.addr(), "a.example", "old").await,
        "not-authorized"
    );
    round_trip(
        &mut a,
        "a.example",
        &mut xc,
        "x.example",
        "after-failed-login",
    )
    .await;
    let mut a2 = Comp::login(d.addr(), "a.example", "new").await;
    // on_conflict = replace (default): the old session got conflict.
    assert_eq!(a.expect_stream_error().await, "conflict");
    round_trip(&mut a2, "a.example", &mut xc, "x.example", "a2").await;

    // on_conflict change applies to the next conflict: reject keeps a2.
    d.reload(&format!(
        "{x}{}",
        comp("a.example", "new", "on_conflict = \"reject\"")
    ));
    assert_summary(
        &d,
        "reload: 0 added, 0 removed (0 connections detached), 1 changed, 1 unchanged",
    );
    assert_eq!(
        handshake_refused(d.addr(), "a.example", "new").await,
        "conflict"
    );
    round_trip(&mut a2, "a.example", &mut xc, "x.example", "a2-kept").await;

    // And back to replace: the next login replaces a2.
    d.reload(&format!(
        "{x}{}",
        comp("a.example", "new", "on_conflict = \"replace\"")
    ));
    let mut a3 = Comp::login(d.addr(), "a.example", "new").await;
    assert_eq!(a2.expect_stream_error().await, "conflict");
    round_trip(&mut a3, "a.example", &mut xc, "x.example", "a3").await;
}

#[tokio::test]
async fn changed_listen_binds_new_and_stops_removed_addresses() {
    let p1 = free_port();
    let p2 = free_port();
    let addr1 = SocketAddr::from(([127, 0, 0, 1], p1));
    let addr2 = SocketAddr::from(([127, 0, 0, 1], p2));
    let comps = format!(
        "{}{}",
        comp("a.example", "sa", ""),
        comp("x.example", "sx", "")
    );
    let d = Daemon::start(&format!("listen = [\"{addr1}\"]\n{comps}"));
    let mut a = Comp::login(addr1, "a.example", "sa").await;
    let mut x = Comp::login(addr1, "x.example", "sx").await;

    // Add a second address: it accepts.
    d.reload(&format!("listen = [\"{addr1}\", \"{addr2}\"]\n{comps}"));
    assert_summary(
        &d,
        "reload: 0 added, 0 removed (0 connections detached), 0 changed, 2 unchanged",
    );
    let mut y = Comp::login(addr2, "x.example", "sx").await; // replaces x
    assert_eq!(x.expect_stream_error().await, "conflict");
    round_trip(&mut a, "a.example", &mut y, "x.example", "via-both").await;

    // Remove the first: new connections to it are refused at once, existing
    // sessions on it keep routing.
    d.reload(&format!("listen = [\"{addr2}\"]\n{comps}"));
    match tokio::net::TcpStream::connect(addr1).await {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("{addr1} still accepts after it was removed from listen"),
    }
    round_trip(&mut a, "a.example", &mut y, "x.example", "after-unlisten").await;
    let mut a2 = Comp::login(addr2, "a.example", "sa").await;
    assert_eq!(a.expect_stream_error().await, "conflict");
    round_trip(&mut a2, "a.example", &mut y, "x.example", "new-a").await;

    // And it can be bound again later.
    d.reload(&format!("listen = [\"{addr1}\", \"{addr2}\"]\n{comps}"));
    let _a3 = Comp::login(addr1, "a.example", "sa").await;
}

#[tokio::test]
async fn listen_bind_failure_is_logged_and_the_rest_applies() {
    let p1 = free_port();
    let addr1 = SocketAddr::from(([127, 0, 0, 1], p1));
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let a = comp("a.example", "sa", "");
    let d = Daemon::start(&format!("listen = [\"{addr1}\"]\n{a}"));
    let mut ac = Comp::login(addr1, "a.example", "sa").await;

    d.reload(&format!(
        "listen = [\"{addr1}\", \"{busy_addr}\"]\n{a}{}",
        comp("c.example", "sc", "")
    ));
    d.expect_log(event("listen.failed"), LOG_WAIT);
    assert!(
        d.logs().contains(&format!("cannot listen on {busy_addr}")),
        "{}",
        d.logs()
    );
    assert_summary(
        &d,
        "reload: 1 added, 0 removed (0 connections detached), 0 changed, 1 unchanged, 1 listen address(es) failed",
    );
    // The added component is served and the old address and session still work.
    let mut c = Comp::login(addr1, "c.example", "sc").await;
    round_trip(&mut ac, "a.example", &mut c, "c.example", "ac").await;

    // Once the address is free, the next reload binds it.
    drop(busy);
    d.reload(&format!(
        "listen = [\"{addr1}\", \"{busy_addr}\"]\n{a}{}",
        comp("c.example", "sc", "")
    ));
    assert_eq!(
        last_summary(&d),
        "reload: 0 added, 0 removed (0 connections detached), 0 changed, 2 unchanged"
    );
    let _c2 = Comp::login(busy_addr, "c.example", "sc").await;
}

// ---------------------------------------------------------------------------
// Unchanged components
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unchanged_components_are_not_touched() {
    let a_x = format!(
        "{}{}",
        comp("a.example", "sa", ""),
        comp("x.example", "sx", "")
    );
    let d = Daemon::start(&format!("{a_x}{}", comp("o.example", "so", "")));
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    let mut x = Comp::login(d.addr(), "x.example", "sx").await;
    let _o = Comp::login(d.addr(), "o.example", "so").await;

    // Stanzas in flight across the reload: sent before, read after.
    for i in 0..10 {
        a.send(&msg("u@a.example", "v@x.example", &format!("pre{i}")))
            .await;
    }
    d.reload(&format!(
        "{a_x}{}{}",
        comp("o.example", "changed", ""),
        comp("n.example", "sn", "")
    ));
    assert_summary(
        &d,
        "reload: 1 added, 0 removed (0 connections detached), 1 changed, 2 unchanged",
    );
    for i in 0..10 {
        assert_eq!(
            x.stanza().await,
            msg("u@a.example", "v@x.example", &format!("pre{i}"))
        );
    }
    d.reload(&a_x);
    assert_summary(
        &d,
        "reload: 0 added, 2 removed (1 connection detached), 0 changed, 2 unchanged",
    );
    // Same connections, no stream error, no extra bytes, still routing.
    a.expect_silence(Duration::from_millis(200)).await;
    x.expect_silence(Duration::from_millis(200)).await;
    round_trip(&mut a, "a.example", &mut x, "x.example", "after").await;
    assert_eq!(d.count_log(event("session.ended")), 0, "{}", d.logs());
}

// ---------------------------------------------------------------------------
// The mod_reload_components README, translated
// ---------------------------------------------------------------------------

/// Example 1: a, b → a, c. (x.example stands for the rest of the deployment,
/// so that a has someone to talk to; it is unchanged.)
#[tokio::test]
async fn readme_example_1_a_b_to_a_c() {
    let x = comp("x.example.com", "x", "");
    let a = comp("a.example.com", "a", "");
    let d = Daemon::start(&format!("{x}{a}{}", comp("b.example.com", "b", "")));
    let mut ac = Comp::login(d.addr(), "a.example.com", "a").await;
    let mut bc = Comp::login(d.addr(), "b.example.com", "b").await;
    let mut xc = Comp::login(d.addr(), "x.example.com", "x").await;
    round_trip(&mut ac, "a.example.com", &mut xc, "x.example.com", "before").await;
    assert_eq!(
        header_refused(d.addr(), "c.example.com").await,
        "host-unknown"
    );

    d.reload(&format!("{x}{a}{}", comp("c.example.com", "c", "")));
    assert_summary(
        &d,
        "reload: 1 added, 1 removed (1 connection detached), 0 changed, 2 unchanged",
    );

    // 1. c is loaded and awaits authentication.
    let mut cc = Comp::login(d.addr(), "c.example.com", "c").await;
    round_trip(&mut cc, "c.example.com", &mut ac, "a.example.com", "c").await;
    // 2. b is unloaded: its connection is not closed, nothing is done for it.
    bc.send(&msg("u@b.example.com", "v@a.example.com", "b1"))
        .await;
    stays_open_and_silent(&mut bc, DETACHED_OPEN, "b.example.com").await;
    ac.expect_silence(QUIET).await;
    // a is unaffected: same connection, still routing.
    round_trip(&mut ac, "a.example.com", &mut xc, "x.example.com", "after").await;
}

/// Example 2: a → a + a.newexample.com ("its respective VirtualHost is not
/// loaded": the router has no virtual hosts, so the new component simply
/// authenticates and routes locally).
#[tokio::test]
async fn readme_example_2_a_plus_a_newexample() {
    let a = comp("a.example.com", "a", "");
    let d = Daemon::start(&a);
    let mut ac = Comp::login(d.addr(), "a.example.com", "a").await;

    d.reload(&format!("{a}{}", comp("a.newexample.com", "a", "")));
    assert_summary(
        &d,
        "reload: 1 added, 0 removed (0 connections detached), 0 changed, 1 unchanged",
    );
    let mut nc = Comp::login(d.addr(), "a.newexample.com", "a").await;
    round_trip(&mut nc, "a.newexample.com", &mut ac, "a.example.com", "new").await;
}

// ---------------------------------------------------------------------------
// Invalid reloads
// ---------------------------------------------------------------------------

/// Start with a, x, o; reload with `bad` (which also declares c.example);
/// the failure names the file, `line` (of the body; the listen line is
/// prepended) and `reason`, and the old set keeps serving.
async fn check_invalid_reload(bad: &str, line: usize, reason: &str) {
    let good = format!(
        "{}{}{}",
        comp("a.example", "sa", ""),
        comp("x.example", "sx", ""),
        comp("o.example", "so", "")
    );
    let d = Daemon::start(&good);
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    let mut x = Comp::login(d.addr(), "x.example", "sx").await;

    d.reload(bad);
    let logs = d.logs();
    let failure = logs
        .lines()
        .find(|l| l.contains("reload failed"))
        .unwrap_or_else(|| panic!("no failure logged:\n{logs}"));
    let at = format!("{}:{}:", d.config_path.display(), line + 1);
    assert!(failure.contains(&at), "expected {at:?} in {failure:?}");
    assert!(
        failure.contains(reason),
        "expected {reason:?} in {failure:?}"
    );
    assert!(!logs.contains("reload: 0 added"), "{logs}");

    // The old set keeps serving.
    round_trip(&mut a, "a.example", &mut x, "x.example", "after-bad").await;
    let mut o = Comp::login(d.addr(), "o.example", "so").await;
    round_trip(&mut o, "o.example", &mut x, "x.example", "o").await;
    assert_eq!(header_refused(d.addr(), "c.example").await, "host-unknown");

    // And the next valid reload diffs against the config that was in force.
    d.reload(&format!("{good}{}", comp("c.example", "sc", "")));
    assert_eq!(
        last_summary(&d),
        "reload: 1 added, 0 removed (0 connections detached), 0 changed, 3 unchanged"
    );
    let _c = Comp::login(d.addr(), "c.example", "sc").await;
}

#[tokio::test]
async fn invalid_reload_toml_syntax_error() {
    let bad =
        "[components.\"a.example\"]\nsecret = \"sa\"\n[components.\"c.example\"]\nsecret = \"sc\n";
    check_invalid_reload(bad, 4, "").await;
}

#[tokio::test]
async fn invalid_reload_unknown_key() {
    let bad = "[components.\"a.example\"]\nsecret = \"sa\"\n[components.\"c.example\"]\nsecret = \"sc\"\nsecrett = \"sc\"\n";
    check_invalid_reload(bad, 5, "unknown field `secrett`").await;
}

#[tokio::test]
async fn invalid_reload_duplicate_domain_differing_in_case() {
    let bad = "[components.\"a.example\"]\nsecret = \"sa\"\n[components.\"c.example\"]\nsecret = \"sc\"\n[components.\"C.Example\"]\nsecret = \"sc2\"\n";
    check_invalid_reload(bad, 5, "duplicate component").await;
}

#[tokio::test]
async fn invalid_reload_empty_secret() {
    let bad =
        "[components.\"a.example\"]\nsecret = \"sa\"\n[components.\"c.example\"]\nsecret = \"\"\n";
    check_invalid_reload(bad, 4, "secret is empty").await;
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

#[tokio::test]
async fn reload_report_lines_and_summary() {
    let mut unchanged = String::new();
    for i in 1..=5 {
        unchanged.push_str(&comp(&format!("u{i}.example"), "su", ""));
    }
    let d = Daemon::start(&format!(
        "{unchanged}{}{}",
        comp("b.example", "sb", ""),
        comp("e.example", "se", "")
    ));
    let _b = Comp::login(d.addr(), "b.example", "sb").await;

    d.reload(&format!(
        "{unchanged}{}{}",
        comp("c.example", "sc", ""),
        comp("e.example", "se", "")
    ));
    assert_eq!(
        last_summary(&d),
        "reload: 1 added, 1 removed (1 connection detached), 0 changed, 6 unchanged"
    );
    let logs = d.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("reload: component added") && l.contains("domain=c.example")),
        "{logs}"
    );
    assert!(
        logs.lines().any(
            |l| l.contains("reload: component removed (1 connection detached)")
                && l.contains("domain=b.example")
        ),
        "{logs}"
    );

    // Changed, and removed without a connection.
    d.reload(&format!("{unchanged}{}", comp("c.example", "sc2", "")));
    assert_eq!(
        last_summary(&d),
        "reload: 0 added, 1 removed (0 connections detached), 1 changed, 5 unchanged"
    );
    let logs = d.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("reload: component changed") && l.contains("domain=c.example")),
        "{logs}"
    );
    assert!(
        logs.lines().any(
            |l| l.contains("reload: component removed (0 connections detached)")
                && l.contains("domain=e.example")
        ),
        "{logs}"
    );
    // Secrets never appear in the log.
    for s in ["sb", "sc", "sc2", "se", "su"] {
        assert!(!logs.contains(&format!("\"{s}\"")), "secret {s} in {logs}");
    }
}

// ---------------------------------------------------------------------------
// Continuity under reloads
// ---------------------------------------------------------------------------

/// At most this many stanzas in flight per direction: well under the
/// router's per-connection queue bound, so a busy test machine slows the
/// flow down instead of making the router bounce `resource-constraint`.
const WINDOW: u64 = 500;

/// Send `<message id='TAG-N'>` from `from` to `to` until `stop`, then a final
/// `TAG-end-COUNT`; returns how many were sent. `received` is the peer's count.
async fn sequence_sender(
    mut w: impl tokio::io::AsyncWrite + Unpin,
    from: &str,
    to: &str,
    tag: &str,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if n - received.load(Ordering::Relaxed) >= WINDOW {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let mut batch = String::new();
        for _ in 0..10 {
            batch.push_str(&msg(from, to, &format!("{tag}-{n}")));
            n += 1;
        }
        w.write_all(batch.as_bytes()).await.expect("send");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    w.write_all(msg(from, to, &format!("{tag}-end-{n}")).as_bytes())
        .await
        .expect("send end");
    n
}

/// Read until `TAG-end-COUNT`; every stanza must be the next in sequence.
async fn sequence_receiver(mut rx: CompRx, tag: &str, received: Arc<AtomicU64>) -> u64 {
    let mut next = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let prefix = format!("{tag}-");
    loop {
        let st = match rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Got::Stanza(st) => st,
            Got::Timeout => panic!("{tag}: stuck after {next} stanzas"),
            other => panic!("{tag}: connection ended after {next} stanzas: {other:?}"),
        };
        assert!(!st.contains("type='error'"), "bounce: {st}");
        let id = attr(&st, "id").expect("id");
        let rest = id
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("unexpected stanza {st}"));
        if let Some(count) = rest.strip_prefix("end-") {
            let count: u64 = count.parse().unwrap();
            assert_eq!(next, count, "{tag}: stanzas lost at the end");
            return count;
        }
        let seq: u64 = rest.parse().unwrap();
        assert_eq!(seq, next, "{tag}: lost, duplicated or reordered stanza");
        next += 1;
        received.store(next, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traffic_flows_without_loss_through_20_reloads() {
    let base = format!(
        "{}{}",
        comp("a.example", "sa", ""),
        comp("d.example", "sd", "")
    );
    let d = Arc::new(Daemon::start(&base));
    // The write halves outlive the senders: dropping one would end its stream.
    let (ar, mut aw) = Comp::login(d.addr(), "a.example", "sa").await.into_split();
    let (dr, mut dw) = Comp::login(d.addr(), "d.example", "sd").await.into_split();
    let stop = Arc::new(AtomicBool::new(false));
    let (ad, da) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));

    let reloads = {
        let d = d.clone();
        let stop = stop.clone();
        let base = base.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut o1 = None;
            for k in 0..20 {
                let body = if k % 2 == 0 {
                    format!(
                        "{base}{}{}",
                        comp("o1.example", "s1", ""),
                        comp("o2.example", "s2", "")
                    )
                } else {
                    base.clone()
                };
                d.reload(&body);
                let want = if k % 2 == 0 {
                    // Connect o1, so that the next reload detaches a live session.
                    o1 = Some(rt.block_on(Comp::login(d.addr(), "o1.example", "s1")));
                    "reload: 2 added, 0 removed (0 connections detached), 0 changed, 2 unchanged"
                } else {
                    "reload: 0 added, 2 removed (1 connection detached), 0 changed, 2 unchanged"
                };
                assert_eq!(last_summary(&d), want, "reload {k}");
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
            drop(o1);
        })
    };
    let (sent_ad, sent_da, got_ad, got_da, r) =
        tokio::time::timeout(Duration::from_secs(90), async {
            tokio::join!(
                sequence_sender(
                    &mut aw,
                    "u@a.example",
                    "v@d.example",
                    "ad",
                    stop.clone(),
                    ad.clone()
                ),
                sequence_sender(
                    &mut dw,
                    "v@d.example",
                    "u@a.example",
                    "da",
                    stop.clone(),
                    da.clone()
                ),
                sequence_receiver(dr, "ad", ad.clone()),
                sequence_receiver(ar, "da", da.clone()),
                reloads,
            )
        })
        .await
        .expect("continuity test timed out");
    r.expect("reload driver panicked");
    assert_eq!(sent_ad, got_ad);
    assert_eq!(sent_da, got_da);
    assert!(
        sent_ad > 100 && sent_da > 100,
        "too little traffic: {sent_ad}, {sent_da}"
    );
    eprintln!("continuity: {sent_ad} a->d and {sent_da} d->a stanzas through 20 reloads");
    assert_eq!(d.count_log(event("reload.failed")), 0);
    assert_eq!(d.count_log(event("reload.start")), 20);
}

// ---------------------------------------------------------------------------
// Signals: a SIGHUP during a reload is not lost
// ---------------------------------------------------------------------------

/// Write `content` into the FIFO once (blocks until a reader opens it), from a
/// thread; returns a receiver that fires when done.
fn feed_fifo(path: std::path::PathBuf, content: &'static str) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open fifo");
        f.write_all(content.as_bytes()).expect("write fifo");
        drop(f);
        let _ = tx.send(());
    });
    rx
}

/// A reload is made to block (its secret_file is a FIFO nobody writes yet);
/// the config changes and a second SIGHUP arrives meanwhile. Once the first
/// reload finishes, the second must run and apply the newer file.
#[tokio::test]
async fn sighup_during_a_reload_is_not_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("f.secret");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(st.success());
    let a = comp("a.example", "sa", "");
    let f = format!(
        "[components.\"f.example\"]\nsecret_file = \"{}\"\n",
        fifo.display()
    );
    let fed = feed_fifo(fifo.clone(), "sf\n");
    let d = Daemon::start(&format!("{a}{f}"));
    fed.recv_timeout(Duration::from_secs(5))
        .expect("startup did not read the fifo");

    // First SIGHUP: the reload blocks opening the FIFO.
    d.sighup();
    d.expect_log(event("reload.start"), LOG_WAIT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile: the served set keeps working, the file changes, a second SIGHUP.
    let mut ac = Comp::login(d.addr(), "a.example", "sa").await;
    let mut fc = Comp::login(d.addr(), "f.example", "sf").await;
    round_trip(&mut ac, "a.example", &mut fc, "f.example", "during").await;
    std::fs::write(
        &d.config_path,
        format!(
            "listen = [\"127.0.0.1:{}\"]\n{a}{}",
            d.port,
            comp("n.example", "sn", "")
        ),
    )
    .unwrap();
    d.sighup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.count_log(event("reload.start")), 1);

    // Unblock the first reload: it applies the file it read (unchanged) ...
    let fed = feed_fifo(fifo.clone(), "sf\n");
    fed.recv_timeout(Duration::from_secs(5))
        .expect("the reload did not read the fifo");
    // ... and the second SIGHUP runs another reload with the new file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.count_log(event("reload.done")) < 2 {
        assert!(
            Instant::now() < deadline,
            "the second SIGHUP was lost:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_summary(
        &d,
        "reload: 0 added, 0 removed (0 connections detached), 0 changed, 2 unchanged",
    );
    assert_eq!(
        last_summary(&d),
        "reload: 1 added, 1 removed (1 connection detached), 0 changed, 1 unchanged"
    );
    let mut n = Comp::login(d.addr(), "n.example", "sn").await;
    round_trip(&mut ac, "a.example", &mut n, "n.example", "n").await;
}

// ---------------------------------------------------------------------------
// systemd notify
// ---------------------------------------------------------------------------

fn recv_notify(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notify message: {e}"));
    String::from_utf8_lossy(&buf[..n]).to_string()
}

fn monotonic_usec(m: &str) -> u64 {
    m.lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("bad MONOTONIC_USEC in {m:?}"))
}

#[tokio::test]
async fn systemd_notify_ready_reloading_ready_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let path_s = path.to_str().unwrap();
    let a = comp("a.example", "sa", "");
    let mut d = Daemon::start_env(&a, &[("NOTIFY_SOCKET", path_s)]);

    let m = recv_notify(&sock);
    let lines: Vec<&str> = m.lines().collect();
    assert!(lines.contains(&"READY=1"), "{m:?}");
    assert!(lines.iter().any(|l| l.starts_with("STATUS=")), "{m:?}");

    d.reload(&format!("{a}{}", comp("c.example", "sc", "")));
    let m = recv_notify(&sock);
    assert!(m.lines().any(|l| l == "RELOADING=1"), "{m:?}");
    assert!(!m.contains("READY=1"), "{m:?}");
    let t1 = monotonic_usec(&m);
    assert!(t1 > 0);
    let m = recv_notify(&sock);
    assert!(m.lines().any(|l| l == "READY=1"), "{m:?}");
    assert!(
        m.contains(
            "STATUS=reload: 1 added, 0 removed (0 connections detached), 0 changed, 1 unchanged"
        ),
        "{m:?}"
    );

    // A failed reload also ends with READY=1 (systemd waits for it).
    d.reload("bogus = 1\n");
    let m = recv_notify(&sock);
    assert!(m.lines().any(|l| l == "RELOADING=1"), "{m:?}");
    let t2 = monotonic_usec(&m);
    assert!(t2 > t1, "MONOTONIC_USEC went from {t1} to {t2}");
    let m = recv_notify(&sock);
    assert!(m.lines().any(|l| l == "READY=1"), "{m:?}");
    assert!(m.contains("STATUS=reload failed"), "{m:?}");

    let st = d.stop().expect("daemon did not exit");
    assert!(st.success(), "{st:?}");
    let m = recv_notify(&sock);
    assert!(m.lines().any(|l| l == "STOPPING=1"), "{m:?}");
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        sock.recv(&mut buf).is_err(),
        "unexpected extra notify message"
    );
}

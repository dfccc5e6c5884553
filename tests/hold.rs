//! A domain held while its component restarts (`hold_seconds`;
//! docs/behaviour.md#hold, README "Restart without loss"), black-box against
//! the binary with raw XEP-0114 components: what is sent while the component
//! is away arrives after it is back, in order and before anything newer; the
//! queue keeps its bounds; expiry, a reload that removes the domain and
//! shutdown bounce what was held; a reload changes a running hold's length;
//! balanced and `reject` domains are held too. The restart of a real
//! (slixmpp) component in front of a real Prosody is in tests/hold_prosody.rs.

use std::time::{Duration, Instant};

use test_support::comp::{Comp, Got};
use test_support::daemon::{router_config, Daemon};
use test_support::events::{event, field};
use test_support::inspect::{attr, stanza_error_condition, text_of};
use test_support::stanza::{message, msg};

const A: &str = "a.localhost";
const B: &str = "b.localhost";
const T: Duration = Duration::from_secs(10);
/// How long to wait for something that must not arrive.
const QUIET: Duration = Duration::from_millis(500);

fn config(b_extra: &str) -> String {
    router_config(None, &[(A, "a", ""), (B, "b", b_extra)])
}

/// The value of `key` in the last `hold.end` line for B.
fn hold_end(d: &Daemon, key: &str) -> String {
    let logs = d.logs();
    let line = event("hold.end")
        .domain(B)
        .lines(&logs)
        .last()
        .unwrap_or_else(|| panic!("no hold.end line:\n{logs}"))
        .to_string();
    field(&line, key)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .to_string()
}

/// B's connection goes away (TCP closed without a stream close) and the
/// router holds the domain.
async fn drop_and_hold(d: &Daemon, b: Comp) {
    let before = d.count_log(event("hold.start").domain(B));
    drop(b);
    d.expect_log_count(event("hold.start").domain(B), before + 1, T);
}

/// The next `n` stanzas `c` receives, panicking on anything else.
async fn stanzas(c: &mut Comp, n: usize) -> Vec<String> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        match c.recv_timeout(T).await {
            Got::Stanza(s) => v.push(s),
            other => panic!("after {} of {n} stanzas: {other:?}", v.len()),
        }
    }
    v
}

fn bodies(v: &[String]) -> Vec<String> {
    v.iter().filter_map(|s| text_of(s, "body")).collect()
}

fn ids(prefix: &str, r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("{prefix}{i}")).collect()
}

/// `s` is the bounce `type`/`condition` for a message from A to B.
fn assert_bounce(s: &str, type_: &str, condition: &str) {
    assert_eq!(attr(s, "type").as_deref(), Some("error"), "{s}");
    assert_eq!(attr(s, "from").as_deref(), Some(B), "{s}");
    assert!(s.contains(&format!("<error type='{type_}'>")), "{s}");
    assert_eq!(stanza_error_condition(s).as_deref(), Some(condition), "{s}");
}

/// A receives the bounces of `prefix` `r`, in order, each `type_`/`condition`;
/// returns them.
async fn expect_bounces(
    a: &mut Comp,
    prefix: &str,
    r: std::ops::Range<usize>,
    type_: &str,
    condition: &str,
) -> Vec<String> {
    let mut v = Vec::new();
    for id in ids(prefix, r) {
        let s = a.stanza().await;
        assert_eq!(attr(&s, "id").as_deref(), Some(id.as_str()), "{s}");
        assert_bounce(&s, type_, condition);
        v.push(s);
    }
    v
}

async fn send_range(a: &mut Comp, prefix: &str, r: std::ops::Range<usize>) {
    for id in ids(prefix, r) {
        a.send(&msg(A, B, &id)).await;
    }
}

/// The component restarts within the hold: what was sent meanwhile arrives,
/// in order, before what is sent after it is back; the sender hears nothing.
/// Live stanzas sent while the held ones are being handed over do not
/// overtake them. The upstream direction is not involved (no `[upstream]`).
#[tokio::test]
async fn a_restart_within_the_hold_loses_nothing() {
    let d = Daemon::start(&config("hold_seconds = 30"));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    drop_and_hold(&d, b).await;
    send_range(&mut a, "h", 0..300).await;
    // Until B is back, nothing comes back to A.
    a.expect_silence(QUIET).await;
    let mut b = Comp::login(d.addr(), B, "b").await;
    // Live traffic at once, while the held stanzas are handed over.
    send_range(&mut a, "l", 0..300).await;
    let got = bodies(&stanzas(&mut b, 600).await);
    let mut want = ids("h", 0..300);
    want.extend(ids("l", 0..300));
    assert_eq!(got, want, "held stanzas first, in order, then live traffic");
    a.expect_silence(QUIET).await;
    d.expect_log(event("hold.end").domain(B), T);
    assert_eq!(hold_end(&d, "outcome"), "resumed");
    // The live ones that came during the hand-over went through the queue
    // too (that is how they stay behind): counted as held and delivered.
    let held: usize = hold_end(&d, "held").parse().unwrap();
    assert!((300..=600).contains(&held), "{held}");
    assert_eq!(hold_end(&d, "delivered"), held.to_string());
    assert_eq!(hold_end(&d, "bounced"), "0");
    // Both directions work after the restart.
    b.send(&msg(B, A, "back")).await;
    assert_eq!(text_of(&a.stanza().await, "body").as_deref(), Some("back"));
}

/// What the old connection had queued and not written goes to the next
/// connection ahead of what was sent after it died: B stops reading, its
/// queue fills behind the kernel's buffers, then its connection dies.
/// Only what was already in the dead socket's buffers is lost (no
/// acknowledgements in XEP-0114); A gets no error for anything.
#[tokio::test]
async fn the_old_connections_queue_goes_first() {
    let d = Daemon::start(&config("hold_seconds = 30"));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    let pad = "x".repeat(8000);
    let n = 600; // ~4.8 MB: more than the socket buffers take
    for i in 0..n {
        a.send(&message(A, B, format!("q{i}"), &format!("q{i} {pad}")))
            .await;
    }
    // Let the router's writer fill the socket buffers, then B dies unread.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop_and_hold(&d, b).await;
    send_range(&mut a, "h", 0..50).await;
    let mut b = Comp::login(d.addr(), B, "b").await;
    let mut got = Vec::new();
    loop {
        match b.recv_timeout(Duration::from_secs(3)).await {
            Got::Stanza(s) => got.push(s),
            Got::Timeout => break,
            other => panic!("{other:?}"),
        }
    }
    let got: Vec<String> = got.iter().filter_map(|s| attr(s, "id")).collect();
    let first = got
        .first()
        .and_then(|id| id.strip_prefix('q'))
        .and_then(|i| i.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("nothing of the old queue came: {got:?}"));
    let mut want = ids("q", first..n);
    want.extend(ids("h", 0..50));
    assert_eq!(got, want, "the old queue's suffix, then the held ones");
    println!("old queue: {n} sent, {first} written into the dead socket (lost), {} handed to the new connection", n - first);
    a.expect_silence(QUIET).await;
}

/// Beyond `max_queue_stanzas` a held domain refuses with
/// `wait`/`resource-constraint`, as for a slow reader; what fit arrives.
#[tokio::test]
async fn the_hold_queue_has_the_queue_bounds() {
    let body = format!("max_queue_stanzas = 5\n{}", config("hold_seconds = 30"));
    let d = Daemon::start(&body);
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    drop_and_hold(&d, b).await;
    send_range(&mut a, "h", 0..8).await;
    expect_bounces(&mut a, "h", 5..8, "wait", "resource-constraint").await;
    let mut b = Comp::login(d.addr(), B, "b").await;
    assert_eq!(bodies(&stanzas(&mut b, 5).await), ids("h", 0..5));
    b.expect_silence(QUIET).await;
    d.expect_log(event("hold.end").domain(B), T);
    assert_eq!(hold_end(&d, "refused"), "3");
}

/// At expiry every held stanza is bounced at once, as for an attached
/// component without a session: `wait`/`remote-server-timeout`, "Component
/// unavailable", with Prosody's `<not-connected/>`. Then B is offline as
/// usual, and a new connection gets only new traffic.
#[tokio::test]
async fn expiry_bounces_every_held_stanza() {
    let d = Daemon::start(&config("hold_seconds = 1"));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    drop_and_hold(&d, b).await;
    let held_at = Instant::now();
    send_range(&mut a, "h", 0..20).await;
    a.expect_silence(Duration::from_millis(300)).await;
    for s in expect_bounces(&mut a, "h", 0..20, "wait", "remote-server-timeout").await {
        assert!(s.contains("Component unavailable"), "{s}");
        assert!(s.contains("<not-connected"), "{s}");
    }
    // One second of hold, bounced within a second of its end (generous for a
    // loaded machine: the point is that it does not wait for anything else).
    assert!(
        held_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        held_at.elapsed()
    );
    d.expect_log(event("hold.end").domain(B), T);
    assert_eq!(hold_end(&d, "outcome"), "expired");
    assert_eq!(hold_end(&d, "held"), "20");
    assert_eq!(hold_end(&d, "bounced"), "20");
    assert_eq!(hold_end(&d, "lost"), "0");
    // Not held any more: bounced at once.
    a.send(&msg(A, B, "late")).await;
    assert_bounce(&a.stanza().await, "wait", "remote-server-timeout");
    let mut b = Comp::login(d.addr(), B, "b").await;
    a.send(&msg(A, B, "new")).await;
    assert_eq!(bodies(&stanzas(&mut b, 1).await), ["new"]);
}

/// A reload that removes a held domain bounces what it held at once,
/// `cancel`/`remote-server-not-found` (it is no longer served).
#[tokio::test]
async fn a_reload_removing_a_held_domain_bounces_at_once() {
    let d = Daemon::start(&config("hold_seconds = 600"));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    drop_and_hold(&d, b).await;
    send_range(&mut a, "h", 0..5).await;
    a.expect_silence(Duration::from_millis(200)).await;
    let t = Instant::now();
    d.reload(&router_config(None, &[(A, "a", "")]));
    expect_bounces(&mut a, "h", 0..5, "cancel", "remote-server-not-found").await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(hold_end(&d, "outcome"), "removed");
    assert_eq!(hold_end(&d, "bounced"), "5");
}

/// A reload that changes `hold_seconds` applies to a running hold, counted
/// from when it began: longer keeps it past the old deadline, shorter ends
/// it at the new one, 0 at once.
#[tokio::test]
async fn a_reload_changes_a_running_holds_length() {
    let d = Daemon::start(&config("hold_seconds = 1"));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    drop_and_hold(&d, b).await;
    d.reload(&config("hold_seconds = 600"));
    send_range(&mut a, "h", 0..3).await;
    // Past the old deadline: still held.
    a.expect_silence(Duration::from_millis(1500)).await;
    assert_eq!(d.count_log(event("hold.end").domain(B)), 0);
    let mut b = Comp::login(d.addr(), B, "b").await;
    assert_eq!(bodies(&stanzas(&mut b, 3).await), ids("h", 0..3));
    d.expect_log(event("hold.end").domain(B), T);
    // Shorter: 0 ends the running hold at once.
    drop_and_hold(&d, b).await;
    send_range(&mut a, "g", 0..3).await;
    a.expect_silence(Duration::from_millis(200)).await;
    d.reload(&config("hold_seconds = 0"));
    expect_bounces(&mut a, "g", 0..3, "wait", "remote-server-timeout").await;
    assert_eq!(hold_end(&d, "outcome"), "expired");
    // And no hold begins any more.
    let b = Comp::login(d.addr(), B, "b").await;
    drop(b);
    d.expect_log_count(event("session.ended").domain(B), 3, T);
    a.send(&msg(A, B, "off")).await;
    assert_bounce(&a.stanza().await, "wait", "remote-server-timeout");
    assert_eq!(d.count_log(event("hold.start").domain(B)), 2);
}

/// Shutdown during a hold bounces what was held (before the senders' own
/// connections end) and exits on time.
#[tokio::test]
async fn shutdown_bounces_what_was_held() {
    let mut d = Daemon::start(&config("hold_seconds = 600"));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    drop_and_hold(&d, b).await;
    send_range(&mut a, "h", 0..4).await;
    a.expect_silence(Duration::from_millis(200)).await;
    let t = Instant::now();
    d.stop_ok();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    expect_bounces(&mut a, "h", 0..4, "wait", "remote-server-timeout").await;
    let (cond, _) = a.stream_error().await;
    assert_eq!(cond, "system-shutdown");
    assert_eq!(hold_end(&d, "outcome"), "shutdown");
    assert_eq!(hold_end(&d, "bounced"), "4");
    // Its own shutdown held nothing.
    assert_eq!(d.count_log(event("hold.start")), 1);
}

/// A balanced domain whose set becomes empty is held; the next instance
/// gets the queue.
#[tokio::test]
async fn a_balanced_set_that_empties_is_held() {
    let d = Daemon::start(&config("on_conflict = \"balance\"\nhold_seconds = 30"));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b1 = Comp::login(d.addr(), B, "b").await;
    let b2 = Comp::login(d.addr(), B, "b").await;
    drop(b1);
    d.expect_log(event("session.ended").domain(B), T);
    assert_eq!(d.count_log(event("hold.start").domain(B)), 0, "one left");
    drop_and_hold(&d, b2).await;
    send_range(&mut a, "h", 0..20).await;
    let mut b3 = Comp::login(d.addr(), B, "b").await;
    assert_eq!(bodies(&stanzas(&mut b3, 20).await), ids("h", 0..20));
    a.expect_silence(QUIET).await;
}

/// With `on_conflict = "reject"`, a connection during the hold is welcome
/// (nothing is connected) and gets the queue.
#[tokio::test]
async fn reject_welcomes_a_connection_during_the_hold() {
    let d = Daemon::start(&config("on_conflict = \"reject\"\nhold_seconds = 30"));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    drop_and_hold(&d, b).await;
    send_range(&mut a, "h", 0..3).await;
    let mut b = Comp::login(d.addr(), B, "b").await;
    assert_eq!(bodies(&stanzas(&mut b, 3).await), ids("h", 0..3));
    // Once connected, `reject` applies again.
    let mut c = Comp::connect(d.addr()).await;
    c.open_ok(B).await;
    c.send_handshake("b").await;
    let (cond, _) = c.stream_error().await;
    assert_eq!(cond, "conflict");
}

/// Without `hold_seconds` nothing changes: stanzas for a component that is
/// away bounce at once.
#[tokio::test]
async fn without_hold_seconds_nothing_is_held() {
    let d = Daemon::start(&config(""));
    let mut a = Comp::login(d.addr(), A, "a").await;
    let b = Comp::login(d.addr(), B, "b").await;
    drop(b);
    d.expect_log(event("session.ended").domain(B), T);
    a.send(&msg(A, B, "x")).await;
    assert_bounce(&a.stanza().await, "wait", "remote-server-timeout");
    assert_eq!(d.count_log(event("hold.start")), 0);
}

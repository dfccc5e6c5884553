//! A real component restarts in front of a real Prosody (docs/behaviour.md#hold):
//! a slixmpp `ComponentXMPP` receives a steady stream from another component
//! (a raw XEP-0114 connection to the router) and from a Prosody c2s user; it
//! is SIGKILLed and run again 3 s later.
//!
//! - within the hold: every stanza sent during the gap arrives after the
//!   restart, in order; the user gets no error and no presence from the
//!   component's domain, and the router's upstream link never went down (so
//!   Prosody never saw the component go offline);
//! - after the hold expired, and without a hold: every stanza is received,
//!   or bounced with `remote-server-timeout`, or was in the dead socket's
//!   buffers when the process died (the one loss the router cannot see
//!   without acknowledgements); nothing else is missing.
//!
//! Each run prints its figures (in flight at the kill, delivered after the
//! restart, bounced, lost in the dead socket) for the three cases.
//! Prosody, slixmpp and the router are stopped by Drop guards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::c2s::C2s;
use test_support::comp::{Comp, Got};
use test_support::daemon::{router_config, up_line, Daemon};
use test_support::events::{event, field};
use test_support::inspect::{attr, element_name, stanza_error_condition};
use test_support::prosody::{self, Prosody, ProsodyOptions};
use test_support::slix::{self, ev, Slix, SlixOptions};
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep, sleep_until, Instant};

const HOST: &str = "localhost";
const COMP: &str = "comp.localhost";
const SRC: &str = "src.localhost";
const T: Duration = Duration::from_secs(10);
/// The gap between the kill and the restart.
const GAP: Duration = Duration::from_secs(3);
/// Stream before the kill, and after the restart.
const STEADY: Duration = Duration::from_secs(1);
/// One stanza per sender per this.
const SRC_EVERY: Duration = Duration::from_millis(10);
const USER_EVERY: Duration = Duration::from_millis(20);

/// What one sender saw.
#[derive(Default)]
struct Sent {
    /// Stanzas sent so far (ids `PREFIX0`, `PREFIX1`, ...).
    n: AtomicUsize,
    /// Index and stanza of every error that came back for its stanzas.
    errors: Mutex<Vec<(usize, String)>>,
    /// Anything else unexpected that came back (the user: presence from the
    /// component's domain).
    other: Mutex<Vec<String>>,
}

impl Sent {
    fn note(&self, prefix: &str, s: &str) {
        let i = attr(s, "id").and_then(|id| id.strip_prefix(prefix).and_then(|n| n.parse().ok()));
        match (attr(s, "type").as_deref(), i) {
            (Some("error"), Some(i)) => self.errors.lock().unwrap().push((i, s.to_string())),
            _ => self.other.lock().unwrap().push(s.to_string()),
        }
    }
}

fn message(from: Option<&str>, id: &str) -> String {
    let from = from.map(|f| format!(" from='{f}'")).unwrap_or_default();
    format!("<message{from} to='{COMP}' id='{id}' type='chat'><body>{id}</body></message>")
}

/// The other component sends `s0`, `s1`, ... to COMP every [`SRC_EVERY`]
/// until `stop`; its reader notes what comes back.
fn src_sender(c: Comp, sent: Arc<Sent>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let (mut rx, mut wr) = c.into_split();
    let reader_sent = sent.clone();
    let reader_stop = stop.clone();
    tokio::spawn(async move {
        while !reader_stop.load(Ordering::SeqCst) {
            if let Got::Stanza(s) = rx.recv_timeout(Duration::from_millis(100)).await {
                reader_sent.note("s", &s);
            }
        }
        // What is still on its way.
        while let Got::Stanza(s) = rx.recv_timeout(Duration::from_secs(2)).await {
            reader_sent.note("s", &s);
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SRC_EVERY);
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            // Counted before it is written: a count taken at the kill
            // includes anything that may be on its way.
            let i = sent.n.fetch_add(1, Ordering::SeqCst);
            let m = message(Some(SRC), &format!("s{i}"));
            wr.write_all(m.as_bytes())
                .await
                .expect("the sender's write");
        }
    })
}

/// The Prosody user sends `a0`, `a1`, ... every [`USER_EVERY`] until
/// `stop`, noting what comes back in between.
fn user_sender(mut u: C2s, sent: Arc<Sent>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<C2s> {
    tokio::spawn(async move {
        let mut next = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let i = sent.n.fetch_add(1, Ordering::SeqCst);
            u.send(&message(None, &format!("a{i}"))).await;
            next += USER_EVERY;
            while let Some(s) = u
                .recv_stanza(next.saturating_duration_since(Instant::now()))
                .await
            {
                sent.note("a", &s);
            }
        }
        while let Some(s) = u.recv_stanza(Duration::from_secs(2)).await {
            sent.note("a", &s);
        }
        u
    })
}

/// Message bodies with `prefix` among slixmpp events, as indices.
fn indices(events: &[serde_json::Value], prefix: &str) -> Vec<usize> {
    events
        .iter()
        .filter(|e| ev(e) == "message")
        .filter_map(|e| slix::field(e, "body"))
        .filter_map(|b| b.strip_prefix(prefix).and_then(|n| n.parse().ok()))
        .collect()
}

/// Every event of the current run until `quiet` passes without one.
async fn events_until_quiet(s: &mut Slix, quiet: Duration) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    while let Some(e) = s.next(quiet).await {
        v.push(e);
    }
    v
}

/// One sender's account: where each of its stanzas went.
#[derive(Debug)]
struct Account {
    who: &'static str,
    sent: usize,
    sent_at_kill: usize,
    /// Sent by the time the router had ended the session (until then, a
    /// stanza may still be written into the dead socket).
    sent_at_end: usize,
    before: usize,
    in_flight: usize,
    after: usize,
    after_sent_before_kill: usize,
    bounced: usize,
    lost_in_socket: usize,
}

/// Check that each stanza was received once, in order, or bounced, or lost
/// in the dead socket (right after the last one read before the kill), and
/// nothing else; return the figures.
fn account(
    who: &'static str,
    s: &Sent,
    (sent_at_kill, sent_at_end): (usize, usize),
    before: &[usize],
    after: &[usize],
) -> Account {
    let sent = s.n.load(Ordering::SeqCst);
    let errors = s.errors.lock().unwrap();
    for (_, e) in errors.iter() {
        assert_eq!(element_name(e), "message", "{e}");
        assert_eq!(
            stanza_error_condition(e).as_deref(),
            Some("remote-server-timeout"),
            "{who}: {e}"
        );
        // Routed after the session ended, or queued for the dead connection
        // and not written (docs/behaviour.md#routing): both are bounces.
        assert!(
            e.contains("Component unavailable")
                || e.contains("Component connection closed before delivery"),
            "{who}: {e}"
        );
    }
    let bounced: BTreeSet<usize> = errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(bounced.len(), errors.len(), "{who}: one bounce per stanza");
    let k = before.len();
    assert_eq!(before, (0..k).collect::<Vec<_>>(), "{who}: before the kill");
    let received: Vec<usize> = before.iter().chain(after).copied().collect();
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "{who}: received out of order or twice: {received:?}"
    );
    let seen: BTreeSet<usize> = received.iter().copied().collect();
    assert!(seen.is_disjoint(&bounced), "{who}: received and bounced");
    let missing: Vec<usize> = (0..sent)
        .filter(|i| !seen.contains(i) && !bounced.contains(i))
        .collect();
    // Only what had been written to the dead socket: right after the last
    // stanza read before the kill, sent before the router saw it die.
    assert!(
        missing.iter().enumerate().all(|(j, &i)| i == k + j && i < sent_at_end),
        "{who}: missing beyond the dead socket's share: {missing:?} (read before the kill: {k}, sent by then: {sent_at_kill}, by the session's end: {sent_at_end})"
    );
    Account {
        who,
        sent,
        sent_at_kill,
        sent_at_end,
        before: k,
        in_flight: sent_at_kill - k,
        after: after.len(),
        after_sent_before_kill: after.iter().filter(|&&i| i < sent_at_kill).count(),
        bounced: bounced.len(),
        lost_in_socket: missing.len(),
    }
}

/// The log, and its last `hold.end` line for COMP.
fn hold_end(d: &Daemon) -> (String, String) {
    let logs = d.logs();
    let end = event("hold.end")
        .domain(COMP)
        .lines(&logs)
        .last()
        .map(str::to_string);
    let end = end.unwrap_or_else(|| panic!("no hold.end:\n{logs}"));
    (logs, end)
}

struct Run {
    /// Dropped first: the router stops before the component and Prosody, so
    /// the checks on its log see nothing of the teardown.
    d: Daemon,
    _comp: Slix,
    _prosody: Prosody,
    src: Account,
    user: Account,
    user_other: Vec<String>,
}

/// The whole scenario with `hold_seconds = hold`.
async fn run(hold: u64) -> Option<Run> {
    if !prosody::require() || !slix::require() {
        return None;
    }
    let opts = ProsodyOptions::new(HOST)
        .component(COMP, "sc")
        .component(SRC, "ss")
        .user("alice", "pw");
    let p = Prosody::start(&opts).unwrap_or_else(|e| panic!("Prosody failed to start: {e}"));
    let hold_line = format!("hold_seconds = {hold}");
    let config = router_config(
        Some(p.component_addr()),
        &[(COMP, "sc", &hold_line), (SRC, "ss", "")],
    );
    let d = Daemon::start(&config);
    let src = Comp::login(d.addr(), SRC, "ss").await;
    let mut comp = Slix::start(&SlixOptions::new(d.addr(), COMP, "sc")).await;
    d.expect_log(up_line(COMP), T);
    d.expect_log(up_line(SRC), T);
    let user = C2s::connect(p.c2s_addr().port(), "alice", HOST, "pw")
        .await
        .unwrap_or_else(|e| panic!("c2s login: {e}\n{}", p.log_tail()));
    let stop = Arc::new(AtomicBool::new(false));
    let (src_sent, user_sent) = (Arc::new(Sent::default()), Arc::new(Sent::default()));
    let src_task = src_sender(src, src_sent.clone(), stop.clone());
    let user_task = user_sender(user, user_sent.clone(), stop.clone());

    sleep(STEADY).await;
    let at_kill = (
        src_sent.n.load(Ordering::SeqCst),
        user_sent.n.load(Ordering::SeqCst),
    );
    comp.kill();
    let killed = Instant::now();
    d.expect_log(event("session.ended").domain(COMP), T);
    let at_end = (
        src_sent.n.load(Ordering::SeqCst),
        user_sent.n.load(Ordering::SeqCst),
    );
    let before = events_until_quiet(&mut comp, Duration::from_millis(300)).await;
    sleep_until(killed + GAP).await;
    comp.restart().expect("run slixmpp again");
    comp.expect_online(T).await;
    sleep(STEADY).await;
    stop.store(true, Ordering::SeqCst);
    src_task.await.expect("the sender");
    let _user = user_task.await.expect("the user");
    let after = events_until_quiet(&mut comp, Duration::from_secs(3)).await;
    // Let the other component's reader collect its last bounces.
    sleep(Duration::from_secs(2)).await;

    let src = account(
        "component",
        &src_sent,
        (at_kill.0, at_end.0),
        &indices(&before, "s"),
        &indices(&after, "s"),
    );
    let user = account(
        "Prosody user",
        &user_sent,
        (at_kill.1, at_end.1),
        &indices(&before, "a"),
        &indices(&after, "a"),
    );
    let user_other = user_sent.other.lock().unwrap().clone();
    for a in [&src, &user] {
        println!(
            "hold_seconds = {hold}, {}: sent {} ({} before the kill, {} before the router ended the session); read before the kill {}; in flight at the kill {}; delivered after the restart {} (of them sent before the kill {}); bounced {}; lost in the dead socket {}",
            a.who, a.sent, a.sent_at_kill, a.sent_at_end, a.before, a.in_flight, a.after, a.after_sent_before_kill, a.bounced, a.lost_in_socket
        );
    }
    Some(Run {
        d,
        _comp: comp,
        _prosody: p,
        src,
        user,
        user_other,
    })
}

/// Restarted within the hold: nothing bounced, nothing missing but the dead
/// socket's share, everything sent during the gap delivered after the
/// restart; the user sees no error and no presence from the component; the
/// upstream link stayed up the whole time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_within_the_hold_is_invisible_to_prosody_users() {
    let Some(r) = run(30).await else { return };
    for a in [&r.src, &r.user] {
        assert_eq!(a.bounced, 0, "{a:?}");
        assert!(
            a.after > 0 && a.after_sent_before_kill <= a.in_flight,
            "{a:?}"
        );
        // Everything sent once the router had ended the session (before
        // that, a stanza may still go into the dead socket) arrived after
        // the restart.
        assert!(a.after >= a.sent - a.sent_at_end, "{a:?}");
    }
    let from_comp: Vec<&String> = r
        .user_other
        .iter()
        .filter(|s| attr(s, "from").is_some_and(|f| f.ends_with(COMP)))
        .collect();
    assert!(from_comp.is_empty(), "the user saw: {from_comp:?}");
    assert_eq!(r.d.count_log(up_line(COMP)), 1, "{}", r.d.logs());
    assert_eq!(
        r.d.count_log(event("upstream.closed").domain(COMP)),
        0,
        "{}",
        r.d.logs()
    );
    assert_eq!(
        r.d.count_log(event("upstream.down").domain(COMP)),
        0,
        "{}",
        r.d.logs()
    );
    let (_, end) = hold_end(&r.d);
    assert_eq!(field(&end, "outcome"), Some("resumed"), "{end}");
}

/// Restarted after the hold expired: what was held is bounced at expiry
/// (counted in the `hold.end` line), later stanzas bounce as for any
/// component that is away, and nothing is missing but the dead socket's
/// share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_hold_bounces_what_was_held() {
    let Some(r) = run(1).await else { return };
    let (logs, end) = hold_end(&r.d);
    assert_eq!(field(&end, "outcome"), Some("expired"), "{end}");
    let n = |k: &str| -> usize {
        field(&end, k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX)
    };
    assert_eq!(n("lost"), 0, "{end}");
    assert_eq!(n("refused"), 0, "{end}");
    // Every held stanza was bounced (error and result stanzas get none; the
    // stream has none), and the senders got those bounces among theirs.
    assert_eq!(n("bounced"), n("held"), "{end}");
    assert!(n("held") > 0, "{end}");
    assert!(r.src.bounced + r.user.bounced >= n("bounced"), "{end}");
    for a in [&r.src, &r.user] {
        assert!(a.bounced > 0 && a.after > 0, "{a:?}");
    }
    // The link closed at expiry and came back with the component.
    assert_eq!(r.d.count_log(up_line(COMP)), 2, "{logs}");
}

/// Without a hold, for comparison: the gap bounces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_hold_the_gap_bounces() {
    let Some(r) = run(0).await else { return };
    assert_eq!(r.d.count_log(event("hold.start")), 0);
    for a in [&r.src, &r.user] {
        assert!(a.bounced > 0 && a.after > 0, "{a:?}");
    }
}

//! Several connections for one domain (`on_conflict = "balance"`,
//! docs/behaviour.md#balancing): three component instances of one domain,
//! raw XEP-0114 clients over TCP to the real router binary, slixmpp
//! `ComponentXMPP` instances, and the router in front of a real Prosody and a
//! real ejabberd with one upstream link for the domain.
//!
//! What is checked: every bare JID's stanzas on exactly one instance, in
//! order; an instance that leaves moves only its bare JIDs, and what the
//! router had not written to its socket goes, in order, to the others (the
//! leaver reads the rest: together exactly what was sent); `iq` results go
//! back to the instance that asked; `max_instances`; reload to and from
//! `balance`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::comp::{Comp, CompRx, Got};
use test_support::daemon::{component, up_line, Daemon};
use test_support::ejabberd::{self, Ejabberd, EjabberdOptions};
use test_support::events::event;
use test_support::inspect::{attr, element_name};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

const A: &str = "a.example";
const B: &str = "b.example";
const T: Duration = Duration::from_secs(20);
/// Bare JIDs and stanzas per JID of a round.
const JIDS: usize = 300;
const PER_JID: usize = 10;

/// A's component and B's, balanced, with queues large enough to hold a
/// burst the test makes one instance stop reading.
fn config(b_extra: &str) -> String {
    format!(
        "log_level = \"info\"\nmax_queue_stanzas = 100000\nmax_queue_bytes = 134217728\n{}{}",
        component(A, "sa", ""),
        component(B, "sb", b_extra)
    )
}

fn balanced() -> String {
    config("on_conflict = \"balance\"")
}

/// One message stanza: `from` is bare JID `j` at `from` (with a resource),
/// its id names (j, k); `pad` bytes of body make it large.
fn msg_between(from: &str, to: &str, j: usize, k: usize, pad: usize) -> String {
    format!(
        "<message from='u{j}@{from}/r{k}' to='x@{to}' id='m{j}-{k}' type='chat'><body>{}</body></message>",
        "p".repeat(pad)
    )
}

/// (j, k) of a message [`msg`] made.
fn jk(s: &str) -> Option<(usize, usize)> {
    let id = attr(s, "id")?;
    let (j, k) = id.strip_prefix('m')?.split_once('-')?;
    Some((j.parse().ok()?, k.parse().ok()?))
}

/// What one instance received: stanzas in order, read by a task that can
/// be paused (the instance stops reading) and reads until the router closes.
struct Instance {
    got: Arc<Mutex<Vec<String>>>,
    pause: watch::Sender<bool>,
    closed: Arc<Mutex<bool>>,
    wr: Option<OwnedWriteHalf>,
    task: tokio::task::JoinHandle<()>,
}

impl Instance {
    async fn login(d: &Daemon) -> Instance {
        Instance::login_as(d, B, "sb").await
    }

    async fn login_as(d: &Daemon, domain: &str, secret: &str) -> Instance {
        let c = Comp::login(d.addr(), domain, secret).await;
        Instance::from_comp(c)
    }

    fn from_comp(c: Comp) -> Instance {
        let (rx, wr) = c.into_split();
        let got = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(false));
        let (pause, paused) = watch::channel(false);
        let task = tokio::spawn(read_all(rx, got.clone(), closed.clone(), paused));
        Instance {
            got,
            pause,
            closed,
            wr: Some(wr),
            task,
        }
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    fn messages(&self) -> Vec<(usize, usize)> {
        self.got().iter().filter_map(|s| jk(s)).collect()
    }

    fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap()
    }

    async fn send(&mut self, s: &str) {
        let wr = self.wr.as_mut().expect("write half");
        wr.write_all(s.as_bytes()).await.expect("send");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_all(
    mut rx: CompRx,
    got: Arc<Mutex<Vec<String>>>,
    closed: Arc<Mutex<bool>>,
    mut paused: watch::Receiver<bool>,
) {
    loop {
        while *paused.borrow() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = rx.recv_timeout(Duration::from_secs(3600)) => match r {
                Got::Stanza(s) => got.lock().unwrap().push(s),
                Got::Timeout => {}
                Got::End => {}
                Got::Closed => break,
                Got::Malformed(e) => panic!("the router sent XML that is not well-formed: {e}"),
            },
            _ = paused.changed() => {}
        }
    }
    *closed.lock().unwrap() = true;
}

/// Wait until `cond` holds (polling), or panic with `what`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out waiting: {what}");
        }
        sleep(Duration::from_millis(20)).await;
    }
}

fn total(insts: &[Instance]) -> usize {
    insts.iter().map(|i| i.messages().len()).sum()
}

/// A round: `PER_JID` stanzas for each of `JIDS` bare JIDs, interleaved,
/// with stanza numbers from `k0`; one write.
fn round(k0: usize, pad: usize, jids: impl Fn(usize) -> bool) -> (String, usize) {
    round_between(A, B, k0, pad, jids)
}

fn round_between(
    from: &str,
    to: &str,
    k0: usize,
    pad: usize,
    jids: impl Fn(usize) -> bool,
) -> (String, usize) {
    let mut s = String::new();
    let mut n = 0;
    for k in k0..k0 + PER_JID {
        for j in (0..JIDS).filter(|&j| jids(j)) {
            s.push_str(&msg_between(from, to, j, k, pad));
            n += 1;
        }
    }
    (s, n)
}

/// Which instance received each bare JID's stanzas numbered `ks`; panics if
/// a JID is on more than one, or a JID's stanzas are missing or out of order.
fn owners(insts: &[Instance], ks: std::ops::Range<usize>) -> BTreeMap<usize, usize> {
    let mut owner = BTreeMap::new();
    for (i, inst) in insts.iter().enumerate() {
        let mut last: BTreeMap<usize, usize> = BTreeMap::new();
        for (j, k) in inst.messages().into_iter().filter(|(_, k)| ks.contains(k)) {
            if let Some(o) = owner.insert(j, i) {
                assert_eq!(o, i, "bare JID u{j}@{A} on instances {o} and {i}");
            }
            if let Some(prev) = last.insert(j, k) {
                assert!(prev < k, "u{j}: {k} after {prev} on instance {i}");
            }
        }
    }
    owner
}

async fn three(d: &Daemon) -> Vec<Instance> {
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(Instance::login(d).await);
    }
    v
}

/// 3,000 stanzas from 300 bare JIDs (sent by another component): every bare
/// JID on exactly one instance, in order; the three share the load.
#[tokio::test]
async fn every_bare_jid_on_exactly_one_instance() {
    let d = Daemon::start(&balanced());
    let mut a = Comp::login(d.addr(), A, "sa").await;
    let insts = three(&d).await;
    let (burst, n) = round(0, 0, |_| true);
    assert_eq!(n, JIDS * PER_JID);
    a.send(&burst).await;
    until("3,000 stanzas delivered", || total(&insts) == n).await;
    let owner = owners(&insts, 0..PER_JID);
    assert_eq!(owner.len(), JIDS);
    for (i, inst) in insts.iter().enumerate() {
        let jids = owner.values().filter(|&&o| o == i).count();
        assert_eq!(inst.messages().len(), jids * PER_JID);
        // 100 expected; rendezvous hashing spreads evenly.
        assert!((50..=150).contains(&jids), "instance {i} owns {jids} JIDs");
    }
    // Once more: the same owners (affinity holds while the set is unchanged).
    let (burst, n2) = round(PER_JID, 0, |_| true);
    a.send(&burst).await;
    until("the second round delivered", || total(&insts) == n + n2).await;
    assert_eq!(owners(&insts, PER_JID..2 * PER_JID), owner);
}

#[derive(Clone, Copy, PartialEq)]
enum Leave {
    /// The instance closes its sending side and goes on reading: it reads
    /// exactly what the router wrote to its socket.
    HalfClose,
    /// The instance's socket is dropped with unread data (a reset).
    Reset,
}

/// Instance 1 stops reading; a burst for its bare JIDs fills its socket and
/// its queue in the router; then it leaves.
async fn leaving(how: Leave) {
    let d = Daemon::start(&balanced());
    let mut a = Comp::login(d.addr(), A, "sa").await;
    let mut insts = three(&d).await;
    let (burst, n1) = round(0, 0, |_| true);
    a.send(&burst).await;
    until("the first round delivered", || total(&insts) == n1).await;
    let owner = owners(&insts, 0..PER_JID);
    let mine = |j: usize| owner[&j] == 1;

    // 16 KiB stanzas: far more than the socket buffers hold.
    let _ = insts[1].pause.send(true);
    sleep(Duration::from_millis(100)).await;
    let (burst, n2) = round(PER_JID, 16 << 10, mine);
    a.send(&burst).await;
    // A's stanzas are read and queued (A is never held back by B's queue).
    sleep(Duration::from_millis(500)).await;
    // With a half-close, more stanzas for the leaver's JIDs arrive while it
    // leaves: none may overtake its queue.
    let mut nc = 0;
    match how {
        Leave::HalfClose => {
            let mut wr = insts[1].wr.take().unwrap();
            wr.shutdown().await.unwrap();
            let (more, n) = round(2 * PER_JID, 0, mine);
            a.send(&more).await;
            nc = n;
            let _ = insts[1].pause.send(false);
            until("the leaver's socket closed", || insts[1].is_closed()).await;
        }
        Leave::Reset => {
            insts[1].task.abort();
            insts[1].wr.take();
            sleep(Duration::from_millis(100)).await;
        }
    }
    d.expect_log(event("balance.handover"), T);
    let after_first = |insts: &[Instance], i: usize| -> usize {
        let m = insts[i].messages();
        m.iter().filter(|(_, k)| *k >= PER_JID).count()
    };
    let moved = |insts: &[Instance]| after_first(insts, 0) + after_first(insts, 2);
    if how == Leave::HalfClose {
        // What the leaver read and what the others got: exactly what was sent.
        until("everything delivered", || {
            after_first(&insts, 1) + moved(&insts) >= n2 + nc
        })
        .await;
    }
    sleep(Duration::from_millis(300)).await;
    let moved_now = moved(&insts);
    eprintln!(
        "{n2} stanzas of 16 KiB, then {nc} small ones, for the leaver's JIDs: it read {}, {moved_now} went to the others",
        after_first(&insts, 1)
    );
    assert!(moved_now > 0, "nothing was re-routed");
    check_burst(&insts, &owner, how, n2);
    if how == Leave::HalfClose {
        check_no_overtaking(&insts, n2 + nc);
    }

    // A round for every JID: the others keep theirs, the leaver's JIDs are
    // now on the instance that took over its queue for them.
    let (burst, n4) = round(3 * PER_JID, 0, |_| true);
    let before = total(&insts);
    a.send(&burst).await;
    until("the last round delivered", || total(&insts) == before + n4).await;
    let after = owners(&insts, 3 * PER_JID..4 * PER_JID);
    for (j, &o) in &owner {
        if o != 1 {
            assert_eq!(after[j], o, "u{j} moved although its instance stayed");
        } else {
            assert_ne!(after[j], 1);
        }
    }
}

/// After a half-close: every stanza after the first round arrived exactly
/// once; on each instance each JID's stanzas are in order; and for each JID
/// everything the leaver read came before everything the others got.
fn check_no_overtaking(insts: &[Instance], sent: usize) {
    let mut seen = BTreeSet::new();
    let mut first_elsewhere: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, inst) in insts.iter().enumerate() {
        let mut last: BTreeMap<usize, usize> = BTreeMap::new();
        for (j, k) in inst.messages().into_iter().filter(|(_, k)| *k >= PER_JID) {
            assert!(seen.insert((j, k)), "u{j} #{k} delivered twice");
            if let Some(prev) = last.insert(j, k) {
                assert!(prev < k, "u{j}: #{k} after #{prev} on instance {i}");
            }
            if i != 1 {
                first_elsewhere.entry(j).or_insert(k);
            }
        }
    }
    assert_eq!(seen.len(), sent, "lost: {} of {sent}", sent - seen.len());
    for (j, k) in insts[1]
        .messages()
        .into_iter()
        .filter(|(_, k)| *k >= PER_JID)
    {
        if let Some(&f) = first_elsewhere.get(&j) {
            assert!(
                k < f,
                "u{j} #{k} read by the leaver after #{f} went elsewhere"
            );
        }
    }
}

/// The burst: each of the leaver's JIDs got a prefix on the leaver (what
/// was written to its socket) and the rest, in order and without a gap, on
/// exactly one other instance; nothing twice. With a reset, the prefix is
/// unknown: the others' part must still be a gap-free suffix.
fn check_burst(insts: &[Instance], owner: &BTreeMap<usize, usize>, how: Leave, n2: usize) {
    let mut seen: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut rest: BTreeMap<usize, (usize, Vec<usize>)> = BTreeMap::new();
    let burst = PER_JID..2 * PER_JID;
    for (i, inst) in insts.iter().enumerate() {
        for (j, k) in inst
            .messages()
            .into_iter()
            .filter(|(_, k)| burst.contains(k))
        {
            assert_eq!(owner[&j], 1, "u{j} is not the leaver's, yet in the burst");
            assert!(seen.insert((j, k)), "u{j} #{k} delivered twice");
            if i != 1 {
                let e = rest.entry(j).or_insert((i, Vec::new()));
                assert_eq!(e.0, i, "u{j}'s re-routed stanzas on two instances");
                e.1.push(k);
            }
        }
    }
    for (j, (_, ks)) in &rest {
        let want: Vec<usize> = (ks[0]..2 * PER_JID).collect();
        assert_eq!(ks, &want, "u{j}: re-routed part not in order or with a gap");
    }
    if how == Leave::HalfClose {
        assert_eq!(seen.len(), n2, "lost: {} of {n2}", n2 - seen.len());
        // Nothing the leaver read came after what the others got.
        for (j, k) in insts[1]
            .messages()
            .into_iter()
            .filter(|(_, k)| burst.contains(k))
        {
            if let Some((_, ks)) = rest.get(&j) {
                assert!(
                    k < ks[0],
                    "u{j} #{k} read by the leaver after the hand-over"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_leaving_instance_hands_its_queue_over_in_order() {
    leaving(Leave::HalfClose).await;
}

#[tokio::test]
async fn a_killed_instance_loses_nothing_it_was_not_written() {
    leaving(Leave::Reset).await;
}

/// Each instance sends `iq` gets to another component: each result comes
/// back to the instance that asked (without the tracking, the affinity rule
/// would send them all to the owner of A's bare JID).
#[tokio::test]
async fn iq_results_go_back_to_the_requesting_instance() {
    let d = Daemon::start(&balanced());
    let mut a = Comp::login(d.addr(), A, "sa").await;
    let mut insts = three(&d).await;
    const N: usize = 20;
    for (i, inst) in insts.iter_mut().enumerate() {
        let mut s = String::new();
        for n in 0..N {
            s.push_str(&format!("<iq type='get' id='q{i}-{n}' from='{B}' to='{A}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
        }
        inst.send(&s).await;
    }
    for _ in 0..3 * N {
        let q = a
            .expect_stanza(|s| element_name(s) == "iq", T, "an iq get at A")
            .await;
        let id = attr(&q, "id").unwrap();
        a.send(&format!(
            "<iq type='result' id='{id}' from='{A}' to='{B}'/>"
        ))
        .await;
    }
    until("every result delivered", || {
        insts.iter().map(|i| i.got().len()).sum::<usize>() == 3 * N
    })
    .await;
    for (i, inst) in insts.iter().enumerate() {
        let ids: BTreeSet<String> = inst.got().iter().filter_map(|s| attr(s, "id")).collect();
        let want: BTreeSet<String> = (0..N).map(|n| format!("q{i}-{n}")).collect();
        assert_eq!(ids, want, "instance {i}");
    }
}

/// The set holds `max_instances`; the next connection gets `conflict`; once
/// one has left, a new one joins.
#[tokio::test]
async fn max_instances_refuses_with_conflict() {
    let d = Daemon::start(&config("on_conflict = \"balance\"\nmax_instances = 2"));
    let one = Comp::login(d.addr(), B, "sb").await;
    let _two = Comp::login(d.addr(), B, "sb").await;
    let mut three = Comp::connect(d.addr()).await;
    three.open_ok(B).await;
    three.send_handshake("sb").await;
    let (cond, text) = three.stream_error().await;
    assert_eq!(cond, "conflict");
    assert!(text.unwrap_or_default().contains("max_instances"));
    drop(one);
    d.expect_log(event("session.ended"), T);
    let _three = Comp::login(d.addr(), B, "sb").await;
}

/// Reload to `balance`: a new connection joins the one there; away from it
/// (`replace`): the set goes on sharing, and a new connection replaces every
/// member; (`reject`): refused while any remains.
#[tokio::test]
async fn reload_to_and_from_balance() {
    let d = Daemon::start(&config(""));
    let mut a = Comp::login(d.addr(), A, "sa").await;
    let mut insts = vec![Instance::login(&d).await];
    d.reload(&balanced());
    insts.push(Instance::login(&d).await);
    let shared = |insts: &[Instance], a: usize, k0: usize| {
        let o = owners(insts, k0..k0 + PER_JID);
        assert_eq!(o.len(), JIDS);
        let on = |i| o.values().filter(|&&x| x == i).count();
        assert!(on(0) > 0 && on(1) > 0, "not shared: {} / {}", on(0), on(1));
        a
    };
    let (burst, n) = round(0, 0, |_| true);
    a.send(&burst).await;
    until("shared round delivered", || total(&insts) == n).await;
    shared(&insts, 0, 0);

    d.reload(&config(""));
    let (burst, n2) = round(PER_JID, 0, |_| true);
    a.send(&burst).await;
    until("the set still shares", || total(&insts) == n + n2).await;
    shared(&insts, 0, PER_JID);
    let newcomer = Comp::login(d.addr(), B, "sb").await;
    until("every member replaced", || {
        insts.iter().all(Instance::is_closed)
    })
    .await;
    for inst in &insts {
        assert!(
            inst.got().iter().any(|s| s.contains("<conflict")),
            "a member was not sent conflict"
        );
    }
    let mut insts = vec![Instance::from_comp(newcomer)];
    d.reload(&balanced());
    insts.push(Instance::login(&d).await);
    d.reload(&config("on_conflict = \"reject\""));
    let mut refused = Comp::connect(d.addr()).await;
    refused.open_ok(B).await;
    refused.send_handshake("sb").await;
    assert_eq!(refused.stream_error().await.0, "conflict");
    let (burst, n3) = round(0, 0, |_| true);
    a.send(&burst).await;
    until("the kept set shares", || total(&insts) == n3).await;
    shared(&insts, 0, 0);
}

const COMP: &str = "comp.localhost";
const SRC: &str = "src.localhost";

/// The router in front of a server whose component port is `upstream`,
/// three instances of COMP balanced on it; a component attached to the
/// server itself as SRC sends 3,000 stanzas from 300 bare JIDs to COMP:
/// each bare JID on exactly one instance, one upstream link.
async fn spread_through(upstream: std::net::SocketAddr, server: &str) -> (Daemon, Vec<Instance>) {
    let body = format!(
        "log_level = \"info\"\n[upstream]\naddress = \"{upstream}\"\n{}",
        component(COMP, "sc", "on_conflict = \"balance\"")
    );
    let d = Daemon::start(&body);
    let mut insts = Vec::new();
    for _ in 0..3 {
        insts.push(Instance::login_as(&d, COMP, "sc").await);
    }
    d.expect_log(up_line(COMP), T);
    let mut src = Comp::login(upstream, SRC, "ss").await;
    let (burst, n) = round_between(SRC, COMP, 0, 0, |_| true);
    src.send(&burst).await;
    until(&format!("3,000 stanzas through {server}"), || {
        total(&insts) == n
    })
    .await;
    let owner = owners(&insts, 0..PER_JID);
    assert_eq!(owner.len(), JIDS);
    for i in 0..3 {
        let jids = owner.values().filter(|&&o| o == i).count();
        assert!((50..=150).contains(&jids), "instance {i} owns {jids} JIDs");
    }
    (d, insts)
}

/// c2s users (`users`, logged in) each send 5 messages to COMP: each user's
/// bare JID on exactly one instance.
async fn users_each_on_one_instance(insts: &[Instance], users: &mut [test_support::c2s::C2s]) {
    for (u, c) in users.iter_mut().enumerate() {
        for k in 0..5 {
            c.send(&format!(
                "<message to='x@{COMP}' id='c{u}-{k}' type='chat'><body>{k}</body></message>"
            ))
            .await;
        }
    }
    let from_users = |insts: &[Instance]| -> Vec<(usize, String)> {
        let mut v = Vec::new();
        for (i, inst) in insts.iter().enumerate() {
            for s in inst.got() {
                if attr(&s, "id").is_some_and(|id| id.starts_with('c')) {
                    let from = attr(&s, "from").unwrap_or_default();
                    v.push((i, from.split('/').next().unwrap_or("").to_string()));
                }
            }
        }
        v
    };
    until("the users' messages", || {
        from_users(insts).len() == users.len() * 5
    })
    .await;
    let mut on: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, bare) in from_users(insts) {
        on.entry(bare).or_default().insert(i);
    }
    assert_eq!(on.len(), users.len(), "{on:?}");
    for (bare, insts) in &on {
        assert_eq!(insts.len(), 1, "{bare} on instances {insts:?}");
    }
}

/// Each instance asks the server (disco#info): each result reaches its
/// asker, and no other instance.
async fn disco_to_each(insts: &mut [Instance]) {
    for (i, inst) in insts.iter_mut().enumerate() {
        inst.send(&format!("<iq type='get' id='d{i}' from='{COMP}' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    }
    for (i, inst) in insts.iter().enumerate() {
        let id = format!("d{i}");
        until(&format!("instance {i}'s disco result"), || {
            inst.got().iter().any(|s| {
                attr(s, "id").as_deref() == Some(&id)
                    && attr(s, "type").as_deref() == Some("result")
            })
        })
        .await;
    }
    for (i, inst) in insts.iter().enumerate() {
        for other in (0..3).filter(|&o| o != i) {
            let id = format!("d{other}");
            assert!(!inst
                .got()
                .iter()
                .any(|s| attr(s, "id").as_deref() == Some(&id)));
        }
    }
}

/// The same through a real Prosody: three instances of comp.localhost on
/// the router, ONE upstream link for the domain; 3,000 stanzas from 300
/// bare JIDs (a component attached to Prosody itself sends them) and
/// messages from c2s users arrive with each bare JID on exactly one
/// instance; an instance's `iq` to the server gets its result.
#[tokio::test]
async fn through_prosody_with_one_upstream_link() {
    use test_support::c2s::C2s;
    use test_support::prosody::{self, Prosody, ProsodyOptions};
    if !prosody::require() {
        return;
    }
    const USERS: usize = 6;
    let mut opts = ProsodyOptions::new("localhost")
        .component(COMP, "sc")
        .component(SRC, "ss");
    for u in 0..USERS {
        opts = opts.user(&format!("user{u}"), "pw");
    }
    let prosody = Prosody::start(&opts).unwrap_or_else(|e| panic!("Prosody failed to start: {e}"));
    let (d, mut insts) = spread_through(prosody.component_addr(), "Prosody").await;
    let mut users = Vec::new();
    for u in 0..USERS {
        let c = C2s::connect(
            prosody.c2s_addr().port(),
            &format!("user{u}"),
            "localhost",
            "pw",
        )
        .await
        .expect("c2s login");
        users.push(c);
    }
    users_each_on_one_instance(&insts, &mut users).await;
    disco_to_each(&mut insts).await;
    // One link for the domain all along.
    assert_eq!(d.count_log(up_line(COMP)), 1);
    for c in users {
        c.close().await;
    }
}

/// Messages a slixmpp instance received: (j, k) of each [`msg_between`].
async fn slix_messages(s: &mut test_support::slix::Slix, got: &mut Vec<(usize, usize)>) {
    use test_support::slix::{ev, field};
    while let Some(e) = s.next(Duration::from_millis(50)).await {
        if ev(&e) == "message" {
            if let Some(x) = field(&e, "id").and_then(|id| jk(&format!("<m id='{id}'/>"))) {
                got.push(x);
            }
        }
    }
}

/// The messages instances `which` of `slixes` receive, until `n` came
/// (within a minute).
async fn slix_collect(
    slixes: &mut [test_support::slix::Slix],
    which: &[usize],
    n: usize,
) -> Vec<Vec<(usize, usize)>> {
    let mut got = vec![Vec::new(); slixes.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.iter().map(Vec::len).sum::<usize>() < n {
        let sum: usize = got.iter().map(Vec::len).sum();
        assert!(Instant::now() < deadline, "slixmpp got {sum} of {n}");
        for &i in which {
            slix_messages(&mut slixes[i], &mut got[i]).await;
        }
    }
    got
}

/// Each bare JID's (j) messages on one slixmpp instance, in order.
fn slix_owners(got: &[Vec<(usize, usize)>], ks: std::ops::Range<usize>) -> BTreeMap<usize, usize> {
    let mut owner = BTreeMap::new();
    for (i, msgs) in got.iter().enumerate() {
        let mut last: BTreeMap<usize, usize> = BTreeMap::new();
        for &(j, k) in msgs.iter().filter(|(_, k)| ks.contains(k)) {
            if let Some(o) = owner.insert(j, i) {
                assert_eq!(o, i, "u{j} on slixmpp instances {o} and {i}");
            }
            if let Some(p) = last.insert(j, k) {
                assert!(p < k, "u{j}: {k} after {p} on slixmpp instance {i}");
            }
        }
    }
    owner
}

/// Three slixmpp `ComponentXMPP` instances of one balanced domain: 3,000
/// stanzas from 300 bare JIDs, each bare JID on one instance; each
/// instance's `iq` to another component answered to it; one instance
/// SIGKILLed: only its JIDs move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_instances_share_a_domain() {
    use serde_json::json;
    use test_support::slix::{self, ev, field, Slix, SlixOptions};
    if !slix::require() {
        return;
    }
    let d = Daemon::start(&balanced());
    let mut a = Comp::login(d.addr(), A, "sa").await;
    let mut slixes = Vec::new();
    for _ in 0..3 {
        slixes.push(Slix::start(&SlixOptions::new(d.addr(), B, "sb")).await);
    }
    let (burst, n) = round(0, 0, |_| true);
    a.send(&burst).await;
    let got = slix_collect(&mut slixes, &[0, 1, 2], n).await;
    let owner = slix_owners(&got, 0..PER_JID);
    assert_eq!(owner.len(), JIDS);
    for i in 0..3 {
        let jids = owner.values().filter(|&&o| o == i).count();
        assert!(
            (50..=150).contains(&jids),
            "slixmpp instance {i} owns {jids} JIDs"
        );
    }

    // iq: each instance pings A; A answers; each result reaches its asker.
    for (i, s) in slixes.iter_mut().enumerate() {
        s.command(
            json!({"cmd": "iq_get", "from": B, "to": A, "id": format!("p{i}"), "payload": "ping"}),
        );
    }
    for _ in 0..3 {
        let q = a
            .expect_stanza(|s| element_name(s) == "iq", T, "a ping at A")
            .await;
        let id = attr(&q, "id").unwrap();
        a.send(&format!(
            "<iq type='result' id='{id}' from='{A}' to='{B}'/>"
        ))
        .await;
    }
    for (i, s) in slixes.iter_mut().enumerate() {
        let id = format!("p{i}");
        let r = s
            .expect(
                |e| ev(e) == "iq_result" && field(e, "id") == Some(id.as_str()),
                T,
                "its ping's result",
            )
            .await;
        assert_eq!(field(&r, "type"), Some("result"), "{r}");
    }

    // SIGKILL instance 1: the others keep their JIDs, its JIDs move.
    slixes[1].kill();
    d.expect_log(event("session.ended"), T);
    let (burst, n2) = round(PER_JID, 0, |_| true);
    a.send(&burst).await;
    let after = slix_collect(&mut slixes, &[0, 2], n2).await;
    let moved = slix_owners(&after, PER_JID..2 * PER_JID);
    for (j, &o) in &owner {
        if o == 1 {
            assert_ne!(moved[j], 1);
        } else {
            assert_eq!(moved[j], o, "u{j} moved although its instance stayed");
        }
    }
}

/// A private ejabberd serving COMP (for the router's links) and SRC (a
/// component attached to ejabberd itself, the senders).
fn ejabberd_with_comp_and_src() -> Ejabberd {
    let opts = EjabberdOptions::new("localhost")
        .component(COMP, "sc")
        .component(SRC, "ss");
    Ejabberd::start(&opts).unwrap_or_else(|err| panic!("ejabberd failed to start: {err}"))
}

/// The same in front of a real ejabberd 23.01 (`global_routes: false`):
/// three instances of comp.localhost on the router, one link; 3,000
/// stanzas from 300 bare JIDs (a component attached to ejabberd sends them)
/// and anonymous c2s users' messages, each bare JID on one instance; each
/// instance's `iq` to the server answered to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_ejabberd_with_one_upstream_link() {
    use test_support::c2s::C2s;
    if !ejabberd::require() {
        return;
    }
    let e = ejabberd_with_comp_and_src();
    let (d, mut insts) = spread_through(e.service_addr(), "ejabberd").await;
    let mut users = Vec::new();
    for u in 0..10 {
        let c = C2s::connect(e.c2s_port, &format!("user{u}"), "localhost", "any")
            .await
            .unwrap_or_else(|err| panic!("c2s login: {err}\n{}", e.log_tail()));
        users.push(c);
    }
    users_each_on_one_instance(&insts, &mut users).await;
    disco_to_each(&mut insts).await;
    assert_eq!(d.count_log(up_line(COMP)), 1);
}

/// Several routers, one domain: two router processes in front of one
/// ejabberd, each holding one link for COMP (each with one instance behind
/// it). ejabberd accepts both links and spreads COMP's stanzas between them;
/// when one router stops, the domain stays online through the other, and
/// nothing sent after the stop is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_share_a_domain_in_front_of_ejabberd() {
    if !ejabberd::require() {
        return;
    }
    let e = ejabberd_with_comp_and_src();
    let body = format!(
        "log_level = \"info\"\n[upstream]\naddress = \"{}\"\n{}",
        e.service_addr(),
        component(COMP, "sc", "")
    );
    let (mut d1, d2) = (Daemon::start(&body), Daemon::start(&body));
    let insts = vec![
        Instance::login_as(&d1, COMP, "sc").await,
        Instance::login_as(&d2, COMP, "sc").await,
    ];
    d1.expect_log(up_line(COMP), T);
    d2.expect_log(up_line(COMP), T);
    let mut src = Comp::login(e.service_addr(), SRC, "ss").await;
    let (burst, n) = round_between(SRC, COMP, 0, 0, |_| true);
    src.send(&burst).await;
    until("3,000 stanzas through two routers", || total(&insts) == n).await;
    let (one, two) = (insts[0].messages().len(), insts[1].messages().len());
    eprintln!("ejabberd spread {n} stanzas over two routers: {one} / {two}");
    assert!(
        one > 0 && two > 0,
        "ejabberd used one link only: {one} / {two}"
    );

    // Router 1 stops: its link closes with </stream:stream>, ejabberd keeps
    // routing COMP over router 2's link; the domain never goes offline.
    let st = d1.stop().expect("router 1 did not exit");
    assert!(st.success(), "{st:?}");
    let (burst, n2) = round_between(SRC, COMP, PER_JID, 0, |_| true);
    src.send(&burst).await;
    until("everything after the stop through router 2", || {
        insts[1]
            .messages()
            .iter()
            .filter(|(_, k)| *k >= PER_JID)
            .count()
            == n2
    })
    .await;
    // No bounce came back to the sender.
    src.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(d2.count_log(up_line(COMP)), 1, "{}", d2.logs());
}

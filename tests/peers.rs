//! The router with real peers other than Prosody: a slixmpp `ComponentXMPP`
//! (`crates/test-support/src/slix.rs`) talking to a raw XEP-0114 component
//! through the router, and the gateway in front of a real ejabberd 23.01
//! (`crates/test-support/src/ejabberd.rs`) with a c2s user on ejabberd. No mocks.
//!
//! Every test first calls `slix::require()` (and `ejabberd::require()`): skips
//! without them, fails under CI=true. The router, ejabberd and the slixmpp
//! process are stopped by Drop guards, also when a test fails.

use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::c2s::C2s;
use test_support::comp::Comp;
use test_support::daemon::{down_line, router_config, up_line, Daemon};
use test_support::ejabberd::{self, Ejabberd, EjabberdOptions};
use test_support::events::event;
use test_support::inspect::{attr, element_name, is_body, with_id};
use test_support::slix::{self, ev, field, is_message, Slix, SlixOptions};
use test_support::stanza;

const T: Duration = Duration::from_secs(10);
/// The upstream link is back this soon after ejabberd is (backoff 1 s doubling;
/// ejabberd starts in about 2 s).
const RECOVERY: Duration = Duration::from_secs(20);
const HOST: &str = "localhost";
const SLIX: &str = "slix.localhost";
const SLIX_SECRET: &str = "slix-secret";
const RAW: &str = "raw.localhost";
const RAW_SECRET: &str = "raw-secret";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// Router with the slixmpp domain and the raw component's domain.
fn two_components(extra: &str) -> Daemon {
    Daemon::start(&router_config(
        None,
        &[(SLIX, SLIX_SECRET, extra), (RAW, RAW_SECRET, extra)],
    ))
}

/// `field` of an event, which must be there.
fn must<'a>(e: &'a Value, key: &str) -> &'a str {
    field(e, key).unwrap_or_else(|| panic!("no {key:?} in {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_component_exchanges_messages_and_iqs_with_a_raw_component() {
    if !slix::require() {
        return;
    }
    let d = two_components("");
    let mut s = Slix::start(&SlixOptions::new(d.addr(), SLIX, SLIX_SECRET)).await;
    let mut raw = Comp::login(d.addr(), RAW, RAW_SECRET).await;

    // slixmpp -> raw.
    s.send_message(
        Some(&format!("bot@{SLIX}")),
        &format!("u@{RAW}/r"),
        "to raw",
        "m1",
    );
    let got = raw
        .expect_stanza(|x| is_body(x, "to raw"), T, "raw got nothing from slixmpp")
        .await;
    assert_eq!(
        attr(&got, "from").as_deref(),
        Some("bot@slix.localhost"),
        "{got}"
    );
    assert_eq!(
        attr(&got, "to").as_deref(),
        Some("u@raw.localhost/r"),
        "{got}"
    );
    assert_eq!(attr(&got, "id").as_deref(), Some("m1"), "{got}");

    // raw -> slixmpp.
    raw.send(&stanza::message(
        &format!("u@{RAW}/r"),
        &format!("bot@{SLIX}"),
        "m2",
        "to slix",
    ))
    .await;
    let e = s
        .expect(is_message("to slix"), T, "slixmpp got no message")
        .await;
    assert_eq!(
        (must(&e, "from"), must(&e, "to")),
        ("u@raw.localhost/r", "bot@slix.localhost")
    );
    assert_eq!((must(&e, "id"), must(&e, "type")), ("m2", "chat"));

    // Presence both ways.
    s.send_presence(&format!("u@{RAW}"), None);
    let p = raw
        .expect_stanza(|x| element_name(x) == "presence", T, "raw got no presence")
        .await;
    assert_eq!(attr(&p, "from").as_deref(), Some(SLIX), "{p}");
    raw.send(&format!(
        "<presence from='u@{RAW}/r' to='bot@{SLIX}' type='unavailable'/>"
    ))
    .await;
    let e = s
        .expect(|e| ev(e) == "presence", T, "slixmpp got no presence")
        .await;
    assert_eq!(
        (must(&e, "from"), must(&e, "type")),
        ("u@raw.localhost/r", "unavailable")
    );

    // iq get raw -> slixmpp: slixmpp's disco#info result comes back.
    raw.send(&format!(
        "<iq type='get' id='d1' from='u@{RAW}/r' to='{SLIX}'><query xmlns='{DISCO_INFO}'/></iq>"
    ))
    .await;
    let res = raw
        .expect_stanza(with_id("iq", "d1"), T, "no answer to disco#info")
        .await;
    assert_eq!(attr(&res, "type").as_deref(), Some("result"), "{res}");
    assert_eq!(attr(&res, "from").as_deref(), Some(SLIX), "{res}");
    assert!(res.contains("slixmpp harness"), "{res}");
    let e = s
        .expect(|e| ev(e) == "iq", T, "slixmpp reported no iq")
        .await;
    assert_eq!((must(&e, "id"), must(&e, "type")), ("d1", "get"));

    // iq get slixmpp -> raw: raw answers, slixmpp gets the result.
    let answer = async {
        let req = raw
            .expect_stanza(|x| element_name(x) == "iq", T, "raw got no iq from slixmpp")
            .await;
        assert_eq!(attr(&req, "type").as_deref(), Some("get"), "{req}");
        let id = attr(&req, "id").unwrap_or_default();
        raw.send(&format!(
            "<iq type='result' id='{id}' from='{RAW}' to='{SLIX}'/>"
        ))
        .await;
    };
    let (res, ()) = tokio::join!(s.iq_get(RAW, "ping", T), answer);
    assert_eq!(must(&res, "type"), "result", "{res}");

    // iq get slixmpp -> a domain nobody serves: the router's bounce, as
    // docs/behaviour.md ("Routing") says, reaches slixmpp as an iq error.
    let res = s.iq_get("nobody.example", "ping", T).await;
    assert_eq!(must(&res, "type"), "error", "{res}");
    assert_eq!(must(&res, "condition"), "remote-server-not-found", "{res}");

    s.quit().await;
    d.expect_log(event("session.ended"), T);
}

/// Run slixmpp again until its handshake is accepted: `conflict` (the router
/// still holding the killed connection's session, under `on_conflict =
/// "reject"`) is retried; anything else fails. Returns the attempts made.
async fn restart_until_online(s: &mut Slix, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    for attempt in 1.. {
        s.restart().expect("run slixmpp again");
        let left = deadline.saturating_duration_since(Instant::now());
        match s.online(left).await {
            Ok(()) => return attempt,
            Err(Some(e)) if field(&e, "condition") == Some("conflict") && !left.is_zero() => {
                eprintln!("attempt {attempt}: conflict, the old session is still there");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("slixmpp not back online: {e:?}\n{}", s.diagnostics()),
        }
    }
    unreachable!()
}

/// A message from the raw component must reach slixmpp.
async fn raw_to_slix(raw: &mut Comp, s: &mut Slix, body: &str) {
    raw.send(&stanza::message(&format!("u@{RAW}"), SLIX, body, body))
        .await;
    s.expect(
        is_message(body),
        T,
        &format!("slixmpp did not get {body:?}"),
    )
    .await;
}

/// Once the router has ended the killed component's session, its domain
/// bounces, as docs/behaviour.md ("Routing") says.
async fn away_bounces(d: &Daemon, raw: &mut Comp) {
    d.expect_log_count(event("session.ended"), 1, T);
    raw.send(&stanza::message(
        &format!("u@{RAW}"),
        SLIX,
        "away",
        "anyone?",
    ))
    .await;
    let err = raw
        .expect_stanza(
            with_id("message", "away"),
            T,
            "no bounce while slixmpp is away",
        )
        .await;
    assert_eq!(attr(&err, "type").as_deref(), Some("error"), "{err}");
    assert!(err.contains("<remote-server-timeout"), "{err}");
    assert!(err.contains("Component unavailable"), "{err}");
}

/// The raw component's disco#info to slixmpp gets slixmpp's result.
async fn disco_answered(raw: &mut Comp, id: &str) {
    raw.send(&format!(
        "<iq type='get' id='{id}' from='u@{RAW}' to='{SLIX}'><query xmlns='{DISCO_INFO}'/></iq>"
    ))
    .await;
    let res = raw
        .expect_stanza(with_id("iq", id), T, "no disco#info result from slixmpp")
        .await;
    assert_eq!(attr(&res, "type").as_deref(), Some("result"), "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_slixmpp_component_reconnects_and_gets_traffic_again() {
    if !slix::require() {
        return;
    }
    // "reject": a new connection is refused while the killed one's session is
    // still attached. A SIGKILLed process's socket is closed by the kernel (FIN
    // on loopback), so the router lets the domain go at once; rounds 2 and 3
    // restart without waiting for that, and retry on `conflict` if it comes.
    let d = two_components("on_conflict = \"reject\"");
    let mut s = Slix::start(&SlixOptions::new(d.addr(), SLIX, SLIX_SECRET)).await;
    let mut raw = Comp::login(d.addr(), RAW, RAW_SECRET).await;
    raw_to_slix(&mut raw, &mut s, "before the kill").await;

    for round in 1..=3 {
        s.kill();
        if round == 1 {
            away_bounces(&d, &mut raw).await;
        }
        let t0 = Instant::now();
        let attempts = restart_until_online(&mut s, Duration::from_secs(20)).await;
        eprintln!(
            "round {round}: online again after {:?}, {attempts} attempt(s)",
            t0.elapsed()
        );
        raw_to_slix(&mut raw, &mut s, &format!("after kill {round}")).await;
        disco_answered(&mut raw, &format!("disco-{round}")).await;
    }
    // One session per run of slixmpp, and no other.
    assert_eq!(
        d.count_log(event("session.authenticated")),
        5,
        "{}",
        d.logs()
    );
}

const ECHO: &str = "echo.localhost";
const ECHO_SECRET: &str = "echo-secret";

fn start_ejabberd(opts: &EjabberdOptions) -> Ejabberd {
    let e = Ejabberd::start(opts).unwrap_or_else(|e| panic!("ejabberd failed to start: {e}"));
    eprintln!("ejabberd ready after {:?}", e.last_start_duration);
    e
}

/// A user on ejabberd (anonymous login: any name, any password).
async fn login_c2s(e: &Ejabberd, user: &str) -> C2s {
    C2s::connect(e.c2s_port, user, HOST, "any")
        .await
        .unwrap_or_else(|err| panic!("c2s login of {user}: {err}\n{}", e.log_tail()))
}

/// What a failing gateway test prints: the router's log and ejabberd's.
fn logs(d: &Daemon, e: &Ejabberd) -> String {
    format!("--- router ---\n{}{}", d.logs(), e.log_tail())
}

/// The user writes to a JID of the echo domain; slixmpp sees the message with
/// the user's full JID, and its echo comes back to the user from that JID.
async fn echo_round_trip(d: &Daemon, e: &Ejabberd, user: &mut C2s, s: &mut Slix, body: &str) {
    let to = format!("bot@{}", s.options().domain);
    user.send(&format!(
        "<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>"
    ))
    .await;
    let Some(got) = s.wait_for(is_message(body), T).await else {
        panic!(
            "slixmpp did not get {body:?}\n{}\n{}",
            s.diagnostics(),
            logs(d, e)
        );
    };
    assert_eq!(
        (must(&got, "from"), must(&got, "to")),
        (user.jid.as_str(), to.as_str())
    );
    let Some(echo) = user.recv_until(|x| is_body(x, body), T).await else {
        panic!("no echo of {body:?}\n{}", logs(d, e));
    };
    assert_eq!(attr(&echo, "from").as_deref(), Some(to.as_str()), "{echo}");
    assert_eq!(attr(&echo, "type").as_deref(), Some("chat"), "{echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_in_front_of_ejabberd_echoes_and_survives_an_ejabberd_restart() {
    if !slix::require() || !ejabberd::require() {
        return;
    }
    let mut e = start_ejabberd(&EjabberdOptions::new(HOST).component(ECHO, ECHO_SECRET));
    let d = Daemon::start(&router_config(
        Some(e.service_addr()),
        &[(ECHO, ECHO_SECRET, "")],
    ));
    let mut s = Slix::start(&SlixOptions::new(d.addr(), ECHO, ECHO_SECRET).echo()).await;
    d.expect_log_count(up_line(ECHO), 1, T);
    let mut alice = login_c2s(&e, "alice").await;
    echo_round_trip(&d, &e, &mut alice, &mut s, "first").await;

    // ejabberd goes away: the link goes down, the component stays connected to
    // the router, and what it sends upstream bounces.
    e.stop();
    d.expect_log_count(down_line(ECHO), 1, T);
    s.send_message(
        Some(&format!("bot@{ECHO}")),
        &alice.jid,
        "while down",
        "down-1",
    );
    let bounce = s
        .expect(
            |e| ev(e) == "message" && field(e, "id") == Some("down-1"),
            T,
            "no bounce",
        )
        .await;
    assert_eq!(must(&bounce, "type"), "error", "{bounce}");
    assert_eq!(
        must(&bounce, "condition"),
        "remote-server-timeout",
        "{bounce}"
    );

    // Back: the link reconnects by itself (backoff), users log in again, and
    // the exchange works without the component reconnecting.
    e.restart()
        .unwrap_or_else(|err| panic!("ejabberd restart: {err}"));
    let t = d.expect_log_count(up_line(ECHO), 2, RECOVERY);
    eprintln!("link up again {t:?} after ejabberd served again");
    let mut alice = login_c2s(&e, "alice").await;
    echo_round_trip(&d, &e, &mut alice, &mut s, "after the restart").await;
    let dropped = s
        .wait_for(|e| ev(e) == "disconnected", Duration::ZERO)
        .await;
    assert!(
        dropped.is_none(),
        "slixmpp lost its connection: {dropped:?}"
    );
    assert_eq!(
        d.count_log(event("session.authenticated")),
        1,
        "{}",
        d.logs()
    );

    // Dropping the harness stops ejabberd (by PID).
    let pid = e.pid().expect("ejabberd runs");
    drop(e);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "ejabberd {pid} still there after drop"
    );
}

const ECHO2: &str = "echo2.localhost";
const ECHO2_SECRET: &str = "echo2-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_domains_behind_one_router_each_get_their_own_traffic_from_ejabberd() {
    // `global_routes: false` (the README's advice): ejabberd sends a domain's
    // stanzas over that domain's link only.
    two_domains_each_get_their_own_traffic(false).await;
}

/// ejabberd's default `global_routes: true` sends every domain's stanzas over
/// every component link; the router routes what arrives on a link by its
/// `to`, so each component still gets exactly its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_global_routes_each_domain_still_gets_only_its_own_traffic() {
    two_domains_each_get_their_own_traffic(true).await;
}

async fn two_domains_each_get_their_own_traffic(global_routes: bool) {
    if !slix::require() || !ejabberd::require() {
        return;
    }
    let e = start_ejabberd(
        &EjabberdOptions::new(HOST)
            .component(ECHO, ECHO_SECRET)
            .component(ECHO2, ECHO2_SECRET)
            .global_routes(global_routes),
    );
    let d = Daemon::start(&router_config(
        Some(e.service_addr()),
        &[(ECHO, ECHO_SECRET, ""), (ECHO2, ECHO2_SECRET, "")],
    ));
    let mut one = Slix::start(&SlixOptions::new(d.addr(), ECHO, ECHO_SECRET).echo()).await;
    let mut two = Slix::start(&SlixOptions::new(d.addr(), ECHO2, ECHO2_SECRET).echo()).await;
    d.expect_log_count(up_line(ECHO), 1, T);
    d.expect_log_count(up_line(ECHO2), 1, T);
    let mut alice = login_c2s(&e, "alice").await;
    for i in 0..20 {
        echo_round_trip(&d, &e, &mut alice, &mut one, &format!("one-{i}")).await;
        echo_round_trip(&d, &e, &mut alice, &mut two, &format!("two-{i}")).await;
    }
    // Neither saw the other's messages, and no session was ended.
    for i in 0..20 {
        assert!(one
            .wait_for(|e| is_message(&format!("two-{i}"))(e), Duration::ZERO)
            .await
            .is_none());
        assert!(two
            .wait_for(|e| is_message(&format!("one-{i}"))(e), Duration::ZERO)
            .await
            .is_none());
    }
    assert_eq!(d.count_log(event("session.ended")), 0, "{}", d.logs());
}

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
    d.expect_log("component session ended", T);
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
    d.expect_log_count("component session ended", 1, T);
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
    assert_eq!(d.count_log("component authenticated"), 5, "{}", d.logs());
}

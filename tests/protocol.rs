//! Black-box protocol tests: docs/behaviour.md (XEP-0114 server side), row by row.
//!
//! Every test starts its own daemon on a free loopback port and talks to it with
//! the raw client `test_support::comp`, which frames everything the router sends
//! with rxml, a parser independent of the router's framer (so every reply is
//! also checked for well-formedness). Every wait is bounded. Every negative test ends with
//! [`assert_healthy`]: after bad input the daemon still routes for a fresh pair.
//!
//! Layout follows docs/behaviour.md: stream opening, authentication, stanzas from an
//! authenticated component, "anywhere", then ordering and fidelity.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use test_support::comp::{pass, round_trip, Comp, Got, T};
use test_support::daemon::Daemon;
use test_support::el::{parse_el, El};
use test_support::events::event;
use test_support::inspect::attr;
use test_support::ns::{
    COMPONENT as NS_COMPONENT, PROSODY_COMPONENT as NS_PROSODY_COMPONENT,
    STANZA_ERRORS as NS_STANZA_ERRORS, STREAMS as NS_STREAMS, STREAM_ERRORS as NS_STREAM_ERRORS,
};
use test_support::stanza::{handshake_token, header};

/// How long "no reply" is waited for.
const SILENCE: Duration = Duration::from_millis(300);

/// `a`, `b`: the usual pair. `c`: attached but never connected (offline).
/// `r`: `on_conflict = "reject"`. `off`: configured but disabled.
/// `h1`, `h2`: reserved for [`assert_healthy`].
const COMPONENTS: &str = r#"
[components."a.example"]
secret = "sa"

[components."b.example"]
secret = "sb"

[components."c.example"]
secret = "sc"

[components."r.example"]
secret = "sr"
on_conflict = "reject"

[components."off.example"]
secret = "so"
enabled = false

[components."h1.example"]
secret = "h1"

[components."h2.example"]
secret = "h2"
"#;

fn start() -> Daemon {
    Daemon::start(COMPONENTS)
}

/// Start with top-level settings (they must precede the tables).
fn start_with(top: &str) -> Daemon {
    Daemon::start(&format!("{top}\n{COMPONENTS}"))
}

// ---------------------------------------------------------------------------
// Helpers.

/// A connection that has sent `bytes` and nothing else.
async fn raw(d: &Daemon, bytes: &str) -> Comp {
    let mut c = Comp::connect(d.addr()).await;
    c.send(bytes).await;
    c
}

/// A connection that got our header for `domain` (not yet authenticated).
async fn opened(d: &Daemon, domain: &str) -> Comp {
    let mut c = Comp::connect(d.addr()).await;
    c.open_ok(domain).await;
    c
}

async fn login(d: &Daemon, domain: &str, secret: &str) -> Comp {
    Comp::login(d.addr(), domain, secret).await
}

/// The condition of the stream error `c` gets ([`Comp::stream_error`]).
async fn cond(c: &mut Comp) -> String {
    c.stream_error().await.0
}

/// After bad input the daemon still routes: two fresh components log in and
/// exchange a stanza each way.
async fn assert_healthy(d: &Daemon) {
    let mut x = login(d, "h1.example", "h1").await;
    let mut y = login(d, "h2.example", "h2").await;
    pass(
        &mut x,
        &mut y,
        "<message from='p@h1.example' to='q@h2.example' id='health-1'><body>ok?</body></message>",
    )
    .await;
    pass(
        &mut y,
        &mut x,
        "<iq from='q@h2.example' to='p@h1.example' id='health-2' type='result'/>",
    )
    .await;
}

/// Check `got` is the stanza error docs/behaviour.md#routing prescribes in reply to `orig`.
fn assert_bounce(
    got: &str,
    orig: &str,
    etype: &str,
    condition: &str,
    text: Option<&str>,
    not_connected: bool,
) {
    let o = parse_el(orig);
    let b = parse_el(got);
    assert_eq!(
        (b.ns.as_str(), b.name.as_str()),
        (NS_COMPONENT, o.name.as_str()),
        "{got}"
    );
    assert_eq!(b.attr("from"), o.attr("to"), "bounce from: {got}");
    assert_eq!(b.attr("to"), o.attr("from"), "bounce to: {got}");
    assert_eq!(b.attr("id"), o.attr("id"), "bounce id: {got}");
    assert_eq!(b.attr("type"), Some("error"), "bounce type: {got}");
    let e = b
        .child(NS_COMPONENT, "error")
        .unwrap_or_else(|| panic!("no <error/>: {got}"));
    assert_eq!(e.attr("type"), Some(etype), "error type: {got}");
    let conds: Vec<&El> = e
        .children
        .iter()
        .filter(|c| c.ns == NS_STANZA_ERRORS && c.name != "text")
        .collect();
    assert_eq!(conds.len(), 1, "one defined condition expected: {got}");
    assert_eq!(conds[0].name, condition, "{got}");
    assert_eq!(
        e.child(NS_STANZA_ERRORS, "text").map(|t| t.text.as_str()),
        text,
        "error text: {got}"
    );
    assert_eq!(
        e.child(NS_PROSODY_COMPONENT, "not-connected").is_some(),
        not_connected,
        "<not-connected/>: {got}"
    );
}

/// Send `orig` from `c` and check the bounce.
async fn expect_bounce(
    c: &mut Comp,
    orig: &str,
    etype: &str,
    condition: &str,
    text: Option<&str>,
    not_connected: bool,
) {
    c.send(orig).await;
    let got = match c.recv().await {
        Got::Stanza(s) => s,
        other => panic!("expected a bounce for {orig}, got {other:?}"),
    };
    assert_bounce(&got, orig, etype, condition, text, not_connected);
}

/// The router's stream header on `c`, as an element (its start tag, closed).
fn header_el(c: &Comp) -> El {
    let raw = c.header.as_deref().expect("no stream header");
    let tag = &raw[..=raw.find('>').expect("unterminated header")];
    parse_el(&format!("{tag}</stream:stream>"))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

// ===========================================================================
// Stream opening.

#[tokio::test]
async fn header_wrong_root_element_is_invalid_namespace() {
    let d = start();
    for h in [
        // wrong local name in the streams namespace
        format!(
            "<stream:features xmlns:stream='{NS_STREAMS}' xmlns='{NS_COMPONENT}' to='a.example'>"
        ),
        // right local name, wrong namespace (no prefix: the component namespace)
        format!("<stream xmlns='{NS_COMPONENT}' to='a.example'>"),
        // `stream` prefix bound to another namespace
        format!(
            "<stream:stream xmlns:stream='urn:not-streams' xmlns='{NS_COMPONENT}' to='a.example'>"
        ),
        // a stanza as first element
        format!("<message xmlns='{NS_COMPONENT}' to='a.example'/>"),
        // a handshake as first element
        format!("<?xml version='1.0'?><handshake xmlns='{NS_COMPONENT}'>00</handshake>"),
    ] {
        let mut c = raw(&d, &h).await;
        assert_eq!(cond(&mut c).await, "invalid-namespace", "{h}");
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn header_wrong_default_namespace_is_invalid_namespace() {
    let d = start();
    for h in [
        format!("<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' to='a.example'>"),
        format!("<stream:stream xmlns='jabber:server' xmlns:stream='{NS_STREAMS}' to='a.example'>"),
        format!("<stream:stream xmlns:stream='{NS_STREAMS}' to='a.example'>"),
    ] {
        let mut c = raw(&d, &h).await;
        assert_eq!(cond(&mut c).await, "invalid-namespace", "{h}");
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn header_without_to_is_improper_addressing() {
    let d = start();
    let mut c = raw(
        &d,
        &format!("<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' xmlns:stream='{NS_STREAMS}'>"),
    )
    .await;
    assert_eq!(cond(&mut c).await, "improper-addressing");
    assert_healthy(&d).await;
}

#[tokio::test]
async fn header_to_not_a_bare_valid_domain_is_improper_addressing() {
    let d = start();
    for to in [
        "u@a.example",
        "a.example/res",
        "u@a.example/res",
        "",
        "a..example",
        "a example",
        "-a.example",
        "a.example:5347",
        "[::1",
    ] {
        let mut c = raw(&d, &header(to)).await;
        assert_eq!(cond(&mut c).await, "improper-addressing", "to={to:?}");
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn header_to_unknown_domain_is_host_unknown() {
    let d = start();
    // unknown; disabled in the config; a subdomain of a served one
    for to in ["unknown.example", "off.example", "sub.a.example"] {
        let mut c = raw(&d, &header(to)).await;
        assert_eq!(cond(&mut c).await, "host-unknown", "to={to}");
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn header_reply_shape() {
    let d = start();
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let c = opened(&d, "a.example").await;
        let h = header_el(&c);
        assert_eq!((h.ns.as_str(), h.name.as_str()), (NS_STREAMS, "stream"));
        assert_eq!(h.attr("from"), Some("a.example"));
        let id = c.stream_id.clone().expect("no id");
        assert!(
            id.len() >= 32 && is_hex(&id),
            "id {id:?}: need >= 128 bits as hex"
        );
        assert_eq!(h.attr("id"), Some(id.as_str()));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 3, "stream ids repeat: {ids:?}");

    // The domain compares case-insensitively; a character reference in `to`
    // is decoded before it is checked; the reply (whatever escaping it
    // needs) is well-formed, which the client's strict framer checks.
    for to in ["A.Example", "&#x61;.example"] {
        let mut c = opened(&d, to).await;
        let from = header_el(&c).attr("from").map(str::to_string);
        assert!(
            from.as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case("a.example")),
            "to={to}: from={from:?}"
        );
        match c.handshake("sa").await {
            Got::Stanza(s) if s == "<handshake/>" => {}
            other => panic!("to={to}: handshake refused: {other:?}"),
        }
    }
    assert_healthy(&d).await;
}

// ===========================================================================
// Authentication.

#[tokio::test]
async fn handshake_lowercase_uppercase_and_padded_digest_accepted() {
    let d = start();
    let mut b = login(&d, "b.example", "sb").await;
    // The digest is the element's text: how the XML spells it does not matter.
    for (i, form) in ["lower", "upper", "padded", "cdata", "charref"]
        .iter()
        .enumerate()
    {
        let mut a = opened(&d, "a.example").await;
        let tok = handshake_token(a.stream_id.as_deref().unwrap(), "sa");
        let hs = match *form {
            "lower" => format!("<handshake>{tok}</handshake>"),
            "upper" => format!("<handshake>{}</handshake>", tok.to_ascii_uppercase()),
            "padded" => format!("<handshake> \n\t{tok}\r\n </handshake>"),
            "cdata" => format!(
                "<handshake>{}<![CDATA[{}]]></handshake>",
                &tok[..10],
                &tok[10..]
            ),
            _ => format!(
                "<handshake>&#x{:x};{}&#32;</handshake>",
                tok.as_bytes()[0],
                &tok[1..]
            ),
        };
        a.send(&hs).await;
        match a.recv().await {
            Got::Stanza(s) if s == "<handshake/>" => {}
            other => panic!("{form}: handshake refused: {other:?}"),
        }
        round_trip(&mut a, "a.example", &mut b, "b.example", &format!("hs{i}")).await;
    }
}

#[tokio::test]
async fn handshake_bad_digest_is_not_authorized() {
    let d = start();
    let mut b = login(&d, "b.example", "sb").await;
    // (what, handshake text from the stream id)
    type Case = (&'static str, fn(&str) -> String);
    let cases: Vec<Case> = vec![
        ("wrong secret", |id| handshake_token(id, "wrong")),
        ("39 hex digits", |id| {
            handshake_token(id, "sa")[..39].to_string()
        }),
        ("41 hex digits", |id| {
            format!("{}0", handshake_token(id, "sa"))
        }),
        ("non-hex", |id| {
            format!("{}g", &handshake_token(id, "sa")[..39])
        }),
        ("empty", |_| String::new()),
        ("inner space", |id| {
            let t = handshake_token(id, "sa");
            format!("{} {}", &t[..20], &t[20..])
        }),
        ("child element", |id| {
            format!("{}<x/>", handshake_token(id, "sa"))
        }),
        ("child element only", |id| {
            format!("<x>{}</x>", handshake_token(id, "sa"))
        }),
        ("non-XML whitespace around", |id| {
            format!("\u{a0}{}\u{a0}", handshake_token(id, "sa"))
        }),
        ("secret+id order swapped", |id| handshake_token("sa", id)),
    ];
    for (what, token) in cases {
        let mut a = opened(&d, "a.example").await;
        let t = token(a.stream_id.as_deref().unwrap());
        a.send(&format!("<handshake>{t}</handshake>")).await;
        assert_eq!(cond(&mut a).await, "not-authorized", "{what}");
    }
    // A self-closed handshake.
    let mut a = opened(&d, "a.example").await;
    a.send("<handshake/>").await;
    assert_eq!(cond(&mut a).await, "not-authorized", "<handshake/>");
    // The live session of b was not disturbed.
    let mut a = login(&d, "a.example", "sa").await;
    round_trip(
        &mut a,
        "a.example",
        &mut b,
        "b.example",
        "after-bad-handshakes",
    )
    .await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn element_before_handshake_is_not_authorized() {
    let d = start();
    for el in [
        "<message from='x@a.example' to='y@b.example' id='1'><body>early</body></message>",
        "<iq from='a.example' to='b.example' id='2' type='get'><query xmlns='jabber:iq:version'/></iq>",
        "<presence from='a.example' to='b.example'/>",
        "<foo/>",
        // a handshake in another namespace is not a handshake
        "<handshake xmlns='jabber:client'>00</handshake>",
    ] {
        let mut a = opened(&d, "a.example").await;
        a.send(el).await;
        assert_eq!(cond(&mut a).await, "not-authorized", "{el}");
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn no_handshake_in_time_is_connection_timeout() {
    let d = start_with("handshake_timeout = 1");
    // Header sent, no handshake.
    let t0 = Instant::now();
    let mut a = opened(&d, "a.example").await;
    assert_eq!(cond(&mut a).await, "connection-timeout");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "timeout after {took:?}"
    );
    // Nothing sent at all: the error comes with a header first.
    let mut c = Comp::connect(d.addr()).await;
    assert_eq!(cond(&mut c).await, "connection-timeout");
    // Half a header, then silence.
    let mut c = raw(&d, "<?xml version='1.0'?><stream:stream xmlns='jabber:comp").await;
    assert_eq!(cond(&mut c).await, "connection-timeout");
    // Keepalives do not extend the deadline (it runs from accept).
    let t0 = Instant::now();
    let mut a = opened(&d, "a.example").await;
    let r = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            a.send(" ").await;
            match a.recv_timeout(Duration::from_millis(200)).await {
                Got::Timeout => continue,
                Got::Stanza(s) => break s,
                other => panic!("expected a stream error, got {other:?}"),
            }
        }
    })
    .await
    .expect("keepalives kept the unauthenticated stream alive");
    assert!(r.contains("connection-timeout"), "{r}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    // A session that authenticated in time is not timed out later.
    let mut x = login(&d, "a.example", "sa").await;
    let mut y = login(&d, "b.example", "sb").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    round_trip(&mut x, "a.example", &mut y, "b.example", "after-timeout").await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn conflict_replace_kicks_the_old_session() {
    let d = start();
    let mut b = login(&d, "b.example", "sb").await;
    let mut old = login(&d, "a.example", "sa").await;
    round_trip(&mut old, "a.example", &mut b, "b.example", "old").await;
    let mut new = login(&d, "a.example", "sa").await;
    let (c, text) = old.stream_error().await;
    assert_eq!(c, "conflict");
    assert_eq!(text.as_deref(), Some("Replaced by a new connection"));
    // The new session receives traffic and can send.
    round_trip(&mut new, "a.example", &mut b, "b.example", "new").await;
    // Nothing went to the old one and the new one got nothing extra.
    new.expect_silence(SILENCE).await;
    assert_healthy(&d).await;
}

/// Stanzas queued for the replaced session and not yet written to it are
/// bounced to their senders, never dropped: what the old session can still
/// read plus what was bounced is everything sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_replace_bounces_what_the_old_session_could_not_write() {
    const N: usize = 300;
    let d = start_with("max_queue_bytes = 67108864");
    let mut b = login(&d, "b.example", "sb").await;
    // The old session does not read: what its socket buffers cannot hold
    // waits in its queue.
    let mut old = login(&d, "a.example", "sa").await;
    let body = "q".repeat(64 * 1024);
    for i in 0..N {
        b.send(&format!(
            "<message from='b.example' to='x@a.example' id='q{i}' type='chat'><body>{body}</body></message>"
        ))
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut new = login(&d, "a.example", "sa").await;
    let mut bounced = BTreeSet::new();
    loop {
        match b.recv_timeout(Duration::from_secs(4)).await {
            Got::Stanza(s) => {
                let e = parse_el(&s);
                assert_eq!(e.attr("type"), Some("error"), "{s}");
                assert_eq!(e.attr("from"), Some("x@a.example"), "{s}");
                let err = e.child(NS_COMPONENT, "error").expect("no <error/>");
                assert_eq!(err.attr("type"), Some("wait"), "{s}");
                assert!(
                    err.child(NS_STANZA_ERRORS, "remote-server-timeout")
                        .is_some(),
                    "{s}"
                );
                bounced.insert(e.attr("id").unwrap_or_default().to_string());
            }
            Got::Timeout => break,
            other => panic!("b got {other:?}"),
        }
    }
    let mut read = 0;
    while let Got::Stanza(s) = old.recv_timeout(Duration::from_secs(2)).await {
        if let Some(id) = attr(&s, "id") {
            assert!(!bounced.contains(&id), "{id} delivered and bounced");
            read += 1;
        }
    }
    eprintln!(
        "replaced with {N} stanzas on their way: {read} written to the old session, {} bounced",
        bounced.len()
    );
    assert!(!bounced.is_empty(), "nothing bounced");
    assert_eq!(read + bounced.len(), N, "stanzas lost");
    round_trip(&mut new, "a.example", &mut b, "b.example", "new").await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn conflict_reject_refuses_the_new_connection() {
    let d = start();
    let mut b = login(&d, "b.example", "sb").await;
    let mut old = login(&d, "r.example", "sr").await;
    let mut new = opened(&d, "r.example").await;
    let tok = handshake_token(new.stream_id.as_deref().unwrap(), "sr");
    new.send(&format!("<handshake>{tok}</handshake>")).await;
    // Only the conflict: no `<handshake/>` (which would mean "accepted") before it.
    let (c, _) = new.stream_error().await;
    assert_eq!(c, "conflict");
    // The old session still works both ways.
    pass(
        &mut b,
        &mut old,
        "<message from='y@b.example' to='z@r.example' id='r1'><body>still you?</body></message>",
    )
    .await;
    pass(
        &mut old,
        &mut b,
        "<message from='z@r.example' to='y@b.example' id='r2'><body>yes</body></message>",
    )
    .await;
    old.expect_silence(SILENCE).await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn conflict_check_only_after_a_valid_handshake() {
    let d = start();
    let mut b = login(&d, "b.example", "sb").await;
    for (domain, secret) in [("a.example", "sa"), ("r.example", "sr")] {
        let mut live = login(&d, domain, secret).await;
        // A second connection with the wrong secret: not-authorized, no conflict.
        let mut intruder = opened(&d, domain).await;
        match intruder.handshake("wrong").await {
            Got::Stanza(s) if s.starts_with("<stream:error>") => {
                assert!(s.contains("<not-authorized"), "{s}")
            }
            other => panic!("{domain}: expected not-authorized, got {other:?}"),
        }
        // A second connection that only opens the stream.
        let idle = opened(&d, domain).await;
        // The live session was not disturbed and still receives traffic.
        live.expect_silence(SILENCE).await;
        let m = format!(
            "<message from='y@b.example' to='z@{domain}' id='live'><body>hi</body></message>"
        );
        pass(&mut b, &mut live, &m).await;
        let m = format!("<message from='z@{domain}' to='y@b.example' id='live2'/>");
        pass(&mut live, &mut b, &m).await;
        drop(idle);
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn handshake_after_authentication_is_ignored() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    let tok = handshake_token(a.stream_id.as_deref().unwrap(), "sa");
    a.send(&format!("<handshake>{tok}</handshake>")).await;
    a.send("<handshake>not even hex</handshake>").await;
    a.send("<handshake/>").await;
    a.expect_silence(SILENCE).await;
    round_trip(
        &mut a,
        "a.example",
        &mut b,
        "b.example",
        "after-second-handshake",
    )
    .await;
    assert_healthy(&d).await;
}

// ===========================================================================
// Stanzas from an authenticated component.

#[tokio::test]
async fn unknown_top_level_element_is_unsupported_stanza_type() {
    let d = start();
    for el in [
        "<foo/>",
        "<foo from='x@a.example' to='y@b.example'>x</foo>",
        // the name is checked before the namespace
        "<foo xmlns='urn:x'/>",
        "<stream:features/>",
        "<body>hi</body>",
    ] {
        let mut a = login(&d, "a.example", "sa").await;
        a.send(el).await;
        assert_eq!(cond(&mut a).await, "unsupported-stanza-type", "{el}");
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn stanza_in_foreign_namespace_is_invalid_namespace() {
    let d = start();
    for el in [
        "<message xmlns='urn:x' from='x@a.example' to='y@b.example'><body>x</body></message>",
        "<iq xmlns='jabber:server' from='a.example' to='b.example' type='get' id='1'/>",
        "<p:presence xmlns:p='urn:x' from='a.example' to='b.example'/>",
        "<stream:message from='a.example' to='b.example'/>",
    ] {
        let mut a = login(&d, "a.example", "sa").await;
        a.send(el).await;
        assert_eq!(cond(&mut a).await, "invalid-namespace", "{el}");
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn stanza_over_max_stanza_size_is_policy_violation() {
    let d = start_with("max_stanza_size = 10000");
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    // Exactly at the limit ("larger than" is refused): delivered.
    let head = "<message from='x@a.example' to='y@b.example' id='big'><body>";
    let tail = "</body></message>";
    let fits = format!(
        "{head}{}{tail}",
        "x".repeat(10_000 - head.len() - tail.len())
    );
    assert_eq!(fits.len(), 10_000);
    pass(&mut a, &mut b, &fits).await;
    // Followed by more in the same write.
    let next = "<message from='x@a.example' to='y@b.example' id='next'/>";
    a.send(&format!("{fits}{next}")).await;
    assert_eq!(b.stanza().await, fits);
    assert_eq!(b.stanza().await, next);
    // One byte over it: policy-violation, in one write and dribbled.
    for chunked in [false, true] {
        let mut a = login(&d, "a.example", "sa").await;
        let big = format!(
            "{head}{}{tail}",
            "y".repeat(10_001 - head.len() - tail.len())
        );
        assert_eq!(big.len(), 10_001);
        if chunked {
            for part in big.as_bytes().chunks(1000) {
                if a.send_bytes(part).await.is_err() {
                    break;
                }
            }
        } else {
            a.send(&big).await;
        }
        assert_eq!(cond(&mut a).await, "policy-violation", "chunked={chunked}");
    }
    // A huge attribute value and a huge stanza without an end.
    let mut a = login(&d, "a.example", "sa").await;
    a.send(&format!(
        "<message from='x@a.example' to='y@b.example' id='{}'/>",
        "i".repeat(20_000)
    ))
    .await;
    assert_eq!(cond(&mut a).await, "policy-violation");
    let mut a = login(&d, "a.example", "sa").await;
    a.send(&format!("{head}{}", "z".repeat(30_000))).await;
    assert_eq!(cond(&mut a).await, "policy-violation");
    b.expect_silence(SILENCE).await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn bad_from_is_invalid_from() {
    let d = start();
    for el in [
        // missing
        "<message to='y@b.example' id='1'><body>x</body></message>",
        // unparsable
        "<message from='x@y@a.example' to='y@b.example' id='2'/>",
        "<message from='' to='y@b.example' id='3'/>",
        "<presence from='a..example' to='y@b.example'/>",
        // another domain, a subdomain, a superdomain
        "<message from='x@b.example' to='y@b.example' id='4'/>",
        "<iq from='sub.a.example' to='b.example' id='5' type='get'/>",
        "<message from='x@example' to='y@b.example' id='6'/>",
    ] {
        let mut a = login(&d, "a.example", "sa").await;
        a.send(el).await;
        assert_eq!(cond(&mut a).await, "invalid-from", "{el}");
    }
    // `from` compares case-insensitively, with or without local/resource part.
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    for from in ["X@A.EXAMPLE/R", "a.example", "A.Example"] {
        let m = format!("<message from='{from}' to='y@b.example' id='ci'/>");
        pass(&mut a, &mut b, &m).await;
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn stanza_checks_run_in_spec_order() {
    let d = start_with("max_stanza_size = 10000");
    let pad = "p".repeat(20_000);
    for (el, want) in [
        // name before namespace
        ("<foo xmlns='urn:x' from='x@a.example' to='y@b.example'/>".to_string(), "unsupported-stanza-type"),
        // namespace before size (refused at the start tag)
        (format!("<message xmlns='urn:x' from='x@a.example' to='y@b.example'><body>{pad}</body></message>"), "invalid-namespace"),
        // size before `from`
        (format!("<message to='y@b.example'><body>{pad}</body></message>"), "policy-violation"),
        // `from` before `to`
        ("<message from='x@b.example'/>".to_string(), "invalid-from"),
        ("<message from='x@b.example' to='a@b@c'/>".to_string(), "invalid-from"),
    ] {
        let mut a = login(&d, "a.example", "sa").await;
        a.send(&el).await;
        assert_eq!(cond(&mut a).await, want, "{}", &el[..el.len().min(80)]);
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn missing_to_bounces_bad_request() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    for orig in [
        "<message from='x@a.example/r' id='m1' type='chat'><body>where to?</body></message>",
        "<iq from='a.example' id='i1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<presence from='x@a.example' id='p1'/>",
        // no id: the bounce has none either
        "<message from='x@a.example'/>",
    ] {
        expect_bounce(&mut a, orig, "modify", "bad-request", None, false).await;
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn unparsable_to_bounces_jid_malformed() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    for orig in [
        "<message from='x@a.example' to='a@b@c' id='j1'><body>x</body></message>",
        "<iq from='a.example' to='' id='j2' type='set'/>",
        "<presence from='x@a.example' to='y@b..example' id='j3'/>",
        "<message from='x@a.example' to='y@b.example/' id='j4'/>",
    ] {
        expect_bounce(&mut a, orig, "modify", "jid-malformed", None, false).await;
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn stanza_to_live_component_is_delivered() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    for m in [
        "<message from='x@a.example/r' to='y@b.example/s' id='d1' type='chat'><body>1</body></message>",
        "<presence from='x@a.example' to='y@b.example'/>",
        "<iq from='a.example' to='b.example' id='d2' type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        // domain only, case-insensitive domain
        "<message from='a.example' to='Y@B.Example' id='d3'/>",
        // error and result stanzas are delivered too
        "<iq from='a.example' to='b.example' id='d4' type='result'/>",
        "<message from='a.example' to='b.example' id='d5' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    ] {
        pass(&mut a, &mut b, m).await;
    }
    a.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn stanza_to_offline_component_bounces_remote_server_timeout() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    for orig in [
        "<message from='x@a.example/r' to='y@c.example' id='o1' type='chat'><body>anyone?</body></message>",
        "<iq from='a.example' to='c.example' id='o2' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<presence from='x@a.example' to='y@c.example' id='o3' type='subscribe'/>",
    ] {
        expect_bounce(
            &mut a,
            orig,
            "wait",
            "remote-server-timeout",
            Some("Component unavailable"),
            true,
        )
        .await;
    }
    // A component that was live and left is offline again.
    let mut b = login(&d, "b.example", "sb").await;
    round_trip(&mut a, "a.example", &mut b, "b.example", "before-leaving").await;
    b.send("</stream:stream>").await;
    b.expect_end_and_close("a clean close").await;
    expect_bounce(
        &mut a,
        "<message from='x@a.example' to='y@b.example' id='o4'/>",
        "wait",
        "remote-server-timeout",
        Some("Component unavailable"),
        true,
    )
    .await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn stanza_to_unknown_domain_without_upstream_bounces_not_found() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    for orig in [
        "<message from='x@a.example' to='y@nowhere.example' id='n1'><body>x</body></message>",
        "<iq from='a.example' to='nowhere.example' id='n2' type='set'/>",
        // disabled components are not served: unknown
        "<presence from='x@a.example' to='y@off.example' id='n3'/>",
    ] {
        expect_bounce(
            &mut a,
            orig,
            "cancel",
            "remote-server-not-found",
            None,
            false,
        )
        .await;
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn no_bounce_in_reply_to_error_or_result() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    for orig in [
        // offline, unknown, missing to, unparsable to
        "<message from='x@a.example' to='y@c.example' id='e1' type='error'/>",
        "<iq from='a.example' to='c.example' id='e2' type='result'/>",
        "<iq from='a.example' to='nowhere.example' id='e3' type='error'/>",
        "<presence from='a.example' to='nowhere.example' type='error'/>",
        "<iq from='a.example' id='e4' type='result'/>",
        "<message from='x@a.example' id='e5' type='error'/>",
        "<iq from='a.example' to='a@b@c' id='e6' type='result'/>",
    ] {
        a.send(orig).await;
        a.expect_silence(SILENCE).await;
    }
    // Still alive.
    round_trip(&mut a, "a.example", &mut b, "b.example", "after-silence").await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn bounce_escapes_addresses() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    // Resources may hold characters that need escaping; ids too.
    let orig = "<message from=\"x@a.example/r'&quot;&lt;&gt;&amp;\" to='y@c.example/&apos;' id='&lt;&amp;&quot;'><body/></message>";
    expect_bounce(
        &mut a,
        orig,
        "wait",
        "remote-server-timeout",
        Some("Component unavailable"),
        true,
    )
    .await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn full_destination_queue_bounces_resource_constraint() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    // b authenticates, then never reads again.
    let b = login(&d, "b.example", "sb").await;
    let filler = "f".repeat(9_000);
    let stanza = |i: usize| {
        format!("<message from='x@a.example' to='y@b.example' id='{i}' type='chat'><body>{filler}</body></message>")
    };
    const MAX_STANZAS: usize = 6_000; // ~54 MB: far beyond socket buffers plus the queue
    let started = Instant::now();
    let mut sent = 0;
    let mut first = None;
    while sent < MAX_STANZAS && started.elapsed() < Duration::from_secs(30) && first.is_none() {
        for _ in 0..16 {
            tokio::time::timeout(T, a.send(&stanza(sent)))
                .await
                .expect("the router stopped reading the sender");
            sent += 1;
        }
        match a.recv_timeout(Duration::from_millis(1)).await {
            Got::Timeout => {}
            Got::Stanza(s) => first = Some(s),
            other => panic!("sender got {other:?} after {sent} stanzas"),
        }
    }
    let first = first.unwrap_or_else(|| {
        panic!(
            "no bounce after {sent} stanzas of 9 KB in {:?}",
            started.elapsed()
        )
    });
    let id: usize = attr(&first, "id").unwrap().parse().unwrap();
    assert_bounce(
        &first,
        &stanza(id),
        "wait",
        "resource-constraint",
        None,
        false,
    );

    // The sender is not disconnected and others are not stalled.
    assert_healthy(&d).await;
    pass(
        &mut a,
        &mut login(&d, "c.example", "sc").await,
        "<message from='x@a.example' to='y@c.example' id='c'/>",
    )
    .await;

    // Collect the remaining bounces; then let b drain its queue: every stanza
    // was either delivered (in order) or bounced, never silently lost.
    let mut bounced = BTreeSet::from([id]);
    loop {
        match a.recv_timeout(SILENCE).await {
            Got::Stanza(s) => {
                let i: usize = attr(&s, "id").unwrap().parse().unwrap();
                assert_bounce(&s, &stanza(i), "wait", "resource-constraint", None, false);
                bounced.insert(i);
            }
            Got::Timeout => break,
            other => panic!("sender got {other:?}"),
        }
    }
    let mut b = b;
    let mut delivered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.len() + bounced.len() < sent && Instant::now() < deadline {
        match b.recv().await {
            Got::Stanza(s) => {
                let i: usize = attr(&s, "id").unwrap().parse().unwrap();
                assert_eq!(s, stanza(i));
                delivered.push(i);
            }
            other => panic!(
                "b got {other:?} after {} of {sent} ({} bounced)",
                delivered.len(),
                bounced.len()
            ),
        }
    }
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "out of order");
    let all: BTreeSet<usize> = delivered
        .iter()
        .copied()
        .chain(bounced.iter().copied())
        .collect();
    assert_eq!(all.len(), sent, "lost or duplicated stanzas");
    assert!(delivered.iter().all(|i| !bounced.contains(i)));
    // The slow reader, having caught up, works normally.
    round_trip(&mut a, "a.example", &mut b, "b.example", "after-drain").await;
}

// ===========================================================================
// Anywhere.

#[tokio::test]
async fn not_well_formed_xml() {
    let d = start();
    // Before any header: our header comes first.
    for bad in [
        "<<>>",
        "<stream:stream xmlns:stream='x' to='a.example' a>",
        "\u{0}",
    ] {
        let mut c = raw(&d, bad).await;
        assert_eq!(cond(&mut c).await, "not-well-formed", "{bad:?}");
    }
    // After the header, before the handshake.
    let mut a = opened(&d, "a.example").await;
    a.send("<handshake>abc</handshak>").await;
    assert_eq!(cond(&mut a).await, "not-well-formed");
    // After authentication.
    for bad in [
        "<message from='x@a.example' to='y@b.example'><body></message>",
        "<message from='x@a.example' to='y@b.example' id='1' id='2'/>",
        "<message from=x@a.example to='y@b.example'/>",
        "<message from='x@a.example' to='y@b.example'><body>&nbsp;</body></message>",
        "<message from='x@a.example' to='y@b.example'><undeclared:body/></message>",
        "<message from='x@a.example' to='y@b.example'><body>a < b</body></message>",
        "</message>",
    ] {
        let mut a = login(&d, "a.example", "sa").await;
        a.send(bad).await;
        let c = cond(&mut a).await;
        assert!(
            c == "not-well-formed" || (bad.contains("&nbsp;") && c == "restricted-xml"),
            "{bad}: {c}"
        );
    }
    // Character data that is not whitespace between stanzas.
    let mut a = login(&d, "a.example", "sa").await;
    a.send("<message from='x@a.example' to='y@c.example' type='error'/>text<message/>")
        .await;
    let c = cond(&mut a).await;
    assert!(c == "bad-format" || c == "not-well-formed", "text: {c}");
    // Invalid UTF-8.
    let mut a = login(&d, "a.example", "sa").await;
    a.send_bytes(b"<message from='x@a.example' to='y@b.example'><body>\xff\xfe</body></message>")
        .await
        .unwrap();
    assert_eq!(cond(&mut a).await, "not-well-formed");
    assert_healthy(&d).await;
}

#[tokio::test]
async fn restricted_xml() {
    let d = start();
    let restricted = |c: &str| c == "restricted-xml" || c == "not-well-formed";
    // DTD / entity declarations before the header.
    for bad in [
        format!(
            "<?xml version='1.0'?><!DOCTYPE stream:stream>{}",
            &header("a.example")[21..]
        ),
        format!("<!DOCTYPE x [<!ENTITY e 'v'>]>{}", header("a.example")),
    ] {
        let mut c = raw(&d, &bad).await;
        let got = cond(&mut c).await;
        assert!(restricted(&got), "{bad}: {got}");
    }
    // Processing instruction before the handshake, and after authentication
    // at top level and inside a stanza; an entity declaration and a DOCTYPE
    // inside the stream; a comment (RFC 6120 §11.1 lists it as restricted).
    let mut a = opened(&d, "a.example").await;
    a.send("<?foo bar?>").await;
    let got = cond(&mut a).await;
    assert!(restricted(&got), "PI before handshake: {got}");
    for bad in [
        "<?foo bar?>",
        "<message from='x@a.example' to='y@b.example'><?php echo 1; ?></message>",
        "<!ENTITY e 'v'>",
        "<!DOCTYPE x>",
        "<!-- a comment -->",
        "<message from='x@a.example' to='y@b.example'><!-- c --></message>",
    ] {
        let mut a = login(&d, "a.example", "sa").await;
        a.send(bad).await;
        let got = cond(&mut a).await;
        assert!(restricted(&got), "{bad}: {got}");
    }
    assert_healthy(&d).await;
}

#[tokio::test]
async fn whitespace_keepalives_are_ignored() {
    let d = start();
    let mut b = login(&d, "b.example", "sb").await;
    // Before the header (allowed by XML when there is no XML declaration).
    let mut c = raw(&d, &format!(" \n{}", &header("a.example")[21..])).await;
    match c.recv().await {
        Got::Stanza(h) if h.starts_with("HEADER") => {}
        other => panic!("whitespace before the header: {other:?}"),
    }
    // Between header and handshake, between stanzas, after stanzas.
    let mut a = Comp::connect(d.addr()).await;
    a.send(&header("a.example")).await;
    a.send(" ").await;
    a.send("\n").await;
    match a.recv().await {
        Got::Stanza(h) if h.starts_with("HEADER") => {}
        other => panic!("no header: {other:?}"),
    }
    a.send("\r\n\t ").await;
    let tok = handshake_token(a.stream_id.as_deref().unwrap(), "sa");
    a.send(&format!("<handshake>{tok}</handshake>\n")).await;
    match a.recv().await {
        Got::Stanza(s) if s == "<handshake/>" => {}
        other => panic!("handshake refused: {other:?}"),
    }
    for _ in 0..20 {
        a.send(" ").await;
    }
    a.send("\n\n").await;
    a.expect_silence(SILENCE).await;
    b.expect_silence(Duration::from_millis(1)).await;
    let m = "<message from='x@a.example' to='y@b.example' id='k1'/>";
    a.send(&format!("\n {m} \n")).await;
    assert_eq!(b.stanza().await, m);
    round_trip(&mut a, "a.example", &mut b, "b.example", "keepalive").await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn peer_stream_close_gets_ours_and_a_clean_close() {
    let d = start();
    // After authentication.
    let mut a = login(&d, "a.example", "sa").await;
    a.send("</stream:stream>").await;
    a.expect_end_and_close("a clean close").await;
    // Before the handshake.
    let mut a = opened(&d, "a.example").await;
    a.send("</stream:stream>").await;
    a.expect_end_and_close("a clean close").await;
    // With stanzas just before it: they are routed first.
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    let m = "<message from='x@a.example' to='y@b.example' id='last'/>";
    a.send(&format!("{m}</stream:stream>")).await;
    assert_eq!(b.stanza().await, m);
    a.expect_end_and_close("a clean close").await;
    // The domain is free again: a new session logs in without conflict.
    let mut a = login(&d, "a.example", "sa").await;
    round_trip(&mut a, "a.example", &mut b, "b.example", "after-close").await;
    assert_healthy(&d).await;
}

#[tokio::test]
async fn peer_stream_error_gets_our_stream_close() {
    let d = start();
    let err = format!(
        "<stream:error><undefined-condition xmlns='{NS_STREAM_ERRORS}'/><text xmlns='{NS_STREAM_ERRORS}'>bye</text></stream:error>"
    );
    // After authentication.
    let mut a = login(&d, "a.example", "sa").await;
    a.send(&err).await;
    a.expect_end_and_close("a clean close").await;
    // Before the handshake.
    let mut a = opened(&d, "a.example").await;
    a.send(&err).await;
    a.expect_end_and_close("a clean close").await;
    // A stream error followed by the peer's own close.
    let mut a = login(&d, "a.example", "sa").await;
    a.send(&format!("{err}</stream:stream>")).await;
    a.expect_end_and_close("a clean close").await;
    assert_healthy(&d).await;
}

// ===========================================================================
// Ordering and fidelity.

#[tokio::test]
async fn ten_thousand_stanzas_arrive_complete_and_in_order() {
    const N: usize = 10_000;
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    let stanza = |i: usize| {
        format!("<message from='x@a.example' to='y@b.example' id='{i}'><body>{i}</body></message>")
    };
    // The sender keeps at most WINDOW stanzas ahead of the receiver: far below
    // the router's per-destination queue (4096), so nothing may bounce. (An
    // unpaced burst from a fast writer to a slow reader legitimately overflows
    // that queue: see `full_destination_queue_bounces_resource_constraint`.)
    const WINDOW: usize = 1_000;
    let received = std::cell::Cell::new(0usize);
    let send = async {
        let mut batch = String::new();
        for i in 0..N {
            batch.push_str(&stanza(i));
            if batch.len() > 8_000 || i == N - 1 {
                a.send_bytes(batch.as_bytes()).await.expect("send");
                batch.clear();
                while i + 1 - received.get() > WINDOW {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    };
    let recv = async {
        for i in 0..N {
            match b.recv().await {
                Got::Stanza(s) => assert_eq!(s, stanza(i), "stanza {i}"),
                other => panic!("after {i} stanzas: {other:?}"),
            }
            received.set(i + 1);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(send, recv) })
        .await
        .expect("10,000 stanzas took over a minute");
    a.expect_silence(SILENCE).await;
    b.expect_silence(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn complex_stanza_arrives_byte_identical() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    let m = concat!(
        "<message xmlns:foo='urn:foo' to=\"y@b.example/r\" id='cx1'\n\tfrom='x@a.example/r' type=\"chat\" xml:lang='fr' >",
        "<body>é 漢字 🎉 &#x263A; &#9786; &amp; &lt; &gt; &quot; &apos; <![CDATA[<not-a-tag> & ]]]]><![CDATA[> ]]></body>",
        "<foo:bar foo:attr=\"v&apos;&quot;\" plain='1' ><foo:baz /><foo:baz  a = 'x' /></foo:bar>",
        "<payload xmlns=\"urn:example:payload\" a='1' b=\"2\">\n  <deep><deeper xml:lang='en'>text\r\nmore</deeper></deep>\n",
        "<other:x xmlns:other='urn:other'><other:y/></other:x></payload>",
        "<stream:ignored-here-but-well-formed xmlns:stream='urn:rebound'/>",
        "</message>"
    );
    pass(&mut a, &mut b, m).await;
    // The same, one byte per write (UTF-8 sequences and tokens split).
    for byte in m.as_bytes() {
        a.send_bytes(std::slice::from_ref(byte)).await.unwrap();
    }
    assert_eq!(b.stanza().await, m);
    // And back, as a (namespaced, empty) iq.
    let iq = "<iq type='result' id=\"q&amp;1\" from='y@b.example' to='x@a.example'><query xmlns='jabber:iq:version'><name>Ω</name></query></iq>";
    pass(&mut b, &mut a, iq).await;
}

#[tokio::test]
async fn jabber_client_stanzas_are_delivered_unchanged() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    for m in [
        "<message xmlns='jabber:client' from='x@a.example' to='y@b.example' id='jc1' type='chat'><body>hi</body></message>",
        "<presence xmlns=\"jabber:client\" from='x@a.example' to='y@b.example'/>",
        "<iq to='b.example' xmlns='jabber:client' from='a.example' id='jc2' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
    ] {
        pass(&mut a, &mut b, m).await;
    }
    a.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn large_stanza_under_the_default_limit_is_delivered_intact() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    let mut b = login(&d, "b.example", "sb").await;
    // ~400 KB (default max_stanza_size is 512 KiB), many children, mixed text.
    let mut m = String::from("<message from='x@a.example' to='y@b.example' id='large'>");
    let mut i = 0;
    while m.len() < 400_000 {
        m.push_str(&format!(
            "<item xmlns='urn:x' n='{i}'>é漢🎉 &amp; {i}</item>"
        ));
        i += 1;
    }
    m.push_str("</message>");
    pass(&mut a, &mut b, &m).await;
    // Twice in a row in one write, and a small one right after.
    let small = "<message from='x@a.example' to='y@b.example' id='small'/>";
    a.send(&format!("{m}{m}{small}")).await;
    assert_eq!(b.stanza().await, m);
    assert_eq!(b.stanza().await, m);
    assert_eq!(b.stanza().await, small);
    a.expect_silence(SILENCE).await;
}

/// A session the router ends for what its component sent is logged as a
/// warning with the condition and the reason, at the default log level; a
/// component that closes its own stream is not.
#[tokio::test]
async fn a_session_ended_for_a_protocol_violation_is_a_warning_with_the_reason() {
    let d = start();
    let mut a = login(&d, "a.example", "sa").await;
    a.send("<message from='x@b.example' to='y@b.example' id='w'/>")
        .await;
    assert_eq!(cond(&mut a).await, "invalid-from");
    d.expect_log(event("session.ended_by_router"), Duration::from_secs(5));
    let logs = d.logs();
    let ended = event("session.ended_by_router")
        .domain("a.example")
        .with("condition", "invalid-from");
    let line = ended.lines(&logs).next().unwrap_or_default().to_string();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("component session for a.example"), "{line}");
    assert!(line.contains("invalid-from"), "{line}");
    assert!(
        line.contains("'from' must be an address at a.example (got x@b.example)"),
        "{line}"
    );
    let mut a = login(&d, "a.example", "sa").await;
    a.close_cleanly("a closing its own stream").await;
    assert_eq!(
        d.count_log(event("session.ended_by_router")),
        1,
        "{}",
        d.logs()
    );
}

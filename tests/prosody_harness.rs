//! Tests of the Prosody test harness itself, without the router: a raw
//! XEP-0114 component and a raw c2s client talk through a real Prosody.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use test_support::c2s::{self, C2s, XmlFramer, XmlStream};
use test_support::inspect::{attr, element_name, text_of};
use test_support::prosody::{self, Prosody, ProsodyOptions};
use test_support::stanza::{handshake, header};

const T: Duration = Duration::from_secs(10);
const COMP: &str = "comp.localhost";
const SECRET: &str = "s";

fn opts() -> ProsodyOptions {
    ProsodyOptions::new("localhost")
        .component(COMP, SECRET)
        .user("alice", "alicepw")
}

fn start(opts: &ProsodyOptions) -> Prosody {
    let t0 = Instant::now();
    let p = Prosody::start(opts).unwrap_or_else(|e| panic!("Prosody failed to start: {e}"));
    eprintln!(
        "prosody started in {:?} (ready after {:?}), c2s {} component {}",
        t0.elapsed(),
        p.last_start_duration,
        p.c2s_port,
        p.component_port
    );
    p
}

/// Minimal XEP-0114 component client.
struct Component {
    conn: XmlStream,
    domain: String,
}

impl Component {
    async fn connect(port: u16, domain: &str, secret: &str) -> io::Result<Component> {
        let mut conn = XmlStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        conn.try_send(&header(domain)).await?;
        let header = conn.recv_stream_header(T).await?;
        let id = attr(&header, "id")
            .ok_or_else(|| io::Error::other(format!("no stream id in {header}")))?;
        conn.try_send(&handshake(&id, secret)).await?;
        match conn.recv_stanza(T).await {
            Some(s) if element_name(&s) == "handshake" => Ok(Component {
                conn,
                domain: domain.to_string(),
            }),
            Some(s) => Err(io::Error::other(format!("handshake refused: {s}"))),
            None => Err(io::Error::other(
                "stream closed or timed out during handshake",
            )),
        }
    }

    async fn send(&mut self, xml: &str) {
        self.conn.send(xml).await
    }

    async fn recv_until<F: FnMut(&str) -> bool>(&mut self, pred: F) -> Option<String> {
        self.conn.recv_until(pred, T).await
    }
}

fn is_message_with_body(s: &str, body: &str) -> bool {
    element_name(s) == "message" && text_of(s, "body").as_deref() == Some(body)
}

fn iq_with_id(id: &str) -> impl Fn(&str) -> bool + '_ {
    move |s| element_name(s) == "iq" && attr(s, "id").as_deref() == Some(id)
}

#[test]
fn framer_handles_split_input_quotes_and_keepalives() {
    let input = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>\n \
                 <message to='x' note=\"1/>2\"><body>a &amp; b</body><x/></message> \
                 <presence/><iq id='q'><query xmlns='y'><![CDATA[<not-a-tag>]]></query></iq>\
                 </stream:stream>";
    // Feed one byte at a time: every prefix must be handled.
    let mut f = XmlFramer::new();
    let mut frames = Vec::new();
    for b in input.as_bytes() {
        f.push(std::slice::from_ref(b));
        while let Some(fr) = f.next_frame() {
            frames.push(fr);
        }
    }
    use c2s::Frame::*;
    assert_eq!(
        frames,
        vec![
            StreamOpen("<stream:stream xmlns='jabber:client' id='a>b'>".into()),
            Stanza("<message to='x' note=\"1/>2\"><body>a &amp; b</body><x/></message>".into()),
            Stanza("<presence/>".into()),
            Stanza("<iq id='q'><query xmlns='y'><![CDATA[<not-a-tag>]]></query></iq>".into()),
            StreamClose,
        ]
    );
    assert_eq!(c2s::base64_encode(b"\0alice\0pw"), "AGFsaWNlAHB3");
    assert_eq!(c2s::base64_encode(b"ab"), "YWI=");
    assert_eq!(c2s::base64_encode(b"a"), "YQ==");
    let m = "<message from='a&amp;b' to=\"c\" type='chat'><body>x</body></message>";
    assert_eq!(attr(m, "from").as_deref(), Some("a&b"));
    assert_eq!(attr(m, "to").as_deref(), Some("c"));
    assert_eq!(attr(m, "id"), None);
    assert_eq!(text_of(m, "body").as_deref(), Some("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_roundtrip_between_c2s_and_component() {
    if !prosody::require() {
        return;
    }
    let p = start(&opts());
    let mut comp = Component::connect(p.component_port, COMP, SECRET)
        .await
        .unwrap_or_else(|e| panic!("component: {e}\n{}", p.log_tail()));
    let mut alice = C2s::connect(p.c2s_port, "alice", "localhost", "alicepw")
        .await
        .unwrap_or_else(|e| panic!("c2s: {e}\n{}", p.log_tail()));
    assert_eq!(alice.jid, "alice@localhost/harness");

    alice
        .send("<message to='comp.localhost' type='chat' id='m1'><body>ping</body></message>")
        .await;
    let got = comp
        .recv_until(|s| is_message_with_body(s, "ping"))
        .await
        .unwrap_or_else(|| panic!("component got no ping\n{}", p.log_tail()));
    assert_eq!(attr(&got, "from").as_deref(), Some(alice.jid.as_str()));
    assert_eq!(attr(&got, "to").as_deref(), Some(COMP));
    assert_eq!(attr(&got, "id").as_deref(), Some("m1"));

    comp.send(&format!(
        "<message from='{COMP}' to='{}' type='chat' id='m2'><body>pong</body></message>",
        alice.jid
    ))
    .await;
    let got = alice
        .recv_until(|s| is_message_with_body(s, "pong"), T)
        .await
        .unwrap_or_else(|| panic!("alice got no pong\n{}", p.log_tail()));
    assert_eq!(attr(&got, "from").as_deref(), Some(COMP));

    // Component addresses the bare JID: delivered to the online resource.
    comp.send(&format!(
        "<message from='user@{COMP}' to='alice@localhost' type='chat'><body>bare</body></message>",
    ))
    .await;
    let got = alice
        .recv_until(|s| is_message_with_body(s, "bare"), T)
        .await
        .unwrap_or_else(|| panic!("alice got no bare-JID message\n{}", p.log_tail()));
    assert_eq!(attr(&got, "from").as_deref(), Some("user@comp.localhost"));
    assert!(
        p.warnings().is_empty(),
        "Prosody logged warnings:\n{}",
        p.warnings()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iq_roundtrips_both_directions() {
    if !prosody::require() {
        return;
    }
    let p = start(&opts());
    let mut comp = Component::connect(p.component_port, COMP, SECRET)
        .await
        .unwrap_or_else(|e| panic!("component: {e}\n{}", p.log_tail()));
    let mut alice = C2s::connect(p.c2s_port, "alice", "localhost", "alicepw")
        .await
        .unwrap_or_else(|e| panic!("c2s: {e}\n{}", p.log_tail()));

    // Component -> server (mod_version).
    comp.send(&format!(
        "<iq type='get' id='v1' from='{COMP}' to='localhost'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    let got = comp
        .recv_until(iq_with_id("v1"))
        .await
        .unwrap_or_else(|| panic!("no version result\n{}", p.log_tail()));
    assert_eq!(attr(&got, "type").as_deref(), Some("result"), "{got}");
    assert_eq!(text_of(&got, "name").as_deref(), Some("Prosody"), "{got}");

    // Component -> alice's full JID, alice answers (ping).
    comp.send(&format!(
        "<iq type='get' id='p1' from='{COMP}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        alice.jid
    ))
    .await;
    let req = alice
        .recv_until(iq_with_id("p1"), T)
        .await
        .unwrap_or_else(|| panic!("alice got no ping\n{}", p.log_tail()));
    assert_eq!(attr(&req, "from").as_deref(), Some(COMP));
    alice
        .send(&format!("<iq type='result' id='p1' to='{COMP}'/>"))
        .await;
    let res = comp
        .recv_until(iq_with_id("p1"))
        .await
        .unwrap_or_else(|| panic!("component got no ping result\n{}", p.log_tail()));
    assert_eq!(attr(&res, "type").as_deref(), Some("result"));
    assert_eq!(attr(&res, "from").as_deref(), Some(alice.jid.as_str()));

    // Alice -> component disco#info, component answers.
    alice
        .send(&format!(
            "<iq type='get' id='d1' to='{COMP}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let req = comp
        .recv_until(iq_with_id("d1"))
        .await
        .unwrap_or_else(|| panic!("component got no disco#info\n{}", p.log_tail()));
    assert_eq!(attr(&req, "from").as_deref(), Some(alice.jid.as_str()));
    comp.send(&format!(
        "<iq type='result' id='d1' from='{COMP}' to='{}'>\
         <query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='gateway' type='test' name='Harness'/></query></iq>",
        alice.jid
    ))
    .await;
    let res = alice
        .recv_until(iq_with_id("d1"), T)
        .await
        .unwrap_or_else(|| panic!("alice got no disco#info result\n{}", p.log_tail()));
    assert_eq!(attr(&res, "type").as_deref(), Some("result"));
    assert!(
        res.contains("name='Harness'") || res.contains("name=\"Harness\""),
        "{res}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_component_bounces_remote_server_timeout() {
    if !prosody::require() {
        return;
    }
    let p = start(&opts());
    let mut alice = C2s::connect(p.c2s_port, "alice", "localhost", "alicepw")
        .await
        .unwrap_or_else(|e| panic!("c2s: {e}\n{}", p.log_tail()));

    // Never connected.
    alice
        .send("<message to='comp.localhost' type='chat' id='e1'><body>hello?</body></message>")
        .await;
    let err = alice
        .recv_until(|s| attr(s, "id").as_deref() == Some("e1"), T)
        .await
        .unwrap_or_else(|| panic!("no bounce\n{}", p.log_tail()));
    assert_eq!(attr(&err, "type").as_deref(), Some("error"), "{err}");
    assert!(err.contains("<remote-server-timeout"), "{err}");
    assert!(err.contains("Component unavailable"), "{err}");

    // Connected, then disconnected cleanly.
    let mut comp = Component::connect(p.component_port, COMP, SECRET)
        .await
        .unwrap_or_else(|e| panic!("component: {e}\n{}", p.log_tail()));
    alice
        .send("<message to='comp.localhost' type='chat' id='e2'><body>up</body></message>")
        .await;
    comp.recv_until(|s| is_message_with_body(s, "up"))
        .await
        .expect("component connected but got nothing");
    comp.conn.close().await;
    assert!(
        comp.conn.closed,
        "Prosody did not close the component stream"
    );
    alice
        .send("<message to='comp.localhost' type='chat' id='e3'><body>gone?</body></message>")
        .await;
    let err = alice
        .recv_until(|s| attr(s, "id").as_deref() == Some("e3"), T)
        .await
        .unwrap_or_else(|| panic!("no bounce after disconnect\n{}", p.log_tail()));
    assert_eq!(attr(&err, "type").as_deref(), Some("error"), "{err}");
    assert!(err.contains("<remote-server-timeout"), "{err}");

    // An iq too.
    let err = alice
        .iq(
            "<iq type='get' id='e4' to='comp.localhost'><query xmlns='jabber:iq:version'/></iq>",
            T,
        )
        .await
        .unwrap_or_else(|| panic!("no iq bounce\n{}", p.log_tail()));
    assert_eq!(attr(&err, "type").as_deref(), Some("error"), "{err}");
    assert!(err.contains("<remote-server-timeout"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_wrong_secret_and_unknown_domain() {
    if !prosody::require() {
        return;
    }
    let p = start(&opts());
    let err = Component::connect(p.component_port, COMP, "wrong")
        .await
        .err()
        .expect("wrong secret accepted");
    assert!(err.to_string().contains("not-authorized"), "{err}");

    // A domain Prosody has no Component section for: closed at the header.
    let mut conn = XmlStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, p.component_port)))
        .await
        .unwrap();
    conn.send(&header("other.localhost")).await;
    let got = conn.wait_closed(T).await.expect("stream not closed");
    assert!(
        got.iter().any(|s| s.contains("<host-unknown")),
        "expected host-unknown, got {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_component_connection_kicks_the_old_one() {
    if !prosody::require() {
        return;
    }
    let p = start(&opts());
    let mut first = Component::connect(p.component_port, COMP, SECRET)
        .await
        .unwrap_or_else(|e| panic!("component: {e}\n{}", p.log_tail()));
    let mut second = Component::connect(p.component_port, COMP, SECRET)
        .await
        .unwrap_or_else(|e| panic!("second component refused (kick_old expected): {e}"));
    let got = first
        .conn
        .wait_closed(T)
        .await
        .expect("old connection not closed");
    assert!(
        got.iter().any(|s| s.contains("<conflict")),
        "expected conflict, got {got:?}"
    );
    let mut alice = C2s::connect(p.c2s_port, "alice", "localhost", "alicepw")
        .await
        .unwrap();
    alice
        .send("<message to='comp.localhost' id='k1'><body>to-new</body></message>")
        .await;
    second
        .recv_until(|s| is_message_with_body(s, "to-new"))
        .await
        .expect("new component connection got nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_ports_and_component_reconnects() {
    if !prosody::require() {
        return;
    }
    let mut p = start(&opts());
    let (c2s_port, component_port) = (p.c2s_port, p.component_port);
    let pid_before = p.pid();
    let mut comp = Component::connect(p.component_port, COMP, SECRET)
        .await
        .unwrap();

    let t0 = Instant::now();
    p.restart()
        .unwrap_or_else(|e| panic!("restart failed: {e}"));
    eprintln!("restart took {:?}", t0.elapsed());
    assert_eq!((p.c2s_port, p.component_port), (c2s_port, component_port));
    assert_ne!(p.pid(), pid_before);
    assert!(
        comp.conn.wait_closed(T).await.is_some(),
        "old component connection survived the restart"
    );

    let mut comp = Component::connect(p.component_port, COMP, SECRET)
        .await
        .unwrap_or_else(|e| panic!("reconnect after restart: {e}\n{}", p.log_tail()));
    // Users persist in the instance's data_path.
    let mut alice = C2s::connect(p.c2s_port, "alice", "localhost", "alicepw")
        .await
        .unwrap_or_else(|e| panic!("c2s after restart: {e}\n{}", p.log_tail()));
    alice
        .send("<message to='comp.localhost' id='r1'><body>after-restart</body></message>")
        .await;
    comp.recv_until(|s| is_message_with_body(s, "after-restart"))
        .await
        .unwrap_or_else(|| panic!("no message after restart\n{}", p.log_tail()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_teaches_prosody_a_new_component() {
    if !prosody::require() {
        return;
    }
    let mut p = start(&opts());
    let err = Component::connect(p.component_port, "comp2.localhost", "s2")
        .await
        .err()
        .expect("unknown domain accepted");
    assert!(
        err.to_string().contains("stream closed") || err.to_string().contains("host-unknown"),
        "{err}"
    );

    let ports = (p.c2s_port, p.component_port);
    let new_opts = opts()
        .component("comp2.localhost", "s2")
        .user("bob", "bobpw");
    p.restart_with(&new_opts)
        .unwrap_or_else(|e| panic!("restart_with failed: {e}"));
    assert_eq!((p.c2s_port, p.component_port), ports);
    let mut comp2 = Component::connect(p.component_port, "comp2.localhost", "s2")
        .await
        .unwrap_or_else(|e| panic!("comp2 after restart_with: {e}\n{}", p.log_tail()));
    assert_eq!(comp2.domain, "comp2.localhost");
    let mut bob = C2s::connect(p.c2s_port, "bob", "localhost", "bobpw")
        .await
        .unwrap_or_else(|e| panic!("new user bob: {e}\n{}", p.log_tail()));
    bob.send("<message to='comp2.localhost' id='n1'><body>hi2</body></message>")
        .await;
    comp2
        .recv_until(|s| is_message_with_body(s, "hi2"))
        .await
        .expect("comp2 got nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_config_applies_new_secret_via_sighup() {
    if !prosody::require() {
        return;
    }
    let mut p = start(&opts());
    let pid = p.pid();
    p.reload_config(vec![(COMP.to_string(), "new-secret".to_string())])
        .unwrap_or_else(|e| panic!("reload failed: {e}"));
    assert_eq!(p.pid(), pid, "SIGHUP must not restart Prosody");
    assert!(p.is_running());
    let err = Component::connect(p.component_port, COMP, SECRET)
        .await
        .err()
        .expect("old secret still accepted after reload");
    assert!(err.to_string().contains("not-authorized"), "{err}");
    Component::connect(p.component_port, COMP, "new-secret")
        .await
        .unwrap_or_else(|e| panic!("new secret refused: {e}\n{}", p.log_tail()));
    assert!(p.read_log().contains("Received SIGHUP"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_instances_are_isolated_and_drop_stops_prosody() {
    if !prosody::require() {
        return;
    }
    let a = start(&opts());
    let b = start(&ProsodyOptions::new("localhost").component(COMP, "other"));
    let ports = [a.c2s_port, a.component_port, b.c2s_port, b.component_port];
    let mut uniq = ports.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len(), 4, "ports clash: {ports:?}");
    assert_ne!(a.dir.path(), b.dir.path());
    // Same domain, different secrets: each instance has its own config.
    Component::connect(a.component_port, COMP, SECRET)
        .await
        .unwrap();
    Component::connect(b.component_port, COMP, "other")
        .await
        .unwrap();
    // alice exists only in a.
    assert!(C2s::connect(b.c2s_port, "alice", "localhost", "alicepw")
        .await
        .is_err());

    let pid = a.pid().unwrap();
    let dir = a.dir.path().to_path_buf();
    let c2s_port = a.c2s_port;
    let t0 = Instant::now();
    drop(a);
    eprintln!("stop took {:?}", t0.elapsed());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "prosody pid {pid} still exists after drop"
    );
    assert!(!dir.exists(), "temp dir not removed");
    assert!(
        std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, c2s_port)).is_err(),
        "c2s port still open after drop"
    );
    // b is unaffected.
    Component::connect(b.component_port, COMP, "other")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_is_stopped_when_a_test_panics() {
    if !prosody::require() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let res = std::thread::spawn(move || {
        let p = start(&opts());
        tx.send(p.pid().unwrap()).unwrap();
        panic!("simulated test failure");
    })
    .join();
    assert!(res.is_err());
    let pid = rx.recv().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "prosody pid {pid} survived a panicking test"
    );
}

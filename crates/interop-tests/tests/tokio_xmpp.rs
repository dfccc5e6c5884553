//! Interop with a third-party XEP-0114 client: tokio-xmpp's `Component` connects
//! through the router binary and exchanges messages with the raw XEP-0114 client
//! of the daemon's tests (`test_support::comp`), in both directions; a wrong
//! secret gives tokio-xmpp an authentication error.
//!
//! The router binary belongs to another package, so `CARGO_BIN_EXE_*` does not
//! exist here: the launcher (`test_support::daemon`) asks cargo to build it (a
//! no-op when it is up to date) and takes the executable's path from cargo's JSON
//! messages. `ROUTER_BIN` overrides this with a prebuilt binary.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use test_support::comp::Comp;
use test_support::daemon::{component, Daemon};
use test_support::events::event;
use test_support::inspect::attr;
use tokio::time::timeout;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::error::AuthError;
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::parsers::message::{Id, Lang, Message, MessageType};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Component, Error, Stanza};

const T: Duration = Duration::from_secs(10);

/// The router as a child process on a free loopback port, logging at debug.
fn start_router(components: &str) -> Daemon {
    Daemon::start(&format!("log_level = \"debug\"\n{components}"))
}

const SA: &str = "secret-for-a";
const SB: &str = "secret-for-b";

fn components() -> String {
    component("a.localhost", SA, "") + &component("b.localhost", SB, "")
}

async fn tokio_xmpp_login(
    addr: SocketAddr,
    domain: &str,
    secret: &str,
) -> Result<tokio_xmpp::connect::tcp::TcpComponent, Error> {
    timeout(
        T,
        Component::new_plaintext(
            domain,
            secret,
            DnsConfig::addr(&addr.to_string()),
            Timeouts::tight(),
        ),
    )
    .await
    .expect("tokio-xmpp login timed out")
}

fn jid(s: &str) -> Jid {
    Jid::from_str(s).unwrap()
}

/// Text of the first `<body>` in raw XML (entities left as they are).
fn body_of(xml: &str) -> Option<&str> {
    let start = xml.find("<body")?;
    let rest = &xml[start..];
    let open_end = rest.find('>')?;
    let inner = &rest[open_end + 1..];
    Some(&inner[..inner.find("</body>")?])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_xmpp_component_exchanges_messages_with_raw_component() {
    let mut router = start_router(&components());
    let mut b = Comp::login(router.addr(), "b.localhost", SB).await;
    let mut a = tokio_xmpp_login(router.addr(), "a.localhost", SA)
        .await
        .unwrap_or_else(|e| panic!("tokio-xmpp login failed: {e}\n{}", router.logs()));
    assert_eq!(a.jid.to_string(), "a.localhost");

    // tokio-xmpp -> raw. tokio-xmpp does not set `from` (the router requires it).
    let mut m = Message::new_with_type(MessageType::Chat, Some(jid("bot@b.localhost")));
    m.from = Some(jid("user@a.localhost/desk"));
    m.id = Some(Id("tx-1".into()));
    m.bodies
        .insert(Lang::default(), "hello from tokio-xmpp ✓".into());
    a.send_stanza(m.into()).await.expect("send");
    let got = b.stanza().await;
    assert!(got.starts_with("<message"), "{got}");
    assert_eq!(attr(&got, "from").as_deref(), Some("user@a.localhost/desk"));
    assert_eq!(attr(&got, "to").as_deref(), Some("bot@b.localhost"));
    assert_eq!(attr(&got, "id").as_deref(), Some("tx-1"));
    assert_eq!(body_of(&got), Some("hello from tokio-xmpp ✓"), "{got}");

    // raw -> tokio-xmpp.
    b.send(
        "<message from='bot@b.localhost/r' to='user@a.localhost/desk' type='chat' id='rx-1'>\
         <body>pong &amp; ü &#x1F600;</body><x xmlns='urn:example:extra' k='v'/></message>",
    )
    .await;
    let got = timeout(T, a.next())
        .await
        .expect("tokio-xmpp received nothing")
        .expect("tokio-xmpp stream ended");
    let Stanza::Message(m) = got else {
        panic!("expected a message, got {got:?}");
    };
    assert_eq!(m.from, Some(jid("bot@b.localhost/r")));
    assert_eq!(m.to, Some(jid("user@a.localhost/desk")));
    assert_eq!(m.id, Some(Id("rx-1".into())));
    assert_eq!(m.type_, MessageType::Chat);
    assert_eq!(
        m.bodies.get(&Lang::default()).map(String::as_str),
        Some("pong & ü 😀")
    );
    assert_eq!(m.payloads.len(), 1, "{:?}", m.payloads);
    assert!(m.payloads[0].is("x", "urn:example:extra"));
    assert_eq!(m.payloads[0].attr("k"), Some("v"));

    // A second round trip in each direction on the same streams.
    for i in 0..3 {
        let mut m = Message::new(Some(jid("bot@b.localhost")));
        m.from = Some(jid("a.localhost"));
        m.bodies.insert(Lang::default(), format!("ping {i}"));
        a.send_stanza(m.into()).await.expect("send");
        let got = b.stanza().await;
        assert_eq!(body_of(&got), Some(format!("ping {i}").as_str()), "{got}");
        b.send(&format!(
            "<message from='b.localhost' to='a.localhost' id='p{i}'><body>pong {i}</body></message>"
        ))
        .await;
        let got = timeout(T, a.next()).await.expect("timeout").expect("ended");
        let Stanza::Message(m) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            m.bodies.get(&Lang::default()).map(String::as_str),
            Some(format!("pong {i}").as_str())
        );
    }

    a.send_end().await.expect("send_end");
    drop(b);
    router.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_xmpp_with_wrong_secret_gets_an_auth_error() {
    let mut router = start_router(&components());
    match tokio_xmpp_login(router.addr(), "a.localhost", "not-the-secret").await {
        Err(Error::Auth(AuthError::ComponentFail)) => {}
        Err(e) => panic!("expected an authentication error, got {e:?}"),
        Ok(_) => panic!("logged in with a wrong secret"),
    }
    // The right secret still works afterwards.
    let a = tokio_xmpp_login(router.addr(), "a.localhost", SA).await;
    assert!(a.is_ok(), "{:?}\n{}", a.err(), router.logs());
    drop(a);
    router.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_xmpp_for_unknown_domain_fails() {
    let mut router = start_router(&components());
    let r = tokio_xmpp_login(router.addr(), "c.localhost", SA).await;
    assert!(r.is_err(), "logged in for an unknown domain");
    assert!(
        router.wait_for_log(event("header.refused").with("condition", "host-unknown"), T),
        "{}",
        router.logs()
    );
    router.stop_ok();
}

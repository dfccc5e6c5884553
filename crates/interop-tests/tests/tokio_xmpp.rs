//! Interop with a third-party XEP-0114 client: tokio-xmpp's `Component` connects
//! through the router binary and exchanges messages with a raw XEP-0114 client
//! (the daemon tests' `support/comp.rs`), in both directions; a wrong secret
//! gives tokio-xmpp an authentication error.
//!
//! The router binary belongs to another package, so `CARGO_BIN_EXE_*` does not
//! exist here: [`router_bin`] asks cargo to build it (a no-op when it is up to
//! date) and takes the executable's path from cargo's JSON messages. `ROUTER_BIN`
//! overrides this with a prebuilt binary.

#[allow(dead_code)]
#[path = "../../../tests/support/comp.rs"]
mod comp;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use comp::{attr, Comp};
use futures::StreamExt;
use tokio::time::timeout;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::error::AuthError;
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::parsers::message::{Id, Lang, Message, MessageType};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Component, Error, Stanza};

const T: Duration = Duration::from_secs(10);

/// The router executable, built by cargo if needed (once per test process).
fn router_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("ROUTER_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "-p",
                "xmpp-component-router",
                "--bin",
                "xmpp-component-router",
                "--message-format=json-render-diagnostics",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(out.status.success(), "cargo build of the router failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "xmpp-component-router"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no router executable")
    })
    .clone()
}

/// The router as a child process on a free loopback port.
struct Router {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Router {
    fn start(components: &str) -> Router {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("listen = [\"{addr}\"]\nlog_level = \"debug\"\n{components}"),
        )
        .expect("write config");
        let mut child = Command::new(router_bin())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .spawn()
            .expect("start the router");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("ROUTER_TEST_LOG").is_some() {
                    eprintln!("[router] {line}");
                }
                log2.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut r = Router {
            child,
            addr,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + T;
        while !r.logs().contains(" ready") {
            if let Ok(Some(st)) = r.child.try_wait() {
                panic!("router exited ({st}):\n{}", r.logs());
            }
            assert!(Instant::now() < deadline, "router not ready:\n{}", r.logs());
            std::thread::sleep(Duration::from_millis(10));
        }
        r
    }

    fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_for_log(&self, pat: &str) -> bool {
        let deadline = Instant::now() + T;
        while !self.logs().contains(pat) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// SIGTERM; the router must exit 0.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + T;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "router exit {st}:\n{}", self.logs());
                return;
            }
            assert!(Instant::now() < deadline, "router did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SA: &str = "secret-for-a";
const SB: &str = "secret-for-b";

fn components() -> String {
    format!(
        "[components.\"a.localhost\"]\nsecret = \"{SA}\"\n[components.\"b.localhost\"]\nsecret = \"{SB}\"\n"
    )
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
    let router = Router::start(&components());
    let mut b = Comp::login(router.addr, "b.localhost", SB).await;
    let mut a = tokio_xmpp_login(router.addr, "a.localhost", SA)
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
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_xmpp_with_wrong_secret_gets_an_auth_error() {
    let router = Router::start(&components());
    match tokio_xmpp_login(router.addr, "a.localhost", "not-the-secret").await {
        Err(Error::Auth(AuthError::ComponentFail)) => {}
        Err(e) => panic!("expected an authentication error, got {e:?}"),
        Ok(_) => panic!("logged in with a wrong secret"),
    }
    // The right secret still works afterwards.
    let a = tokio_xmpp_login(router.addr, "a.localhost", SA).await;
    assert!(a.is_ok(), "{:?}\n{}", a.err(), router.logs());
    drop(a);
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_xmpp_for_unknown_domain_fails() {
    let router = Router::start(&components());
    let r = tokio_xmpp_login(router.addr, "c.localhost", SA).await;
    assert!(r.is_err(), "logged in for an unknown domain");
    assert!(router.wait_for_log("host-unknown"), "{}", router.logs());
    router.stop();
}

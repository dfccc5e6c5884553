//! Black-box tests of the command line and process behaviour (docs/behaviour.md
//! "Command line", "Configuration", "Shutdown"; README "Command line"):
//! `--check`, exit codes, config error messages, bind failures, SIGTERM, logs,
//! secrets, `secret_file`, IPv6.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::comp::Comp;
use test_support::daemon::{router_bin, Daemon};
use test_support::events::event;
use test_support::inspect::attr;
use test_support::not_run;
use test_support::stanza::handshake_token;

/// Distinctive secrets: if any of these shows up in output or logs, it leaked.
const SECRET_A: &str = "S3CRET-alpha-6f1d0c";
const SECRET_FILE: &str = "S3CRET-from-file-93b2e7";
const UPSTREAM_SECRET: &str = "S3CRET-upstream-d41a55";
const SECRETS: [&str; 3] = [SECRET_A, SECRET_FILE, UPSTREAM_SECRET];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{what} contains the secret {s:?}:\n{text}"
        );
    }
}

/// Run the binary with `args`, without inheriting RUST_LOG or NOTIFY_SOCKET.
fn run(args: &[&str]) -> Output {
    Command::new(router_bin())
        .args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run the binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A temporary directory with a config file (and whatever else a test puts there).
struct Cfg {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Cfg {
    fn new(body: &str) -> Cfg {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, body).expect("write config");
        Cfg { dir, path }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write file");
        p
    }

    fn check(&self) -> Output {
        run(&["--config", self.path.to_str().unwrap(), "--check"])
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------------------
// --check on a valid config

#[test]
fn check_valid_config_lists_components_and_addresses_without_secrets() {
    let cfg = Cfg::new(&format!(
        r#"
listen = ["127.0.0.1:15347", "[::1]:15348"]
log_level = "debug"

[upstream]
address = "127.0.0.1:5348"

[components."A.Example.COM"]
secret = "{SECRET_A}"
upstream_secret = "{UPSTREAM_SECRET}"

[components."b.example.com"]
secret_file = "b.secret"
on_conflict = "reject"

[components."off.example.com"]
secret = "{SECRET_A}"
enabled = false
"#
    ));
    cfg.file("b.secret", &format!("{SECRET_FILE}\n"));
    let out = cfg.check();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for needle in [
        "127.0.0.1:15347",
        "[::1]:15348",
        "127.0.0.1:5348",
        "a.example.com", // canonical (lower-case) form
        "b.example.com",
        "off.example.com",
    ] {
        assert!(
            stdout.contains(needle),
            "--check output lacks {needle:?}:\n{stdout}"
        );
    }
    // One line per component.
    for domain in ["a.example.com", "b.example.com", "off.example.com"] {
        let lines = stdout.lines().filter(|l| l.contains(domain)).count();
        assert_eq!(lines, 1, "{domain} on {lines} lines:\n{stdout}");
    }
    assert_no_secret("--check stdout", &stdout);
    assert_no_secret("--check stderr", &stderr);
}

#[test]
fn check_without_upstream_and_with_default_listen() {
    let cfg = Cfg::new(&format!(
        "[components.\"c.example\"]\nsecret = \"{SECRET_A}\"\n"
    ));
    let out = cfg.check();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("127.0.0.1:5347"),
        "default listen:\n{stdout}"
    );
    assert!(stdout.contains("c.example"), "{stdout}");
    assert_no_secret("--check stdout", &stdout);
}

// ---------------------------------------------------------------------------
// --check on invalid configs: exit 78, naming file, line and problem

/// Expect `--check` to fail with 78 and a message naming the config file, `line`
/// and containing every string of `problem`; no secret may appear.
fn expect_invalid(cfg: &Cfg, line: usize, problem: &[&str]) {
    let out = cfg.check();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(78),
        "config:\n{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        std::fs::read_to_string(&cfg.path).unwrap()
    );
    let at = format!("{}:{line}:", cfg.path.display());
    assert!(
        stderr.contains(&at),
        "error does not name {at:?}:\n{stderr}\nconfig:\n{}",
        std::fs::read_to_string(&cfg.path).unwrap()
    );
    for p in problem {
        assert!(
            stderr.contains(p),
            "error does not mention {p:?}:\n{stderr}"
        );
    }
    assert_no_secret("error output", &stdout);
    assert_no_secret("error output", &stderr);
}

fn invalid(body: &str, line: usize, problem: &[&str]) {
    expect_invalid(&Cfg::new(body), line, problem);
}

#[test]
fn invalid_toml_syntax() {
    invalid("log_level = \"info\"\nhandshake_timeout = = 3\n", 2, &[]);
    invalid(
        &format!("[components.\"a.example\"]\nsecret = \"{SECRET_A}\"\n[components.\"b.example\"\nsecret = \"x\"\n"),
        3,
        &[],
    );
}

#[test]
fn invalid_unknown_key_top_level() {
    invalid(
        "listen = [\"127.0.0.1:5347\"]\n\nlisten_adress = \"x\"\n",
        3,
        &["listen_adress"],
    );
}

#[test]
fn invalid_unknown_key_in_component() {
    invalid(
        &format!("[components.\"a.example\"]\nsecret = \"{SECRET_A}\"\nsecert = \"typo\"\n"),
        3,
        &["secert"],
    );
}

#[test]
fn invalid_duplicate_domain_differing_in_case() {
    invalid(
        &format!(
            "[components.\"a.example\"]\nsecret = \"{SECRET_A}\"\n\n[components.\"A.Example\"]\nsecret = \"{UPSTREAM_SECRET}\"\n"
        ),
        4,
        &["duplicate", "a.example"],
    );
}

#[test]
fn invalid_empty_secret() {
    invalid(
        "[components.\"a.example\"]\nsecret = \"\"\n",
        2,
        &["a.example", "empty"],
    );
}

#[test]
fn invalid_both_secret_and_secret_file() {
    let cfg = Cfg::new(&format!(
        "[components.\"a.example\"]\nsecret = \"{SECRET_A}\"\nsecret_file = \"a.secret\"\n"
    ));
    cfg.file("a.secret", SECRET_FILE);
    expect_invalid(&cfg, 3, &["a.example", "secret_file", "both"]);
}

#[test]
fn invalid_neither_secret_nor_secret_file() {
    invalid(
        "[components.\"a.example\"]\non_conflict = \"reject\"\n",
        1,
        &["a.example", "secret"],
    );
}

#[test]
fn invalid_unreadable_secret_file() {
    // Missing file.
    invalid(
        "[components.\"a.example\"]\nsecret_file = \"/nonexistent/a.secret\"\n",
        2,
        &["a.example", "/nonexistent/a.secret", "No such file"],
    );
    // A directory (tests may run as root, so permissions cannot make a file unreadable).
    let cfg = Cfg::new("[components.\"a.example\"]\n\nsecret_file = \"sub\"\n");
    std::fs::create_dir(cfg.dir.path().join("sub")).unwrap();
    expect_invalid(&cfg, 3, &["a.example", "sub", "secret_file"]);
    // Empty, or only a newline.
    let cfg = Cfg::new("[components.\"a.example\"]\nsecret_file = \"e.secret\"\n");
    cfg.file("e.secret", "\n");
    expect_invalid(&cfg, 2, &["a.example", "empty"]);
}

#[test]
fn invalid_domain() {
    for bad in [
        "a..example",
        "a example",
        "user@a.example",
        "a.example/res",
        "",
    ] {
        invalid(
            &format!("\n[components.\"{bad}\"]\nsecret = \"{SECRET_A}\"\n"),
            2,
            &["valid domain"],
        );
    }
}

#[test]
fn invalid_max_stanza_size_below_rfc_floor() {
    invalid(
        "log_level = \"info\"\nmax_stanza_size = 9999\n",
        2,
        &["max_stanza_size", "9999"],
    );
    // The floor itself is fine.
    let out = Cfg::new("max_stanza_size = 10000\n").check();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn invalid_listen_address() {
    for bad in [
        "localhost:5347",
        "127.0.0.1",
        "127.0.0.1:99999",
        "::1:5347",
        "",
    ] {
        invalid(
            &format!("handshake_timeout = 5\nlisten = [\"127.0.0.1:5347\", \"{bad}\"]\n"),
            2,
            &["listen", &format!("{bad:?}")],
        );
    }
}

#[test]
fn invalid_upstream_address() {
    for bad in [
        "127.0.0.1",
        "127.0.0.1:99999",
        "prosody:",
        ":5348",
        "a b:5348",
        "",
    ] {
        invalid(
            &format!("[upstream]\naddress = \"{bad}\"\n"),
            2,
            &["upstream", &format!("{bad:?}")],
        );
    }
}

#[test]
fn invalid_secret_of_wrong_type_is_not_echoed() {
    // A secret written as a number is an error, and the error must not print it.
    invalid(
        "[components.\"a.example\"]\nsecret = 6021945733\n",
        2,
        &["secret", "string"],
    );
    let out = Cfg::new("[components.\"a.example\"]\nsecret = 6021945733\n").check();
    assert!(
        !text(&out.stderr).contains("6021945733"),
        "{}",
        text(&out.stderr)
    );
    let out = Cfg::new(
        "[components.\"a.example\"]\nsecret = \"x\"\nupstream_secret = [\"6021945733\"]\n",
    )
    .check();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        !text(&out.stderr).contains("6021945733"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn missing_config_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.toml");
    let out = run(&["--config", path_str(&p), "--check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains(path_str(&p)),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// --version, --help, usage errors

#[test]
fn version() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {stdout:?}"
    );
    assert!(stdout.contains("xmpp-component-router"), "{stdout:?}");
}

#[test]
fn help() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for flag in ["--config", "--check", "--version", "--help", "status"] {
        assert!(stdout.contains(flag), "--help lacks {flag}:\n{stdout}");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = run(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--frobnicate"),
        "{}",
        text(&out.stderr)
    );
    // A missing option value too.
    let out = run(&["--config"]);
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------
// Starting the daemon

#[test]
fn start_with_invalid_config_exits_78() {
    let cfg = Cfg::new("listen = [\"127.0.0.1:1\"]\n[components.\"a.example\"]\nsecret = \"\"\n");
    let start = Instant::now();
    let out = run(&["--config", path_str(&cfg.path)]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(5));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:", cfg.path.display())),
        "{stderr}"
    );
}

#[test]
fn start_with_listen_address_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = Cfg::new(&format!(
        "listen = [\"{addr}\"]\n[components.\"a.example\"]\nsecret = \"{SECRET_A}\"\n"
    ));
    let out = run(&["--config", path_str(&cfg.path)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Once, with the address and the OS error.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot listen on"))
        .collect();
    assert_eq!(
        lines,
        [format!(
            "xmpp-component-router: cannot listen on {addr}: Address already in use (os error 98)"
        )],
        "in:\n{stderr}"
    );
    assert_no_secret("stderr", &stderr);
    drop(taken);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sigterm_sends_system_shutdown_and_exits_0_within_5s() {
    let mut d = Daemon::start(&format!(
        "[components.\"a.example\"]\nsecret = \"{SECRET_A}\"\n[components.\"b.example\"]\nsecret = \"sb\"\n"
    ));
    let rt = rt();
    let (mut a, mut b, mut pending) = rt.block_on(async {
        let a = Comp::login(d.addr(), "a.example", SECRET_A).await;
        let b = Comp::login(d.addr(), "b.example", "sb").await;
        // One connection still before its handshake.
        let mut p = Comp::connect(d.addr()).await;
        p.open_ok("b.example").await;
        (a, b, p)
    });
    let t0 = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    rt.block_on(async {
        for (name, c) in [("a", &mut a), ("b", &mut b), ("pending", &mut pending)] {
            let cond = c.expect_stream_error().await;
            assert_eq!(cond, "system-shutdown", "{name}");
        }
    });
    let budget = Duration::from_secs(5).saturating_sub(t0.elapsed());
    let st = d
        .wait(budget)
        .unwrap_or_else(|| panic!("daemon still running 5 s after SIGTERM:\n{}", d.logs()));
    assert_eq!(st.code(), Some(0), "{}", d.logs());
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn sigint_exits_0() {
    let mut d = Daemon::start("[components.\"a.example\"]\nsecret = \"x\"\n");
    let t0 = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGINT);
    let st = d.wait(Duration::from_secs(5)).expect("still running");
    assert_eq!(st.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn logs_have_no_ansi_escapes_when_stderr_is_a_pipe() {
    let mut d =
        Daemon::start("log_level = \"debug\"\n[components.\"a.example\"]\nsecret = \"x\"\n");
    rt().block_on(async {
        let _a = Comp::login(d.addr(), "a.example", "x").await;
        let mut bad = Comp::connect(d.addr()).await;
        bad.open("unknown.example").await;
    });
    assert!(
        d.wait_for_log(
            event("header.refused").with("condition", "host-unknown"),
            Duration::from_secs(5)
        ),
        "{}",
        d.logs()
    );
    d.stop().expect("exit");
    let logs = d.logs();
    assert!(logs.lines().count() >= 3, "{logs}");
    assert!(!logs.contains('\u{1b}'), "ANSI escape in logs:\n{logs:?}");
    assert!(
        logs.contains("DEBUG"),
        "log_level = debug not honoured:\n{logs}"
    );
}

#[test]
fn rust_log_overrides_log_level() {
    let mut d = Daemon::start_env(
        "log_level = \"error\"\n[components.\"a.example\"]\nsecret = \"x\"\n",
        &[("RUST_LOG", "debug")],
    );
    rt().block_on(async {
        let _a = Comp::login(d.addr(), "a.example", "x").await;
    });
    d.stop().expect("exit");
    assert!(d.logs().contains("DEBUG"), "{}", d.logs());
}

/// What a fake upstream server received: (stream `to`, handshake text).
type Handshakes = Arc<Mutex<Vec<(String, String)>>>;

const UPSTREAM_ID: &str = "upstream-stream-id-1";

/// A fake upstream server that answers every stream header with id
/// [`UPSTREAM_ID`], records the handshake and refuses it (`not-authorized`).
fn refusing_upstream() -> (SocketAddr, Handshakes) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let got: Handshakes = Arc::default();
    let got2 = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let got = got2.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = Vec::new();
                let read_until = |conn: &mut std::net::TcpStream, buf: &mut Vec<u8>, pat: &str| {
                    let mut tmp = [0u8; 4096];
                    while !String::from_utf8_lossy(buf).contains(pat) {
                        match conn.read(&mut tmp) {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    true
                };
                if !read_until(&mut conn, &mut buf, "<stream:stream") {
                    return;
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                let header = &text[text.find("<stream:stream").unwrap()..];
                if !header.contains('>') && !read_until(&mut conn, &mut buf, ">") {
                    return;
                }
                let to = attr(header, "to").unwrap_or_default();
                let _ = conn.write_all(format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
                     xmlns:stream='http://etherx.jabber.org/streams' id='{UPSTREAM_ID}' from='{to}'>"
                ).as_bytes());
                if !read_until(&mut conn, &mut buf, "</handshake>") {
                    return;
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                let hs = text
                    .split("<handshake>")
                    .nth(1)
                    .and_then(|r| r.split("</handshake>").next())
                    .unwrap_or("")
                    .to_string();
                got.lock().unwrap().push((to, hs));
                let _ = conn.write_all(
                    b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                      </stream:error></stream:stream>",
                );
            });
        }
    });
    (addr, got)
}

#[test]
fn secrets_never_logged_even_at_trace() {
    // An upstream that refuses every handshake, so upstream authentication (with
    // upstream_secret, and with the default: the component's secret) is logged too.
    let (upstream, handshakes) = refusing_upstream();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("b.secret");
    std::fs::write(&secret_file, format!("{SECRET_FILE}\n")).unwrap();
    let mut d = Daemon::start(&format!(
        r#"log_level = "trace"
[upstream]
address = "{upstream}"
[components."a.example"]
secret = "{SECRET_A}"
upstream_secret = "{UPSTREAM_SECRET}"
[components."b.example"]
secret_file = "{}"
"#,
        secret_file.display()
    ));
    rt().block_on(async {
        let mut a = Comp::login(d.addr(), "a.example", SECRET_A).await;
        let mut b = Comp::login(d.addr(), "b.example", SECRET_FILE).await;
        let m = "<message from='x@a.example' to='y@b.example' id='m1'><body>hi</body></message>";
        a.send(m).await;
        assert_eq!(b.stanza().await, m);
        // A failed login; the wrong secret is a distinctive string too.
        let mut bad = Comp::connect(d.addr()).await;
        bad.open("a.example").await;
        bad.send_handshake(UPSTREAM_SECRET).await;
        let cond = bad.expect_stream_error().await;
        assert_eq!(cond, "not-authorized");
        // Both upstream links try to authenticate while their sessions are
        // open (a session's end closes its link, even mid-handshake).
        let deadline = Instant::now() + Duration::from_secs(10);
        while handshakes.lock().unwrap().len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop((a, b));
    });
    assert!(
        d.wait_for_log(event("handshake.failed"), Duration::from_secs(5)),
        "{}",
        d.logs()
    );
    // ... with the right secrets.
    let got = handshakes.lock().unwrap().clone();
    for (domain, secret) in [("a.example", UPSTREAM_SECRET), ("b.example", SECRET_FILE)] {
        let want = handshake_token(UPSTREAM_ID, secret);
        assert!(
            got.iter()
                .any(|(to, hs)| to == domain && hs.eq_ignore_ascii_case(&want)),
            "no upstream handshake for {domain} with its secret: {got:?}\n{}",
            d.logs()
        );
    }
    // Let the refusals be logged.
    std::thread::sleep(Duration::from_millis(200));
    d.stop().expect("exit");
    let logs = d.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace level not in effect:\n{logs}"
    );
    assert_no_secret("daemon logs", &logs);
}

#[test]
fn secret_file_trailing_newline_is_not_part_of_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.secret");
    std::fs::write(&f, format!("{SECRET_FILE}\n")).unwrap();
    let d = Daemon::start(&format!(
        "[components.\"a.example\"]\nsecret_file = \"{}\"\n",
        f.display()
    ));
    rt().block_on(async {
        // With the newline: refused.
        let mut c = Comp::connect(d.addr()).await;
        c.open("a.example").await;
        c.send_handshake(&format!("{SECRET_FILE}\n")).await;
        assert_eq!(c.expect_stream_error().await, "not-authorized");
        // Without: accepted.
        let _ok = Comp::login(d.addr(), "a.example", SECRET_FILE).await;
    });
}

fn ipv6_loopback_port() -> Option<u16> {
    let l = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).ok()?;
    Some(l.local_addr().ok()?.port())
}

#[test]
fn ipv6_listen_address() {
    let Some(port) = ipv6_loopback_port() else {
        not_run::record(
            "IPv6 listen test in tests/cli.rs",
            "this machine has no IPv6 loopback (::1)",
        );
        return;
    };
    let mut d = Daemon::start(&format!(
        "listen = [\"[::1]:{port}\"]\n[components.\"a.example\"]\nsecret = \"sa\"\n[components.\"b.example\"]\nsecret = \"sb\"\n"
    ));
    let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    rt().block_on(async {
        let mut a = Comp::login(addr, "a.example", "sa").await;
        let mut b = Comp::login(addr, "b.example", "sb").await;
        let peer = a.stream.peer_addr().unwrap();
        assert!(peer.is_ipv6(), "{peer}");
        let m =
            "<message from='x@a.example' to='y@b.example' id='v6'><body>über ::1</body></message>";
        a.send(m).await;
        assert_eq!(b.stanza().await, m);
    });
    // Nothing listens on IPv4 for that port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_eq!(d.stop().and_then(|s| s.code()), Some(0));
}

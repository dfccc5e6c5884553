//! Components read from a Prosody config file (docs/behaviour.md, "Components
//! from a Prosody config"): the two examples of the
//! mod_reload_components README run as written, against the binary.
//!
//! Each test copies a fixture from tests/fixtures/prosody/ next to a TOML config
//! that names it with `prosody_config`, starts the daemon, rewrites the Prosody
//! file to the example's second version, sends SIGHUP, and checks what the
//! README says happens.

use std::path::Path;
use std::time::Duration;

use test_support::comp::{header_refused, round_trip, Comp, Got};
use test_support::daemon::{router_bin, Daemon};
use test_support::stanza::msg;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/prosody")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Start a daemon serving the Prosody file `first` (a fixture name, written as
/// prosody.cfg.lua next to the TOML config), plus a TOML component `x.local`.
fn start_with(first: &str) -> Daemon {
    Daemon::start_with_files(
        "log_level = \"debug\"\nprosody_config = \"prosody.cfg.lua\"\n[components.\"x.local\"]\nsecret = \"sx\"\n",
        &[("prosody.cfg.lua", &fixture(first))],
    )
}

fn rewrite_prosody(d: &Daemon, second: &str) {
    std::fs::write(d.dir.path().join("prosody.cfg.lua"), fixture(second)).expect("rewrite lua");
    d.sighup_and_wait();
}

#[tokio::test]
async fn readme_example_1_b_detached_c_loaded_a_untouched() {
    let d = start_with("example1-before.cfg.lua");
    let mut x = Comp::login(d.addr(), "x.local", "sx").await;
    let mut a = Comp::login(d.addr(), "a.example.com", "a").await;
    let mut b = Comp::login(d.addr(), "b.example.com", "b").await;
    // c is not served yet.
    assert_eq!(
        header_refused(d.addr(), "c.example.com").await,
        "host-unknown"
    );
    round_trip(&mut a, "a.example.com", &mut x, "x.local", "before").await;

    rewrite_prosody(&d, "example1-after.cfg.lua");
    assert!(
        d.logs()
            .contains("reload: 1 added, 1 removed (1 connection detached), 0 changed"),
        "{}",
        d.logs()
    );

    // 1. c.example.com is loaded and accepts authentication.
    let mut c = Comp::login(d.addr(), "c.example.com", "c").await;
    round_trip(&mut c, "c.example.com", &mut x, "x.local", "c").await;
    // 2. b.example.com is detached: its connection stays open, nothing is routed from it.
    b.send(&msg("u@b.example.com", "v@x.local", "from-detached"))
        .await;
    x.expect_silence(Duration::from_millis(500)).await;
    match b.recv_timeout(Duration::from_millis(2000)).await {
        Got::Timeout => {}
        other => panic!("detached connection must stay open and quiet, got {other:?}"),
    }
    // New connections for b get host-unknown.
    assert_eq!(
        header_refused(d.addr(), "b.example.com").await,
        "host-unknown"
    );
    // a.example.com is untouched: same connection still routes.
    round_trip(&mut a, "a.example.com", &mut x, "x.local", "after").await;
}

#[tokio::test]
async fn readme_example_2_new_component_under_new_virtualhost() {
    let d = start_with("example2-before.cfg.lua");
    let mut x = Comp::login(d.addr(), "x.local", "sx").await;
    let mut a = Comp::login(d.addr(), "a.example.com", "a").await;
    rewrite_prosody(&d, "example2-after.cfg.lua");
    // a.newexample.com is loaded and starts bouncing for authentication.
    let mut n = Comp::login(d.addr(), "a.newexample.com", "a").await;
    round_trip(&mut n, "a.newexample.com", &mut x, "x.local", "n").await;
    round_trip(&mut a, "a.example.com", &mut x, "x.local", "a").await;
    // The README's "its respective VirtualHost is not loaded" case is made visible.
    let logs = d.logs();
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("a.newexample.com")
            && l.contains("newexample.com")),
        "no warning about newexample.com:\n{logs}"
    );
}

#[test]
fn check_shows_where_each_component_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("prosody.cfg.lua"),
        fixture("debian-prosody.cfg.lua"),
    )
    .unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "prosody_config = \"prosody.cfg.lua\"\n[components.\"x.local\"]\nsecret = \"toml-secret-123\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(router_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .output()
        .expect("run --check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("bridge") || l.starts_with("x.local"))
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows
        .iter()
        .any(|r| r.starts_with("bridge1.localhost") && r.contains("prosody.cfg.lua:")));
    assert!(rows
        .iter()
        .any(|r| r.starts_with("bridge2.localhost") && r.contains("prosody.cfg.lua:")));
    assert!(rows
        .iter()
        .any(|r| r.starts_with("x.local") && r.contains("config.toml:2")));
    for secret in ["s1", "s2", "toml-secret-123"] {
        assert!(
            !stdout.split_whitespace().any(|w| w == secret) && !stdout.contains("toml-secret-123"),
            "secret {secret} printed:\n{stdout}"
        );
    }
}

#[test]
fn domain_in_both_files_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("prosody.cfg.lua"),
        fixture("example1-before.cfg.lua"),
    )
    .unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "prosody_config = \"prosody.cfg.lua\"\n[components.\"A.example.com\"]\nsecret = \"z\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(router_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .output()
        .expect("run --check");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prosody.cfg.lua:4") && err.contains("a.example.com"),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_prosody_file_on_reload_keeps_the_old_set() {
    let d = start_with("example1-before.cfg.lua");
    let mut a = Comp::login(d.addr(), "a.example.com", "a").await;
    let mut x = Comp::login(d.addr(), "x.local", "sx").await;
    std::fs::write(
        d.dir.path().join("prosody.cfg.lua"),
        "Component \"a.example.com\"\n    component_secret = os.getenv(\"SECRET\")\n",
    )
    .unwrap();
    d.sighup_and_wait();
    assert!(d.logs().contains("reload failed"), "{}", d.logs());
    assert!(d.logs().contains("prosody.cfg.lua:2"), "{}", d.logs());
    round_trip(&mut a, "a.example.com", &mut x, "x.local", "still").await;
    let _b = Comp::login(d.addr(), "b.example.com", "b").await;
}

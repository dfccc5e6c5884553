//! Running as a systemd service: the unit file passes `systemd-analyze verify`
//! and keeps its hardening, and the logs fit journald (syslog priority prefixes,
//! no timestamps of our own, no ANSI) when JOURNAL_STREAM is set.
//!
//! The systemd-analyze tests do not run where the tool is missing (Debian's
//! `systemd` package has it) and say so in `./scripts/test`'s summary; under
//! CI=true they fail instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use test_support::daemon::{router_bin, Daemon};
use test_support::events::event;
use test_support::not_run;

const UNIT: &str = "systemd/xmpp-component-router.service";
const UNIT_NAME: &str = "xmpp-component-router.service";

fn unit_text() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(UNIT)).expect("read unit")
}

/// `systemd-analyze`, or None (recorded as not run; a failure under CI=true).
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file());
    if found.is_none() {
        not_run::missing(
            "systemd unit tests in tests/service.rs",
            "systemd-analyze is missing: apt-get install systemd",
        );
    }
    found
}

/// The major version of the installed systemd (e.g. 252).
fn systemd_version(tool: &Path) -> u32 {
    let out = Command::new(tool).arg("--version").output().expect("run");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A copy of the unit, under its own name in a temporary directory, with the
/// installed binary's path replaced by the built one (verify checks that the
/// ExecStart= binary exists and is executable).
fn unit_copy(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT_NAME);
    let bin = router_bin().to_str().expect("utf-8 path");
    fs::write(&path, text.replace("/usr/bin/xmpp-component-router", bin)).unwrap();
    (dir, path)
}

/// Run `systemd-analyze verify` and return its complaints (stdout and stderr
/// lines), with the one a systemd older than 253 must give about notify-reload.
fn verify(tool: &Path, unit: &Path) -> (bool, Vec<String>) {
    let out = Command::new(tool)
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze verify");
    let old = systemd_version(tool) < 253;
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(old && l.ends_with("Failed to parse service type, ignoring: notify-reload")))
        .map(str::to_string)
        .collect();
    (out.status.success(), lines)
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let (_dir, path) = unit_copy(&unit_text());
    let (ok, complaints) = verify(&tool, &path);
    assert!(
        ok && complaints.is_empty(),
        "systemd-analyze verify {UNIT} (systemd {}): {complaints:#?}",
        systemd_version(&tool)
    );
}

/// The fallback for systemd < 253 that the unit's comment and the package's
/// postinst give (Type=notify plus ExecReload) verifies too, without any warning.
#[test]
fn fallback_for_old_systemd_passes_verify() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let text = unit_text();
    assert!(text.contains("#   Type=notify\n#   ExecReload=/bin/kill -HUP $MAINPID\n"));
    let postinst =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/postinst")).unwrap();
    assert!(postinst.contains("Type=notify\nExecReload=/bin/kill -HUP \\$MAINPID\n"));
    let fallback = text.replace(
        "\nType=notify-reload\n",
        "\nType=notify\nExecReload=/bin/kill -HUP $MAINPID\n",
    );
    assert_ne!(fallback, text);
    let (_dir, path) = unit_copy(&fallback);
    let (ok, complaints) = verify(&tool, &path);
    assert!(
        ok && complaints.is_empty(),
        "fallback unit: {complaints:#?}"
    );
}

#[test]
fn unit_keeps_its_settings_and_hardening() {
    let text = unit_text();
    let settings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for want in [
        "Type=notify-reload",
        "User=xmpp-component-router",
        "Group=xmpp-component-router",
        "ExecStart=/usr/bin/xmpp-component-router --config /etc/xmpp-component-router/config.toml",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "StartLimitBurst=3",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "LockPersonality=yes",
        "WantedBy=multi-user.target",
    ] {
        assert!(settings.contains(&want), "the unit lacks {want}");
    }
    assert!(
        settings
            .iter()
            .any(|l| l.starts_with("ExecStartPre=") && l.contains("--check")),
        "the unit lacks ExecStartPre=... --check"
    );
    // Nothing in it may let the daemon write to disk or gain privileges back.
    for banned in ["ReadWritePaths=", "AmbientCapabilities=CAP", "User=root"] {
        assert!(
            !settings.iter().any(|l| l.starts_with(banned)),
            "the unit has {banned}"
        );
    }
}

/// `systemd-analyze security --offline=true` rates the unit OK (the README
/// quotes the score); fail if a change makes it noticeably worse.
#[test]
fn unit_exposure_score_stays_low() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let (_dir, path) = unit_copy(&unit_text());
    let out = Command::new(&tool)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    eprintln!("systemd-analyze security --offline=true: exposure {score}");
    assert!(score <= 1.5, "exposure {score} > 1.5:\n{text}");
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

const CONFIG: &str = "[components.\"a.example\"]\nsecret = \"sa\"\n";

/// An RFC 3339-ish timestamp as tracing-subscriber writes it (2025-01-31T12:00:00...).
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(11).any(|w| {
        w[..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[5..7].iter().all(u8::is_ascii_digit)
            && w[7] == b'-'
            && w[8..10].iter().all(u8::is_ascii_digit)
            && w[10] == b'T'
    })
}

#[test]
fn under_journald_lines_carry_priority_and_no_timestamp() {
    let mut d = Daemon::start_env(
        CONFIG,
        &[("JOURNAL_STREAM", "8:1234"), ("RUST_LOG", "debug")],
    );
    // A debug line (connection accepted) and a warning (authentication failed).
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(d.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(
            b"<stream:stream xmlns='jabber:component:accept' \
              xmlns:stream='http://etherx.jabber.org/streams' to='a.example'>\
              <handshake>0000000000000000000000000000000000000000</handshake>",
        )
        .unwrap();
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    assert!(d.wait_for_log(event("handshake.failed"), Duration::from_secs(5)));
    // An error: a reload with an invalid file keeps the old config and says so.
    d.reload("this is = = not toml");
    let st = d.stop().expect("daemon did not exit");
    assert!(st.success(), "exit {st:?}\n{}", d.logs());
    let logs = d.logs();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let prio = l.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&prio),
            "line without a syslog priority prefix: {l:?}\n{logs}"
        );
        assert!(!has_timestamp(l), "line with a timestamp: {l:?}");
        assert!(!l.contains('\x1b'), "line with ANSI escapes: {l:?}");
        assert!(!l[3..].starts_with(' '), "space after the prefix: {l:?}");
    }
    let ready = lines
        .iter()
        .find(|l| l.contains(" ready"))
        .expect("ready line");
    assert!(ready.starts_with("<6>xmpp-component-router "), "{ready}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>") && l.contains("reload failed")),
        "the failed reload is not an error line:\n{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("authentication failed")),
        "the failed handshake is not a warning line:\n{logs}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<7>")),
        "no debug line with RUST_LOG=debug:\n{logs}"
    );
}

#[test]
fn without_journald_lines_are_plain() {
    let mut d = Daemon::start_env(CONFIG, &[]);
    assert!(d.wait_for_log(event("ready"), Duration::from_secs(5)));
    let st = d.stop().expect("daemon did not exit");
    assert!(st.success());
    let logs = d.logs();
    for l in logs.lines() {
        // stderr is a pipe here: no colours, and no journald prefixes.
        assert!(!l.contains('\x1b'), "ANSI escape in {l:?}");
        assert!(
            !l.starts_with('<'),
            "priority prefix without journald: {l:?}"
        );
        assert!(has_timestamp(l), "no timestamp: {l:?}");
    }
    assert!(logs.contains("INFO"), "{logs}");
}

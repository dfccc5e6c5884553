//! Packaging: the man page (generated from the clap definitions, committed as
//! man/xmpp-component-router.8) and the Debian package built with `cargo deb`,
//! checked with dpkg-deb, installed with dpkg, exercised and purged.
//!
//! `UPDATE_MAN=1 cargo test --test package man_page` rewrites the man page.
//!
//! The .deb test changes the machine: it installs the package system-wide, which
//! creates the system user `xmpp-component-router`, then purges the package and
//! removes the user again. So it runs only when asked, with `XCR_SYSTEM_TESTS=1`
//! (as root), or under CI=true; otherwise `./scripts/test` lists it as not run.
//! When it runs, a missing prerequisite (root, dpkg, cargo-deb: `cargo install
//! cargo-deb --locked`) is a failure.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use test_support::not_run;
use test_support::xcr::cli::Cli;

const PKG: &str = "xmpp-component-router";
const MAN_PATH: &str = "man/xmpp-component-router.8";
const INSTALLED_BIN: &str = "/usr/bin/xmpp-component-router";
const INSTALLED_CONFIG: &str = "/etc/xmpp-component-router/config.toml";
const INSTALLED_UNIT: &str = "/usr/lib/systemd/system/xmpp-component-router.service";
const DROPIN: &str = "/etc/systemd/system/xmpp-component-router.service.d/systemd-before-253.conf";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Set to 1 to run the tests that change the machine (README "Tests").
const SYSTEM_TESTS: &str = "XCR_SYSTEM_TESTS";

/// Whether the tests that change the machine should run: asked for, or CI.
fn system_tests_wanted() -> bool {
    not_run::under_ci() || std::env::var(SYSTEM_TESTS).is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------
// The man page
// ---------------------------------------------------------------------------

/// DESCRIPTION of the man page (the clap `about` stays one line for --help).
const DESCRIPTION: &str = "\
XMPP components (IRC, Matrix and SMS bridges, bots, MUC and upload services: anything \
speaking XEP-0114) connect to xmpp-component-router instead of to the XMPP server. It \
authenticates each with its shared secret, routes stanzas between its components itself \
(forwarding the exact bytes the sender wrote) and, with an [upstream] server configured, \
holds one XEP-0114 link per connected component domain to that server (e.g. Prosody), \
which reconnects on its own, and relays everything not addressed to a local component over \
it. Several instances of one component can share its domain (on_conflict = \"balance\"): \
each user's stanzas go to one instance, and one link serves them all. A component that restarts can have its domain held (hold_seconds): the link to the server stays up and stanzas for it wait for it, in order and within the queue bounds, and are bounced if it does not come back in time.

It runs in the foreground and logs to standard error; under systemd it speaks the \
sd_notify protocol (Type=notify-reload) and its log lines carry syslog priorities for \
the journal. The config is re-read on SIGHUP and only the difference is applied, with \
the semantics of Prosody's mod_reload_components: unchanged components are not touched.";

/// Sections clap does not know about, in roff, after OPTIONS.
const EXTRA_SECTIONS: &str = r#".SH COMMANDS
.TP
\fBstatus\fR [\fB\-\-config\fR \fIPATH\fR]
Ask the running daemon, through the metrics listener named by [metrics] listen in the config, what it serves, and print a table: one row per component (and per removed domain whose connection is still open) with its state (connected, offline, detached), connections, peer addresses, connected since, stanzas in and out, bounces, queue, upstream link state and the time until its next retry. Exit 0; 3 when the daemon cannot be asked; 78 for an invalid config.
.SH "EXIT STATUS"
.TP
\fB0\fR
Clean shutdown after SIGTERM or SIGINT, or a valid config with \fB\-\-check\fR.
.TP
\fB1\fR
Any other fatal error, e.g. a listen address already in use; the message names the address and the operating system's error.
.TP
\fB2\fR
Usage error (unknown option, missing value).
.TP
\fB3\fR
\fBstatus\fR only: the daemon cannot be asked, because it is not running (nothing answers at its metrics listener) or the config has no [metrics] listen address; the message says which.
.TP
\fB78\fR
Invalid config (EX_CONFIG) at start or with \fB\-\-check\fR; the message names the file, the line and the problem. Under the systemd unit a start that fails so is retried at most twice (StartLimitBurst=3), and the daemon exiting with it is not restarted.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Reload: re\-read the config file (and the Prosody config it names), validate it completely, and apply only the difference. Added components are served at once; removed ones are detached (their live connection stays open but nothing more is routed from or to it); changed secrets apply at the next handshake; unchanged components are not touched. An invalid file changes nothing: the error is logged and the old config keeps serving. The outcome is logged, one line per added, removed and changed component and a summary. Under systemd, RELOADING=1 and then READY=1 are sent; \fBsystemctl reload xmpp\-component\-router\fR sends this signal and waits for the reload to finish.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Shut down: stop accepting, send the stream error system\-shutdown to every connection, close the upstream links and exit with status 0 within five seconds.
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
Log filter; overrides \fBlog_level\fR from the config, e.g. RUST_LOG=debug.
.TP
\fBJOURNAL_STREAM\fR
Set by systemd when standard error goes to the journal. Log lines then start with their syslog priority (<3> error, <4> warning, <6> info, <7> debug) and carry no timestamp of their own.
.TP
\fBNOTIFY_SOCKET\fR
Set by systemd for Type=notify services: READY=1, RELOADING=1, STOPPING=1 and STATUS= are sent to it.
.SH FILES
.TP
\fI/etc/xmpp\-component\-router/config.toml\fR
The default config file: listen addresses, components and their secrets, the upstream server. Mode 0640, owner root, group xmpp\-component\-router, since it holds secrets. The Debian package installs a commented example.
.TP
\fI/usr/lib/systemd/system/xmpp\-component\-router.service\fR
The systemd unit. It runs the daemon as the system user xmpp\-component\-router, with \fB\-\-check\fR before each start. Override settings with \fBsystemctl edit xmpp\-component\-router\fR.
.TP
\fI/etc/prosody/prosody.cfg.lua\fR
Read only if the config sets \fBprosody_config\fR to it; its external components (Component "domain" with component_secret) are served too. On Debian it is readable by the group prosody only: add \fBSupplementaryGroups=prosody\fR to the unit with \fBsystemctl edit\fR.
.SH EXAMPLES
Validate the installed config and show what would be served:
.PP
.RS
runuser \-u xmpp\-component\-router \-\- xmpp\-component\-router \-\-check
.RE
.PP
Apply a changed config to the running service, then read its log:
.PP
.RS
systemctl reload xmpp\-component\-router
.br
journalctl \-u xmpp\-component\-router \-n 20
.RE
.PP
Show what the running daemon serves (needs [metrics] listen in the config):
.PP
.RS
xmpp\-component\-router status
.RE
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd.service\fR(5), \fBsystemd.exec\fR(5), \fBprosodyctl\fR(1)
.PP
XEP\-0114: Jabber Component Protocol.
"#;

fn render_man() -> Vec<u8> {
    let cmd = Cli::command().long_about(DESCRIPTION);
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("System Administration");
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    out.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    man.render_version_section(&mut out).unwrap();
    // Each render_* call repeats clap_mangen's preamble: keep the first only.
    let text = String::from_utf8(out).unwrap();
    let preamble = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let first = text.find(preamble).map_or(0, |i| i + preamble.len());
    let (head, tail) = text.split_at(first);
    format!("{head}{}", tail.replace(preamble, "")).into_bytes()
}

#[test]
fn man_page_is_current() {
    let path = repo().join(MAN_PATH);
    let fresh = render_man();
    if std::env::var_os("UPDATE_MAN").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &fresh).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let committed = fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{MAN_PATH} is stale (the clap definitions or the hand-written sections changed): \
         run `UPDATE_MAN=1 cargo test --test package man_page` and commit it"
    );
}

#[test]
fn man_page_documents_every_option_and_the_operator_sections() {
    let man = String::from_utf8(render_man()).unwrap();
    assert!(man.contains("\n.TH xmpp-component-router 8 "), "{man}");
    assert_eq!(man.matches(".ds Aq").count(), 2, "one preamble: {man}");
    for needle in [
        "\\-\\-config",
        "\\-\\-check",
        "\\-\\-help",
        "\\-\\-version",
        ".SH \"EXIT STATUS\"",
        ".SH SIGNALS",
        "SIGHUP",
        "SIGTERM",
        ".SH FILES",
        "/etc/xmpp\\-component\\-router/config.toml",
        "\\fB78\\fR",
    ] {
        assert!(man.contains(needle), "man page lacks {needle}");
    }
    // Every option has a help text of more than a few words.
    let cmd = Cli::command();
    for arg in cmd
        .get_arguments()
        .filter(|a| !["help", "version"].contains(&a.get_id().as_str()))
    {
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(
            help.split_whitespace().count() >= 8,
            "--{} has too short a help text: {help:?}",
            arg.get_id()
        );
    }
    // groff renders it without warnings.
    if !Path::new("/usr/bin/groff").exists() {
        return not_run::missing(
            "man page rendering check in tests/package.rs",
            "groff is missing: apt-get install groff-base",
        );
    }
    let out = run_with_input(
        Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]),
        man.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "groff: {err}"
    );
}

fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

// ---------------------------------------------------------------------------
// The Debian package
// ---------------------------------------------------------------------------

/// Run a command with a time limit; stdout and stderr are collected in files so
/// that a chatty child cannot block on a full pipe.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} took more than {limit:?}; stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
    }
}

/// Run, require exit 0, return stdout.
fn ok(cmd: &mut Command, limit: Duration) -> String {
    let out = run_bounded(cmd, limit);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    c
}

const SHORT: Duration = Duration::from_secs(60);

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", PKG])
        .output()
        .map(|o| o.status.success() && o.stdout == b"installed")
        .unwrap_or(false)
}

/// The package's state on dpkg's side, empty if dpkg has never heard of it.
fn package_status() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", PKG])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn getent(db: &str, key: &str) -> Option<Vec<String>> {
    let out = Command::new("getent").args([db, key]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(str::to_string)
            .collect(),
    )
}

fn systemd_major() -> Option<u32> {
    let out = Command::new("systemctl").arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Purges the package (and removes the system user if this test created it)
/// however the test ends.
struct Cleanup {
    remove_user: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !package_status().is_empty() && !package_status().starts_with("un") {
            let _ = run_bounded(&mut sh("dpkg", &["-P", PKG]), SHORT);
        }
        if self.remove_user {
            if getent("passwd", PKG).is_some() {
                let _ = Command::new("userdel").arg(PKG).status();
            }
            if getent("group", PKG).is_some() {
                let _ = Command::new("groupdel").arg(PKG).status();
            }
        }
    }
}

/// One `dpkg-deb -c` line: mode string, owner/group, path (without the leading ".").
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    ok(Command::new("dpkg-deb").arg("-c").arg(deb), SHORT)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "odd dpkg-deb -c line {l:?}");
            (
                f[0].to_string(),
                f[1].to_string(),
                f[5..].join(" ").trim_start_matches('.').to_string(),
            )
        })
        .collect()
}

/// `Field: value` lines of `dpkg-deb -I` (the control file).
fn control_field(info: &str, field: &str) -> String {
    info.lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{field}: ")))
        .unwrap_or_else(|| panic!("no {field} in:\n{info}"))
        .to_string()
}

#[test]
fn debian_package_builds_installs_runs_check_and_purges() {
    let started = Instant::now();
    if !system_tests_wanted() {
        return not_run::record(
            "Debian package test in tests/package.rs",
            &format!(
                "it installs the .deb system-wide and adds a system user: \
                 run it as root with {SYSTEM_TESTS}=1 ./scripts/test"
            ),
        );
    }
    // Asked for (or CI): a missing prerequisite is a failure, not a skip.
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "not root: installing the .deb with dpkg -i needs root"
    );
    for tool in [
        "dpkg",
        "dpkg-deb",
        "dpkg-statoverride",
        "adduser",
        "runuser",
    ] {
        assert!(on_path(tool), "{tool} is missing");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_deb,
        "cargo-deb is missing (cargo install cargo-deb --locked)"
    );

    // One run at a time on this machine: the package and its user are global.
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/xmpp-component-router-package-test.lock")
        .unwrap();
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock");

    if !package_status().is_empty() && !package_status().starts_with("un") {
        if not_run::under_ci() {
            eprintln!("purging a leftover {PKG} install (CI machine)");
            ok(&mut sh("dpkg", &["-P", PKG]), SHORT);
        } else {
            return not_run::record(
                "Debian package test in tests/package.rs",
                &format!(
                    "{PKG} is installed on this machine (dpkg status {}); the test does not touch it",
                    package_status()
                ),
            );
        }
    }
    let user_existed = getent("passwd", PKG).is_some();
    let _cleanup = Cleanup {
        remove_user: !user_existed,
    };

    // Build. A separate target dir: the outer `cargo test` may hold the lock on
    // target/ while tests run.
    let out_dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    ok(
        Command::new(&cargo)
            .args(["deb", "--quiet", "--output"])
            .arg(out_dir.path())
            .current_dir(repo())
            .env("CARGO_TARGET_DIR", repo().join("target/package-test")),
        Duration::from_secs(20 * 60),
    );
    let build_time = t.elapsed();
    let deb = fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb made no .deb");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{PKG}_{version}-1_")),
        "{}",
        deb.display()
    );

    // Contents: files, modes, owners.
    let files = contents(&deb);
    for (mode, owner, path) in &files {
        assert!(
            owner == "root/root" || owner == "0/0",
            "{path} is owned by {owner}"
        );
        assert!(!mode.ends_with('w'), "{path} is world-writable: {mode}");
        let allowed = [
            "/usr/",
            "/usr/bin/",
            "/usr/lib/",
            "/usr/lib/systemd/",
            "/usr/lib/systemd/system/",
            "/usr/share/",
            "/usr/share/doc/",
            "/usr/share/man/",
            "/usr/share/man/man8/",
            "/etc/",
        ];
        assert!(
            allowed.contains(&path.as_str())
                || path.starts_with("/usr/share/doc/xmpp-component-router/")
                || path.starts_with("/etc/xmpp-component-router/")
                || [
                    INSTALLED_BIN,
                    INSTALLED_UNIT,
                    "/usr/share/man/man8/xmpp-component-router.8.gz",
                ]
                .contains(&path.as_str()),
            "unexpected file in the package: {path}"
        );
    }
    let mode_of = |p: &str| {
        files
            .iter()
            .find(|(_, _, path)| path == p)
            .map(|(m, _, _)| m.clone())
            .unwrap_or_else(|| panic!("{p} is not in the package:\n{files:#?}"))
    };
    assert_eq!(mode_of(INSTALLED_BIN), "-rwxr-xr-x");
    assert_eq!(mode_of(INSTALLED_CONFIG), "-rw-r-----");
    assert_eq!(mode_of(INSTALLED_UNIT), "-rw-r--r--");
    assert_eq!(
        mode_of("/usr/share/man/man8/xmpp-component-router.8.gz"),
        "-rw-r--r--"
    );
    assert_eq!(
        mode_of("/usr/share/doc/xmpp-component-router/README.md"),
        "-rw-r--r--"
    );
    assert_eq!(
        mode_of("/usr/share/doc/xmpp-component-router/copyright"),
        "-rw-r--r--"
    );

    // Metadata.
    let info = ok(Command::new("dpkg-deb").arg("-I").arg(&deb), SHORT);
    assert_eq!(control_field(&info, "Package"), PKG);
    assert_eq!(control_field(&info, "Version"), format!("{version}-1"));
    assert_eq!(control_field(&info, "Section"), "net");
    let depends = control_field(&info, "Depends");
    assert!(depends.contains("adduser"), "Depends: {depends}");
    assert!(depends.contains("libc6"), "Depends: {depends}");
    let conffiles = ok(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
        SHORT,
    );
    assert_eq!(conffiles.trim(), INSTALLED_CONFIG);
    for script in ["postinst", "prerm", "postrm"] {
        let text = ok(
            Command::new("dpkg-deb").arg("-I").arg(&deb).arg(script),
            SHORT,
        );
        assert!(text.starts_with("#!/bin/sh"), "{script}:\n{text}");
        assert!(!text.contains("#DEBHELPER#"), "{script} kept #DEBHELPER#");
    }

    // The packaged files are the repository's.
    let unpacked = tempfile::tempdir().unwrap();
    ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(unpacked.path()),
        SHORT,
    );
    let packaged = |p: &str| fs::read(unpacked.path().join(p.trim_start_matches('/'))).unwrap();
    assert_eq!(
        packaged(INSTALLED_UNIT),
        fs::read(repo().join("systemd/xmpp-component-router.service")).unwrap()
    );
    assert_eq!(
        packaged(INSTALLED_CONFIG),
        fs::read(repo().join("config/example.toml")).unwrap()
    );
    let man = run_bounded(
        Command::new("gzip").arg("-dc").arg(
            unpacked
                .path()
                .join("usr/share/man/man8/xmpp-component-router.8.gz"),
        ),
        SHORT,
    );
    assert_eq!(man.stdout, fs::read(repo().join(MAN_PATH)).unwrap());

    // Install.
    let t = Instant::now();
    ok(
        Command::new("dpkg").arg("-i").arg(&deb),
        Duration::from_secs(120),
    );
    let install_time = t.elapsed();
    assert!(package_installed(), "dpkg status {}", package_status());

    let pw = getent("passwd", PKG).expect("no system user after install");
    let gr = getent("group", PKG).expect("no system group after install");
    let uid: u32 = pw[2].parse().unwrap();
    let gid: u32 = gr[2].parse().unwrap();
    assert!(uid < 1000, "not a system user: {pw:?}");
    assert_eq!(pw[3], gr[2], "primary group: {pw:?} {gr:?}");
    assert_eq!(pw[5], "/nonexistent");
    assert!(pw[6].ends_with("nologin"), "shell {}", pw[6]);

    let check_config_perms = || {
        let meta = fs::metadata(INSTALLED_CONFIG).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640, "config mode");
        assert_eq!(meta.uid(), 0, "config owner");
        assert_eq!(meta.gid(), gid, "config group");
        let ov = ok(
            &mut sh("dpkg-statoverride", &["--list", INSTALLED_CONFIG]),
            SHORT,
        );
        assert_eq!(ov.trim(), format!("root {PKG} 640 {INSTALLED_CONFIG}"));
    };
    check_config_perms();

    assert_eq!(
        fs::read(INSTALLED_UNIT).unwrap(),
        fs::read(repo().join("systemd/xmpp-component-router.service")).unwrap()
    );
    // Installed, not enabled: the shipped config is an example to edit first.
    assert!(!Path::new(
        "/etc/systemd/system/multi-user.target.wants/xmpp-component-router.service"
    )
    .exists());
    match systemd_major() {
        Some(v) if v < 253 => {
            let d = fs::read_to_string(DROPIN).expect("no drop-in for systemd < 253");
            assert!(
                d.contains("Type=notify\nExecReload=/bin/kill -HUP $MAINPID\n"),
                "{d}"
            );
        }
        _ => assert!(!Path::new(DROPIN).exists()),
    }
    assert!(Path::new("/usr/share/man/man8/xmpp-component-router.8.gz").is_file());

    let v = ok(&mut sh(INSTALLED_BIN, &["--version"]), SHORT);
    assert_eq!(v.trim(), format!("{PKG} {version}"));

    // --check on the installed config: as root, and as the service user.
    let check = ["--check", "--config", INSTALLED_CONFIG];
    let as_root = ok(&mut sh(INSTALLED_BIN, &check), SHORT);
    assert!(as_root.contains("a.localhost"), "{as_root}");
    assert!(
        !as_root.contains("secret-a"),
        "--check printed a secret:\n{as_root}"
    );
    let mut as_user_args = vec!["-u", PKG, "--", INSTALLED_BIN];
    as_user_args.extend(check);
    let as_user = ok(&mut sh("runuser", &as_user_args), SHORT);
    assert_eq!(as_user, as_root);
    // Another unprivileged user cannot read it (the secrets are in there).
    let mut as_nobody_args = vec!["-u", "nobody", "--", INSTALLED_BIN];
    as_nobody_args.extend(check);
    let nobody = run_bounded(&mut sh("runuser", &as_nobody_args), SHORT);
    assert_eq!(nobody.status.code(), Some(78), "{nobody:?}");
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("Permission denied"));

    // Reinstalling (dpkg's upgrade path) keeps the administrator's edits and
    // the permissions, and runs the maintainer scripts again without failing.
    let mut edited = fs::read_to_string(INSTALLED_CONFIG).unwrap();
    edited.push_str("# edited by the administrator\n");
    fs::write(INSTALLED_CONFIG, &edited).unwrap();
    ok(
        Command::new("dpkg").arg("-i").arg(&deb),
        Duration::from_secs(120),
    );
    assert_eq!(fs::read_to_string(INSTALLED_CONFIG).unwrap(), edited);
    check_config_perms();
    ok(&mut sh("runuser", &as_user_args), SHORT);

    // Purge leaves nothing of the package behind but the system user (Debian
    // practice; the cleanup removes it if this test created it).
    ok(&mut sh("dpkg", &["-P", PKG]), Duration::from_secs(120));
    assert!(package_status().is_empty() || package_status().starts_with("un"));
    for gone in [
        INSTALLED_BIN,
        INSTALLED_UNIT,
        INSTALLED_CONFIG,
        DROPIN,
        "/etc/xmpp-component-router",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    let ov = run_bounded(
        &mut sh("dpkg-statoverride", &["--list", INSTALLED_CONFIG]),
        SHORT,
    );
    assert!(ov.stdout.is_empty(), "stat override left after purge");
    assert!(
        getent("passwd", PKG).is_some(),
        "purge removed the system user"
    );

    eprintln!(
        "debian package: cargo deb {:.0?}, dpkg -i {:.1?}, whole test {:.0?}",
        build_time,
        install_time,
        started.elapsed()
    );
}

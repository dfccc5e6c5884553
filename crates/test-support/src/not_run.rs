//! Tests that cannot run on this machine say so where it is seen: a line in the
//! file named by `XCR_NOT_RUN_FILE`, which `./scripts/test` prints at the end
//! (plus a notice on the test's stderr). Under CI (`CI=true`) a test whose peer is
//! missing fails instead, so CI never passes on tests that did not run.

use std::io::Write;

/// Whether this is a CI run: `CI` set to anything but empty, `0` or `false`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// `what` cannot run because something it needs is missing (`why`, with how to
/// get it). Fails the test under CI; otherwise records it, and the test returns.
pub fn missing(what: &str, why: &str) {
    assert!(
        !under_ci(),
        "{what}: {why} (CI=true, so this is a failure, not a skip)"
    );
    record(what, why);
}

/// Records that `what` did not run and why, also under CI (for a test that runs
/// only when asked, or a limit of the machine nothing can install).
pub fn record(what: &str, why: &str) {
    let line = format!("{what}: not run, {why}");
    eprintln!("NOT RUN: {line}");
    let Some(path) = std::env::var_os("XCR_NOT_RUN_FILE").filter(|p| !p.is_empty()) else {
        return;
    };
    // One write per line, appending: tests in parallel threads and processes share
    // the file.
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        eprintln!("cannot record it in {}: {e}", path.to_string_lossy());
    }
}

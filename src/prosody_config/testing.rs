//! Helpers shared by the unit tests of every `prosody_config` module.

use std::sync::atomic::{AtomicUsize, Ordering};

pub(super) use super::{load, parse_str, ProsodyComponent, ProsodyConfig, ProsodyConfigError};
pub(super) use std::fs;
pub(super) use std::path::{Path, PathBuf};

pub(super) const FILE: &str = "/nonexistent-prosody-test-dir/prosody.cfg.lua";

pub(super) fn parse(text: &str) -> ProsodyConfig {
    parse_str(text, Path::new(FILE)).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

pub(super) fn parse_err(text: &str) -> ProsodyConfigError {
    match parse_str(text, Path::new(FILE)) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

/// Asserts a config error on `line` whose message contains `needle`.
pub(super) fn assert_err(text: &str, line: usize, needle: &str) {
    let e = parse_err(text);
    assert_eq!(e.line(), Some(line), "wrong line in {e}");
    assert_eq!(e.file(), Path::new(FILE));
    assert!(e.to_string().contains(needle), "{e:?} lacks {needle:?}");
}

/// Asserts the text parses with a warning on `line` containing `needle`; returns the
/// config.
pub(super) fn assert_warns(text: &str, line: usize, needle: &str) -> ProsodyConfig {
    let c = parse(text);
    let prefix = format!("{FILE}:{line}: ");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with(&prefix) && w.contains(needle)),
        "no warning {prefix}…{needle}… in {:?}",
        c.warnings
    );
    c
}

pub(super) fn domains(c: &ProsodyConfig) -> Vec<&str> {
    c.components.iter().map(|c| c.domain.as_str()).collect()
}

pub(super) fn comp<'a>(c: &'a ProsodyConfig, domain: &str) -> &'a ProsodyComponent {
    c.components
        .iter()
        .find(|c| c.domain == domain)
        .unwrap_or_else(|| panic!("no component {domain} in {c:?}"))
}

pub(super) fn secret(c: &ProsodyConfig, domain: &str) -> Option<String> {
    comp(c, domain).secret.clone()
}

/// Parses `value` as the secret of an external component.
pub(super) fn secret_of(value: &str) -> String {
    let c = parse(&format!(
        "VirtualHost \"x.org\"\nComponent \"c.x.org\"\n  component_secret = {value}\n"
    ));
    secret(&c, "c.x.org").unwrap_or_default()
}

pub(super) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/prosody")
        .join(name)
}

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "prosody-config-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(super) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create dir");
        }
        fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

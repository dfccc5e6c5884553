//! `config::parse` on arbitrary text. Checked: no panic; an error names a line
//! inside the text; a valid config's limits are in their documented ranges.
//! Relative paths (`secret_file`, `prosody_config`) resolve under a directory
//! that does not exist.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use test_support::xcr::config::{parse, ConfigError, Declared};

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let path = Path::new("/nonexistent-fuzz-dir/config.toml");
    match parse(text, path) {
        Ok(c) => {
            assert!(!c.listen.is_empty());
            assert!(c.max_stanza_size >= 10_000);
            assert!(c.max_connections >= 1 && c.max_attributes >= 1 && c.max_stanza_depth >= 1);
            assert!(c.max_queue_stanzas >= 1 && c.max_queue_bytes >= 1024);
            for declared in c.components.values() {
                let domain = declared.domain();
                assert_eq!(domain, domain.to_ascii_lowercase());
                if let Declared::Component(comp) = declared {
                    assert!(!comp.secret.expose().is_empty());
                    assert!(!comp.upstream_secret.expose().is_empty());
                }
            }
        }
        // (An error in a Prosody file that `prosody_config` names has its lines.)
        Err(ConfigError::Invalid { file, line, reason }) if file == path => {
            assert!(
                line >= 1 && line <= text.lines().count() + 1,
                "line {line}: {reason}"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

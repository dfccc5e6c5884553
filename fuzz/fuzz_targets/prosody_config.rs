//! `prosody_config::parse_str` on arbitrary text (the declarative subset of
//! prosody.cfg.lua). Checked: no panic; errors render. `Include`s resolve
//! under a directory that does not exist.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use test_support::xcr::prosody_config::parse_str;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match parse_str(text, Path::new("/nonexistent-fuzz-dir/prosody.cfg.lua")) {
        Ok(c) => {
            for comp in &c.components {
                let _ = (&comp.domain, comp.enabled);
            }
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.line();
        }
    }
});

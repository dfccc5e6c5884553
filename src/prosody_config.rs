//! Reader for the declarative subset of Prosody's `prosody.cfg.lua` (the `prosody_config`
//! key; docs/behaviour.md#components-from-a-prosody-config).
//!
//! This module owns one job: given a Prosody configuration file, find the *external*
//! components it declares (`Component "x"` without a module name) together with their
//! `component_secret` and `enabled` settings, following `Include` directives, so that the
//! router can serve them as if they were declared in its own TOML file. Everything else in
//! the file is Prosody's business and is ignored. It exists so that users who already
//! declare their components in Prosody do not have to declare them twice.
//!
//! Prosody's configuration is a Lua program; embedding a Lua interpreter would mean
//! executing arbitrary code (`os.execute`, `RunScript`) with the router's privileges, so
//! instead this module lexes full Lua and parses the declarative subset that real configs
//! use:
//!
//! - comments `--`, `--[[ ]]`, `--[==[ ]==]`; strings `"…"` and `'…'` with all Lua 5.4
//!   escapes, long strings `[[ ]]` / `[==[ ]==]`; numbers (a `-` directly before a number
//!   literal is accepted as a negative number); `true`, `false`, `nil`; tables `{ … }` with
//!   list entries and `key = value` / `["key"] = value` entries separated by `,` or `;`;
//! - `key = value` assignments, `VirtualHost "x"` (aliases `Host`, `host`),
//!   `Component "x"` / `Component "x" "module"` (alias `component`) in any Lua call syntax
//!   (`Component("x")`, `Component [[x]]`, `Component("x")("muc")`), the table forms
//!   `VirtualHost "x" { … }` and `Component "x" ["module"] { … }` (options given in the
//!   table, after which the file is back in the global section, as in Prosody),
//!   `Include "path"` (alias `include`) and optional `;` separators.
//!
//! Semantics follow Prosody 0.12's `core/configmanager.lua`:
//!
//! - Every file (the main one and each included one) starts in the global section.
//!   Options of the global section are defaults for every host, wherever in the global
//!   section they appear; `component_secret` and `enabled` are inherited that way.
//!   `enabled` disables a host only when it is `false` (any other value counts as true,
//!   with a warning); `nil` unsets an option (falling back to the global value).
//! - `Component "x"` is external when it has no module name or the module name
//!   `"component"`; any other module (`"muc"`, …) is internal and ignored.
//! - A host declared twice (same domain after ASCII lower-casing) is one host: the second
//!   declaration continues the first one's section, the reported file and line are those
//!   of the first declaration, later option values override earlier ones and the module
//!   name of the last `Component` line wins (as in Prosody). A `VirtualHost` and a
//!   `Component` with the same domain are a config error, as in Prosody.
//! - `Include` resolves relative paths against the including file's directory. A `*` or
//!   `?` in the last path component makes it a glob over that one directory: dot files
//!   and directories are skipped, matches are read in byte order of their names. A glob
//!   that matches nothing is fine; a glob whose directory does not exist is a warning
//!   (Prosody itself would refuse to start). Include cycles and nesting deeper than 16
//!   files are config errors.
//! - A `component_secret` that is not a string (or `nil`) in the global section or a
//!   component section is a config error (Prosody would `tostring()` it).
//!
//! Errors and warnings:
//!
//! - Lexical errors (unfinished string or long comment, malformed number, bad escape,
//!   a character that is not Lua) are config errors anywhere: Prosody refuses such files.
//! - A construct outside the subset (other function calls, operators, identifiers as
//!   values, `local`, `if`, field access, `os.getenv(…)`, `ENV_X`, …) is a config error
//!   naming file and line inside an external component's section. Elsewhere (the global
//!   section, a VirtualHost section, an internal component's section) it is skipped with
//!   a warning: the skipped statement extends over balanced brackets and `function`/`do`/
//!   `if`/`repeat` blocks to the end of its line (continuation lines included); a
//!   statement that never ends is a config error. Exceptions, which are config errors
//!   everywhere because skipping them would silently change which components are served
//!   or with which secret: a malformed `VirtualHost`/`Component`/`Include` statement, and
//!   an unsupported value assigned to `component_secret` or `enabled` in the global
//!   section.
//! - A served component (external, enabled) whose parent domain (its domain minus the
//!   first label) is not an enabled VirtualHost gets a warning, cf. mod_reload_components'
//!   "Note that its respective VirtualHost is not loaded. Bad things may happen."
//!   [`reload_warnings`] reports the reload-time variant of that case.
//!
//! Nothing here panics on any input: the lexer and parser only use checked access.
//!
//! Modules, each with its unit tests beside it:
//! - this file: the public surface ([`load()`], [`parse_str`], [`reload_warnings`], the
//!   result and error types);
//! - `lex`: Lua 5.4 tokens (comments, strings and their escapes, numbers);
//! - `parse`: values (literals and tables), call arguments, and skipping a statement
//!   outside the subset;
//! - `load`: the `Loader` that walks a file's statements, decides
//!   between an error and a skip-with-warning, and builds the result;
//! - `sections`: `VirtualHost`/`Component` declarations and the options set in them;
//! - `include`: `Include` with globs, cycle and depth limits, bounded file reads.

use std::fs;
use std::path::{Path, PathBuf};

mod include;
mod lex;
mod load;
mod parse;
mod sections;
#[cfg(test)]
mod testing;

use load::Loader;

/// An external component declared in a Prosody configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProsodyComponent {
    /// The component's domain, ASCII-lowercased.
    pub domain: String,
    /// Its `component_secret` (its own, else the global one; `None` if set nowhere).
    pub secret: Option<String>,
    /// `false` only if `enabled = false` applies to it (its own or the global setting).
    pub enabled: bool,
    /// The file of the (first) `Component` line.
    pub file: PathBuf,
    /// The 1-based line of the (first) `Component` line.
    pub line: usize,
}

/// What the router needs from a Prosody configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProsodyConfig {
    /// External components only (also the disabled ones), in file order (includes expanded
    /// in place).
    pub components: Vec<ProsodyComponent>,
    /// Every declared VirtualHost (also the disabled ones), lower-cased, in file order.
    pub virtual_hosts: Vec<String>,
    /// Human-readable warnings, each starting with `file:line: `.
    pub warnings: Vec<String>,
}

/// Why a Prosody configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProsodyConfigError {
    /// A file (or an Include's directory) could not be read.
    #[error("{}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid or uses an unsupported construct where it matters.
    #[error("{}:{line}: {reason}", .file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        reason: String,
    },
}

impl ProsodyConfigError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ProsodyConfigError::Io { file, .. } | ProsodyConfigError::Syntax { file, .. } => file,
        }
    }

    /// The 1-based line the error is about, if it is about a line.
    pub fn line(&self) -> Option<usize> {
        match self {
            ProsodyConfigError::Io { .. } => None,
            ProsodyConfigError::Syntax { line, .. } => Some(*line),
        }
    }
}

/// Reads the Prosody configuration at `path`, following its `Include`s.
pub fn load(path: &Path) -> Result<ProsodyConfig, ProsodyConfigError> {
    let mut loader = Loader::default();
    loader.load_file(path, None, 0)?;
    Ok(loader.finish())
}

/// Parses `text` as the contents of the Prosody configuration file `file` (which need not
/// exist); `Include`s are resolved relative to `file`'s directory.
pub fn parse_str(text: &str, file: &Path) -> Result<ProsodyConfig, ProsodyConfigError> {
    parse_bytes(text.as_bytes(), file)
}

fn parse_bytes(bytes: &[u8], file: &Path) -> Result<ProsodyConfig, ProsodyConfigError> {
    let mut loader = Loader::default();
    loader
        .stack
        .push(fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()));
    loader.files_read = 1;
    loader.parse_file(bytes, file, 0)?;
    Ok(loader.finish())
}

/// Warnings for a reload from `before` to `after` (mod_reload_components' example 2): a
/// served component that is new in `after` and whose parent domain is a VirtualHost that
/// is new in `after` too. mod_reload_components loads new components but not new
/// VirtualHosts: "Note that its respective VirtualHost is not loaded. Bad things may
/// happen."
pub fn reload_warnings(before: &ProsodyConfig, after: &ProsodyConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    for c in after.components.iter().filter(|c| c.enabled) {
        let was_served = before
            .components
            .iter()
            .any(|b| b.enabled && b.domain == c.domain);
        if was_served {
            continue;
        }
        let Some((_, parent)) = c.domain.split_once('.') else {
            continue;
        };
        let new_vhost = after.virtual_hosts.iter().any(|v| v == parent)
            && !before.virtual_hosts.iter().any(|v| v == parent);
        if new_vhost {
            warnings.push(format!(
                "{}:{}: new Component \"{}\" belongs to VirtualHost \"{}\", which is new too; \
                 reloading components does not load VirtualHosts, so its VirtualHost is not \
                 loaded and bad things may happen",
                c.file.display(),
                c.line,
                c.domain,
                parent
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prosody_config::testing::*;

    // --- mod_reload_components' README example, first file ---------------------------

    #[test]
    fn reload_components_readme_example() {
        let c = parse(
            "VirtualHost \"example.com\"\n    authentication = \"internal_plain\"\n\
             Component \"a.example.com\"\n    component_secret = \"a\"\n",
        );
        assert_eq!(c.virtual_hosts, vec!["example.com"]);
        assert_eq!(
            c.components,
            vec![ProsodyComponent {
                domain: "a.example.com".into(),
                secret: Some("a".into()),
                enabled: true,
                file: PathBuf::from(FILE),
                line: 3,
            }]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn debian_fixture() {
        let path = fixture("debian-prosody.cfg.lua");
        let c = load(&path).expect("load");
        assert_eq!(
            c.components,
            vec![
                ProsodyComponent {
                    domain: "bridge1.localhost".into(),
                    secret: Some("s1".into()),
                    enabled: true,
                    file: path.clone(),
                    line: 275,
                },
                ProsodyComponent {
                    domain: "bridge2.localhost".into(),
                    secret: Some("s2".into()),
                    enabled: true,
                    file: path.clone(),
                    line: 278,
                },
            ]
        );
        assert_eq!(c.virtual_hosts, ["localhost"]);
        // Only the Include of the (absent) conf.d directory.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("conf.d"), "{:?}", c.warnings);
    }

    /// (domain, secret) of the enabled components.
    fn served(c: &ProsodyConfig) -> Vec<(&str, &str)> {
        c.components
            .iter()
            .filter(|c| c.enabled)
            .map(|c| (c.domain.as_str(), c.secret.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn example1_fixtures() {
        let before = load(&fixture("example1-before.cfg.lua")).expect("before");
        let after = load(&fixture("example1-after.cfg.lua")).expect("after");
        assert_eq!(
            served(&before),
            [("a.example.com", "a"), ("b.example.com", "b")]
        );
        // c.example.com is loaded, b.example.com is unloaded.
        assert_eq!(
            served(&after),
            [("a.example.com", "a"), ("c.example.com", "c")]
        );
        for c in [&before, &after] {
            assert_eq!(c.virtual_hosts, ["example.com"]);
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        }
        assert!(reload_warnings(&before, &after).is_empty());
    }

    #[test]
    fn example2_fixtures() {
        let before_path = fixture("example2-before.cfg.lua");
        let after_path = fixture("example2-after.cfg.lua");
        let before = load(&before_path).expect("before");
        let after = load(&after_path).expect("after");
        assert_eq!(served(&before), [("a.example.com", "a")]);
        assert!(before.warnings.is_empty(), "{:?}", before.warnings);
        // a.newexample.com is loaded.
        assert_eq!(
            served(&after),
            [("a.example.com", "a"), ("a.newexample.com", "a")]
        );
        assert_eq!(after.virtual_hosts, ["example.com", "newexample.com"]);
        // Read on its own, the new file is consistent: newexample.com is a VirtualHost.
        assert!(after.warnings.is_empty(), "{:?}", after.warnings);
        // As a reload, newexample.com is a VirtualHost that reloading components does not
        // load: the README's "Note that its respective VirtualHost is not loaded."
        let warnings = reload_warnings(&before, &after);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let prefix = format!("{}:10: ", after_path.display());
        assert!(warnings[0].starts_with(&prefix), "{warnings:?}");
        assert!(warnings[0].contains("\"a.newexample.com\""), "{warnings:?}");
        assert!(warnings[0].contains("\"newexample.com\""), "{warnings:?}");
        // Without its VirtualHost line, the file alone gets the warning.
        let text = fs::read_to_string(&after_path)
            .expect("read")
            .replace("VirtualHost \"newexample.com\"", "");
        let c = parse_str(&text, &after_path).expect("parse");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with(&prefix), "{:?}", c.warnings);
        assert!(c.warnings[0].contains("\"newexample.com\" is not a VirtualHost"));
    }

    // --- robustness -------------------------------------------------------------------------

    /// Tokens and fragments the random inputs of [`never_panics`] are made of.
    const PIECES: &[&[u8]] = &[
        b"Component",
        b"VirtualHost",
        b"Include",
        b"\"a.b\"",
        b"'x'",
        b"[[",
        b"]]",
        b"[=[",
        b"{",
        b"}",
        b"(",
        b")",
        b"[",
        b"]",
        b"=",
        b"==",
        b",",
        b";",
        b"..",
        b".",
        b"-",
        b"--",
        b"--[[",
        b"\n",
        b" ",
        b"\r",
        b"\\",
        b"\"",
        b"local",
        b"function",
        b"end",
        b"if",
        b"then",
        b"do",
        b"repeat",
        b"until",
        b"nil",
        b"true",
        b"0x",
        b"1e",
        b"9",
        b"\\u{",
        b"\\x",
        b"\xff",
        b"\xef\xbb\xbf",
        b"component_secret",
        b"enabled",
        b"ENV_X",
        b"os",
        b"#",
        b"@",
        b"::",
        b"\\z",
        b"\\999",
    ];

    /// Never panics: every prefix of a config using every construct, and random token soup
    /// and byte noise.
    #[test]
    fn never_panics() {
        let sample = "--[==[ c ]==] VirtualHost \"Ex.com\" { enabled = false }; x = { [1] = \
                      'a\\z  b', y = [[s]], -0x1p4, 1e5 }\nComponent(\"a.ex.com\")(\"muc\") \
                      {}\nComponent 'b.ex.com'\ncomponent_secret = \"\\u{41}\\65\\x41\"\n\
                      local t = { f = function() return 1 end }\nif a then b() end\n\
                      Include \"nope/*.lua\"\nx = \"unterminated";
        for end in 0..=sample.len() {
            if let Some(prefix) = sample.get(..end) {
                let _ = parse_str(prefix, Path::new(FILE));
            }
        }
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut text = Vec::new();
            let n = next() % 40;
            for _ in 0..n {
                if next() % 5 == 0 {
                    text.push((next() % 256) as u8);
                } else {
                    let i = (next() % PIECES.len() as u64) as usize;
                    text.extend_from_slice(PIECES.get(i).copied().unwrap_or_default());
                }
            }
            let _ = parse_bytes(&text, Path::new(FILE));
        }
    }
}

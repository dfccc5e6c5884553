//! The [`Loader`]: walks the statements of each file (the main one and every included
//! one), dispatches assignments and directives, turns a construct outside the subset
//! into an error (in an external component's section) or a skipped statement with a
//! warning (anywhere else), and finally builds the [`ProsodyConfig`] with the
//! parent-VirtualHost warnings.
//!
//! The directives and options live in `sections`, `Include` in `include`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::lex::{describe_tok, is_keyword, lex, Tok, Token};
use super::parse::{
    at_statement_end, describe_after_value, directive, fatal, force, is_call_start, skip_statement,
    syntax, unsupported, Cursor, PErr,
};
use super::{ProsodyComponent, ProsodyConfig, ProsodyConfigError};

/// The section statements apply to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope {
    Global,
    /// The host at this index of [`Loader::hosts`].
    Host(usize),
}

/// A declared VirtualHost or Component.
#[derive(Debug)]
pub(super) struct Host {
    pub(super) domain: String,
    /// `None` for a VirtualHost; the module for a Component (`"component"`: external).
    pub(super) module: Option<String>,
    pub(super) file: PathBuf,
    pub(super) line: usize,
    pub(super) secret: Option<String>,
    pub(super) enabled: Option<bool>,
}

impl Host {
    pub(super) fn is_external(&self) -> bool {
        self.module.as_deref() == Some("component")
    }
}

/// Per-file parsing state.
pub(super) struct FileState<'a> {
    pub(super) file: &'a Path,
    /// Include depth of this file (0 for the main file).
    pub(super) depth: usize,
    pub(super) scope: Scope,
    /// Options set in this file, per host (`None`: global), for duplicate warnings.
    seen: HashSet<(Option<usize>, String)>,
}

/// Everything read so far, over all files.
#[derive(Default)]
pub(super) struct Loader {
    pub(super) hosts: Vec<Host>,
    pub(super) by_domain: HashMap<String, usize>,
    pub(super) global_secret: Option<String>,
    pub(super) global_enabled: Option<bool>,
    warnings: Vec<String>,
    /// Canonical paths of the files being read (for Include cycles).
    pub(super) stack: Vec<PathBuf>,
    pub(super) files_read: usize,
}

impl Loader {
    pub(super) fn warn(&mut self, file: &Path, line: usize, msg: impl AsRef<str>) {
        self.warnings
            .push(format!("{}:{}: {}", file.display(), line, msg.as_ref()));
    }

    fn section_name(&self, scope: Scope) -> String {
        match scope {
            Scope::Global => "the global section".to_string(),
            Scope::Host(i) => match self.hosts.get(i) {
                Some(Host {
                    domain,
                    module: None,
                    ..
                }) => format!("VirtualHost \"{domain}\""),
                Some(h) if h.is_external() => format!("Component \"{}\"", h.domain),
                Some(Host {
                    domain,
                    module: Some(m),
                    ..
                }) => format!("Component \"{domain}\" \"{m}\""),
                None => "an unknown section".to_string(),
            },
        }
    }

    /// Reads the statements of one file (`depth`: its Include depth).
    pub(super) fn parse_file(
        &mut self,
        bytes: &[u8],
        file: &Path,
        depth: usize,
    ) -> Result<(), ProsodyConfigError> {
        let mut src = bytes;
        if let Some(rest) = src.strip_prefix(b"\xEF\xBB\xBF") {
            self.warn(
                file,
                1,
                "ignoring the UTF-8 byte order mark (Prosody rejects it)",
            );
            src = rest;
        }
        let toks = lex(src).map_err(|(line, reason)| syntax(file, line, reason))?;
        let mut cur = Cursor {
            toks: &toks,
            pos: 0,
        };
        let mut fx = FileState {
            file,
            depth,
            scope: Scope::Global,
            seen: HashSet::new(),
        };
        loop {
            let start = cur.pos;
            match cur.tok(0) {
                Tok::Eof => return Ok(()),
                Tok::Op(";") => {
                    cur.advance();
                    continue;
                }
                _ => {}
            }
            match self.statement(&mut cur, &mut fx) {
                Ok(()) if cur.pos == start => cur.advance(),
                Ok(()) => {}
                Err(PErr::Fatal(e)) => return Err(e),
                Err(PErr::Unsupported { line, what }) => {
                    cur.pos = self.skip_unsupported(&toks, start, &fx, line, &what)?;
                }
            }
        }
    }

    /// A construct outside the subset at `line`, in the statement starting at token
    /// `start`: an error in an external component's section; elsewhere a warning,
    /// and the index of the token after the statement.
    fn skip_unsupported(
        &mut self,
        toks: &[Token],
        start: usize,
        fx: &FileState<'_>,
        line: usize,
        what: &str,
    ) -> Result<usize, ProsodyConfigError> {
        let file = fx.file;
        let section = self.section_name(fx.scope);
        let strict = match fx.scope {
            Scope::Host(i) => self.hosts.get(i).is_some_and(Host::is_external),
            Scope::Global => false,
        };
        if strict {
            return Err(syntax(
                file,
                line,
                format!(
                    "{what} is not supported in {section} \
                     (a component section may only assign literal values)"
                ),
            ));
        }
        let start_line = toks.get(start).map_or(line, |t| t.line);
        let Some(next) = skip_statement(toks, start) else {
            return Err(syntax(
                file,
                start_line,
                format!(
                    "{what} (line {line}), in a statement that never ends \
                     (unbalanced brackets or block)"
                ),
            ));
        };
        let next = next.max(start + 1);
        let end_line = toks
            .get(next.saturating_sub(1))
            .map_or(start_line, |t| t.line)
            .max(start_line);
        let lines = if end_line > start_line {
            format!("lines {start_line}-{end_line}")
        } else {
            format!("line {start_line}")
        };
        self.warn(
            file,
            line,
            format!("{what} is not supported in {section}; skipped the statement ({lines})"),
        );
        Ok(next)
    }

    /// One statement: an assignment or a directive; anything else is unsupported.
    fn statement(&mut self, cur: &mut Cursor<'_>, fx: &mut FileState<'_>) -> Result<(), PErr> {
        let line = cur.line(0);
        let name = match cur.tok(0) {
            Tok::Name(n) if !is_keyword(n) => n,
            Tok::Name(n) => return Err(unsupported(line, format!("Lua `{n}` statement"))),
            other => {
                return Err(unsupported(
                    line,
                    format!("{} at the start of a statement", describe_tok(other)),
                ))
            }
        };
        match (cur.tok(1), directive(name)) {
            (Tok::Op("="), None) => self.assignment(cur, fx, name),
            (next, Some(d)) if is_call_start(next) => self.directive(cur, fx, d, name),
            (next, None) if is_call_start(next) => {
                Err(unsupported(line, format!("function call `{name}`")))
            }
            (Tok::Op(sep @ ("." | ":" | "[")), None) => Err(unsupported(
                line,
                format!("field assignment or method call `{name}{sep}…`"),
            )),
            (Tok::Op(","), None) => Err(unsupported(line, "multiple assignment")),
            (_, Some(_)) => Err(fatal(
                fx.file,
                line,
                format!("`{name}` must be followed by a quoted name"),
            )),
            (next, None) => Err(unsupported(
                line,
                format!(
                    "`{name}` followed by {} (neither an assignment nor a call)",
                    describe_tok(next)
                ),
            )),
        }
    }

    /// `key = value`: checked for being a literal, then applied to the current section.
    fn assignment(
        &mut self,
        cur: &mut Cursor<'_>,
        fx: &mut FileState<'_>,
        key: &str,
    ) -> Result<(), PErr> {
        let line = cur.line(0);
        cur.advance();
        cur.advance();
        let global_router_option =
            matches!(fx.scope, Scope::Global) && matches!(key, "component_secret" | "enabled");
        let context = format!(
            "cannot evaluate the global `{key}` (it applies to every component unless overridden)"
        );
        let value = match cur.value(fx.file, 0) {
            Ok(v) => v,
            Err(e) if global_router_option => return Err(force(fx.file, e, &context)),
            Err(e) => return Err(e),
        };
        if !at_statement_end(cur.tok(0)) {
            let e = unsupported(cur.line(0), describe_after_value(cur.tok(0)));
            return Err(if global_router_option {
                force(fx.file, e, &context)
            } else {
                e
            });
        }
        let host_key = match fx.scope {
            Scope::Global => None,
            Scope::Host(i) => Some(i),
        };
        if !fx.seen.insert((host_key, key.to_string())) {
            let section = self.section_name(fx.scope);
            self.warn(
                fx.file,
                line,
                format!("duplicate option `{key}` in {section}"),
            );
        }
        self.apply(fx.scope, key, &value, fx.file, line)
    }

    /// The result: every external component with its effective secret and `enabled`
    /// (own setting, else the global one), every VirtualHost, and the warnings.
    pub(super) fn finish(mut self) -> ProsodyConfig {
        let virtual_hosts: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| h.module.is_none())
            .map(|h| h.domain.clone())
            .collect();
        let mut components = Vec::new();
        let mut warnings = Vec::new();
        for h in self.hosts.iter().filter(|h| h.is_external()) {
            let enabled = self.enabled_of(h);
            if enabled {
                warnings.extend(self.parent_warning(h));
            }
            components.push(ProsodyComponent {
                domain: h.domain.clone(),
                secret: h.secret.clone().or_else(|| self.global_secret.clone()),
                enabled,
                file: h.file.clone(),
                line: h.line,
            });
        }
        self.warnings.extend(warnings);
        ProsodyConfig {
            components,
            virtual_hosts,
            warnings: self.warnings,
        }
    }

    fn enabled_of(&self, h: &Host) -> bool {
        h.enabled.or(self.global_enabled).unwrap_or(true)
    }

    /// mod_reload_components' "its respective VirtualHost is not loaded" for a served
    /// component: its parent domain (the domain minus the first label) is missing, not
    /// a VirtualHost, or a disabled one.
    fn parent_warning(&self, h: &Host) -> Option<String> {
        let at = format!("{}:{}", h.file.display(), h.line);
        let d = &h.domain;
        let Some((_, parent)) = h.domain.split_once('.') else {
            return Some(format!(
                "{at}: Component \"{d}\" has no parent domain, so no VirtualHost \
                 of this configuration serves it; bad things may happen"
            ));
        };
        let vhost = self
            .by_domain
            .get(parent)
            .and_then(|&i| self.hosts.get(i))
            .filter(|p| p.module.is_none());
        match vhost {
            None => Some(format!(
                "{at}: Component \"{d}\": its parent domain \"{parent}\" is \
                 not a VirtualHost of this configuration, so its respective \
                 VirtualHost is not loaded; bad things may happen"
            )),
            Some(p) if !self.enabled_of(p) => Some(format!(
                "{at}: Component \"{d}\": its parent VirtualHost \"{parent}\" \
                 is disabled (enabled = false); bad things may happen"
            )),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prosody_config::testing::*;

    // --- statements -------------------------------------------------------------------------

    #[test]
    fn assignments_and_semicolons() {
        let c = parse(
            ";;pidfile = \"/run/prosody/prosody.pid\";\ns2s_secure_auth = true;\n\
             a = 1 b = 2; c = 'x'\nVirtualHost \"example.com\";Component \"a.example.com\"; component_secret = \"a\";;\n",
        );
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("a"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn missing_parent_virtual_host_warns() {
        let c = assert_warns(
            "VirtualHost \"example.com\"\nComponent \"a.other.org\"\nComponent \"a.example.com\"\n\
             Component \"b.other.org\"\nenabled = false\nComponent \"single\"\n",
            2,
            "parent domain \"other.org\" is not a VirtualHost",
        );
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains(":6: Component \"single\" has no parent")));
    }

    #[test]
    fn disabled_parent_virtual_host_warns() {
        assert_warns(
            "VirtualHost \"example.com\"\nenabled = false\nComponent \"a.example.com\"\n",
            3,
            "is disabled",
        );
    }

    // --- rejected constructs: an error in a component section, a warning elsewhere --------

    /// Each rejected construct as a statement, with the line (1-based, within the
    /// statement) of the offending token and a piece of the message.
    const REJECTED: &[(&str, usize, &str)] = &[
        ("do_something(\"x\")", 1, "function call `do_something`"),
        ("input { type = \"internal\" }", 1, "function call `input`"),
        ("RunScript \"x.lua\"", 1, "function call `RunScript`"),
        ("x = 1 + 2", 1, "operator `+`"),
        ("x = 2 * 3 - 1", 1, "operator `*`"),
        ("x = \"a\" .. \"b\"", 1, "operator `..`"),
        ("x = \"a\"\n  .. \"b\"", 2, "operator `..`"),
        ("x = os.getenv(\"SECRET\")", 1, "`os.getenv`"),
        (
            "x = ENV_SECRET",
            1,
            "environment variable reference `ENV_SECRET`",
        ),
        ("x = y", 1, "identifier `y` used as a value"),
        ("x = { a = 1,\n b = y }", 2, "identifier `y`"),
        ("x = { \"a\" .. \"b\" }", 1, "operator `..`"),
        ("x = { [1 + 1] = 2 }", 1, "operator `+`"),
        ("x = not true", 1, "Lua keyword `not`"),
        ("x = true and false", 1, "operator `and`"),
        ("x = #t", 1, "`#` where a value was expected"),
        ("x = - y", 1, "operator `-`"),
        ("x = (1)", 1, "`(` where a value was expected"),
        ("x = f\"s\"", 1, "function call `f`"),
        ("x = \"a\" \"b\"", 1, "call of a value"),
        ("x = \"a\":upper()", 1, "indexing a value"),
        ("x = function() return 1 end", 1, "Lua keyword `function`"),
        (
            "local data_path = \"/var/lib/prosody\"",
            1,
            "Lua `local` statement",
        ),
        ("if true then x = 1 end", 1, "Lua `if` statement"),
        ("for i = 1, 3 do\n x = i\nend", 1, "Lua `for` statement"),
        ("function f() end", 1, "Lua `function` statement"),
        ("a.b = 1", 1, "field assignment"),
        ("a[1] = 1", 1, "field assignment"),
        ("a, b = 1, 2", 1, "multiple assignment"),
        ("::label::", 1, "`::` at the start of a statement"),
        ("return", 1, "Lua `return` statement"),
        ("x", 1, "neither an assignment nor a call"),
    ];

    #[test]
    fn rejected_constructs_are_errors_in_a_component_section() {
        for &(stmt, line, needle) in REJECTED {
            let text = format!(
                "VirtualHost \"example.com\"\nComponent \"a.example.com\"\n  {stmt}\n\
                 component_secret = \"a\"\n"
            );
            let e = parse_err(&text);
            assert_eq!(e.line(), Some(line + 2), "{stmt:?}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(needle), "{stmt:?}: {msg}");
            assert!(
                msg.contains("Component \"a.example.com\""),
                "{stmt:?}: {msg}"
            );
        }
    }

    #[test]
    fn rejected_constructs_are_skipped_with_a_warning_elsewhere() {
        for &(stmt, line, needle) in REJECTED {
            for (header, section, first_line) in [
                ("", "the global section", 1),
                (
                    "VirtualHost \"example.com\"\n",
                    "VirtualHost \"example.com\"",
                    2,
                ),
                (
                    "VirtualHost \"example.com\"\nComponent \"muc.example.com\" \"muc\"\n",
                    "Component \"muc.example.com\" \"muc\"",
                    3,
                ),
            ] {
                let text = format!(
                    "{header}{stmt}\nafter = true\nVirtualHost \"example.com\"\n\
                     Component \"a.example.com\"\ncomponent_secret = \"a\"\n"
                );
                let c = parse_str(&text, Path::new(FILE))
                    .unwrap_or_else(|e| panic!("{stmt:?} in {section}: {e}"));
                assert_eq!(domains(&c), ["a.example.com"], "{stmt:?} in {section}");
                assert_eq!(secret(&c, "a.example.com").as_deref(), Some("a"));
                assert_eq!(
                    c.warnings.len(),
                    1,
                    "{stmt:?} in {section}: {:?}",
                    c.warnings
                );
                let w = &c.warnings[0];
                let prefix = format!("{FILE}:{}: ", first_line + line - 1);
                assert!(w.starts_with(&prefix), "{stmt:?} in {section}: {w}");
                assert!(w.contains(needle), "{stmt:?} in {section}: {w}");
                assert!(w.contains(section), "{stmt:?} in {section}: {w}");
            }
        }
    }

    #[test]
    fn unsupported_global_component_options_are_errors() {
        assert_err(
            "\ncomponent_secret = os.getenv(\"S\")\n",
            2,
            "global `component_secret`",
        );
        assert_err("enabled = ENV_ENABLED\n", 1, "global `enabled`");
        assert_err("enabled = 1 == 1\n", 1, "operator `==`");
        // In a VirtualHost section `enabled` only concerns that host: skipped.
        let c = assert_warns(
            "VirtualHost \"example.com\"\nenabled = ENV_X\nComponent \"a.example.com\"\n",
            2,
            "ENV_X",
        );
        assert_eq!(domains(&c), ["a.example.com"]);
    }

    #[test]
    fn byte_order_mark_is_skipped_with_a_warning() {
        let c = assert_warns(
            "\u{feff}Component \"a.example.com\"\n",
            1,
            "byte order mark",
        );
        assert_eq!(domains(&c), ["a.example.com"]);
    }
}

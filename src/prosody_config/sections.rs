//! Sections: `VirtualHost "x"` and `Component "x" ["module"]` in every call form, with
//! or without an options table, and the two options the router reads in them or in
//! the global section: `component_secret` and `enabled`.

use std::collections::BTreeMap;
use std::path::Path;

use super::load::{FileState, Host, Loader, Scope};
use super::parse::{
    at_statement_end, describe_after_value, fatal, force, is_call_start, unsupported, Cursor,
    Directive, PErr, TableEntry, Value,
};

impl Loader {
    /// `VirtualHost …`, `Component …` or `Include …`, at its name.
    pub(super) fn directive(
        &mut self,
        cur: &mut Cursor<'_>,
        fx: &mut FileState<'_>,
        d: Directive,
        name: &str,
    ) -> Result<(), PErr> {
        let file = fx.file;
        let line = cur.line(0);
        let context = format!("invalid `{name}` statement");
        cur.advance();
        let arg = quoted_name(cur, file, line, name, &context)?;
        match d {
            Directive::Include => {
                end_of_directive(cur, file, &context)?;
                self.include(&arg, file, line, fx.depth)?;
            }
            Directive::VirtualHost => {
                let domain = normalize_domain(&arg, "VirtualHost", file, line)?;
                let idx = self.declare(domain.clone(), None, file, line)?;
                fx.scope = Scope::Host(idx);
                if let Some(entries) = virtual_host_options(cur, file, line, &domain, &context)? {
                    self.apply_table(idx, &entries, file)?;
                    fx.scope = Scope::Global;
                }
                end_of_directive(cur, file, &context)?;
            }
            Directive::Component => {
                let domain = normalize_domain(&arg, "Component", file, line)?;
                let idx = self.declare(domain.clone(), Some("component"), file, line)?;
                fx.scope = Scope::Host(idx);
                let (module, options) = component_rest(cur, file, line, &domain, &context)?;
                if let (Some(m), Some(h)) = (module, self.hosts.get_mut(idx)) {
                    h.module = Some(m);
                }
                if let Some(entries) = options {
                    self.apply_table(idx, &entries, file)?;
                    fx.scope = Scope::Global;
                }
                end_of_directive(cur, file, &context)?;
            }
        }
        Ok(())
    }

    /// Declares (or re-opens) a host; `module` is `None` for a VirtualHost.
    fn declare(
        &mut self,
        domain: String,
        module: Option<&str>,
        file: &Path,
        line: usize,
    ) -> Result<usize, PErr> {
        if let Some(&idx) = self.by_domain.get(&domain) {
            if let Some(host) = self.hosts.get_mut(idx) {
                let first = format!("{}:{}", host.file.display(), host.line);
                return match (&host.module, module) {
                    (Some(m), None) => Err(fatal(
                        file,
                        line,
                        format!(
                            "VirtualHost \"{domain}\" clashes with Component \"{domain}\" \
                             \"{m}\" declared at {first}"
                        ),
                    )),
                    (None, Some(_)) => Err(fatal(
                        file,
                        line,
                        format!(
                            "Component \"{domain}\" clashes with VirtualHost \"{domain}\" \
                             declared at {first}"
                        ),
                    )),
                    (_, new_module) => {
                        if let Some(m) = new_module {
                            host.module = Some(m.to_string());
                        }
                        Ok(idx)
                    }
                };
            }
        }
        let idx = self.hosts.len();
        self.by_domain.insert(domain.clone(), idx);
        self.hosts.push(Host {
            domain,
            module: module.map(str::to_string),
            file: file.to_path_buf(),
            line,
            secret: None,
            enabled: None,
        });
        Ok(idx)
    }

    /// Options given as a table: `VirtualHost "x" { … }`, `Component "x" "m" { … }`.
    /// Prosody iterates the constructed table, so (as in Lua) a later entry with the same
    /// key replaces an earlier one and a `nil` value means the key is absent (it does not
    /// unset the option).
    fn apply_table(&mut self, idx: usize, entries: &[TableEntry], file: &Path) -> Result<(), PErr> {
        let mut fields: BTreeMap<&str, &TableEntry> = BTreeMap::new();
        for entry in entries {
            if let Some(Value::Str(key)) = &entry.key {
                if let Ok(key) = std::str::from_utf8(key) {
                    if entry.value == Value::Nil {
                        fields.remove(key);
                    } else {
                        fields.insert(key, entry);
                    }
                }
            }
        }
        for (key, entry) in fields {
            self.apply(Scope::Host(idx), key, &entry.value, file, entry.line)?;
        }
        Ok(())
    }

    /// Applies `key = value` to `scope`; only `component_secret` and `enabled` matter.
    pub(super) fn apply(
        &mut self,
        scope: Scope,
        key: &str,
        value: &Value,
        file: &Path,
        line: usize,
    ) -> Result<(), PErr> {
        let is_vhost = matches!(scope, Scope::Host(i) if self.hosts.get(i).is_some_and(|h| h.module.is_none()));
        match key {
            "component_secret" if !is_vhost => {
                let secret = secret_value(value, file, line)?;
                match scope {
                    Scope::Global => self.global_secret = secret,
                    Scope::Host(i) => {
                        if let Some(h) = self.hosts.get_mut(i) {
                            h.secret = secret;
                        }
                    }
                }
            }
            "enabled" => {
                let enabled = self.enabled_value(value, file, line);
                match scope {
                    Scope::Global => self.global_enabled = enabled,
                    Scope::Host(i) => {
                        if let Some(h) = self.hosts.get_mut(i) {
                            h.enabled = enabled;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `enabled`'s value as Prosody reads it: `nil` unsets it, anything but `false`
    /// is true (with a warning when it is not a boolean).
    fn enabled_value(&mut self, value: &Value, file: &Path, line: usize) -> Option<bool> {
        match value {
            Value::Nil => None,
            Value::Bool(b) => Some(*b),
            other => {
                self.warn(
                    file,
                    line,
                    format!(
                        "`enabled` is {}, not a boolean; Prosody treats every value \
                         except false as true",
                        other.describe()
                    ),
                );
                Some(true)
            }
        }
    }
}

/// `component_secret`'s value: a UTF-8 string, or `nil` (unset).
fn secret_value(value: &Value, file: &Path, line: usize) -> Result<Option<String>, PErr> {
    match value {
        Value::Nil => Ok(None),
        Value::Str(b) => String::from_utf8(b.clone())
            .map(Some)
            .map_err(|_| fatal(file, line, "`component_secret` is not valid UTF-8")),
        other => Err(fatal(
            file,
            line,
            format!(
                "`component_secret` must be a string, not {}",
                other.describe()
            ),
        )),
    }
}

/// The one argument of a call, if there is exactly one.
fn single(mut args: Vec<Value>) -> Option<Value> {
    match args.len() {
        1 => args.pop(),
        _ => None,
    }
}

/// The directive's quoted name (its first call's single string argument).
fn quoted_name(
    cur: &mut Cursor<'_>,
    file: &Path,
    line: usize,
    name: &str,
    context: &str,
) -> Result<Vec<u8>, PErr> {
    let args = cur.call_args(file).map_err(|e| force(file, e, context))?;
    let count = args.len();
    match single(args) {
        Some(Value::Str(s)) => Ok(s),
        None if count > 1 => Err(fatal(
            file,
            line,
            format!("`{name}` takes a single quoted name"),
        )),
        None | Some(Value::Nil) => Err(fatal(file, line, format!("`{name}` needs a name"))),
        Some(other) => Err(fatal(
            file,
            line,
            format!("`{name}` needs a quoted name, not {}", other.describe()),
        )),
    }
}

/// After `VirtualHost "x"`: its options table, if a call follows.
fn virtual_host_options(
    cur: &mut Cursor<'_>,
    file: &Path,
    line: usize,
    domain: &str,
    context: &str,
) -> Result<Option<Vec<TableEntry>>, PErr> {
    if !is_call_start(cur.tok(0)) {
        return Ok(None);
    }
    let opts = cur.call_args(file).map_err(|e| force(file, e, context))?;
    match single(opts) {
        Some(Value::Table(entries)) => Ok(Some(entries)),
        Some(Value::Str(m)) => Err(fatal(
            file,
            line,
            format!(
                "VirtualHost entries do not accept a module name (module \
                 \"{}\" given for host \"{domain}\")",
                String::from_utf8_lossy(&m)
            ),
        )),
        _ => Err(fatal(
            file,
            line,
            format!("expected an options table after VirtualHost \"{domain}\""),
        )),
    }
}

/// After `Component "x"`: the module name and the options table, each if given
/// (`Component "x" "module"`, `Component "x" { … }`, `Component "x" "module" { … }`).
fn component_rest(
    cur: &mut Cursor<'_>,
    file: &Path,
    line: usize,
    domain: &str,
    context: &str,
) -> Result<(Option<String>, Option<Vec<TableEntry>>), PErr> {
    if !is_call_start(cur.tok(0)) {
        return Ok((None, None));
    }
    let second = cur.call_args(file).map_err(|e| force(file, e, context))?;
    let module = match single(second) {
        Some(Value::Table(entries)) => return Ok((None, Some(entries))),
        Some(Value::Str(module)) => String::from_utf8_lossy(&module).into_owned(),
        _ => {
            return Err(fatal(
                file,
                line,
                format!(
                    "expected a module name or an options table after \
                     Component \"{domain}\""
                ),
            ))
        }
    };
    if !is_call_start(cur.tok(0)) {
        return Ok((Some(module), None));
    }
    let third = cur.call_args(file).map_err(|e| force(file, e, context))?;
    match single(third) {
        Some(Value::Table(entries)) => Ok((Some(module), Some(entries))),
        _ => Err(fatal(
            file,
            line,
            format!(
                "expected an options table after the module \
                 name of Component \"{domain}\""
            ),
        )),
    }
}

/// A directive must end its statement.
fn end_of_directive(cur: &Cursor<'_>, file: &Path, context: &str) -> Result<(), PErr> {
    if at_statement_end(cur.tok(0)) {
        Ok(())
    } else {
        Err(force(
            file,
            unsupported(cur.line(0), describe_after_value(cur.tok(0))),
            context,
        ))
    }
}

/// A host's name: valid UTF-8 without whitespace or control characters, lower-cased.
fn normalize_domain(raw: &[u8], what: &str, file: &Path, line: usize) -> Result<String, PErr> {
    let name = std::str::from_utf8(raw)
        .map_err(|_| fatal(file, line, format!("name of {what} is not valid UTF-8")))?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(fatal(
            file,
            line,
            format!("name of {what} {name:?} contains forbidden characters"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use crate::prosody_config::testing::*;

    #[test]
    fn virtual_host() {
        let c = parse(
            "VirtualHost \"Example.COM\"\n  authentication = \"internal_hashed\"\n\
             Host \"two.example\"\nhost 'three.example'\nVirtualHost(\"four.example\")\n",
        );
        assert_eq!(
            c.virtual_hosts,
            [
                "example.com",
                "two.example",
                "three.example",
                "four.example"
            ]
        );
        assert!(c.components.is_empty());
    }

    #[test]
    fn virtual_host_options_table_returns_to_global_section() {
        let c = parse(
            "VirtualHost \"example.com\" { enabled = false; authentication = \"x\" }\n\
             component_secret = \"global\"\n\
             Component \"a.example.com\"\n",
        );
        assert_eq!(c.virtual_hosts, ["example.com"]);
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("global"));
        assert!(
            c.warnings.iter().any(|w| w.contains("is disabled")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn component_call_forms() {
        let c = parse(
            "VirtualHost \"example.com\"\n\
             Component \"a.example.com\"\n\
             Component(\"b.example.com\")\n\
             component \"c.example.com\"\n\
             Component \"d.example.com\" \"component\"\n\
             Component(\"e.example.com\")\n  (\"muc\")\n\
             Component \"f.example.com\" \"muc\"\n\
             Component(\"g.example.com\")(\"http_file_share\")\n\
             Component 'h.example.com' 'proxy65'\n",
        );
        assert_eq!(
            domains(&c),
            [
                "a.example.com",
                "b.example.com",
                "c.example.com",
                "d.example.com"
            ]
        );
        assert_eq!(comp(&c, "c.example.com").line, 4);
    }

    #[test]
    fn internal_component_options_do_not_leak() {
        let c = parse(
            "Component \"conference.example.com\" \"muc\"\n\
             component_secret = \"muc-secret\"\n\
             modules_enabled = { \"muc_mam\" }\n\
             Component \"a.example.com\"\n",
        );
        assert_eq!(domains(&c), ["a.example.com"]);
        assert_eq!(secret(&c, "a.example.com"), None);
    }

    #[test]
    fn component_options_table() {
        let c = parse(
            "Component \"a.example.com\" { component_secret = \"a\" }\n\
             authentication = \"global option, not a.example.com's\"\n\
             Component \"b.example.com\" \"component\" { [\"component_secret\"] = \"b\"; enabled = false }\n\
             Component \"c.example.com\" \"muc\" { component_secret = \"c\" }\n\
             Component(\"d.example.com\") { }\n\
             component_secret = \"global\"\n",
        );
        assert_eq!(
            domains(&c),
            ["a.example.com", "b.example.com", "d.example.com"]
        );
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("a"));
        assert_eq!(secret(&c, "b.example.com").as_deref(), Some("b"));
        assert!(!comp(&c, "b.example.com").enabled);
        assert_eq!(secret(&c, "d.example.com").as_deref(), Some("global"));
    }

    #[test]
    fn options_table_is_a_lua_table() {
        // A Lua table cannot hold nil, and a later entry replaces an earlier one: found by
        // comparing with Prosody 0.12's own config loader.
        let c = parse(
            "Component \"a.example.com\"\ncomponent_secret = \"kept\"\n\
             Component \"a.example.com\" { component_secret = nil }\n\
             Component \"b.example.com\" { component_secret = \"x\", component_secret = \"y\" }\n\
             Component \"c.example.com\"\ncomponent_secret = \"kept\"\n\
             Component \"c.example.com\" { component_secret = \"x\", [\"component_secret\"] = nil }\n\
             VirtualHost \"example.com\"\n",
        );
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("kept"));
        assert_eq!(secret(&c, "b.example.com").as_deref(), Some("y"));
        assert_eq!(secret(&c, "c.example.com").as_deref(), Some("kept"));
    }

    #[test]
    fn domains_are_lowercased() {
        let c = parse("VirtualHost \"EXAMPLE.com\"\nComponent \"A.Example.COM\"\n");
        assert_eq!(domains(&c), ["a.example.com"]);
        assert_eq!(c.virtual_hosts, ["example.com"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn component_declared_twice_continues_the_first() {
        let c = parse(
            "Component \"a.example.com\"\ncomponent_secret = \"one\"\n\
             Component \"b.example.com\"\n\
             Component \"A.example.com\"\ncomponent_secret = \"two\"\n",
        );
        assert_eq!(domains(&c), ["a.example.com", "b.example.com"]);
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("two"));
        assert_eq!(comp(&c, "a.example.com").line, 1);
        // Prosody's duplicate-option warning (same host, same file).
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains(":5: duplicate option `component_secret`")));
        // The last Component line decides the module.
        let c = parse("Component \"a.example.com\"\nComponent \"a.example.com\" \"muc\"\n");
        assert!(c.components.is_empty());
        let c = parse("Component \"a.example.com\" \"muc\"\nComponent \"a.example.com\"\n");
        assert_eq!(domains(&c), ["a.example.com"]);
    }

    #[test]
    fn virtual_host_declared_twice_is_one_host() {
        let c = parse("VirtualHost \"example.com\"\nVirtualHost \"Example.com\"\n");
        assert_eq!(c.virtual_hosts, ["example.com"]);
    }

    #[test]
    fn virtual_host_and_component_clash() {
        assert_err(
            "VirtualHost \"example.com\"\nComponent \"example.com\"\n",
            2,
            "clashes with VirtualHost",
        );
        assert_err(
            "Component \"example.com\" \"muc\"\n\nVirtualHost \"EXAMPLE.com\"\n",
            3,
            "clashes with Component",
        );
    }

    #[test]
    fn enabled_false() {
        let c = parse(
            "VirtualHost \"example.com\"\nComponent \"a.example.com\"\nenabled = false\n\
             Component \"b.example.com\"\n",
        );
        assert!(!comp(&c, "a.example.com").enabled);
        assert!(comp(&c, "b.example.com").enabled);
        assert_eq!(domains(&c), ["a.example.com", "b.example.com"]);
    }

    #[test]
    fn non_boolean_enabled_counts_as_true_with_a_warning() {
        let c = assert_warns(
            "VirtualHost \"example.com\"\nComponent \"a.example.com\"\nenabled = \"no\"\n",
            3,
            "not a boolean",
        );
        assert!(comp(&c, "a.example.com").enabled);
    }

    #[test]
    fn global_settings_are_inherited() {
        let c = parse(
            "component_secret = \"global\"\nenabled = false\n\
             VirtualHost \"example.com\"\nenabled = true\n\
             Component \"a.example.com\"\n\
             Component \"b.example.com\"\ncomponent_secret = \"own\"\nenabled = true\n\
             Component \"c.example.com\"\ncomponent_secret = \"own\"\ncomponent_secret = nil\n",
        );
        let a = comp(&c, "a.example.com");
        assert_eq!((a.secret.as_deref(), a.enabled), (Some("global"), false));
        let b = comp(&c, "b.example.com");
        assert_eq!((b.secret.as_deref(), b.enabled), (Some("own"), true));
        assert_eq!(secret(&c, "c.example.com").as_deref(), Some("global"));
    }

    #[test]
    fn virtual_host_options_are_not_inherited_by_components() {
        let c = parse(
            "VirtualHost \"example.com\"\ncomponent_secret = \"vhost\"\nenabled = false\n\
             Component \"a.example.com\"\n",
        );
        let a = comp(&c, "a.example.com");
        assert_eq!((a.secret.as_deref(), a.enabled), (None, true));
    }

    #[test]
    fn invalid_utf8_secret_is_an_error() {
        assert_err(
            "Component \"a.example.com\"\ncomponent_secret = \"\\xff\"\n",
            2,
            "not valid UTF-8",
        );
    }

    #[test]
    fn non_string_secret_is_an_error() {
        assert_err(
            "Component \"a.example.com\"\n\ncomponent_secret = 1234\n",
            3,
            "must be a string",
        );
        assert_err("component_secret = { \"a\" }\n", 1, "must be a string");
        assert_err("component_secret = true\n", 1, "must be a string");
        // Irrelevant in a VirtualHost section.
        parse("VirtualHost \"example.com\"\ncomponent_secret = 1\n");
    }

    #[test]
    fn invalid_names_are_errors() {
        assert_err(
            "VirtualHost \"a\"\nComponent \"\"\n",
            2,
            "forbidden characters",
        );
        assert_err("Component \"a b.example\"\n", 1, "forbidden characters");
        assert_err("Component \"\\xff.example\"\n", 1, "not valid UTF-8");
        assert_err("x = 1\nComponent()\n", 2, "needs a name");
        assert_err("Component(nil)\n", 1, "needs a name");
        assert_err("Component { }\n", 1, "needs a quoted name");
        assert_err("Component(1)\n", 1, "needs a quoted name");
        assert_err("Component(\"a\", \"b\")\n", 1, "single quoted name");
        assert_err("VirtualHost\n", 1, "must be followed by a quoted name");
        assert_err(
            "x = 1\nComponent = 1\n",
            2,
            "must be followed by a quoted name",
        );
    }

    #[test]
    fn malformed_directives_are_errors_in_any_section() {
        assert_err("Component(ENV_NAME)\n", 1, "environment variable reference");
        assert_err("Component \"a.example.com\" .. \"b\"\n", 1, "operator `..`");
        assert_err(
            "Component \"a.example.com\" \"muc\" \"x\"\n",
            1,
            "options table",
        );
        assert_err(
            "Component \"a.example.com\" (1)\n",
            1,
            "module name or an options table",
        );
        assert_err(
            "VirtualHost \"example.com\" \"muc\"\n",
            1,
            "do not accept a module name",
        );
        assert_err(
            "VirtualHost \"example.com\" (1)\n",
            1,
            "expected an options table",
        );
        assert_err(
            "Component \"a.example.com\" {\n component_secret = os.getenv(\"S\")\n}\n",
            2,
            "`os.getenv`",
        );
        assert_err(
            "VirtualHost \"x\"\nInclude(os.getenv(\"D\"))\n",
            2,
            "`os.getenv`",
        );
        assert_err("Include \"a\" \"b\"\n", 1, "call of a value");
    }
}

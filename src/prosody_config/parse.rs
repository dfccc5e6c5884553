//! Values and statements of the declarative subset, over the tokens of `lex`: literal
//! values and tables ([`Cursor::value`]), call arguments ([`Cursor::call_args`]), how a
//! construct outside the subset is described ([`PErr::Unsupported`]), and where a
//! statement that is skipped ends ([`skip_statement`]).

use std::path::Path;

use super::lex::{describe_tok, is_keyword, Tok, Token, EOF};
use super::ProsodyConfigError;

/// Tables nested deeper than this are an error (a bound on recursion).
const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Nil,
    Bool(bool),
    Num(String),
    Str(Vec<u8>),
    Table(Vec<TableEntry>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct TableEntry {
    /// `None` for a list entry.
    pub(super) key: Option<Value>,
    pub(super) value: Value,
    pub(super) line: usize,
}

impl Value {
    pub(super) fn describe(&self) -> String {
        match self {
            Value::Nil => "nil".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Num(n) => format!("the number {n}"),
            Value::Str(_) => "a string".to_string(),
            Value::Table(_) => "a table".to_string(),
        }
    }
}

/// A parse failure: either a construct outside the subset (fatal or skipped depending on
/// the section), or an error that is fatal anywhere.
pub(super) enum PErr {
    Unsupported { line: usize, what: String },
    Fatal(ProsodyConfigError),
}

impl From<ProsodyConfigError> for PErr {
    fn from(e: ProsodyConfigError) -> Self {
        PErr::Fatal(e)
    }
}

pub(super) fn unsupported(line: usize, what: impl Into<String>) -> PErr {
    PErr::Unsupported {
        line,
        what: what.into(),
    }
}

pub(super) fn syntax(file: &Path, line: usize, reason: impl Into<String>) -> ProsodyConfigError {
    ProsodyConfigError::Syntax {
        file: file.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

pub(super) fn fatal(file: &Path, line: usize, reason: impl Into<String>) -> PErr {
    PErr::Fatal(syntax(file, line, reason))
}

/// Makes an unsupported construct fatal, prefixing `context`.
pub(super) fn force(file: &Path, e: PErr, context: &str) -> PErr {
    match e {
        PErr::Unsupported { line, what } => fatal(file, line, format!("{context}: {what}")),
        fatal => fatal,
    }
}

pub(super) fn describe_after_value(tok: &Tok) -> String {
    match tok {
        Tok::Op("(") | Tok::Op("{") | Tok::Str(_) => "call of a value".to_string(),
        Tok::Op("[") | Tok::Op(".") | Tok::Op(":") => "indexing a value".to_string(),
        Tok::Op(o) if !matches!(*o, ")" | "}" | "]" | ";" | ",") => {
            format!("operator `{o}` (expressions are not supported, only literal values)")
        }
        Tok::Name(n) if n == "and" || n == "or" => {
            format!("operator `{n}` (expressions are not supported, only literal values)")
        }
        other => format!("unexpected {}", describe_tok(other)),
    }
}

fn describe_name_use(name: &str, next: &Tok, next2: &Tok) -> String {
    if name.starts_with("ENV_") {
        return format!("environment variable reference `{name}`");
    }
    if is_keyword(name) {
        return format!("Lua keyword `{name}` where a value was expected");
    }
    match (next, next2) {
        (Tok::Op(sep @ ("." | ":")), Tok::Name(field)) => {
            format!("field access or function call `{name}{sep}{field}`")
        }
        (Tok::Op("(") | Tok::Op("{") | Tok::Str(_), _) => format!("function call `{name}`"),
        _ => format!("identifier `{name}` used as a value (variables are not supported)"),
    }
}

/// Whether a statement may end before `tok` (another statement or the end follows).
pub(super) fn at_statement_end(tok: &Tok) -> bool {
    match tok {
        Tok::Eof | Tok::Op(";") | Tok::Op("::") => true,
        Tok::Name(n) => n != "and" && n != "or",
        _ => false,
    }
}

pub(super) fn is_call_start(tok: &Tok) -> bool {
    matches!(tok, Tok::Str(_) | Tok::Op("(") | Tok::Op("{"))
}

/// A position in a file's tokens; reading past the end yields [`Tok::Eof`].
pub(super) struct Cursor<'t> {
    pub(super) toks: &'t [Token],
    pub(super) pos: usize,
}

impl<'t> Cursor<'t> {
    pub(super) fn tok(&self, k: usize) -> &'t Tok {
        self.toks
            .get(self.pos.saturating_add(k))
            .map(|t| &t.tok)
            .unwrap_or(&EOF)
    }

    pub(super) fn line(&self, k: usize) -> usize {
        self.toks
            .get(self.pos.saturating_add(k))
            .or(self.toks.last())
            .map(|t| t.line)
            .unwrap_or(1)
    }

    pub(super) fn advance(&mut self) {
        if self.pos < self.toks.len() && !matches!(self.tok(0), Tok::Eof) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), PErr> {
        match self.tok(0) {
            Tok::Op(o) if *o == op => {
                self.advance();
                Ok(())
            }
            Tok::Op(o) if !matches!(*o, ")" | "}" | "]" | ";" | ",") => {
                Err(unsupported(self.line(0), describe_after_value(self.tok(0))))
            }
            other => Err(unsupported(
                self.line(0),
                format!("expected `{op}` but found {}", describe_tok(other)),
            )),
        }
    }

    pub(super) fn value(&mut self, file: &Path, depth: usize) -> Result<Value, PErr> {
        let line = self.line(0);
        let value = match self.tok(0) {
            Tok::Str(s) => Value::Str(s.clone()),
            Tok::Num(n) => Value::Num(n.clone()),
            Tok::Op("-") => match self.tok(1) {
                Tok::Num(n) => {
                    self.advance();
                    Value::Num(format!("-{n}"))
                }
                _ => return Err(unsupported(line, "operator `-` (only literal values)")),
            },
            Tok::Op("{") => return self.table(file, depth + 1),
            Tok::Name(n) => match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "nil" => Value::Nil,
                _ => {
                    return Err(unsupported(
                        line,
                        describe_name_use(n, self.tok(1), self.tok(2)),
                    ))
                }
            },
            other => {
                return Err(unsupported(
                    line,
                    format!("{} where a value was expected", describe_tok(other)),
                ))
            }
        };
        self.advance();
        Ok(value)
    }

    /// At `{`.
    fn table(&mut self, file: &Path, depth: usize) -> Result<Value, PErr> {
        if depth > MAX_NESTING {
            return Err(fatal(file, self.line(0), "tables nested too deeply"));
        }
        self.advance();
        let mut entries = Vec::new();
        loop {
            if matches!(self.tok(0), Tok::Op("}")) {
                self.advance();
                return Ok(Value::Table(entries));
            }
            let line = self.line(0);
            let entry = match (self.tok(0), self.tok(1)) {
                (Tok::Op("["), _) => {
                    self.advance();
                    let key = self.value(file, depth)?;
                    self.expect("]")?;
                    self.expect("=")?;
                    let value = self.value(file, depth)?;
                    TableEntry {
                        key: Some(key),
                        value,
                        line,
                    }
                }
                (Tok::Name(n), Tok::Op("=")) if !is_keyword(n) => {
                    let key = Value::Str(n.as_bytes().to_vec());
                    self.advance();
                    self.advance();
                    let value = self.value(file, depth)?;
                    TableEntry {
                        key: Some(key),
                        value,
                        line,
                    }
                }
                _ => TableEntry {
                    key: None,
                    value: self.value(file, depth)?,
                    line,
                },
            };
            entries.push(entry);
            match self.tok(0) {
                Tok::Op(",") | Tok::Op(";") => self.advance(),
                Tok::Op("}") => {}
                other => return Err(unsupported(self.line(0), describe_after_value(other))),
            }
        }
    }

    /// One call's arguments: `"s"`, `{…}` or `(v, …)`.
    pub(super) fn call_args(&mut self, file: &Path) -> Result<Vec<Value>, PErr> {
        match self.tok(0) {
            Tok::Str(s) => {
                self.advance();
                Ok(vec![Value::Str(s.clone())])
            }
            Tok::Op("{") => Ok(vec![self.table(file, 1)?]),
            Tok::Op("(") => {
                self.advance();
                let mut args = Vec::new();
                if matches!(self.tok(0), Tok::Op(")")) {
                    self.advance();
                    return Ok(args);
                }
                loop {
                    args.push(self.value(file, 0)?);
                    match self.tok(0) {
                        Tok::Op(",") => self.advance(),
                        Tok::Op(")") => {
                            self.advance();
                            return Ok(args);
                        }
                        other => {
                            return Err(unsupported(self.line(0), describe_after_value(other)))
                        }
                    }
                }
            }
            other => Err(unsupported(
                self.line(0),
                format!("expected call arguments but found {}", describe_tok(other)),
            )),
        }
    }
}

/// Whether `tok` needs an operand after it (so a statement continues past a newline).
fn expects_operand(tok: &Tok) -> bool {
    match tok {
        Tok::Op(o) => !matches!(*o, ")" | "}" | "]" | ";" | "..."),
        Tok::Name(n) => matches!(
            n.as_str(),
            "and"
                | "or"
                | "not"
                | "local"
                | "return"
                | "goto"
                | "in"
                | "then"
                | "else"
                | "elseif"
                | "do"
        ),
        _ => false,
    }
}

/// Whether a token on a new line continues the statement that ended with `prev`.
fn continues(prev: &Tok, next: &Tok) -> bool {
    if expects_operand(prev) {
        return true;
    }
    match next {
        // Tokens that cannot start a statement.
        Tok::Op(o) if !matches!(*o, "(" | "{" | "[" | "::" | ";") => true,
        Tok::Name(n) => matches!(
            n.as_str(),
            "and" | "or" | "then" | "do" | "else" | "elseif" | "end" | "until" | "in"
        ),
        // A call or index continuation: `f\n"x"`, `f\n{…}`, `f\n(…)`, `t\n[k]`.
        Tok::Str(_) | Tok::Op(_) => {
            matches!(
                prev,
                Tok::Name(_) | Tok::Str(_) | Tok::Op(")") | Tok::Op("]") | Tok::Op("}")
            ) && !matches!(prev, Tok::Name(n) if is_keyword(n))
        }
        _ => false,
    }
}

pub(super) fn directive(name: &str) -> Option<Directive> {
    match name {
        "VirtualHost" | "Host" | "host" => Some(Directive::VirtualHost),
        "Component" | "component" => Some(Directive::Component),
        "Include" | "include" => Some(Directive::Include),
        _ => None,
    }
}

/// Skips the statement starting at `start`; returns the index of the next statement, or
/// `None` if it never ends (unbalanced brackets or blocks).
pub(super) fn skip_statement(toks: &[Token], start: usize) -> Option<usize> {
    let mut i = start;
    let mut brackets = 0usize;
    let mut blocks = 0usize;
    let mut prev: Option<&Token> = None;
    loop {
        let t = toks.get(i)?;
        if t.tok == Tok::Eof {
            return (brackets == 0 && blocks == 0).then_some(i);
        }
        if let Some(p) = prev {
            if brackets == 0 && blocks == 0 {
                if t.tok == Tok::Op(";") {
                    return Some(i + 1);
                }
                if t.line > p.line && !continues(&p.tok, &t.tok) {
                    return Some(i);
                }
                let is_directive = matches!(&t.tok, Tok::Name(n) if directive(n).is_some());
                if is_directive && !expects_operand(&p.tok) {
                    return Some(i);
                }
            }
        }
        match &t.tok {
            Tok::Op("(" | "{" | "[") => brackets += 1,
            Tok::Op(")" | "}" | "]") => brackets = brackets.saturating_sub(1),
            Tok::Name(n) if matches!(n.as_str(), "function" | "do" | "if" | "repeat") => {
                blocks += 1
            }
            Tok::Name(n) if matches!(n.as_str(), "end" | "until") => {
                blocks = blocks.saturating_sub(1)
            }
            _ => {}
        }
        prev = Some(t);
        i += 1;
    }
}

/// The statements that declare something: a host, a component, another file.
#[derive(Debug, Clone, Copy)]
pub(super) enum Directive {
    VirtualHost,
    Component,
    Include,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prosody_config::lex::lex;
    use crate::prosody_config::testing::*;

    fn toks(src: &str) -> Vec<Token> {
        lex(src.as_bytes()).unwrap_or_else(|(line, e)| panic!("{line}: {e}"))
    }

    #[test]
    fn a_table_value_from_tokens() {
        let t = toks("{ a = 1, [\"b\"] = -2; 'c', nil } rest");
        let mut cur = Cursor { toks: &t, pos: 0 };
        let Ok(Value::Table(entries)) = cur.value(Path::new("f"), 0) else {
            panic!("not a table");
        };
        let got: Vec<_> = entries.iter().map(|e| (&e.key, &e.value)).collect();
        let s = |v: &str| Value::Str(v.as_bytes().to_vec());
        assert_eq!(
            got,
            [
                (&Some(s("a")), &Value::Num("1".into())),
                (&Some(s("b")), &Value::Num("-2".into())),
                (&None, &s("c")),
                (&None, &Value::Nil),
            ]
        );
        assert_eq!(cur.tok(0), &Tok::Name("rest".into()));
        let t = toks("x + 1");
        let mut cur = Cursor { toks: &t, pos: 0 };
        assert!(matches!(
            cur.value(Path::new("f"), 0),
            Err(PErr::Unsupported { line: 1, .. })
        ));
    }

    #[test]
    fn a_skipped_statement_ends_at_the_next_one() {
        // f ( 1 , 2 ) | x = 1: continuation lines belong to the call.
        assert_eq!(skip_statement(&toks("f(1,\n 2)\nx = 1"), 0), Some(6));
        assert_eq!(skip_statement(&toks("f(1) ; x = 1"), 0), Some(5));
        assert_eq!(skip_statement(&toks("f(1) Component \"a\""), 0), Some(4));
        assert_eq!(skip_statement(&toks("x = 1 +\n 2\ny = 1"), 0), Some(5));
        assert_eq!(skip_statement(&toks("f(1,\n"), 0), None);
        assert_eq!(skip_statement(&toks("if x then\n"), 0), None);
    }

    #[test]
    fn booleans_and_nil() {
        let c = parse(
            "x = true\ny = false\nz = nil\nComponent \"a.example.com\"\n\
             component_secret = \"a\"\nenabled = false\nComponent \"b.example.com\"\n\
             enabled = true\ncomponent_secret = nil\n",
        );
        assert!(!comp(&c, "a.example.com").enabled);
        assert!(comp(&c, "b.example.com").enabled);
        assert_eq!(secret(&c, "b.example.com"), None);
    }

    #[test]
    fn tables() {
        let c = parse(
            "admins = { }\nmodules_enabled = {\n  \"disco\"; -- comment\n  \"roster\",\n}\n\
             limits = { c2s = { rate = \"10kb/s\"; }; s2sin = { rate = \"30kb/s\" } }\n\
             log = { info = \"/var/log/p.log\"; { levels = { \"error\" }; to = \"syslog\"; } }\n\
             t = { [\"key\"] = 1, [1] = true, [ [[k]] ] = { }, nested = { { { } } } ; }\n\
             VirtualHost \"example.com\"\nComponent \"a.example.com\"\n\
             component_secret = \"a\"\n\
             modules_enabled = { \"ping\"; [\"x\"] = { y = false, 'z' } }\n",
        );
        assert_eq!(domains(&c), ["a.example.com"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn deeply_nested_tables_are_an_error() {
        let deep = format!("x = {}{}\n", "{".repeat(100_000), "}".repeat(100_000));
        assert_err(&deep, 1, "nested too deeply");
        let ok = format!("x = {}{}\n", "{".repeat(20), "}".repeat(20));
        parse(&ok);
    }

    #[test]
    fn skipping_follows_balanced_brackets_and_blocks() {
        // The statements of Debian's migrator.cfg.lua, plus blocks and continuations.
        let c = parse(
            "local data_path = '/var/lib/prosody';\n\
             local vhost = {\n  \"accounts\",\n  \"roster\",\n}\n\
             input {\n  hosts = {\n    [\"example.com\"] = vhost;\n  };\n  path = data_path;\n}\n\
             output {\n  database = data_path..\"/prosody.sqlite\";\n}\n\
             if ENV_X then\n  Component \"hidden.example.com\"\nend\n\
             local function f(a)\n  return (a + 1)\nend\n\
             x = 1 +\n  2\n\
             y = f\n  { 1 }\n\
             repeat z = 1 until z\n\
             foo() VirtualHost \"example.com\"\n\
             Component \"a.example.com\"\n",
        );
        assert_eq!(domains(&c), ["a.example.com"]);
        assert_eq!(c.virtual_hosts, ["example.com"]);
        let lines: Vec<&str> = c
            .warnings
            .iter()
            .map(|w| w.split(": ").next().unwrap_or(""))
            .collect();
        let expected: Vec<String> = [1, 2, 6, 12, 15, 18, 21, 23, 25, 26]
            .iter()
            .map(|l| format!("{FILE}:{l}"))
            .collect();
        assert_eq!(lines, expected, "{:#?}", c.warnings);
        assert!(c.warnings[2].contains("(lines 6-11)"), "{}", c.warnings[2]);
    }

    #[test]
    fn statement_that_never_ends_is_an_error() {
        assert_err(
            "VirtualHost \"x\"\nfoo(\nComponent \"a.x\"\n",
            2,
            "never ends",
        );
        assert_err("if x then\n y = 1\n", 1, "never ends");
    }
}

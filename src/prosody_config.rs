//! Reader for the declarative subset of Prosody's `prosody.cfg.lua` (SPEC §3
//! `prosody_config`, issue 6).
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

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

const MAX_INCLUDE_DEPTH: usize = 16;
const MAX_FILES: usize = 256;
const MAX_NESTING: usize = 64;
const MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Lexer: full Lua 5.4 lexical syntax, so that skipping unsupported statements is reliable.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(Vec<u8>),
    Num(String),
    Op(&'static str),
    Eof,
}

static EOF: Tok = Tok::Eof;

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Longest first, so that the first prefix match is the right one.
const OPS: &[&str] = &[
    "...", "..", "==", "~=", "<=", ">=", "<<", ">>", "//", "::", "+", "-", "*", "/", "%", "^", "#",
    "&", "~", "|", "<", ">", "=", "(", ")", "{", "}", "[", "]", ";", ":", ",", ".",
];

const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

fn is_newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lua's `luaO_utf8esc`: (extended) UTF-8 for values up to 0x7FFFFFFF.
fn utf8_escape(mut x: u32, out: &mut Vec<u8>) {
    if x < 0x80 {
        out.push(x as u8);
        return;
    }
    let mut rev = Vec::with_capacity(6);
    let mut mfb: u32 = 0x3f;
    loop {
        rev.push((0x80 | (x & 0x3f)) as u8);
        x >>= 6;
        mfb >>= 1;
        if x <= mfb {
            break;
        }
    }
    rev.push(((!mfb << 1) | x) as u8);
    out.extend(rev.iter().rev());
}

/// Whether `t` is a Lua numeral (decimal or hexadecimal, with optional fraction/exponent).
fn valid_number(t: &[u8]) -> bool {
    let (hex, rest) = match t {
        [b'0', b'x' | b'X', rest @ ..] => (true, rest),
        _ => (false, t),
    };
    let is_digit = |c: u8| {
        if hex {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    let mut i = 0;
    let mut digits = 0;
    while rest.get(i).is_some_and(|&c| is_digit(c)) {
        i += 1;
        digits += 1;
    }
    if rest.get(i) == Some(&b'.') {
        i += 1;
        while rest.get(i).is_some_and(|&c| is_digit(c)) {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if let Some(&c) = rest.get(i) {
        let exp = if hex {
            c == b'p' || c == b'P'
        } else {
            c == b'e' || c == b'E'
        };
        if exp {
            i += 1;
            if matches!(rest.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let mut exp_digits = 0;
            while rest.get(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
                exp_digits += 1;
            }
            if exp_digits == 0 {
                return false;
            }
        }
    }
    i == rest.len()
}

fn show_byte(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("'{}'", c as char)
    } else {
        format!("byte 0x{c:02X}")
    }
}

type LexError = (usize, String);

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.src.get(self.pos.saturating_add(k)).copied()
    }

    /// Consumes one newline (`\n`, `\r`, `\r\n` or `\n\r`, as Lua counts them).
    fn skip_newline(&mut self) {
        let first = self.peek(0);
        self.pos += 1;
        if let (Some(a), Some(b)) = (first, self.peek(0)) {
            if is_newline(b) && a != b {
                self.pos += 1;
            }
        }
        self.line += 1;
    }

    /// At a `[`: the level of the long bracket `[==[` that starts here, if one does.
    fn long_bracket_level(&self) -> Option<usize> {
        let mut k = 1;
        while self.peek(k) == Some(b'=') {
            k += 1;
        }
        (self.peek(k) == Some(b'[')).then_some(k - 1)
    }

    fn read_long(&mut self, level: usize, what: &str) -> Result<Vec<u8>, LexError> {
        let start_line = self.line;
        self.pos += level + 2;
        if self.peek(0).is_some_and(is_newline) {
            self.skip_newline();
        }
        let mut out = Vec::new();
        loop {
            match self.peek(0) {
                None => {
                    return Err((
                        start_line,
                        format!("unfinished long {what} (it never ends)"),
                    ))
                }
                Some(b']') => {
                    let mut k = 1;
                    while k <= level && self.peek(k) == Some(b'=') {
                        k += 1;
                    }
                    if k == level + 1 && self.peek(k) == Some(b']') {
                        self.pos += level + 2;
                        return Ok(out);
                    }
                    out.push(b']');
                    self.pos += 1;
                }
                Some(c) if is_newline(c) => {
                    out.push(b'\n');
                    self.skip_newline();
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn read_string(&mut self, quote: u8) -> Result<Vec<u8>, LexError> {
        let start_line = self.line;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek(0) {
                None => return Err((start_line, "unfinished string".to_string())),
                Some(c) if is_newline(c) => {
                    return Err((start_line, "unfinished string".to_string()))
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.read_escape(&mut out)?;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// After a backslash in a short string.
    fn read_escape(&mut self, out: &mut Vec<u8>) -> Result<(), LexError> {
        let line = self.line;
        let Some(c) = self.peek(0) else {
            return Err((line, "unfinished string".to_string()));
        };
        let simple = match c {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            b'\\' | b'"' | b'\'' => Some(c),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            self.pos += 1;
            return Ok(());
        }
        match c {
            b'\n' | b'\r' => {
                out.push(b'\n');
                self.skip_newline();
            }
            b'x' => match (
                self.peek(1).and_then(hex_value),
                self.peek(2).and_then(hex_value),
            ) {
                (Some(a), Some(b)) => {
                    out.push(a * 16 + b);
                    self.pos += 3;
                }
                _ => return Err((line, "hexadecimal digit expected in \\x escape".into())),
            },
            b'z' => {
                self.pos += 1;
                loop {
                    match self.peek(0) {
                        Some(c) if is_newline(c) => self.skip_newline(),
                        Some(b' ' | b'\t' | 0x0b | 0x0c) => self.pos += 1,
                        _ => break,
                    }
                }
            }
            b'u' => {
                if self.peek(1) != Some(b'{') {
                    return Err((line, "missing '{' in \\u{xxxx} escape".into()));
                }
                self.pos += 2;
                let mut value: u32 = 0;
                let mut digits = 0;
                while let Some(d) = self.peek(0).and_then(hex_value) {
                    value = value
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u32::from(d)))
                        .filter(|v| *v <= 0x7FFF_FFFF)
                        .ok_or((line, "UTF-8 value too large in \\u escape".to_string()))?;
                    digits += 1;
                    self.pos += 1;
                }
                if digits == 0 {
                    return Err((line, "hexadecimal digit expected in \\u escape".into()));
                }
                if self.peek(0) != Some(b'}') {
                    return Err((line, "missing '}' in \\u{xxxx} escape".into()));
                }
                self.pos += 1;
                utf8_escape(value, out);
            }
            b'0'..=b'9' => {
                let mut value: u32 = 0;
                let mut digits = 0;
                while digits < 3 {
                    match self.peek(0) {
                        Some(d @ b'0'..=b'9') => {
                            value = value * 10 + u32::from(d - b'0');
                            self.pos += 1;
                            digits += 1;
                        }
                        _ => break,
                    }
                }
                let byte = u8::try_from(value)
                    .map_err(|_| (line, "decimal escape too large".to_string()))?;
                out.push(byte);
            }
            other => {
                return Err((
                    line,
                    format!(
                        "invalid escape sequence '\\' followed by {}",
                        show_byte(other)
                    ),
                ))
            }
        }
        Ok(())
    }

    /// Lua's `read_numeral`: greedy, then validated.
    fn read_number(&mut self) -> Result<String, LexError> {
        let start = self.pos;
        let mut exp = (b'e', b'E');
        if self.peek(0) == Some(b'0') && matches!(self.peek(1), Some(b'x' | b'X')) {
            exp = (b'p', b'P');
            self.pos += 2;
        } else {
            self.pos += 1;
        }
        loop {
            match self.peek(0) {
                Some(c) if c == exp.0 || c == exp.1 => {
                    self.pos += 1;
                    if matches!(self.peek(0), Some(b'+' | b'-')) {
                        self.pos += 1;
                    }
                }
                Some(c) if c.is_ascii_hexdigit() || c == b'.' => self.pos += 1,
                _ => break,
            }
        }
        if self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.pos += 1;
        }
        let text = self.src.get(start..self.pos).unwrap_or_default();
        let shown = String::from_utf8_lossy(text).into_owned();
        if valid_number(text) {
            Ok(shown)
        } else {
            Err((self.line, format!("malformed number near '{shown}'")))
        }
    }
}

fn lex(src: &[u8]) -> Result<Vec<Token>, LexError> {
    let mut lx = Lexer {
        src,
        pos: 0,
        line: 1,
    };
    let mut toks = Vec::new();
    loop {
        let Some(c) = lx.peek(0) else {
            toks.push(Token {
                tok: Tok::Eof,
                line: lx.line,
            });
            return Ok(toks);
        };
        let line = lx.line;
        let tok = match c {
            b'\n' | b'\r' => {
                lx.skip_newline();
                continue;
            }
            b' ' | b'\t' | 0x0b | 0x0c => {
                lx.pos += 1;
                continue;
            }
            b'-' if lx.peek(1) == Some(b'-') => {
                lx.pos += 2;
                if lx.peek(0) == Some(b'[') {
                    if let Some(level) = lx.long_bracket_level() {
                        lx.read_long(level, "comment")?;
                        continue;
                    }
                }
                while lx.peek(0).is_some_and(|c| !is_newline(c)) {
                    lx.pos += 1;
                }
                continue;
            }
            b'[' => match lx.long_bracket_level() {
                Some(level) => Tok::Str(lx.read_long(level, "string")?),
                None if lx.peek(1) == Some(b'=') => {
                    return Err((line, "invalid long string delimiter".into()))
                }
                None => {
                    lx.pos += 1;
                    Tok::Op("[")
                }
            },
            b'"' | b'\'' => Tok::Str(lx.read_string(c)?),
            b'0'..=b'9' => Tok::Num(lx.read_number()?),
            b'.' if lx.peek(1).is_some_and(|d| d.is_ascii_digit()) => Tok::Num(lx.read_number()?),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = lx.pos;
                while lx
                    .peek(0)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    lx.pos += 1;
                }
                let name = lx.src.get(start..lx.pos).unwrap_or_default();
                Tok::Name(String::from_utf8_lossy(name).into_owned())
            }
            _ => {
                let rest = lx.src.get(lx.pos..).unwrap_or_default();
                match OPS.iter().find(|op| rest.starts_with(op.as_bytes())) {
                    Some(op) => {
                        lx.pos += op.len();
                        Tok::Op(op)
                    }
                    None => return Err((line, format!("unexpected symbol {}", show_byte(c)))),
                }
            }
        };
        toks.push(Token { tok, line });
    }
}

fn describe_tok(tok: &Tok) -> String {
    match tok {
        Tok::Name(n) => format!("`{n}`"),
        Tok::Str(_) => "a string".to_string(),
        Tok::Num(n) => format!("number `{n}`"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::Eof => "the end of the file".to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Parser for the declarative subset.

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Nil,
    Bool(bool),
    Num(String),
    Str(Vec<u8>),
    Table(Vec<TableEntry>),
}

#[derive(Debug, Clone, PartialEq)]
struct TableEntry {
    /// `None` for a list entry.
    key: Option<Value>,
    value: Value,
    line: usize,
}

impl Value {
    fn describe(&self) -> String {
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
enum PErr {
    Unsupported { line: usize, what: String },
    Fatal(ProsodyConfigError),
}

impl From<ProsodyConfigError> for PErr {
    fn from(e: ProsodyConfigError) -> Self {
        PErr::Fatal(e)
    }
}

fn unsupported(line: usize, what: impl Into<String>) -> PErr {
    PErr::Unsupported {
        line,
        what: what.into(),
    }
}

fn syntax(file: &Path, line: usize, reason: impl Into<String>) -> ProsodyConfigError {
    ProsodyConfigError::Syntax {
        file: file.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn fatal(file: &Path, line: usize, reason: impl Into<String>) -> PErr {
    PErr::Fatal(syntax(file, line, reason))
}

/// Makes an unsupported construct fatal, prefixing `context`.
fn force(file: &Path, e: PErr, context: &str) -> PErr {
    match e {
        PErr::Unsupported { line, what } => fatal(file, line, format!("{context}: {what}")),
        fatal => fatal,
    }
}

fn describe_after_value(tok: &Tok) -> String {
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
fn at_statement_end(tok: &Tok) -> bool {
    match tok {
        Tok::Eof | Tok::Op(";") | Tok::Op("::") => true,
        Tok::Name(n) => n != "and" && n != "or",
        _ => false,
    }
}

fn is_call_start(tok: &Tok) -> bool {
    matches!(tok, Tok::Str(_) | Tok::Op("(") | Tok::Op("{"))
}

struct Cursor<'t> {
    toks: &'t [Token],
    pos: usize,
}

impl<'t> Cursor<'t> {
    fn tok(&self, k: usize) -> &'t Tok {
        self.toks
            .get(self.pos.saturating_add(k))
            .map(|t| &t.tok)
            .unwrap_or(&EOF)
    }

    fn line(&self, k: usize) -> usize {
        self.toks
            .get(self.pos.saturating_add(k))
            .or(self.toks.last())
            .map(|t| t.line)
            .unwrap_or(1)
    }

    fn advance(&mut self) {
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

    fn value(&mut self, file: &Path, depth: usize) -> Result<Value, PErr> {
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
    fn call_args(&mut self, file: &Path) -> Result<Vec<Value>, PErr> {
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

fn directive(name: &str) -> Option<Directive> {
    match name {
        "VirtualHost" | "Host" | "host" => Some(Directive::VirtualHost),
        "Component" | "component" => Some(Directive::Component),
        "Include" | "include" => Some(Directive::Include),
        _ => None,
    }
}

/// Skips the statement starting at `start`; returns the index of the next statement, or
/// `None` if it never ends (unbalanced brackets or blocks).
fn skip_statement(toks: &[Token], start: usize) -> Option<usize> {
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

fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == n.get(ni) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("file larger than {MAX_FILE_SIZE} bytes"),
        ));
    }
    Ok(bytes)
}

/// Prosody's `resolve_relative_path` (after stripping a leading `./`).
fn resolve(base: &Path, path: &str) -> PathBuf {
    if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        base.join(path)
    }
}

#[derive(Debug, Clone, Copy)]
enum Directive {
    VirtualHost,
    Component,
    Include,
}

#[derive(Debug, Clone, Copy)]
enum Scope {
    Global,
    Host(usize),
}

#[derive(Debug)]
struct Host {
    domain: String,
    /// `None` for a VirtualHost; the module for a Component (`"component"`: external).
    module: Option<String>,
    file: PathBuf,
    line: usize,
    secret: Option<String>,
    enabled: Option<bool>,
}

impl Host {
    fn is_external(&self) -> bool {
        self.module.as_deref() == Some("component")
    }
}

/// Per-file parsing state.
struct FileState<'a> {
    file: &'a Path,
    depth: usize,
    scope: Scope,
    /// Options set in this file, per host (`None`: global), for duplicate warnings.
    seen: HashSet<(Option<usize>, String)>,
}

#[derive(Default)]
struct Loader {
    hosts: Vec<Host>,
    by_domain: HashMap<String, usize>,
    global_secret: Option<String>,
    global_enabled: Option<bool>,
    warnings: Vec<String>,
    /// Canonical paths of the files being read (for Include cycles).
    stack: Vec<PathBuf>,
    files_read: usize,
}

impl Loader {
    fn warn(&mut self, file: &Path, line: usize, msg: impl AsRef<str>) {
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

    fn load_file(
        &mut self,
        path: &Path,
        from: Option<(&Path, usize)>,
        depth: usize,
    ) -> Result<(), ProsodyConfigError> {
        let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some((from_file, from_line)) = from {
            if depth > MAX_INCLUDE_DEPTH {
                return Err(syntax(
                    from_file,
                    from_line,
                    format!("Include nesting deeper than {MAX_INCLUDE_DEPTH} files"),
                ));
            }
            if self.files_read >= MAX_FILES {
                return Err(syntax(
                    from_file,
                    from_line,
                    format!("more than {MAX_FILES} files included"),
                ));
            }
            if self.stack.contains(&canonical) {
                return Err(syntax(
                    from_file,
                    from_line,
                    format!("Include cycle: {} is already being read", path.display()),
                ));
            }
        }
        let bytes = read_limited(path).map_err(|source| ProsodyConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        self.files_read += 1;
        self.stack.push(canonical);
        let result = self.parse_file(&bytes, path, depth);
        self.stack.pop();
        result
    }

    fn parse_file(
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
                Ok(()) => {
                    if cur.pos == start {
                        cur.advance();
                    }
                }
                Err(PErr::Fatal(e)) => return Err(e),
                Err(PErr::Unsupported { line, what }) => {
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
                    let Some(next) = skip_statement(&toks, start) else {
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
                        format!(
                            "{what} is not supported in {section}; skipped the statement ({lines})"
                        ),
                    );
                    cur.pos = next;
                }
            }
        }
    }

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

    /// Applies `key = value` to `scope`; only `component_secret` and `enabled` matter.
    fn apply(
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
                let secret =
                    match value {
                        Value::Nil => None,
                        Value::Str(b) => Some(String::from_utf8(b.clone()).map_err(|_| {
                            fatal(file, line, "`component_secret` is not valid UTF-8")
                        })?),
                        other => {
                            return Err(fatal(
                                file,
                                line,
                                format!(
                                    "`component_secret` must be a string, not {}",
                                    other.describe()
                                ),
                            ))
                        }
                    };
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
                let enabled = match value {
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
                };
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

    fn directive(
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
        let args = cur.call_args(file).map_err(|e| force(file, e, &context))?;
        let arg = match args.as_slice() {
            [Value::Str(s)] => s.clone(),
            [] | [Value::Nil] => return Err(fatal(file, line, format!("`{name}` needs a name"))),
            [other] => {
                return Err(fatal(
                    file,
                    line,
                    format!("`{name}` needs a quoted name, not {}", other.describe()),
                ))
            }
            _ => {
                return Err(fatal(
                    file,
                    line,
                    format!("`{name}` takes a single quoted name"),
                ))
            }
        };
        match d {
            Directive::Include => {
                self.end_of_directive(cur, file, &context)?;
                self.include(&arg, file, line, fx.depth)?;
            }
            Directive::VirtualHost => {
                let domain = normalize_domain(&arg, "VirtualHost", file, line)?;
                let idx = self.declare(domain.clone(), None, file, line)?;
                fx.scope = Scope::Host(idx);
                if is_call_start(cur.tok(0)) {
                    let opts = cur.call_args(file).map_err(|e| force(file, e, &context))?;
                    match opts.as_slice() {
                        [Value::Table(entries)] => {
                            self.apply_table(idx, entries, file)?;
                            fx.scope = Scope::Global;
                        }
                        [Value::Str(m)] => {
                            return Err(fatal(
                                file,
                                line,
                                format!(
                                    "VirtualHost entries do not accept a module name (module \
                                     \"{}\" given for host \"{domain}\")",
                                    String::from_utf8_lossy(m)
                                ),
                            ))
                        }
                        _ => {
                            return Err(fatal(
                                file,
                                line,
                                format!("expected an options table after VirtualHost \"{domain}\""),
                            ))
                        }
                    }
                }
                self.end_of_directive(cur, file, &context)?;
            }
            Directive::Component => {
                let domain = normalize_domain(&arg, "Component", file, line)?;
                let idx = self.declare(domain.clone(), Some("component"), file, line)?;
                fx.scope = Scope::Host(idx);
                if is_call_start(cur.tok(0)) {
                    let second = cur.call_args(file).map_err(|e| force(file, e, &context))?;
                    let table = match second.as_slice() {
                        [Value::Str(module)] => {
                            let module = String::from_utf8_lossy(module).into_owned();
                            if let Some(h) = self.hosts.get_mut(idx) {
                                h.module = Some(module);
                            }
                            if is_call_start(cur.tok(0)) {
                                let third =
                                    cur.call_args(file).map_err(|e| force(file, e, &context))?;
                                match third.as_slice() {
                                    [Value::Table(entries)] => Some(entries.clone()),
                                    _ => {
                                        return Err(fatal(
                                            file,
                                            line,
                                            format!(
                                                "expected an options table after the module \
                                                 name of Component \"{domain}\""
                                            ),
                                        ))
                                    }
                                }
                            } else {
                                None
                            }
                        }
                        [Value::Table(entries)] => Some(entries.clone()),
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
                    if let Some(entries) = table {
                        self.apply_table(idx, &entries, file)?;
                        fx.scope = Scope::Global;
                    }
                }
                self.end_of_directive(cur, file, &context)?;
            }
        }
        Ok(())
    }

    fn end_of_directive(&self, cur: &Cursor<'_>, file: &Path, context: &str) -> Result<(), PErr> {
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

    fn include(
        &mut self,
        spec: &[u8],
        file: &Path,
        line: usize,
        depth: usize,
    ) -> Result<(), ProsodyConfigError> {
        let spec = std::str::from_utf8(spec)
            .map_err(|_| syntax(file, line, "Include path is not valid UTF-8"))?;
        let spec = match spec.strip_prefix("./") {
            Some(rest) => rest.trim_start_matches('/'),
            None => spec,
        };
        if spec.is_empty() {
            return Err(syntax(file, line, "Include needs a file name"));
        }
        let base = file.parent().unwrap_or_else(|| Path::new(""));
        if !spec.contains(['*', '?']) {
            return self.load_file(&resolve(base, spec), Some((file, line)), depth + 1);
        }
        let (dir_part, pattern) = match spec.rfind('/') {
            Some(0) => ("/", spec.get(1..).unwrap_or_default()),
            Some(i) => (
                spec.get(..i).unwrap_or_default(),
                spec.get(i + 1..).unwrap_or_default(),
            ),
            None => ("", spec),
        };
        if pattern.is_empty() {
            return Err(syntax(
                file,
                line,
                format!("Include \"{spec}\": the pattern has no file name part"),
            ));
        }
        if dir_part.contains(['*', '?']) {
            return Err(syntax(
                file,
                line,
                format!(
                    "Include \"{spec}\": wildcards are only supported in the last path component"
                ),
            ));
        }
        let dir = if dir_part.is_empty() {
            base.to_path_buf()
        } else {
            resolve(base, dir_part)
        };
        let listed = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.clone()
        };
        let entries = match fs::read_dir(&listed) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warn(
                    file,
                    line,
                    format!(
                        "Include \"{spec}\": directory {} does not exist, nothing included \
                         (Prosody would refuse to start)",
                        listed.display()
                    ),
                );
                return Ok(());
            }
            Err(source) => {
                return Err(ProsodyConfigError::Io {
                    file: listed,
                    source,
                })
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ProsodyConfigError::Io {
                file: listed.clone(),
                source,
            })?;
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                self.warn(
                    file,
                    line,
                    format!(
                        "Include \"{spec}\": skipping {} (name is not valid UTF-8)",
                        entry.path().display()
                    ),
                );
                continue;
            };
            if name.starts_with('.') || !glob_match(pattern, name) {
                continue;
            }
            let path = dir.join(name);
            if fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                self.warn(
                    file,
                    line,
                    format!("Include \"{spec}\": skipping directory {}", path.display()),
                );
                continue;
            }
            names.push(name.to_string());
        }
        names.sort();
        for name in names {
            self.load_file(&dir.join(name), Some((file, line)), depth + 1)?;
        }
        Ok(())
    }

    fn finish(self) -> ProsodyConfig {
        let mut warnings = self.warnings;
        let global_enabled = self.global_enabled;
        let enabled_of = |h: &Host| h.enabled.or(global_enabled).unwrap_or(true);
        let virtual_hosts: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| h.module.is_none())
            .map(|h| h.domain.clone())
            .collect();
        let mut components = Vec::new();
        for h in self.hosts.iter().filter(|h| h.is_external()) {
            let enabled = enabled_of(h);
            if enabled {
                let at = format!("{}:{}", h.file.display(), h.line);
                let d = &h.domain;
                match h.domain.split_once('.') {
                    None => warnings.push(format!(
                        "{at}: Component \"{d}\" has no parent domain, so no VirtualHost \
                         of this configuration serves it; bad things may happen"
                    )),
                    Some((_, parent)) => {
                        let vhost = self
                            .by_domain
                            .get(parent)
                            .and_then(|&i| self.hosts.get(i))
                            .filter(|p| p.module.is_none());
                        match vhost {
                            None => warnings.push(format!(
                                "{at}: Component \"{d}\": its parent domain \"{parent}\" is \
                                 not a VirtualHost of this configuration, so its respective \
                                 VirtualHost is not loaded; bad things may happen"
                            )),
                            Some(p) if !enabled_of(p) => warnings.push(format!(
                                "{at}: Component \"{d}\": its parent VirtualHost \"{parent}\" \
                                 is disabled (enabled = false); bad things may happen"
                            )),
                            Some(_) => {}
                        }
                    }
                }
            }
            components.push(ProsodyComponent {
                domain: h.domain.clone(),
                secret: h.secret.clone().or_else(|| self.global_secret.clone()),
                enabled,
                file: h.file.clone(),
                line: h.line,
            });
        }
        ProsodyConfig {
            components,
            virtual_hosts,
            warnings,
        }
    }
}

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
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const FILE: &str = "/nonexistent-prosody-test-dir/prosody.cfg.lua";

    fn parse(text: &str) -> ProsodyConfig {
        parse_str(text, Path::new(FILE)).unwrap_or_else(|e| panic!("unexpected error: {e}"))
    }

    fn parse_err(text: &str) -> ProsodyConfigError {
        match parse_str(text, Path::new(FILE)) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    /// Asserts a config error on `line` whose message contains `needle`.
    fn assert_err(text: &str, line: usize, needle: &str) {
        let e = parse_err(text);
        assert_eq!(e.line(), Some(line), "wrong line in {e}");
        assert_eq!(e.file(), Path::new(FILE));
        assert!(e.to_string().contains(needle), "{e:?} lacks {needle:?}");
    }

    /// Asserts the text parses with a warning on `line` containing `needle`; returns the
    /// config.
    fn assert_warns(text: &str, line: usize, needle: &str) -> ProsodyConfig {
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

    fn domains(c: &ProsodyConfig) -> Vec<&str> {
        c.components.iter().map(|c| c.domain.as_str()).collect()
    }

    fn comp<'a>(c: &'a ProsodyConfig, domain: &str) -> &'a ProsodyComponent {
        c.components
            .iter()
            .find(|c| c.domain == domain)
            .unwrap_or_else(|| panic!("no component {domain} in {c:?}"))
    }

    fn secret(c: &ProsodyConfig, domain: &str) -> Option<String> {
        comp(c, domain).secret.clone()
    }

    /// Parses `value` as the secret of an external component.
    fn secret_of(value: &str) -> String {
        let c = parse(&format!(
            "VirtualHost \"x.org\"\nComponent \"c.x.org\"\n  component_secret = {value}\n"
        ));
        secret(&c, "c.x.org").unwrap_or_default()
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/prosody")
            .join(name)
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
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

        fn write(&self, rel: &str, text: &str) -> PathBuf {
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

    // --- the README's example (issue 6) -------------------------------------------------

    #[test]
    fn issue_example() {
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

    // --- lexical constructs ---------------------------------------------------------------

    #[test]
    fn line_comments() {
        let c = parse(
            "-- a comment with Component \"x.example\" in it\n\
             VirtualHost \"example.com\" -- trailing comment\n\
             --Component \"commented.example.com\"\n\
             Component \"a.example.com\" -- another\n\
             component_secret = \"a\" -- \"not the secret\"\n\
             -- [[ not a long comment\n\
             Component \"b.example.com\"\n",
        );
        assert_eq!(domains(&c), ["a.example.com", "b.example.com"]);
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("a"));
        assert_eq!(comp(&c, "b.example.com").line, 7);
    }

    #[test]
    fn long_comments() {
        let c = parse(
            "--[[ Component \"x.example.com\"\n  component_secret = \"no\"\n]]\n\
             --[==[ a ]] and ]=] do not end this\nComponent \"y.example.com\" ]==]\n\
             VirtualHost \"example.com\" --[[ inline ]] Component \"a.example.com\"\n\
             --[=[]=]component_secret = \"a\"\n",
        );
        assert_eq!(domains(&c), ["a.example.com"]);
        assert_eq!(comp(&c, "a.example.com").line, 6);
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("a"));
    }

    #[test]
    fn unfinished_long_comment_is_an_error() {
        assert_err(
            "VirtualHost \"a\"\n--[[ never\nends\n",
            2,
            "unfinished long comment",
        );
        assert_err(
            "VirtualHost \"a\"\n--[==[ x ]=]\n",
            2,
            "unfinished long comment",
        );
    }

    #[test]
    fn double_quoted_strings_and_escapes() {
        assert_eq!(secret_of(r#""plain""#), "plain");
        assert_eq!(secret_of(r#""q\"q\'\\""#), "q\"q'\\");
        assert_eq!(secret_of(r#""\a\b\f\n\r\t\v""#), "\x07\x08\x0c\n\r\t\x0b");
        assert_eq!(secret_of(r#""\x41\x6a\65\097\0491""#), "AjAa11");
        assert_eq!(secret_of(r#""\u{48}\u{e9}\u{20AC}\u{1F600}""#), "Hé€😀");
        assert_eq!(secret_of("\"a\\z  \n   b\""), "ab");
        assert_eq!(secret_of("\"a\\\nb\""), "a\nb");
        assert_eq!(secret_of("\"--not a comment\""), "--not a comment");
    }

    #[test]
    fn single_quoted_strings() {
        assert_eq!(secret_of("'single'"), "single");
        assert_eq!(secret_of(r#"'it\'s "quoted"'"#), "it's \"quoted\"");
        let c = parse("Component 'a.example.com'\ncomponent_secret = 'x'\n");
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("x"));
    }

    #[test]
    fn long_strings() {
        assert_eq!(secret_of("[[long]]"), "long");
        assert_eq!(
            secret_of("[[\nfirst newline dropped\\n]]"),
            "first newline dropped\\n"
        );
        assert_eq!(secret_of("[==[a]]b]=]c]==]"), "a]]b]=]c");
        assert_eq!(secret_of("[=[\r\nx\r\ny]=]"), "x\ny");
        let c = parse("Component [[a.example.com]]\n");
        assert_eq!(domains(&c), ["a.example.com"]);
    }

    #[test]
    fn bad_strings_are_errors_anywhere() {
        assert_err("x = \"unterminated\n", 1, "unfinished string");
        assert_err("x = 'a\ny'\n", 1, "unfinished string");
        assert_err("\n\nx = [[ never closed\n", 3, "unfinished long string");
        assert_err("x = \"\\q\"\n", 1, "invalid escape");
        assert_err("x = \"\\xZZ\"\n", 1, "hexadecimal digit expected");
        assert_err("x = \"\\256\"\n", 1, "decimal escape too large");
        assert_err("x = \"\\u{110000000}\"\n", 1, "too large");
        assert_err("x = \"\\u41\"\n", 1, "missing '{'");
        assert_err("x = [=x\n", 1, "invalid long string delimiter");
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
    fn numbers() {
        let c = parse(
            "c2s_timeout = 300\nratio = 0.5\nx = .5\ny = 3e2\nz = 3.1E-2\nh = 0xff\n\
             hf = 0x1.8p1\nneg = -1\nVirtualHost \"example.com\"\nlimit = 10\n\
             Component \"a.example.com\"\ncomponent_secret = \"a\"\nport = 5347\n\
             t = { 1, 2.5, -3, 0x10 }\n",
        );
        assert_eq!(domains(&c), ["a.example.com"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn malformed_numbers_are_errors() {
        assert_err("x = 1\ny = 3x\n", 2, "malformed number");
        assert_err("x = 0x\n", 1, "malformed number");
        assert_err("x = 1e\n", 1, "malformed number");
        assert_err("x = 1..2\n", 1, "malformed number");
    }

    #[test]
    fn non_lua_characters_are_errors() {
        assert_err("VirtualHost \"a\"\nx = @foo\n", 2, "unexpected symbol '@'");
        assert_err("x = 1 !\n", 1, "unexpected symbol '!'");
        assert_err("caf\u{e9} = 1\n", 1, "unexpected symbol");
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
    fn each_file_starts_in_the_global_section_and_resumes_its_own() {
        let dir = TempDir::new("scope");
        dir.write(
            "inc.cfg.lua",
            "component_secret = \"global-from-include\"\nComponent \"b.example.com\"\n",
        );
        let main = dir.write(
            "main.cfg.lua",
            "VirtualHost \"example.com\"\nComponent \"a.example.com\"\nInclude \"inc.cfg.lua\"\n\
             enabled = false\n",
        );
        let c = load(&main).expect("load");
        let a = comp(&c, "a.example.com");
        assert_eq!(
            (a.secret.as_deref(), a.enabled),
            (Some("global-from-include"), false)
        );
        let b = comp(&c, "b.example.com");
        assert_eq!(
            (b.secret.as_deref(), b.enabled),
            (Some("global-from-include"), true)
        );
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

    #[test]
    fn line_numbers_count_all_newline_styles() {
        let c = parse("x = 1\r\ny = 2\rz = 3\n\rw = [[a\r\nb]]\nComponent \"a.example.com\"\n");
        assert_eq!(comp(&c, "a.example.com").line, 6);
    }

    // --- Include ----------------------------------------------------------------------------

    #[test]
    fn include_across_files() {
        let dir = TempDir::new("include");
        dir.write(
            "conf.d/10-a.cfg.lua",
            "VirtualHost \"example.com\"\nComponent \"a.example.com\"\ncomponent_secret = \"a\"\n",
        );
        dir.write(
            "conf.d/20-b.cfg.lua",
            "Component \"b.example.com\"\ncomponent_secret = \"b\"\nInclude \"sub/c.lua\"\n",
        );
        dir.write("conf.d/sub/c.lua", "Component \"c.example.com\"\n");
        dir.write(
            "conf.d/.hidden.cfg.lua",
            "Component \"hidden.example.com\"\n",
        );
        dir.write("conf.d/notes.txt", "Component \"txt.example.com\"\n");
        fs::create_dir_all(dir.0.join("conf.d/dir.cfg.lua")).expect("mkdir");
        dir.write("other/x.cfg.lua", "Component \"x.example.com\"\n");
        let main = dir.write(
            "prosody.cfg.lua",
            "component_secret = \"global\"\n\
             Include \"conf.d/*.cfg.lua\"\n\
             include './other/x.cfg.lua'\n\
             Component \"z.example.com\"\n",
        );
        let other_abs = dir.0.join("other/x.cfg.lua");
        let abs = dir.write(
            "abs.cfg.lua",
            &format!("Include \"{}\"\n", other_abs.display()),
        );

        let c = load(&main).expect("load");
        assert_eq!(
            domains(&c),
            [
                "a.example.com",
                "b.example.com",
                "c.example.com",
                "x.example.com",
                "z.example.com"
            ]
        );
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("a"));
        assert_eq!(secret(&c, "c.example.com").as_deref(), Some("global"));
        let a = comp(&c, "a.example.com");
        assert_eq!(
            (a.file.clone(), a.line),
            (dir.0.join("conf.d/10-a.cfg.lua"), 2)
        );
        let cc = comp(&c, "c.example.com");
        assert_eq!(
            (cc.file.clone(), cc.line),
            (dir.0.join("conf.d/sub/c.lua"), 1)
        );
        assert_eq!(comp(&c, "z.example.com").file, main);
        assert!(
            c.warnings.iter().any(|w| w.contains("skipping directory")),
            "{:?}",
            c.warnings
        );

        // parse_str resolves relative to the given file's directory.
        let text = fs::read_to_string(&main).expect("read");
        assert_eq!(
            domains(&parse_str(&text, &main).expect("parse")),
            domains(&c)
        );
        // Absolute paths.
        assert_eq!(domains(&load(&abs).expect("load abs")), ["x.example.com"]);
    }

    #[test]
    fn include_glob_matching_nothing_is_fine() {
        let dir = TempDir::new("empty-glob");
        fs::create_dir_all(dir.0.join("conf.d")).expect("mkdir");
        let main = dir.write(
            "p.cfg.lua",
            "Include \"conf.d/*.cfg.lua\"\nComponent \"a.b\"\n",
        );
        let c = load(&main).expect("load");
        assert_eq!(domains(&c), ["a.b"]);
        assert!(
            c.warnings.iter().all(|w| !w.contains("Include")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn include_glob_in_missing_directory_warns() {
        assert_warns("\nInclude \"conf.d/*.cfg.lua\"\n", 2, "does not exist");
    }

    #[test]
    fn include_missing_file_is_an_io_error() {
        let dir = TempDir::new("missing");
        let main = dir.write("p.cfg.lua", "Include \"nope.cfg.lua\"\n");
        let e = load(&main).expect_err("must fail");
        assert!(matches!(e, ProsodyConfigError::Io { .. }), "{e:?}");
        assert_eq!(e.file(), dir.0.join("nope.cfg.lua"));
        assert_eq!(e.line(), None);
        let e = load(&dir.0.join("absent.cfg.lua")).expect_err("must fail");
        assert!(matches!(e, ProsodyConfigError::Io { .. }), "{e:?}");
    }

    #[test]
    fn include_errors_name_the_included_file() {
        let dir = TempDir::new("inc-err");
        let bad = dir.write("bad.cfg.lua", "\nComponent \"a.example.com\"\nx = y\n");
        let main = dir.write("p.cfg.lua", "Include \"bad.cfg.lua\"\n");
        let e = load(&main).expect_err("must fail");
        assert_eq!((e.file(), e.line()), (bad.as_path(), Some(3)));
    }

    #[test]
    fn include_cycles_are_errors() {
        let dir = TempDir::new("cycle");
        let main = dir.write("self.cfg.lua", "x = 1\nInclude \"self.cfg.lua\"\n");
        let e = load(&main).expect_err("must fail");
        assert_eq!((e.file(), e.line()), (main.as_path(), Some(2)));
        assert!(e.to_string().contains("Include cycle"), "{e}");

        let a = dir.write("a.cfg.lua", "Include \"b.cfg.lua\"\n");
        let b = dir.write("b.cfg.lua", "\nInclude \"*.cfg.lua\"\n");
        let e = load(&a).expect_err("must fail");
        assert_eq!((e.file(), e.line()), (b.as_path(), Some(2)));
        assert!(e.to_string().contains("Include cycle"), "{e}");
        // parse_str knows its own file too.
        let e = parse_str("Include \"self.cfg.lua\"\n", &main).expect_err("must fail");
        assert!(e.to_string().contains("Include cycle"), "{e}");
    }

    #[test]
    fn include_depth_is_limited() {
        let dir = TempDir::new("depth");
        for i in 0..40 {
            dir.write(
                &format!("f{i}.lua"),
                &format!("Include \"f{}.lua\"\n", i + 1),
            );
        }
        dir.write("f40.lua", "Component \"deep.example.com\"\n");
        let e = load(&dir.0.join("f0.lua")).expect_err("must fail");
        assert!(e.to_string().contains("Include nesting deeper"), "{e}");
        // 10 levels are fine.
        let c = load(&dir.0.join("f30.lua")).expect("load");
        assert_eq!(domains(&c), ["deep.example.com"]);
    }

    #[test]
    fn include_rejects_wildcards_in_directories() {
        assert_err("Include \"conf.*/x.lua\"\n", 1, "last path component");
        // Not a wildcard: the directory itself cannot be read as a file.
        let e = parse_err("Include \"conf.d/\"\n");
        assert!(matches!(e, ProsodyConfigError::Io { .. }), "{e:?}");
        assert_err("Include \"\"\n", 1, "needs a file name");
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("*.cfg.lua", "localhost.cfg.lua"));
        assert!(glob_match("*.cfg.lua", ".cfg.lua"));
        assert!(!glob_match("*.cfg.lua", "localhost.cfg.lua.bak"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("f?.lua", "f1.lua"));
        assert!(!glob_match("f?.lua", "f12.lua"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("**x", "x"));
        assert!(!glob_match("", "x"));
    }

    // --- fixtures ---------------------------------------------------------------------------

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
        let pieces: &[&[u8]] = &[
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
                    let i = (next() % pieces.len() as u64) as usize;
                    text.extend_from_slice(pieces.get(i).copied().unwrap_or_default());
                }
            }
            let _ = parse_bytes(&text, Path::new(FILE));
        }
    }
}

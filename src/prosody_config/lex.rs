//! The Lua 5.4 lexical syntax, complete, so that skipping a statement outside the
//! supported subset is reliable: comments `--`, `--[[ ]]`, `--[==[ ]==]`; strings with
//! every Lua escape, long strings; numerals (validated as Lua's `read_numeral` does);
//! names, keywords and operators. Lines count every newline style Lua counts (`\n`,
//! `\r`, `\r\n`, `\n\r`).

/// One token's kind and text.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Name(String),
    Str(Vec<u8>),
    Num(String),
    Op(&'static str),
    Eof,
}

pub(super) static EOF: Tok = Tok::Eof;

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
}

/// A lexical error: the line and the reason.
pub(super) type LexError = (usize, String);

/// Longest first, so that the first prefix match is the right one.
const OPS: &[&str] = &[
    "...", "..", "==", "~=", "<=", ">=", "<<", ">>", "//", "::", "+", "-", "*", "/", "%", "^", "#",
    "&", "~", "|", "<", ">", "=", "(", ")", "{", "}", "[", "]", ";", ":", ",", ".",
];

const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

pub(super) fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

fn is_newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
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

/// How a token reads in an error message.
pub(super) fn describe_tok(tok: &Tok) -> String {
    match tok {
        Tok::Name(n) => format!("`{n}`"),
        Tok::Str(_) => "a string".to_string(),
        Tok::Num(n) => format!("number `{n}`"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::Eof => "the end of the file".to_string(),
    }
}

/// The tokens of `src`, ending with [`Tok::Eof`].
pub(super) fn lex(src: &[u8]) -> Result<Vec<Token>, LexError> {
    let mut lx = Lexer {
        src,
        pos: 0,
        line: 1,
    };
    let mut toks = Vec::new();
    loop {
        lx.skip_space_and_comments()?;
        let line = lx.line;
        let Some(tok) = lx.token()? else {
            toks.push(Token {
                tok: Tok::Eof,
                line,
            });
            return Ok(toks);
        };
        toks.push(Token { tok, line });
    }
}

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

    /// Skips whitespace, newlines and comments up to the next token (or the end).
    fn skip_space_and_comments(&mut self) -> Result<(), LexError> {
        loop {
            match self.peek(0) {
                Some(b'\n' | b'\r') => self.skip_newline(),
                Some(b' ' | b'\t' | 0x0b | 0x0c) => self.pos += 1,
                Some(b'-') if self.peek(1) == Some(b'-') => self.skip_comment()?,
                _ => return Ok(()),
            }
        }
    }

    /// At `--`: a long comment `--[[ … ]]` or a comment to the end of the line.
    fn skip_comment(&mut self) -> Result<(), LexError> {
        self.pos += 2;
        if self.peek(0) == Some(b'[') {
            if let Some(level) = self.long_bracket_level() {
                self.read_long(level, "comment")?;
                return Ok(());
            }
        }
        while self.peek(0).is_some_and(|c| !is_newline(c)) {
            self.pos += 1;
        }
        Ok(())
    }

    /// The token at the current position (after [`Self::skip_space_and_comments`]),
    /// `None` at the end of the input.
    fn token(&mut self) -> Result<Option<Tok>, LexError> {
        let Some(c) = self.peek(0) else {
            return Ok(None);
        };
        let tok = match c {
            b'[' => match self.long_bracket_level() {
                Some(level) => Tok::Str(self.read_long(level, "string")?),
                None if self.peek(1) == Some(b'=') => {
                    return Err((self.line, "invalid long string delimiter".into()))
                }
                None => {
                    self.pos += 1;
                    Tok::Op("[")
                }
            },
            b'"' | b'\'' => Tok::Str(self.read_string(c)?),
            b'0'..=b'9' => Tok::Num(self.read_number()?),
            b'.' if self.peek(1).is_some_and(|d| d.is_ascii_digit()) => {
                Tok::Num(self.read_number()?)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => Tok::Name(self.read_name()),
            _ => Tok::Op(self.read_op(c)?),
        };
        Ok(Some(tok))
    }

    fn read_name(&mut self) -> String {
        let start = self.pos;
        while self.peek(0).is_some_and(is_name_char) {
            self.pos += 1;
        }
        let name = self.src.get(start..self.pos).unwrap_or_default();
        String::from_utf8_lossy(name).into_owned()
    }

    fn read_op(&mut self, c: u8) -> Result<&'static str, LexError> {
        let rest = self.src.get(self.pos..).unwrap_or_default();
        match OPS.iter().find(|op| rest.starts_with(op.as_bytes())) {
            Some(op) => {
                self.pos += op.len();
                Ok(op)
            }
            None => Err((self.line, format!("unexpected symbol {}", show_byte(c)))),
        }
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
            b'x' => out.push(self.read_hex_escape()?),
            b'z' => self.skip_z_escape(),
            b'u' => utf8_escape(self.read_utf8_escape()?, out),
            b'0'..=b'9' => out.push(self.read_decimal_escape()?),
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

    /// At the `x` of `\xXX`.
    fn read_hex_escape(&mut self) -> Result<u8, LexError> {
        match (
            self.peek(1).and_then(hex_value),
            self.peek(2).and_then(hex_value),
        ) {
            (Some(a), Some(b)) => {
                self.pos += 3;
                Ok(a * 16 + b)
            }
            _ => Err((self.line, "hexadecimal digit expected in \\x escape".into())),
        }
    }

    /// At the `z` of `\z`: skips it and the whitespace (newlines included) after it.
    fn skip_z_escape(&mut self) {
        self.pos += 1;
        loop {
            match self.peek(0) {
                Some(c) if is_newline(c) => self.skip_newline(),
                Some(b' ' | b'\t' | 0x0b | 0x0c) => self.pos += 1,
                _ => break,
            }
        }
    }

    /// At the `u` of `\u{XXX}`: the value, at most 0x7FFFFFFF.
    fn read_utf8_escape(&mut self) -> Result<u32, LexError> {
        let line = self.line;
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
        Ok(value)
    }

    /// At the first digit of `\ddd` (up to three decimal digits, at most 255).
    fn read_decimal_escape(&mut self) -> Result<u8, LexError> {
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
        u8::try_from(value).map_err(|_| (self.line, "decimal escape too large".to_string()))
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
        if self.peek(0).is_some_and(is_name_char) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prosody_config::testing::*;

    fn tokens(src: &str) -> Vec<(Tok, usize)> {
        let toks = lex(src.as_bytes()).unwrap_or_else(|(line, e)| panic!("{line}: {e}"));
        toks.into_iter().map(|t| (t.tok, t.line)).collect()
    }

    #[test]
    fn tokens_and_their_lines() {
        let name = |n: &str| Tok::Name(n.to_string());
        assert_eq!(
            tokens("Component \"a\" -- c\n--[[\n]] x = { 0x1p4, [[s]] } ; ...\r\n"),
            [
                (name("Component"), 1),
                (Tok::Str(b"a".to_vec()), 1),
                (name("x"), 3),
                (Tok::Op("="), 3),
                (Tok::Op("{"), 3),
                (Tok::Num("0x1p4".into()), 3),
                (Tok::Op(","), 3),
                (Tok::Str(b"s".to_vec()), 3),
                (Tok::Op("}"), 3),
                (Tok::Op(";"), 3),
                (Tok::Op("..."), 3),
                (Tok::Eof, 4),
            ]
        );
        assert_eq!(tokens(""), [(Tok::Eof, 1)]);
        assert_eq!(tokens("-- only a comment"), [(Tok::Eof, 1)]);
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
    fn line_numbers_count_all_newline_styles() {
        let c = parse("x = 1\r\ny = 2\rz = 3\n\rw = [[a\r\nb]]\nComponent \"a.example.com\"\n");
        assert_eq!(comp(&c, "a.example.com").line, 6);
    }
}

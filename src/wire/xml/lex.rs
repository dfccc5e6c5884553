//! Byte-level XML lexing for the framer: names, references, character data,
//! CDATA, attribute values and the XML declaration, checked against XML 1.0
//! (fourth edition for name characters, see [`super::names`]) and Namespaces
//! in XML 1.0.
//!
//! Every token that may arrive in pieces (a name, a reference, an attribute
//! value, character data) is read by a lexer that keeps how far it got, so
//! the next read goes on from there: each byte is looked at once (a UTF-8
//! sequence cut by a read, at most three bytes, is looked at again), however
//! small the reads. Token lengths are not judged here: each lexer stops as
//! soon as its token passes the `max` it is given and leaves the verdict
//! (error, or skipping the element) to the framer.
//!
//! Everything here works on borrowed bytes and allocates nothing, except when a
//! caller asks for a decoded value ([`decode_attr`], or a [`Collect`] for the
//! text of a `<handshake/>`). Each check sits next to the production it
//! enforces, and each failure names what was wrong for the operator's log.

use std::borrow::Cow;

use super::names;
use super::FrameError;
use crate::proto::StreamCondition;

pub(super) fn nwf(detail: &'static str) -> FrameError {
    FrameError::new(StreamCondition::NotWellFormed, detail)
}

pub(super) fn restricted(detail: &'static str) -> FrameError {
    FrameError::new(
        StreamCondition::RestrictedXml,
        format!("restricted XML: {detail}"),
    )
}

/// Byte classes for the ASCII fast paths.
const NAME_START: u8 = 1;
const NAME_CHAR: u8 = 2;
/// Character data that needs no attention: printable ASCII but `&`, `<`, `]`.
const PLAIN_TEXT: u8 = 4;
/// Attribute value bytes that need no attention: printable ASCII but `&`, `<`
/// and quotes.
const PLAIN_VALUE: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        let start = c.is_ascii_alphabetic() || c == b'_';
        if start {
            t[b] |= NAME_START;
        }
        if start || c.is_ascii_digit() || c == b'-' || c == b'.' {
            t[b] |= NAME_CHAR;
        }
        if c >= 0x20 && c != b'&' && c != b'<' {
            if c != b'\'' && c != b'"' {
                t[b] |= PLAIN_VALUE;
            }
            if c != b']' {
                t[b] |= PLAIN_TEXT;
            }
        }
        b += 1;
    }
    t
};

/// Length of the run of bytes of class `class` at the start of `b`.
#[inline]
fn run_of(b: &[u8], class: u8) -> usize {
    b.iter()
        .position(|&x| CLASS[x as usize] & class == 0)
        .unwrap_or(b.len())
}

/// How many bytes at the start of `b` are plain character data (printable
/// ASCII but `&`, `<`, `]`): nothing to check in them but their class.
#[inline]
pub(super) fn plain_text(b: &[u8]) -> usize {
    run_of(b, PLAIN_TEXT)
}

/// How many bytes at the start of `b` are plain attribute value bytes
/// (printable ASCII but `&`, `<` and quotes).
#[inline]
pub(super) fn plain_value(b: &[u8]) -> usize {
    run_of(b, PLAIN_VALUE)
}

/// May the ASCII byte `b` start a name?
#[inline]
pub(super) fn is_name_start_ascii(b: u8) -> bool {
    CLASS[b as usize] & NAME_START != 0
}

/// How many bytes at the start of `b` go on with a name past its first
/// character (ASCII letters, digits, `-._`).
#[inline]
pub(super) fn name_chars(b: &[u8]) -> usize {
    run_of(b, NAME_CHAR)
}

/// XML whitespace (the `S` production).
#[inline]
pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Number of whitespace bytes at the start of `b`.
#[inline]
pub(super) fn skip_ws(b: &[u8]) -> usize {
    b.iter().take_while(|&&c| is_ws(c)).count()
}

/// The `Char` production, for a scalar value at or above 0x80 (UTF-8 decoding
/// already excludes surrogates).
#[inline]
fn is_char_non_ascii(c: u32) -> bool {
    c <= 0xD7FF || (0xE000..=0xFFFD).contains(&c) || (0x10000..=0x10FFFF).contains(&c)
}

/// The `Char` production for any scalar value.
#[inline]
fn is_char(c: u32) -> bool {
    match c {
        0x9 | 0xA | 0xD => true,
        0..=0x1F => false,
        0x20..=0x7F => true,
        _ => is_char_non_ascii(c) && c <= 0x10FFFF,
    }
}

/// Decode the UTF-8 sequence at the start of `b` (`b[0] >= 0x80`): the scalar
/// and its length, `None` when `b` ends inside a sequence that is valid so far.
#[inline]
pub(super) fn decode_utf8(b: &[u8]) -> Result<Option<(u32, usize)>, FrameError> {
    let b0 = b[0];
    let (len, min, init) = match b0 {
        0xC2..=0xDF => (2, 0x80, u32::from(b0 & 0x1F)),
        0xE0..=0xEF => (3, 0x800, u32::from(b0 & 0x0F)),
        0xF0..=0xF4 => (4, 0x10000, u32::from(b0 & 0x07)),
        _ => return Err(nwf("invalid UTF-8")),
    };
    let mut c = init;
    for k in 1..len {
        let Some(&x) = b.get(k) else {
            return Ok(None);
        };
        if x & 0xC0 != 0x80 {
            return Err(nwf("invalid UTF-8"));
        }
        c = (c << 6) | u32::from(x & 0x3F);
        // Reject overlong and out-of-range forms as soon as the second byte shows them.
        if k == 1 {
            let shift = 6 * (len - 2) as u32;
            let top = c << shift;
            let max = top | ((1 << shift) - 1);
            if max < min || top > 0x10FFFF || (top >= 0xD800 && max <= 0xDFFF) {
                return Err(nwf("invalid UTF-8"));
            }
        }
    }
    if c < min || c > 0x10FFFF || (0xD800..=0xDFFF).contains(&c) {
        return Err(nwf("invalid UTF-8"));
    }
    Ok(Some((c, len)))
}

/// A qualified name (`prefix:local` or `local`) at the start of some bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct QName {
    pub len: usize,
    /// Offset of the `:`, when there is a prefix.
    pub colon: Option<usize>,
}

impl QName {
    pub fn local(self, name: &[u8]) -> &[u8] {
        match self.colon {
            Some(c) => &name[c + 1..],
            None => name,
        }
    }
    pub fn prefix(self, name: &[u8]) -> Option<&[u8]> {
        self.colon.map(|c| &name[..c])
    }
}

/// A character that cannot be in a name where it stands, for the log.
fn not_a_name_char(c: u32, at_start: bool) -> FrameError {
    let what = if at_start {
        "cannot start a name"
    } else {
        "cannot be in a name"
    };
    FrameError::new(
        StreamCondition::NotWellFormed,
        format!("U+{c:04X} {what} (XML 1.0 fourth edition)"),
    )
}

/// Reading the `QName` production, in pieces: how much of it has been checked.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct NameLex {
    /// Bytes of the name checked so far.
    pub len: usize,
    /// Offset of its `:`, once seen.
    pub colon: Option<usize>,
}

impl NameLex {
    /// Go on reading the name: `b` holds its bytes from the first not yet
    /// checked. Returns how many bytes of `b` were checked and, once a byte
    /// that cannot continue the name is seen (right after them), the name.
    /// Stops early, without the name, at the end of `b`, before a UTF-8
    /// sequence `b` cuts, and as soon as the name is longer than `max`.
    pub fn step(&mut self, b: &[u8], max: usize) -> Result<(usize, Option<QName>), FrameError> {
        let mut i = 0;
        while let Some(&x) = b.get(i) {
            if self.len > max {
                break;
            }
            let at_start = self.len == 0 || self.colon == Some(self.len - 1);
            if x < 0x80 {
                let class = if at_start { NAME_START } else { NAME_CHAR };
                if CLASS[x as usize] & class != 0 {
                    let n = 1 + run_of(&b[i + 1..], NAME_CHAR);
                    i += n;
                    self.len += n;
                } else if x == b':' && !at_start && self.colon.is_none() {
                    self.colon = Some(self.len);
                    i += 1;
                    self.len += 1;
                } else if x == b':' && self.len > 0 {
                    return Err(nwf("a name that is not a namespace-qualified name"));
                } else {
                    return self.finish().map(|q| (i, Some(q)));
                }
                continue;
            }
            let Some((c, n)) = decode_utf8(&b[i..])? else {
                break;
            };
            let ok = if at_start {
                names::is_start(c)
            } else {
                names::is_char(c)
            };
            if !ok {
                return Err(not_a_name_char(c, at_start));
            }
            i += n;
            self.len += n;
        }
        Ok((i, None))
    }

    fn finish(&self) -> Result<QName, FrameError> {
        if self.len == 0 {
            return Err(nwf("expected a name"));
        }
        if self.colon == Some(self.len - 1) {
            return Err(nwf("a name that is not a namespace-qualified name"));
        }
        Ok(QName {
            len: self.len,
            colon: self.colon,
        })
    }
}

/// Fast path for the common name: a whole qualified name of ASCII letters,
/// digits and `-._` at the start of `b` (`p:local` or `local`), when the byte
/// after it (which must have come) ends it. `None` means "read it with
/// [`NameLex`]" (it is cut, has other characters, or is wrong).
#[inline]
pub(super) fn ascii_qname(b: &[u8]) -> Option<QName> {
    let ncname = |b: &[u8]| -> usize {
        match b.first() {
            Some(&x) if CLASS[x as usize] & NAME_START != 0 => 1 + run_of(&b[1..], NAME_CHAR),
            _ => 0,
        }
    };
    let p = ncname(b);
    if p == 0 {
        return None;
    }
    let (len, colon) = match b.get(p) {
        Some(b':') => {
            let l = ncname(&b[p + 1..]);
            if l == 0 {
                return None;
            }
            (p + 1 + l, Some(p))
        }
        _ => (p, None),
    };
    match b.get(len) {
        Some(&x) if x < 0x80 && x != b':' => Some(QName { len, colon }),
        _ => None,
    }
}

/// The five predefined entities: there is never a DTD to declare others.
const ENTITIES: [(&[u8], char); 5] = [
    (b"lt", '<'),
    (b"gt", '>'),
    (b"amp", '&'),
    (b"apos", '\''),
    (b"quot", '"'),
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum RefState {
    /// After the `&`.
    #[default]
    Amp,
    /// After `&#`.
    Hash,
    Dec,
    Hex,
    /// After `&` and the first letters of an entity name.
    Named,
}

/// Reading a reference (`&name;`, `&#N;`, `&#xN;`), in pieces.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RefLex {
    /// Bytes read so far, `&` included; 0 when no reference is being read.
    pub len: usize,
    state: RefState,
    value: u32,
    digits: usize,
    /// Letters of an entity name so far (no name is longer).
    name: [u8; 4],
}

impl RefLex {
    /// Go on reading the reference: `b` holds its bytes from the first not
    /// yet read (its `&` when none was). Returns how many bytes of `b` were
    /// read and, once its `;` is among them, the character it stands for
    /// (the reader is then ready for the next reference). Stops early at the
    /// end of `b` and as soon as the reference is longer than `max`. Fails as
    /// soon as what has come cannot become a reference XML allows.
    pub fn step(&mut self, b: &[u8], max: usize) -> Result<(usize, Option<u32>), FrameError> {
        if self.len == 0 {
            if let Some(done) = whole_reference(b) {
                return Ok(done);
            }
        }
        let mut i = 0;
        if self.len == 0 {
            *self = RefLex {
                len: 1,
                ..RefLex::default()
            };
            i = 1;
        }
        while let Some(&x) = b.get(i) {
            if self.len > max {
                break;
            }
            i += 1;
            self.len += 1;
            if let Some(c) = self.byte(x)? {
                self.len = 0;
                return Ok((i, Some(c)));
            }
        }
        Ok((i, None))
    }

    /// One byte of the reference; the character once it is complete.
    fn byte(&mut self, x: u8) -> Result<Option<u32>, FrameError> {
        match self.state {
            RefState::Amp if x == b'#' => self.state = RefState::Hash,
            RefState::Amp => {
                self.state = RefState::Named;
                return self.named(x);
            }
            RefState::Hash if x == b'x' => self.state = RefState::Hex,
            RefState::Hash => {
                self.state = RefState::Dec;
                return self.digit(x, 10);
            }
            RefState::Dec => return self.digit(x, 10),
            RefState::Hex => return self.digit(x, 16),
            RefState::Named => return self.named(x),
        }
        Ok(None)
    }

    fn digit(&mut self, d: u8, radix: u32) -> Result<Option<u32>, FrameError> {
        if d == b';' {
            if self.digits == 0 {
                return Err(nwf("empty character reference"));
            }
            if !is_char(self.value) {
                return Err(nwf("character reference to a character XML does not allow"));
            }
            return Ok(Some(self.value));
        }
        let Some(v) = char::from(d).to_digit(radix) else {
            return Err(nwf("malformed character reference"));
        };
        self.value = self.value.saturating_mul(radix).saturating_add(v);
        self.digits += 1;
        if self.value > 0x10FFFF {
            // No more digits can make it a character.
            return Err(nwf("character reference to a character XML does not allow"));
        }
        Ok(None)
    }

    /// The next byte of an entity name: decided byte by byte, failing as soon
    /// as what has come cannot become one of the five names.
    fn named(&mut self, x: u8) -> Result<Option<u32>, FrameError> {
        // `len` counts the `&` and `x`.
        let n = self.len - 2;
        let name = &self.name[..n];
        if x == b';' {
            return match ENTITIES.iter().find(|(e, _)| *e == name) {
                Some(&(_, c)) => Ok(Some(u32::from(c))),
                None if n == 0 => Err(nwf("malformed entity reference")),
                None => Err(nwf("reference to an undeclared entity")),
            };
        }
        let fits = ENTITIES
            .iter()
            .any(|(e, _)| e.len() > n && e.starts_with(name) && e[n] == x);
        if !fits {
            // A name that is not one of the five, or no name at all.
            let name_like = x >= 0x80 || x.is_ascii_alphanumeric() || b"_:-.".contains(&x);
            return Err(
                if n == 0 && !(x >= 0x80 || x.is_ascii_alphabetic() || x == b'_') {
                    nwf("malformed entity reference")
                } else if name_like {
                    nwf("reference to an undeclared entity")
                } else {
                    nwf("malformed entity reference")
                },
            );
        }
        self.name[n] = x;
        Ok(None)
    }
}

/// Fast path: a whole, valid reference at the start of `b` (`b[0] == b'&'`):
/// its length and character. `None` means "read it with [`RefLex`]" (it is
/// cut, invalid, or unusual, e.g. with leading zeros).
#[inline]
fn whole_reference(b: &[u8]) -> Option<(usize, Option<u32>)> {
    let semi = b.iter().take(12).position(|&x| x == b';')?;
    let c = match &b[1..semi] {
        b"lt" => '<' as u32,
        b"gt" => '>' as u32,
        b"amp" => '&' as u32,
        b"apos" => '\'' as u32,
        b"quot" => '"' as u32,
        [b'#', b'x', hex @ ..]
            if (1..=6).contains(&hex.len()) && hex.iter().all(u8::is_ascii_hexdigit) =>
        {
            hex.iter()
                .fold(0, |v, &d| v * 16 + char::from(d).to_digit(16).unwrap_or(0))
        }
        [b'#', dec @ ..] if (1..=7).contains(&dec.len()) && dec.iter().all(u8::is_ascii_digit) => {
            dec.iter().fold(0, |v, &d| v * 10 + u32::from(d - b'0'))
        }
        _ => return None,
    };
    is_char(c).then_some((semi + 1, Some(c)))
}

/// Where decoded character data goes when a caller keeps it (the text of a
/// `<handshake/>`), with a cap: past it the text is marked overflowed and
/// nothing more is kept.
#[derive(Debug, Default)]
pub(super) struct Collect {
    pub text: String,
    pub overflow: bool,
    pub cap: usize,
}

impl Collect {
    #[inline]
    fn push(&mut self, c: char) {
        if self.text.len() + c.len_utf8() > self.cap {
            self.overflow = true;
        } else if !self.overflow {
            self.text.push(c);
        }
    }
}

/// Which character data [`text`] checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Chars {
    /// Between tags: references are expanded and `]]>` is refused.
    Text,
    /// Inside a CDATA section (up to its `]]>`): characters only.
    Cdata,
}

/// How [`text`] treats what it checks besides the checks themselves.
pub(super) struct TextCtx<'a> {
    /// `t` is all of it (the markup after it has come).
    pub last: bool,
    /// Where the decoded characters go, if anywhere.
    pub out: Option<&'a mut Collect>,
    /// Only whitespace may come here: the first other character fails with this.
    pub ws_only: Option<fn() -> FrameError>,
    /// A reference still being read when the last piece ended.
    pub pending: &'a mut RefLex,
    /// Longest reference.
    pub max_ref: usize,
}

/// Check character data `t` (which holds no `<` in `Chars::Text`). Unless
/// `cx.last`, stop before a UTF-8 sequence, `]` run or CR that the next bytes
/// could still change the meaning of; a reference cut by the end of `t` is
/// read as far as it goes and goes on in `cx.pending`. With `ws_only`, the
/// first character that is not whitespace fails with that error: at once, so
/// the outcome does not depend on how the bytes were split into reads.
/// Returns how many bytes were checked (all of them when `last`); the caller
/// judges a reference longer than `max_ref` from `cx.pending.len`.
pub(super) fn text(t: &[u8], kind: Chars, cx: TextCtx<'_>) -> Result<usize, FrameError> {
    let TextCtx {
        last,
        mut out,
        ws_only,
        pending,
        max_ref,
    } = cx;
    let markup = kind == Chars::Text;
    let mut i = 0;
    let mut all_ws = true;
    loop {
        if !all_ws {
            if let Some(err) = ws_only {
                return Err(err());
            }
        }
        // A reference: one cut by the end of the last piece, or a new one.
        if pending.len > 0 || (markup && t.get(i) == Some(&b'&')) {
            let (n, c) = pending.step(&t[i..], max_ref)?;
            i += n;
            let Some(c) = c else {
                if last && pending.len <= max_ref {
                    return Err(nwf("unterminated reference"));
                }
                return Ok(i);
            };
            all_ws &= matches!(c, 0x20 | 0x9 | 0xA | 0xD);
            if let Some(o) = out.as_deref_mut() {
                o.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
            }
            continue;
        }
        if out.is_none() && ws_only.is_none() {
            i += plain_chars(&t[i..]);
        }
        if i == t.len() {
            break;
        }
        match one_char(&t[i..], markup, last, out.as_deref_mut())? {
            Some((n, ws)) => {
                i += n;
                all_ws &= ws;
            }
            None => break,
        }
    }
    if !all_ws {
        if let Some(err) = ws_only {
            return Err(err());
        }
    }
    Ok(i)
}

/// Fast path inside a stanza: how many bytes at the start of `t` need no
/// attention (plain ASCII, and characters beyond ASCII that XML allows).
#[inline]
fn plain_chars(t: &[u8]) -> usize {
    let mut i = 0;
    loop {
        i += run_of(&t[i..], PLAIN_TEXT);
        match t.get(i) {
            Some(&x) if x >= 0x80 => match decode_utf8(&t[i..]) {
                Ok(Some((c, n))) if is_char_non_ascii(c) => i += n,
                _ => return i,
            },
            _ => return i,
        }
    }
}

/// One character of character data at the start of `t` (not a reference):
/// how many bytes it takes and whether it is whitespace, or `None` to stop
/// before it (unless `last`, something that the next bytes could change).
#[inline]
fn one_char(
    t: &[u8],
    markup: bool,
    last: bool,
    out: Option<&mut Collect>,
) -> Result<Option<(usize, bool)>, FrameError> {
    let b = t[0];
    let (n, c, ws) = match b {
        b'&' if markup => return Ok(Some((0, true))),
        b']' if markup => {
            if t.starts_with(b"]]>") {
                return Err(nwf("']]>' in character data"));
            }
            if !last && t.len() < 3 && t.iter().all(|&x| x == b']') {
                return Ok(None);
            }
            (1, ']', false)
        }
        b'\r' => {
            if !last && t.len() == 1 {
                return Ok(None);
            }
            // Line-end normalisation: CR LF and a lone CR both read as LF
            // (the LF of a CR LF is read next).
            if t.get(1) == Some(&b'\n') {
                return Ok(Some((1, true)));
            }
            (1, '\n', true)
        }
        b' ' | b'\t' | b'\n' => (1, char::from(b), true),
        0x21..=0x7F => (1, char::from(b), false),
        0..=0x1F => return Err(nwf("a control character XML does not allow")),
        _ => match decode_utf8(t)? {
            Some((c, n)) if is_char_non_ascii(c) => {
                (n, char::from_u32(c).unwrap_or('\u{FFFD}'), false)
            }
            Some(_) => return Err(nwf("a character XML does not allow")),
            None if last => return Err(nwf("invalid UTF-8")),
            None => return Ok(None),
        },
    };
    if let Some(o) = out {
        o.push(c);
    }
    Ok(Some((n, ws)))
}

/// The decoded value of an attribute, as a key (see `super::ns::Keys`) and
/// its length, for a namespace declaration read while its bytes are not kept.
#[derive(Clone, Debug)]
pub(super) struct ValueKey {
    pub hasher: super::ns::KeyHasher,
    /// Decoded bytes so far.
    pub len: usize,
    /// The last byte was a CR (a LF right after it adds nothing).
    cr: bool,
}

impl ValueKey {
    pub fn new(hasher: super::ns::KeyHasher) -> Self {
        ValueKey {
            hasher,
            len: 0,
            cr: false,
        }
    }
    fn raw(&mut self, b: &[u8]) {
        if !b.is_empty() {
            self.hasher.write(b);
            self.len += b.len();
            self.cr = false;
        }
    }
    fn char(&mut self, c: u32) {
        let mut buf = [0; 4];
        let s = char::from_u32(c)
            .unwrap_or('\u{FFFD}')
            .encode_utf8(&mut buf);
        self.raw(s.as_bytes());
    }
    /// A literal tab, LF or CR: one space (CR LF together: one).
    fn space(&mut self, b: u8) {
        if b == b'\n' && self.cr {
            self.cr = false;
            return;
        }
        self.raw(b" ");
        self.cr = b == b'\r';
    }
}

/// Reading an attribute value, in pieces.
#[derive(Clone, Debug, Default)]
pub(super) struct ValueLex {
    /// No reference and no whitespace that normalisation changes so far: the
    /// value is its bytes.
    pub plain: bool,
    /// A reference cut by the end of the last piece.
    pub pending: RefLex,
}

/// Go on checking an attribute value quoted with `quote`: `v` holds its bytes
/// from the first not yet checked, and `max` is how many more it may have.
/// `Ok(Ok(n))` when `v[n]` is the closing quote; `Ok(Err(n))` when `n` bytes
/// were checked and `v` ended, or a UTF-8 sequence is cut, or the value went
/// past `max` (the caller judges that). Decoded characters go to `sink`.
pub(super) fn value(
    v: &[u8],
    quote: u8,
    st: &mut ValueLex,
    max: usize,
    mut sink: Option<&mut ValueKey>,
) -> Result<Result<usize, usize>, FrameError> {
    let mut i = 0;
    loop {
        // A reference, cut by the last piece or new. It may take the value
        // just past its bound (judged below), and no further: its bytes so
        // far are already counted.
        if st.pending.len > 0 || v.get(i) == Some(&b'&') {
            st.plain = false;
            let bound = st.pending.len.saturating_add(max.saturating_sub(i));
            let (n, c) = st.pending.step(&v[i..], bound)?;
            i += n;
            match c {
                Some(c) => {
                    if let Some(s) = sink.as_deref_mut() {
                        s.char(c);
                    }
                }
                None => return Ok(Err(i)),
            }
        }
        let run = run_of(&v[i..], PLAIN_VALUE);
        if let Some(s) = sink.as_deref_mut() {
            s.raw(&v[i..i + run]);
        }
        i += run;
        if i > max {
            return Ok(Err(i));
        }
        let Some(&b) = v.get(i) else {
            return Ok(Err(i));
        };
        match b {
            _ if b == quote => return Ok(Ok(i)),
            b'\'' | b'"' => {
                if let Some(s) = sink.as_deref_mut() {
                    s.raw(&v[i..=i]);
                }
                i += 1;
            }
            b'<' => return Err(nwf("'<' in an attribute value")),
            // Read at the loop's top.
            b'&' => {}
            b'\t' | b'\n' | b'\r' => {
                st.plain = false;
                if let Some(s) = sink.as_deref_mut() {
                    s.space(b);
                }
                i += 1;
            }
            0..=0x1F => return Err(nwf("a control character XML does not allow")),
            _ => match decode_utf8(&v[i..])? {
                Some((c, n)) if is_char_non_ascii(c) => {
                    if let Some(s) = sink.as_deref_mut() {
                        s.raw(&v[i..i + n]);
                    }
                    i += n;
                }
                Some(_) => return Err(nwf("a character XML does not allow")),
                None => return Ok(Err(i)),
            },
        }
    }
}

/// The normalised value of an attribute already checked by [`value`]:
/// references expanded, literal tab, LF, CR and CR LF each read as one space.
pub(super) fn decode_attr(v: &[u8], plain: bool) -> Cow<'_, str> {
    if plain {
        return match std::str::from_utf8(v) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(v),
        };
    }
    let mut out = String::with_capacity(v.len());
    decode_into(v, &mut out);
    Cow::Owned(out)
}

/// [`decode_attr`] of a value that is not plain, appended to `out`.
pub(super) fn decode_into(v: &[u8], out: &mut String) {
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        match b {
            b'&' => {
                let mut r = RefLex::default();
                match r.step(&v[i..], usize::MAX) {
                    Ok((n, Some(c))) => {
                        out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                        i += n;
                    }
                    _ => i += 1,
                }
            }
            b'\r' => {
                out.push(' ');
                i += if v.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            }
            b'\t' | b'\n' => {
                out.push(' ');
                i += 1;
            }
            _ => {
                // Copy the run up to the next byte that needs attention.
                let run = v[i..]
                    .iter()
                    .position(|&x| matches!(x, b'&' | b'\r' | b'\t' | b'\n'))
                    .map_or(v.len(), |p| i + p);
                out.push_str(&String::from_utf8_lossy(&v[i..run]));
                i = run;
            }
        }
    }
}

/// Check the inside of an XML declaration: the bytes between `<?xml` and `?>`.
pub(super) fn xml_decl(d: &[u8]) -> Result<(), FrameError> {
    let bad = || nwf("malformed XML declaration");
    let mut i = skip_ws(d);
    if i == 0 {
        return Err(bad());
    }
    // Each pseudo-attribute: name, `=`, a quoted value; in this order, version first.
    let mut seen_version = false;
    let mut order = 0;
    loop {
        if i == d.len() {
            return if seen_version { Ok(()) } else { Err(bad()) };
        }
        let name_len = d[i..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let name = &d[i..i + name_len];
        let rank = match name {
            b"version" => 0,
            b"encoding" => 1,
            b"standalone" => 2,
            _ => return Err(bad()),
        };
        if rank < order || (rank == 0) == seen_version {
            return Err(bad());
        }
        order = rank + 1;
        seen_version = true;
        i += name_len;
        i += skip_ws(&d[i..]);
        if d.get(i) != Some(&b'=') {
            return Err(bad());
        }
        i += 1;
        i += skip_ws(&d[i..]);
        let q = match d.get(i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(bad()),
        };
        let Some(len) = d[i + 1..].iter().position(|&b| b == q) else {
            return Err(bad());
        };
        let value = &d[i + 1..i + 1 + len];
        check_decl_value(rank, value)?;
        i += len + 2;
        let ws = skip_ws(&d[i..]);
        i += ws;
        if ws == 0 && i < d.len() {
            return Err(bad());
        }
    }
}

/// One pseudo-attribute value of the XML declaration (`rank`: version,
/// encoding, standalone).
fn check_decl_value(rank: u8, value: &[u8]) -> Result<(), FrameError> {
    let bad = || nwf("malformed XML declaration");
    let ok = match rank {
        0 => {
            value.len() > 2 && value.starts_with(b"1.") && value[2..].iter().all(u8::is_ascii_digit)
        }
        1 => {
            // EncName: [A-Za-z] ([A-Za-z0-9._] | '-')*
            let enc_name = value.first().is_some_and(u8::is_ascii_alphabetic)
                && value
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
            if !enc_name {
                return Err(bad());
            }
            if !value.eq_ignore_ascii_case(b"utf-8") {
                return Err(FrameError::new(
                    StreamCondition::UnsupportedEncoding,
                    "XML declaration names an encoding other than UTF-8",
                ));
            }
            true
        }
        _ => value == b"yes" || value == b"no",
    };
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests;

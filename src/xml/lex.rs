//! Byte-level XML lexing for the framer: names, references, character data,
//! CDATA, attribute values and the XML declaration, checked against XML 1.0
//! (fifth edition) and Namespaces in XML 1.0.
//!
//! Everything here works on borrowed bytes and allocates nothing, except when a
//! caller asks for a decoded value ([`decode_attr`], or a [`Collect`] for the
//! text of a `<handshake/>`). Each check sits next to the production it
//! enforces, and each failure names what was wrong for the operator's log.

use std::borrow::Cow;

use super::FrameError;
use crate::stanza::StreamCondition;

/// Longest name, reference or attribute value accepted. Longer ones are a
/// `policy-violation`: nothing XMPP needs comes near it, and it bounds the work
/// spent on one token.
pub(super) const MAX_TOKEN: usize = 8192;

pub(super) fn nwf(detail: &'static str) -> FrameError {
    FrameError::new(StreamCondition::NotWellFormed, detail)
}

pub(super) fn restricted(detail: &'static str) -> FrameError {
    FrameError::new(
        StreamCondition::RestrictedXml,
        format!("restricted XML: {detail}"),
    )
}

pub(super) fn too_long() -> FrameError {
    FrameError::new(
        StreamCondition::PolicyViolation,
        format!("a name or attribute value longer than {MAX_TOKEN} bytes"),
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

/// `NameStartChar` without `:` (an NCName's first character).
#[inline]
fn is_name_start(c: u32) -> bool {
    matches!(c,
        0x41..=0x5A | 0x5F | 0x61..=0x7A | 0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF
        | 0x370..=0x37D | 0x37F..=0x1FFF | 0x200C..=0x200D | 0x2070..=0x218F
        | 0x2C00..=0x2FEF | 0x3001..=0xD7FF | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD
        | 0x10000..=0xEFFFF)
}

/// `NameChar` without `:`.
#[inline]
fn is_name_char(c: u32) -> bool {
    is_name_start(c)
        || matches!(c, 0x2D | 0x2E | 0x30..=0x39 | 0xB7 | 0x300..=0x36F | 0x203F..=0x2040)
}

/// Length of the NCName at the start of `b` (0 when there is none). It ends at
/// the first byte that cannot continue it (`:` included).
pub(super) fn ncname(b: &[u8]) -> Result<usize, FrameError> {
    // ASCII fast path: the whole name, most of the time.
    let mut i = match b.first() {
        Some(&x) if CLASS[x as usize] & NAME_START != 0 => 1 + run_of(&b[1..], NAME_CHAR),
        _ => 0,
    };
    if i > 0 && b.get(i).is_none_or(|&x| x < 0x80) {
        if i > MAX_TOKEN {
            return Err(too_long());
        }
        return Ok(i);
    }
    while let Some(&x) = b.get(i) {
        let (c, n) = if x < 0x80 {
            (u32::from(x), 1)
        } else {
            match decode_utf8(&b[i..])? {
                Some(v) => v,
                None => break,
            }
        };
        let ok = if i == 0 {
            is_name_start(c)
        } else {
            is_name_char(c)
        };
        if !ok {
            break;
        }
        i += n;
        if i > MAX_TOKEN {
            return Err(too_long());
        }
    }
    Ok(i)
}

/// A qualified name (`prefix:local` or `local`) at the start of some bytes.
#[derive(Clone, Copy, Debug)]
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

/// Whether a name that stopped at `b[i]` could go on with more bytes: `b`
/// ends there, or in the middle of a UTF-8 sequence.
fn may_continue(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        None => true,
        Some(&x) if x >= 0x80 => matches!(decode_utf8(&b[i..]), Ok(None)),
        Some(_) => false,
    }
}

/// The `QName` production at the start of `b`; `None` when `b` ends before
/// the name does.
pub(super) fn qname(b: &[u8]) -> Result<Option<QName>, FrameError> {
    let p = ncname(b)?;
    if may_continue(b, p) {
        return Ok(None);
    }
    if p == 0 {
        return Err(nwf("expected a name"));
    }
    if b[p] != b':' {
        return Ok(Some(QName {
            len: p,
            colon: None,
        }));
    }
    let rest = &b[p + 1..];
    let l = ncname(rest)?;
    if may_continue(rest, l) {
        return Ok(None);
    }
    if l == 0 || rest[l] == b':' {
        return Err(nwf("a name that is not a namespace-qualified name"));
    }
    let len = p + 1 + l;
    if len > MAX_TOKEN {
        return Err(too_long());
    }
    Ok(Some(QName {
        len,
        colon: Some(p),
    }))
}

/// The reference at the start of `b` (`b[0] == b'&'`): its length and the
/// character it stands for; `None` when `b` ends before the reference does.
/// Only the five predefined entities exist (there is never a DTD).
pub(super) fn reference(b: &[u8]) -> Result<Option<(usize, u32)>, FrameError> {
    let Some(&b1) = b.get(1) else {
        return Ok(None);
    };
    if b1 == b'#' {
        let (radix, start) = match b.get(2) {
            None => return Ok(None),
            Some(b'x') => (16, 3),
            Some(_) => (10, 2),
        };
        let mut value: u32 = 0;
        let mut i = start;
        loop {
            let Some(&d) = b.get(i) else {
                return if i > MAX_TOKEN {
                    Err(too_long())
                } else {
                    Ok(None)
                };
            };
            if d == b';' {
                break;
            }
            let Some(v) = char::from(d).to_digit(radix) else {
                return Err(nwf("malformed character reference"));
            };
            value = value.saturating_mul(radix).saturating_add(v);
            if value > 0x10FFFF {
                // No more digits can make it a character.
                return Err(nwf("character reference to a character XML does not allow"));
            }
            i += 1;
            if i > MAX_TOKEN {
                return Err(too_long());
            }
        }
        if i == start {
            return Err(nwf("empty character reference"));
        }
        if !is_char(value) {
            return Err(nwf("character reference to a character XML does not allow"));
        }
        return Ok(Some((i + 1, value)));
    }
    // The five names are short ASCII words: decided byte by byte, failing as
    // soon as what has come cannot become one of them.
    const ENTITIES: [(&[u8], char); 5] = [
        (b"lt", '<'),
        (b"gt", '>'),
        (b"amp", '&'),
        (b"apos", '\''),
        (b"quot", '"'),
    ];
    for n in 0..=4 {
        let name = &b[1..1 + n];
        match b.get(1 + n) {
            None => return Ok(None),
            Some(b';') => {
                return match ENTITIES.iter().find(|(e, _)| *e == name) {
                    Some(&(_, c)) => Ok(Some((n + 2, u32::from(c)))),
                    None if n == 0 => Err(nwf("malformed entity reference")),
                    None => Err(nwf("reference to an undeclared entity")),
                };
            }
            Some(&x) => {
                let longer = &b[1..2 + n];
                if !ENTITIES.iter().any(|(e, _)| e.starts_with(longer)) {
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
            }
        }
    }
    Err(nwf("reference to an undeclared entity"))
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

/// Check character data `t` (which holds no `<` in `Chars::Text`). Unless
/// `last`, stop before a reference, UTF-8 sequence, `]` run or CR that the next
/// bytes could still change the meaning of. With `ws_only`, the first
/// character that is not whitespace fails with that error: at once, so the
/// outcome does not depend on how the bytes were split into reads. Returns how
/// many bytes were checked (all of them when `last`).
pub(super) fn text(
    t: &[u8],
    kind: Chars,
    last: bool,
    mut out: Option<&mut Collect>,
    ws_only: Option<fn() -> FrameError>,
) -> Result<usize, FrameError> {
    let markup = kind == Chars::Text;
    let mut i = 0;
    let mut all_ws = true;
    while i < t.len() {
        if !all_ws {
            if let Some(err) = ws_only {
                return Err(err());
            }
        }
        if out.is_none() && ws_only.is_none() {
            // Fast path inside a stanza: skip what needs no attention.
            i += run_of(&t[i..], PLAIN_TEXT);
            if i == t.len() {
                break;
            }
        }
        let b = t[i];
        match b {
            b'&' if markup => match reference(&t[i..])? {
                Some((n, c)) => {
                    all_ws &= matches!(c, 0x20 | 0x9 | 0xA | 0xD);
                    if let Some(o) = out.as_deref_mut() {
                        o.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                    }
                    i += n;
                }
                None if last => return Err(nwf("unterminated reference")),
                None => break,
            },
            b']' if markup => {
                let rest = &t[i..];
                if rest.starts_with(b"]]>") {
                    return Err(nwf("']]>' in character data"));
                }
                if !last && rest.len() < 3 && rest.iter().all(|&x| x == b']') {
                    break;
                }
                all_ws = false;
                if let Some(o) = out.as_deref_mut() {
                    o.push(']');
                }
                i += 1;
            }
            b'\r' => {
                if !last && i + 1 == t.len() {
                    break;
                }
                // Line-end normalisation: CR LF and a lone CR both read as LF.
                if t.get(i + 1) != Some(&b'\n') {
                    if let Some(o) = out.as_deref_mut() {
                        o.push('\n');
                    }
                }
                i += 1;
            }
            b' ' | b'\t' | b'\n' => {
                if let Some(o) = out.as_deref_mut() {
                    o.push(char::from(b));
                }
                i += 1;
            }
            0x21..=0x7F => {
                all_ws = false;
                if let Some(o) = out.as_deref_mut() {
                    o.push(char::from(b));
                }
                i += 1;
            }
            0..=0x1F => return Err(nwf("a control character XML does not allow")),
            _ => match decode_utf8(&t[i..])? {
                Some((c, n)) => {
                    if !is_char_non_ascii(c) {
                        return Err(nwf("a character XML does not allow"));
                    }
                    all_ws = false;
                    if let Some(o) = out.as_deref_mut() {
                        o.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                    }
                    i += n;
                }
                None if last => return Err(nwf("invalid UTF-8")),
                None => break,
            },
        }
    }
    if !all_ws {
        if let Some(err) = ws_only {
            return Err(err());
        }
    }
    Ok(i)
}

/// Go on checking an attribute value: `v` starts right after its opening
/// quote and checking resumes at `from`. `Ok(Ok(len))` when `v[len]` is the
/// closing quote; `Ok(Err(at))` when `v` ends first, to resume at `at` (before
/// any reference or UTF-8 sequence not yet complete). `plain` is cleared on a
/// reference or on whitespace that normalisation changes (the value is then not
/// its bytes).
pub(super) fn value(
    v: &[u8],
    from: usize,
    quote: u8,
    plain: &mut bool,
) -> Result<Result<usize, usize>, FrameError> {
    let mut i = from;
    loop {
        i += run_of(&v[i..], PLAIN_VALUE);
        if i > MAX_TOKEN {
            return Err(too_long());
        }
        let Some(&b) = v.get(i) else {
            return Ok(Err(i));
        };
        match b {
            _ if b == quote => return Ok(Ok(i)),
            b'\'' | b'"' => i += 1,
            b'<' => return Err(nwf("'<' in an attribute value")),
            b'&' => match reference(&v[i..])? {
                Some((n, _)) => {
                    *plain = false;
                    i += n;
                }
                None => return Ok(Err(i)),
            },
            b'\t' | b'\n' | b'\r' => {
                *plain = false;
                i += 1;
            }
            0..=0x1F => return Err(nwf("a control character XML does not allow")),
            _ => match decode_utf8(&v[i..])? {
                Some((c, n)) if is_char_non_ascii(c) => i += n,
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
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        match b {
            b'&' => {
                if let Ok(Some((n, c))) = reference(&v[i..]) {
                    out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                    i += n;
                } else {
                    i += 1;
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
    Cow::Owned(out)
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
        let ok = match rank {
            0 => {
                value.len() > 2
                    && value.starts_with(b"1.")
                    && value[2..].iter().all(u8::is_ascii_digit)
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
                value.eq_ignore_ascii_case(b"utf-8")
            }
            _ => value == b"yes" || value == b"no",
        };
        if !ok {
            return Err(if rank == 1 {
                FrameError::new(
                    StreamCondition::UnsupportedEncoding,
                    "XML declaration names an encoding other than UTF-8",
                )
            } else {
                bad()
            });
        }
        i += len + 2;
        let ws = skip_ws(&d[i..]);
        i += ws;
        if ws == 0 && i < d.len() {
            return Err(bad());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_decoding_matches_std() {
        let samples: &[&[u8]] = &[
            "é".as_bytes(),
            "€".as_bytes(),
            "𝄞".as_bytes(),
            b"\xC0\x80",
            b"\xE0\x80\x80",
            b"\xED\xA0\x80",
            b"\xF4\x90\x80\x80",
            b"\xF0\x80\x80\x80",
            b"\xFF",
            b"\x80",
        ];
        for s in samples {
            let ours = decode_utf8(s).ok().flatten();
            let std = std::str::from_utf8(s)
                .ok()
                .and_then(|t| t.chars().next())
                .map(|c| (c as u32, c.len_utf8()));
            assert_eq!(ours, std, "{s:?}");
        }
        // Truncated but valid so far.
        assert!(matches!(decode_utf8(b"\xF0\x9D"), Ok(None)));
        assert!(decode_utf8(b"\xED\xA0").is_err());
    }

    #[test]
    fn references() {
        assert_eq!(reference(b"&amp;x").unwrap(), Some((5, 0x26)));
        assert_eq!(reference(b"&#x41;").unwrap(), Some((6, 0x41)));
        assert_eq!(reference(b"&#65;").unwrap(), Some((5, 65)));
        assert_eq!(reference(b"&am").unwrap(), None);
        assert!(reference(b"&foo;").is_err());
        assert!(reference(b"&#0;").is_err());
        assert!(reference(b"&#xD800;").is_err());
        assert!(reference(b"&#;").is_err());
        assert!(reference(b"& ").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(qname(b"a:b>").unwrap().unwrap().colon, Some(1));
        assert!(qname(b":a").is_err());
        assert!(qname(b"a:>").is_err());
        assert!(qname(b"a:b:c").is_err());
        assert_eq!(qname("é-1 ".as_bytes()).unwrap().unwrap().len, 4);
        assert!(qname(b"1a").is_err());
        // Not over yet: the name may go on.
        assert!(qname(b"a:").unwrap().is_none());
        assert!(qname(b"ab").unwrap().is_none());
        assert!(qname(b"a\xC3").unwrap().is_none());
    }

    #[test]
    fn declarations() {
        assert!(xml_decl(b" version='1.0'").is_ok());
        assert!(xml_decl(b" version=\"1.0\" encoding='utf-8' standalone='yes' ").is_ok());
        assert!(xml_decl(b" encoding='UTF-8'").is_err());
        assert!(xml_decl(b" version='1.0' encoding='latin1'").is_err());
        assert!(xml_decl(b" version='1.0'encoding='UTF-8'").is_err());
        assert!(xml_decl(b"version='1.0'").is_err());
        assert!(xml_decl(b" version='2.0'").is_err());
    }

    #[test]
    fn attribute_values() {
        let check = |v: &[u8]| {
            let mut plain = true;
            value(v, 0, b'\'', &mut plain).map(|r| (r, plain))
        };
        assert_eq!(check(b"plain\" x'").unwrap(), (Ok(8), true));
        assert_eq!(check(b"a&amp;b'").unwrap(), (Ok(7), false));
        assert_eq!(check(b"a&am").unwrap(), (Err(1), true));
        assert_eq!(check(b"ab\xC3").unwrap(), (Err(2), true));
        assert_eq!(decode_attr(b"a&amp;b\r\nc\td", false), "a&b c d");
        assert!(check(b"a<b'").is_err());
        assert!(check(b"a\x01'").is_err());
    }
}

//! The rxml-based stream framer as it was before the hand-written scanner
//! replaced it (`git show d0ce298:src/xml.rs`), kept as a test oracle, and the
//! differential comparison of the real framer (`crate::xcr::xml::Framer`)
//! against it.
//!
//! Used by `tests/framer_diff.rs` and `fuzz/fuzz_targets/framer_diff.rs`; it
//! depends on nothing but `rxml`, std and the daemon's public `Limits`, `Frame`
//! and `StreamCondition` (through [`crate::xcr`]).
//!
//! The oracle framer below is the old `src/xml.rs` with only these changes:
//! the read buffer is a `Vec<u8>` (`advance` became `drain`, stanza bytes are
//! `Vec<u8>`), its own `Name`/`Ns`/`Head`/`Attrs`/`StreamHeader`/`Frame`
//! types, and a [`OracleError::lenient`] flag saying the rxml error was about a
//! DTD, comment or processing instruction (where `restricted-xml` and
//! `not-well-formed` are both accepted: README, "Behaviour choices"; see
//! `map_xml_error` and `Framer::xml_error`). The
//! framing logic is unchanged, line for line.
//!
//! # What is compared
//!
//! [`oracle_frames`] and [`new_frames`] feed chunks the way a connection does
//! (append a chunk to the read buffer, take frames until `Ok(None)`; stop at
//! the first error or at `</stream:stream>`) and normalise the frames to
//! [`Ev`]s. [`check_input`] then requires, for every chunking given:
//!
//! (a) the new framer gives the same events and error as it does on the
//!     whole input;
//! (b) the new framer gives the same events and error as the oracle on the
//!     same chunking.
//!
//! Allowed differences (everything else fails with a message):
//! - `restricted-xml` and `not-well-formed` are interchangeable where the
//!   oracle's error was about a DTD, comment or PI ([`OracleError::lenient`]);
//! - when the new framer fails, its events may differ from the oracle's by a
//!   trailing `Start` (it may refuse a start tag before or after announcing it);
//! - the stanza size limit: the old framer checks bytes that are not yet part
//!   of an event (a start tag in progress, pending whitespace, the stream
//!   header) only when rxml wants more data, so *when* it trips depends on the
//!   chunking (it is not chunking-invariant: see `fuzz/fuzz_targets/framer.rs`).
//!   Fed one byte at a time the oracle trips as early as it can, fed the whole
//!   input as late as it can. So where a `policy-violation` is involved, the
//!   new framer must lie between the two: if it trips, the one-byte oracle must
//!   trip too and no later than it; if it does not trip where the oracle on the
//!   same chunking does, it must agree with the oracle on the whole input.
//!   Across its own chunkings (a), a run that stops with `policy-violation`
//!   must have produced a prefix of the other run's events;
//! - rxml 0.14 mishandles a carriage return in an attribute value (see
//!   [`rxml_quirk_at`]), so (b) compares only the input before such a tag; (a)
//!   still covers all of it.
//!
//! [`check_input_minimized`] shrinks a failing input by deleting bytes, so the
//! message shows a short input that fails the same way.
use std::fmt::Write as _;

use crate::ns::{CLIENT as NS_CLIENT, COMPONENT as NS_COMPONENT, STREAMS as NS_STREAMS};
use crate::xcr::stanza::StreamCondition;
use crate::xcr::xml::Limits;
use rxml::{AttrMap, Event, Namespace, Parse, RawEvent, WithOptions};

// ===========================================================================
// Normalised, comparable output

/// Local name of a top-level element (mirrors `xml::Name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Message,
    Presence,
    Iq,
    Handshake,
    Error,
    Other,
}

/// Namespace of a top-level element (mirrors `xml::Ns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    Component,
    Client,
    Streams,
    Other,
}

/// One frame, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Header {
        to: Option<String>,
        version: Option<String>,
        id: Option<String>,
        from: Option<String>,
    },
    Start {
        name: Name,
        ns: Ns,
    },
    Stanza {
        name: Name,
        ns: Ns,
        to: Option<String>,
        from: Option<String>,
        type_: Option<String>,
        id: Option<String>,
        bytes: Vec<u8>,
        text: String,
        has_children: bool,
        first_child: Option<String>,
    },
    /// The new framer skipped an element (only with `Excess::Skip`, which the
    /// oracle does not have).
    Skipped,
    End,
}

impl std::fmt::Display for Ev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ev::Stanza {
                name,
                ns,
                to,
                from,
                type_,
                id,
                bytes,
                text,
                has_children,
                first_child,
            } => write!(
                f,
                "Stanza {{ {name:?} {ns:?} to={to:?} from={from:?} type={type_:?} id={id:?} \
                 text={text:?} has_children={has_children} first_child={first_child:?} \
                 bytes=b\"{}\" }}",
                bytes.escape_ascii()
            ),
            other => write!(f, "{other:?}"),
        }
    }
}

/// What a framer made of one input in one chunking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<Ev>,
    pub error: Option<StreamCondition>,
    /// The error's detail (for messages only; never compared).
    pub detail: Option<String>,
    /// Oracle only: the error was about a DTD, comment or PI, where
    /// `restricted-xml` and `not-well-formed` are both accepted (README,
    /// "Behaviour choices").
    pub lenient: bool,
}

impl Outcome {
    fn describe(&self) -> String {
        let mut s = String::new();
        for (i, e) in self.events.iter().enumerate() {
            let _ = writeln!(s, "    [{i}] {e}");
        }
        match &self.error {
            Some(c) => {
                let _ = write!(
                    s,
                    "    error: {c:?} ({})",
                    self.detail.as_deref().unwrap_or("")
                );
                if self.lenient {
                    s.push_str(" [DTD/PI/comment: either condition allowed]");
                }
            }
            None => s.push_str("    no error"),
        }
        s
    }
}

/// Split `data` into chunks whose sizes cycle through `sizes` (0 counts as 1;
/// an empty `sizes` means the whole input in one piece).
pub fn split<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < data.len() {
        let n = sizes[k % sizes.len()].max(1).min(data.len() - at);
        k += 1;
        out.push(&data[at..at + n]);
        at += n;
    }
    out
}

/// Run the oracle (the old rxml-based framer) on `chunks`.
pub fn oracle_frames(chunks: &[&[u8]], limits: Limits) -> Outcome {
    let mut f = Framer::new(limits);
    let mut out = Outcome {
        events: Vec::new(),
        error: None,
        detail: None,
        lenient: false,
    };
    for c in chunks {
        f.buf.extend_from_slice(c);
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => {
                    let end = matches!(fr, Frame::End);
                    out.events.push(fr.into_ev());
                    if end {
                        // The connection ends here; nothing more is read.
                        return out;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e.condition);
                    out.detail = Some(e.detail);
                    out.lenient = e.lenient;
                    return out;
                }
            }
        }
    }
    out
}

/// Run the real framer (`crate::xcr::xml::Framer`) on `chunks`.
pub fn new_frames(chunks: &[&[u8]], limits: Limits) -> Outcome {
    use crate::xcr::xml as x;
    fn name(n: x::Name) -> Name {
        match n {
            x::Name::Message => Name::Message,
            x::Name::Presence => Name::Presence,
            x::Name::Iq => Name::Iq,
            x::Name::Handshake => Name::Handshake,
            x::Name::Error => Name::Error,
            x::Name::Other => Name::Other,
        }
    }
    fn ns(n: x::Ns) -> Ns {
        match n {
            x::Ns::Component => Ns::Component,
            x::Ns::Client => Ns::Client,
            x::Ns::Streams => Ns::Streams,
            x::Ns::Other => Ns::Other,
        }
    }
    let mut f = x::Framer::new(limits);
    let mut out = Outcome {
        events: Vec::new(),
        error: None,
        detail: None,
        lenient: false,
    };
    for c in chunks {
        f.buf_mut().extend_from_slice(c);
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => {
                    let ev = match fr {
                        x::Frame::Header(h) => Ev::Header {
                            to: h.to,
                            version: h.version,
                            id: h.id,
                            from: h.from,
                        },
                        x::Frame::Start(h) => Ev::Start {
                            name: name(h.name),
                            ns: ns(h.ns),
                        },
                        x::Frame::Stanza(s) => Ev::Stanza {
                            name: name(s.head.name),
                            ns: ns(s.head.ns),
                            to: s.attrs.to.map(|v| v.to_string()),
                            from: s.attrs.from.map(|v| v.to_string()),
                            type_: s.attrs.type_.map(|v| v.to_string()),
                            id: s.attrs.id.map(|v| v.to_string()),
                            bytes: s.bytes.to_vec(),
                            text: if s.head.name == x::Name::Handshake && s.has_children {
                                String::new()
                            } else {
                                s.text
                            },
                            has_children: s.has_children,
                            first_child: s.first_child,
                        },
                        x::Frame::Skipped(_) => Ev::Skipped,
                        x::Frame::End => Ev::End,
                    };
                    let end = ev == Ev::End;
                    out.events.push(ev);
                    if end {
                        return out;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e.condition);
                    out.detail = Some(e.detail);
                    return out;
                }
            }
        }
    }
    out
}

// ===========================================================================
// The comparison

/// `evs` without one trailing `Start`.
fn strip_start(evs: &[Ev]) -> &[Ev] {
    match evs.last() {
        Some(Ev::Start { .. }) => &evs[..evs.len() - 1],
        _ => evs,
    }
}

fn is_prefix(a: &[Ev], b: &[Ev]) -> bool {
    a.len() <= b.len() && a == &b[..a.len()]
}

fn is_pv(o: &Outcome) -> bool {
    o.error == Some(StreamCondition::PolicyViolation)
}

/// The new framer's error against the oracle's: equal, or both one of
/// `restricted-xml` / `not-well-formed` where the oracle's was lenient.
fn errors_agree(new: &Outcome, old: &Outcome) -> bool {
    use StreamCondition::{NotWellFormed, RestrictedXml};
    new.error == old.error
        || (old.lenient
            && matches!(old.error, Some(RestrictedXml | NotWellFormed))
            && matches!(new.error, Some(RestrictedXml | NotWellFormed)))
}

/// The events agree: equal, or (when `new` failed) equal but for a trailing `Start`.
fn events_agree(new: &Outcome, old: &Outcome) -> bool {
    new.events == old.events
        || (new.error.is_some() && strip_start(&new.events) == strip_start(&old.events))
}

/// The new framer against the oracle on the same chunking, without the size
/// limit's leeway.
fn agrees(new: &Outcome, old: &Outcome) -> bool {
    errors_agree(new, old) && events_agree(new, old)
}

/// Where the new framer deliberately differs from the old one (README, "Behaviour
/// choices"); each case is narrow, and chunking invariance still covers it.
fn deliberate_difference(data: &[u8], new: &Outcome, old: &Outcome) -> bool {
    use StreamCondition::{BadFormat, NotWellFormed, RestrictedXml, UnsupportedEncoding};
    let new_prefix_of_old = is_prefix(strip_start(&new.events), &old.events);
    // 1. Character data between stanzas is refused as soon as it arrives; the
    //    old framer held it until the next `<` (and so may not have failed yet,
    //    or failed on a bad character in it first).
    if new.error == Some(BadFormat)
        && new.detail.as_deref() == Some("character data between stanzas")
        && new_prefix_of_old
        && matches!(old.error, None | Some(BadFormat | NotWellFormed))
    {
        return true;
    }
    // 2. The prolog as XML 1.0 allows it, where rxml was stricter: whitespace
    //    before the root element, any 1.x version, a standalone declaration.
    let old_detail = old.detail.as_deref().unwrap_or("");
    if old.events.is_empty()
        && matches!(old.error, Some(NotWellFormed | RestrictedXml))
        && [
            "unexpected Text token at beginning of document",
            "only XML version 1.0 is allowed",
        ]
        .iter()
        .any(|m| old_detail.contains(m))
    {
        return true;
    }
    if old.events.is_empty()
        && old_detail.contains("'version' attribute must be followed by '?>' or 'encoding'")
        && data.starts_with(b"<?xml version='1.0' standalone=")
    {
        return true;
    }
    // `<?xml?>` (no version): a processing instruction named `xml` to the new
    // framer, a malformed declaration to the old one; either condition is accepted
    // (README, "Behaviour choices").
    if old.events.is_empty()
        && old_detail.contains("XML declaration")
        && matches!(old.error, Some(NotWellFormed | RestrictedXml))
        && matches!(new.error, Some(NotWellFormed | RestrictedXml))
        && new.events.is_empty()
    {
        return true;
    }
    // 2b. A malformed XML declaration: both refuse the stream before its
    //     header, at slightly different points and with either condition (the
    //     new framer reads a declaration whole once its `>` is in).
    if data.starts_with(b"<?xml")
        && old.events.is_empty()
        && new.events.is_empty()
        && old.error.is_some()
    {
        return true;
    }
    // 3. An XML declaration naming another encoding: RFC 6120's
    //    `unsupported-encoding`, where the old framer said `restricted-xml`.
    if new.error == Some(UnsupportedEncoding)
        && old.error == Some(RestrictedXml)
        && old_detail.contains("encoding")
        && new.events.is_empty()
    {
        return true;
    }
    // 4. Character data is checked as it arrives: a bad character, reference
    //    or `]]>` fails at once, where the old framer held the text until the
    //    next `<` (and the input may end before one).
    const TEXT_ERRORS: &[&str] = &[
        "invalid UTF-8",
        "a control character XML does not allow",
        "a character XML does not allow",
        "']]>' in character data",
        "reference to an undeclared entity",
        "malformed entity reference",
        "malformed character reference",
        "empty character reference",
        "character reference to a character XML does not allow",
    ];
    let new_detail = new.detail.as_deref().unwrap_or("");
    if old.error.is_none()
        && new.error == Some(NotWellFormed)
        && TEXT_ERRORS.contains(&new_detail)
        && new.events == old.events
    {
        return true;
    }
    // 5. Two `xmlns` attributes on one tag are duplicate attributes (XML 1.0
    //    well-formedness); rxml let the second one through.
    if new.error == Some(NotWellFormed)
        && new_detail.starts_with("duplicate attribute")
        && new_prefix_of_old
    {
        return true;
    }
    // 6. Namespace constraints rxml does not enforce (Namespaces in XML 1.0,
    //    section 3): reserved namespaces and prefixes, and undeclaring a prefix.
    const NS_ERRORS: &[&str] = &[
        "a prefix bound to a reserved namespace",
        "default namespace bound to a reserved namespace",
        "the xml prefix bound to another namespace",
        "the xmlns prefix declared",
        "a prefix undeclared (not allowed in XML 1.0)",
        "an element with the xmlns prefix",
    ];
    if new.error == Some(NotWellFormed) && NS_ERRORS.contains(&new_detail) && new_prefix_of_old {
        return true;
    }
    // 7. Markup is checked as it arrives: an error inside a tag that has not
    //    ended yet fails at once, where rxml sometimes waited for more input.
    //    (A valid stanza refused would show as a missing event.)
    if old.error.is_none()
        && matches!(new.error, Some(NotWellFormed | RestrictedXml))
        && new.events == old.events
    {
        return true;
    }
    // 10. Character data where none may be: refused at its first character,
    //     where rxml held it (and tripped the size limit on holding it).
    //     More generally: the new framer never looks past max_stanza_size
    //     bytes of a pending element, so a syntax error it reports lies within
    //     the limit, where rxml, holding bytes before judging them, tripped
    //     the limit first.
    if old.error == Some(StreamCondition::PolicyViolation)
        && old_detail.starts_with("element larger than max_stanza_size")
        && matches!(new.error, Some(NotWellFormed | BadFormat | RestrictedXml))
        && new_prefix_of_old
    {
        return true;
    }
    // 11. rxml capped a whole start tag at 8192 bytes (`policy-violation`);
    //     the new framer caps names and values at that, and tags only by
    //     max_stanza_size, so it may find another error in a long tag.
    if old.error == Some(StreamCondition::PolicyViolation)
        && old_detail.starts_with("a name or attribute value longer than")
        && new.error.is_some()
        && strip_start(&new.events) == strip_start(&old.events)
    {
        return true;
    }
    // 12. The old framer counted the prolog (declaration and whitespace)
    //     with the stream header against max_stanza_size; the new one counts
    //     the header's tag alone.
    if old.error == Some(StreamCondition::PolicyViolation)
        && old_detail.starts_with("element larger than max_stanza_size")
        && old.events.is_empty()
        && (matches!(new.events.first(), Some(Ev::Header { .. }))
            || data.first().is_some_and(|b| b" \t\r\n".contains(b)))
    {
        return true;
    }
    // 13. rxml accepted a CR inside a declaration's value (`standalone='yes\r'`).
    let decl = data
        .windows(2)
        .position(|w| w == b"?>")
        .map_or(data, |i| &data[..i]);
    if data.starts_with(b"<?xml")
        && decl.contains(&b'\r')
        && new.events.is_empty()
        && new.error == Some(NotWellFormed)
    {
        return true;
    }
    // 14. rxml refuses a character reference with many leading zeros
    //     (`&#00000000065;`), as soon as the zeros come; XML allows them
    //     (expat too), and the new framer reads on: to the reference's end
    //     (and goes on), or, the input ending first, waits for it, or trips
    //     max_stanza_size while reading it.
    let after_amp = data
        .iter()
        .rposition(|&b| b == b'&')
        .map(|i| &data[i + 1..]);
    let unfinished = after_amp.is_some_and(|r| {
        r.len() > 2 && r[0] == b'#' && r[1] == b'0' && r[1..].iter().all(u8::is_ascii_digit)
    });
    let zeros = unfinished
        || data.windows(3).enumerate().any(|(i, w)| {
            w == b"&#0" && data[i + 2..].iter().take_while(|&&b| b == b'0').count() >= 8
        });
    let size_tripped = new.error == Some(StreamCondition::PolicyViolation)
        && new_detail.contains("larger than max_stanza_size");
    if zeros
        && old.error == Some(NotWellFormed)
        && (new.error.is_none() || size_tripped)
        && is_prefix(strip_start(&old.events), &new.events)
    {
        return true;
    }
    // 15. rxml refuses some characters in names that XML 1.0 allows (e.g. a
    //     combining mark after a digit); whichever edition the new framer
    //     follows (the fourth, see rule 16), its names are a subset of the
    //     fifth edition's.
    if old.error == Some(NotWellFormed)
        && (old_detail.contains("not allowed at start of name")
            || old_detail.contains("not allowed in name"))
        && strip_start(&new.events) == strip_start(&old.events)
        && codepoint_in(old_detail).is_some_and(|c| {
            if old_detail.contains("at start of name") {
                is_fifth_edition_name_start(c)
            } else {
                is_fifth_edition_name_char(c)
            }
        })
    {
        return true;
    }
    // 16. Names are read as XML 1.0 fourth edition defines them, the tables
    //     expat uses (Prosody, ejabberd, slixmpp and most components parse
    //     with expat): a character only the fifth edition allows in a name
    //     (e.g. U+1D11E, anything beyond the BMP, U+FF7D) would break the
    //     receiver's stream, so the new framer refuses it where rxml, following
    //     the fifth edition, accepted it (or failed later on something else).
    if new.error == Some(NotWellFormed)
        && new_detail.ends_with("(XML 1.0 fourth edition)")
        && new_prefix_of_old
        && codepoint_in(new_detail).is_some_and(|c| {
            if new_detail.contains("cannot start a name") {
                is_fifth_edition_name_start(c)
            } else {
                is_fifth_edition_name_char(c)
            }
        })
    {
        return true;
    }
    // 17. A stream header whose root is in the streams namespace under
    //     another prefix (or none) gets `bad-namespace-prefix` (RFC 6120
    //     4.9.3.2), where the old framer said `invalid-namespace`.
    if new.error == Some(StreamCondition::BadNamespacePrefix)
        && old.error == Some(StreamCondition::InvalidNamespace)
        && new.events.is_empty()
        && old.events.is_empty()
    {
        return true;
    }
    // 9. A start tag both malformed and over max_attributes: the new framer
    //    counts attributes as it reads them and checks namespaces once the tag
    //    is whole, so the count may trip first.
    if new.error == Some(StreamCondition::PolicyViolation)
        && new_detail.starts_with("more than ")
        && new_detail.ends_with(" attributes on one element")
        && old.error == Some(NotWellFormed)
        && strip_start(&new.events) == strip_start(&old.events)
    {
        return true;
    }
    // ...and the other way round: the old framer counted `=` signs ahead of
    // the parser, so a malformed attribute past the limit tripped the count.
    if old.error == Some(StreamCondition::PolicyViolation)
        && old_detail.starts_with("more than ")
        && old_detail.ends_with(" attributes on one element")
        && new.error == Some(NotWellFormed)
        && strip_start(&new.events) == strip_start(&old.events)
    {
        return true;
    }
    // 8. rxml held whitespace in the prolog and between stanzas until the next
    //    `<`, and those held bytes counted against max_stanza_size; the new
    //    framer holds none.
    let tail = data
        .iter()
        .rposition(|&b| b == b'>')
        .map_or(data, |i| &data[i + 1..]);
    if old.error == Some(StreamCondition::PolicyViolation)
        && old_detail.starts_with("element larger than max_stanza_size")
        && new.error.is_none()
        && new.events == old.events
        && tail.iter().all(|b| b" \t\r\n".contains(b))
    {
        return true;
    }
    false
}

/// The `U+XXXX` an rxml error message names.
fn codepoint_in(detail: &str) -> Option<u32> {
    let at = detail.find("U+")?;
    let hex: String = detail[at + 2..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u32::from_str_radix(&hex, 16).ok()
}

/// `NameStartChar` of XML 1.0 fifth edition.
fn is_fifth_edition_name_start(c: u32) -> bool {
    matches!(c,
        0x3A | 0x41..=0x5A | 0x5F | 0x61..=0x7A | 0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF
        | 0x370..=0x37D | 0x37F..=0x1FFF | 0x200C..=0x200D | 0x2070..=0x218F
        | 0x2C00..=0x2FEF | 0x3001..=0xD7FF | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD
        | 0x10000..=0xEFFFF)
}

/// `NameChar` of XML 1.0 fifth edition.
fn is_fifth_edition_name_char(c: u32) -> bool {
    is_fifth_edition_name_start(c)
        || matches!(c, 0x2D | 0x2E | 0x30..=0x39 | 0xB7 | 0x300..=0x36F | 0x203F..=0x2040)
}

/// An input as a byte-string literal (exact, pasteable as `b"..."`).
pub fn escape(data: &[u8]) -> String {
    format!("b\"{}\"", data.escape_ascii())
}

fn first_difference(a: &[Ev], b: &[Ev]) -> String {
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    match (a.get(i), b.get(i)) {
        (Some(x), Some(y)) => {
            format!("first difference at event {i}:\n    new:    {x}\n    oracle: {y}")
        }
        (Some(x), None) => format!("new has more events, from {i}: {x}"),
        (None, Some(y)) => format!("oracle has more events, from {i}: {y}"),
        (None, None) => "same events".into(),
    }
}

fn chunking_name(sizes: &[usize]) -> String {
    if sizes.is_empty() {
        "whole".into()
    } else {
        format!("chunk sizes {sizes:?} (cycled)")
    }
}

fn report(
    what: &str,
    data: &[u8],
    limits: Limits,
    sizes: &[usize],
    note: &str,
    a: (&str, &Outcome),
    b: (&str, &Outcome),
) -> String {
    format!(
        "{what}\ninput ({} bytes): {}\nlimits: {limits:?}\nchunking: {}{note}\n{}\n--- {}:\n{}\n--- {}:\n{}",
        data.len(),
        escape(data),
        chunking_name(sizes),
        first_difference(&a.1.events, &b.1.events),
        a.0,
        a.1.describe(),
        b.0,
        b.1.describe(),
    )
}

/// Where rxml is known to be wrong, so the oracle is no oracle: the offset of
/// the `<` of the first tag with a carriage return not followed by a line feed
/// in an attribute value. (XML turns it into a space; rxml 0.14 drops it before
/// the closing quote, `to='a\r'` is `"a"`, and fails on anything else after
/// it, `to='a\rb'` is "invalid codepoint U+62 in attribute value".) A tokenizer
/// just fine enough for well-formed input; on other input it may be wrong,
/// which at worst cuts the comparison short or shows the quirk as a difference.
pub fn rxml_quirk_at(data: &[u8]) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum St {
        Content,
        Open,
        Tag,
        Value(u8),
        Bang,
        Cdata(u8),
        Pi(bool),
        Decl,
    }
    let mut st = St::Content;
    let mut tag = 0;
    for (i, &b) in data.iter().enumerate() {
        st = match (st, b) {
            (St::Content, b'<') => {
                tag = i;
                St::Open
            }
            (St::Content, _) => St::Content,
            (St::Open, b'!') => St::Bang,
            (St::Open, b'?') => St::Pi(false),
            (St::Open, b'>') => St::Content,
            (St::Open, _) => St::Tag,
            (St::Tag, b'\'' | b'"') => St::Value(b),
            (St::Tag, b'>') => St::Content,
            (St::Tag, _) => St::Tag,
            (St::Value(q), _) if b == q => St::Tag,
            (St::Value(_), b'\r') if data.get(i + 1) != Some(&b'\n') => return Some(tag),
            (St::Value(q), _) => St::Value(q),
            (St::Bang, b'[') => St::Cdata(0),
            (St::Bang, b'>') => St::Content,
            (St::Bang, _) => St::Decl,
            (St::Cdata(n), b']') => St::Cdata((n + 1).min(2)),
            (St::Cdata(2), b'>') => St::Content,
            (St::Cdata(_), _) => St::Cdata(0),
            (St::Pi(true), b'>') => St::Content,
            (St::Pi(_), _) => St::Pi(b == b'?'),
            (St::Decl, b'>') => St::Content,
            (St::Decl, _) => St::Decl,
        };
    }
    None
}

/// Outcomes of one input that are computed once and compared many times.
struct Refs<'a> {
    data: &'a [u8],
    limits: Limits,
    /// Said in messages when `data` is cut short of the input.
    note: String,
    new_whole: Outcome,
    old_whole: Outcome,
    old_bytewise: Option<Outcome>,
}

impl Refs<'_> {
    fn old_bytewise(&mut self) -> &Outcome {
        let (data, limits) = (self.data, self.limits);
        self.old_bytewise
            .get_or_insert_with(|| oracle_frames(&split(data, &[1]), limits))
    }
}

/// Check properties (a) and (b) for `data` in each chunking of `chunkings`
/// (chunk sizes, cycled; `[]` is the whole input). The whole input is always
/// checked too. (b) stops short of any [`rxml_quirk_at`]. `Err` is a readable
/// account of the first difference.
pub fn check_input(data: &[u8], chunkings: &[Vec<usize>], limits: Limits) -> Result<(), String> {
    let sizes: Vec<&[usize]> = chunkings
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_slice())
        .collect();
    // (a) the new framer's chunking invariance, on the whole input.
    let new_whole = new_frames(&[data], limits);
    let mut news = Vec::new();
    for s in &sizes {
        let new = new_frames(&split(data, s), limits);
        check_a(data, limits, s, &new, &new_whole)?;
        news.push(new);
    }
    // (b) the new framer against the oracle, chunking by chunking.
    let (data, note) = match rxml_quirk_at(data) {
        Some(at) => {
            news = sizes
                .iter()
                .map(|s| new_frames(&split(&data[..at], s), limits))
                .collect();
            let note = format!(
                "\n(the input is cut at byte {at} of {}: the rest has a carriage return in an \
                 attribute value, where rxml is wrong; see rxml_quirk_at)",
                data.len()
            );
            (&data[..at], note)
        }
        None => (data, String::new()),
    };
    let mut refs = Refs {
        data,
        limits,
        note,
        new_whole: new_frames(&[data], limits),
        old_whole: oracle_frames(&[data], limits),
        old_bytewise: None,
    };
    let (new_whole, old_whole) = (refs.new_whole.clone(), refs.old_whole.clone());
    check_b(&mut refs, &[], &new_whole, &old_whole)?;
    for (s, new) in sizes.iter().zip(&news) {
        let old = if *s == [1] {
            refs.old_bytewise().clone()
        } else {
            oracle_frames(&split(data, s), limits)
        };
        check_b(&mut refs, s, new, &old)?;
    }
    Ok(())
}

/// [`check_input`], and on failure the same failure (same first line, same
/// errors) on the shortest input found by deleting bytes from `data`: the
/// message is that of the short input, followed by the original.
pub fn check_input_minimized(
    data: &[u8],
    chunkings: &[Vec<usize>],
    limits: Limits,
) -> Result<(), String> {
    let Err(first) = check_input(data, chunkings, limits) else {
        return Ok(());
    };
    // The same failure: the same first line and the same errors on both sides.
    let signature = |msg: &str| -> Vec<String> {
        msg.lines()
            .enumerate()
            .filter(|(i, l)| *i == 0 || l.starts_with("    error:") || *l == "    no error")
            .map(|(_, l)| l.to_string())
            .collect()
    };
    let want = signature(&first);
    let fails =
        |d: &[u8]| matches!(check_input(d, chunkings, limits), Err(e) if signature(&e) == want);
    let mut cur = data.to_vec();
    let mut budget = 4000;
    let mut n = (cur.len() / 2).max(1);
    'outer: loop {
        let mut i = 0;
        let mut progress = false;
        while i < cur.len() {
            if budget == 0 {
                break 'outer;
            }
            budget -= 1;
            let cand = [&cur[..i], &cur[(i + n).min(cur.len())..]].concat();
            if fails(&cand) {
                cur = cand;
                progress = true;
            } else {
                i += n;
            }
        }
        if !progress {
            if n == 1 {
                break;
            }
            n /= 2;
        }
    }
    if cur.len() == data.len() {
        return Err(first);
    }
    let last = check_input(&cur, chunkings, limits).unwrap_err();
    Err(format!(
        "{last}\n\n(minimised by deleting bytes from the original input of {} bytes: {})",
        data.len(),
        escape(data)
    ))
}

fn check_a(
    data: &[u8],
    limits: Limits,
    sizes: &[usize],
    new: &Outcome,
    w: &Outcome,
) -> Result<(), String> {
    let same = new.error == w.error
        && (new.events == w.events
            || (new.error.is_some() && strip_start(&new.events) == strip_start(&w.events)));
    if same {
        return Ok(());
    }
    // The size limit may trip earlier in small chunks (as it does in the old
    // framer); the run that stopped for it must have seen a prefix of the other.
    let ok = (is_pv(new) && is_prefix(strip_start(&new.events), &w.events))
        || (is_pv(w) && is_prefix(strip_start(&w.events), &new.events));
    if ok {
        return Ok(());
    }
    Err(report(
        "(a) the new framer's outcome depends on the chunking",
        data,
        limits,
        sizes,
        "",
        ("new framer, this chunking", new),
        ("new framer, whole input", w),
    ))
}

fn check_b(
    refs: &mut Refs<'_>,
    sizes: &[usize],
    new: &Outcome,
    old: &Outcome,
) -> Result<(), String> {
    if agrees(new, old) || deliberate_difference(refs.data, new, old) {
        return Ok(());
    }
    let fail = |refs: &Refs<'_>, what: &str, other: (&str, &Outcome)| {
        Err(report(
            what,
            refs.data,
            refs.limits,
            sizes,
            &refs.note,
            ("new framer", new),
            other,
        ))
    };
    if !is_pv(new) && !is_pv(old) {
        return fail(
            refs,
            "(b) the new framer differs from the rxml oracle",
            ("oracle, same chunking", old),
        );
    }
    // The size limit's leeway: see the module documentation.
    if is_pv(new) {
        let earliest = refs.old_bytewise().clone();
        if !is_pv(&earliest) {
            return fail(
                refs,
                "(b) policy-violation where the oracle never trips a limit, even fed byte by byte",
                ("oracle, one byte at a time", &earliest),
            );
        }
        if !is_prefix(strip_start(&earliest.events), &new.events) {
            return fail(
                refs,
                "(b) policy-violation earlier than the oracle trips it even fed byte by byte",
                ("oracle, one byte at a time", &earliest),
            );
        }
        let latest = &refs.old_whole;
        if !is_prefix(strip_start(&new.events), &latest.events) && !agrees(new, latest) {
            return fail(
                refs,
                "(b) policy-violation after events the oracle does not produce",
                ("oracle, whole input", latest),
            );
        }
        return Ok(());
    }
    // The oracle tripped the size limit on this chunking, the new framer did
    // not: it must then do what the oracle does when it trips it last.
    let latest = refs.old_whole.clone();
    if agrees(new, &latest) {
        return Ok(());
    }
    fail(
        refs,
        "(b) the oracle trips a limit on this chunking; the new framer neither does nor agrees with the oracle on the whole input",
        ("oracle, same chunking", old),
    )
}

// ===========================================================================
// The oracle: the rxml-based framer, as it was in src/xml.rs.

/// rxml's limit on a single token (a name or an attribute value). rxml reserves
/// this much scratch space per connection while parsing, so it stays small; a
/// longer attribute value is a `policy-violation`.
const MAX_TOKEN: usize = 8192;
/// Text of a `<handshake/>` is 40 hex digits; anything much longer is not a handshake.
const MAX_HANDSHAKE_TEXT: usize = 256;

/// What the router reads of a top-level element's start tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    name: Name,
    ns: Ns,
}

/// The routing attributes of a stanza (logical values, entities expanded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Attrs {
    to: Option<String>,
    from: Option<String>,
    type_: Option<String>,
    id: Option<String>,
}

/// A complete top-level element.
#[derive(Debug)]
struct Stanza {
    head: Head,
    attrs: Attrs,
    bytes: Vec<u8>,
    text: String,
    has_children: bool,
    first_child: Option<String>,
}

/// The peer's stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamHeader {
    to: Option<String>,
    version: Option<String>,
    id: Option<String>,
    from: Option<String>,
}

#[derive(Debug)]
enum Frame {
    Header(StreamHeader),
    Start(Head),
    Stanza(Stanza),
    End,
}

impl Frame {
    fn into_ev(self) -> Ev {
        match self {
            Frame::Header(h) => Ev::Header {
                to: h.to,
                version: h.version,
                id: h.id,
                from: h.from,
            },
            Frame::Start(h) => Ev::Start {
                name: h.name,
                ns: h.ns,
            },
            Frame::Stanza(s) => Ev::Stanza {
                name: s.head.name,
                ns: s.head.ns,
                to: s.attrs.to,
                from: s.attrs.from,
                type_: s.attrs.type_,
                id: s.attrs.id,
                bytes: s.bytes,
                // A handshake with children is refused whatever its text: the
                // old framer kept part of an overlong text, the new one none.
                text: if s.head.name == Name::Handshake && s.has_children {
                    String::new()
                } else {
                    s.text
                },
                has_children: s.has_children,
                first_child: s.first_child,
            },
            Frame::End => Ev::End,
        }
    }
}

/// A framing failure: the stream error to send, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleError {
    pub condition: StreamCondition,
    pub detail: String,
    /// The rxml error was about a DTD, comment or processing instruction.
    pub lenient: bool,
}

type FrameError = OracleError;

impl FrameError {
    fn new(condition: StreamCondition, detail: impl Into<String>) -> Self {
        FrameError {
            condition,
            detail: detail.into(),
            lenient: false,
        }
    }
}

struct Current {
    start: usize,
    head: Head,
    attrs: Attrs,
    text: String,
    has_children: bool,
    first_child: Option<String>,
}

/// Incremental framer for one inbound XML stream.
struct Framer {
    parser: rxml::Parser,
    buf: Vec<u8>,
    /// Bytes of `buf` given to the parser so far.
    fed: usize,
    /// Bytes of `buf` accounted for by events returned so far.
    pos: usize,
    /// Open elements, the stream root included.
    depth: usize,
    /// Bytes of `buf` seen by `scan`.
    scanned: usize,
    scan: AttrScan,
    /// Offset in `buf` of the attribute beyond `max_attributes`: the parser is
    /// fed up to there, then the stream fails.
    too_many_attrs_at: Option<usize>,
    cur: Option<Current>,
    limits: Limits,
    header_seen: bool,
    ended: bool,
}

impl Framer {
    fn new(limits: Limits) -> Self {
        let opts = rxml::parser::Options {
            max_token_length: MAX_TOKEN,
            ..Default::default()
        };
        Framer {
            parser: rxml::Parser::with_options(opts),
            buf: Vec::new(),
            fed: 0,
            pos: 0,
            depth: 0,
            scanned: 0,
            scan: AttrScan::default(),
            too_many_attrs_at: None,
            cur: None,
            limits,
            header_seen: false,
            ended: false,
        }
    }

    /// The next frame from the bytes buffered so far; `Ok(None)` when more bytes
    /// are needed.
    fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.ended {
            return Ok(None);
        }
        if self.too_many_attrs_at.is_none() && self.scanned < self.buf.len() {
            let max = self.limits.max_attributes;
            self.too_many_attrs_at = self
                .scan
                .scan(&self.buf[self.scanned..], max)
                .map(|i| self.scanned + i);
            self.scanned = self.buf.len();
        }
        loop {
            let end = self.too_many_attrs_at.unwrap_or(self.buf.len());
            let mut slice = &self.buf[self.fed..end];
            let before = slice.len();
            let res = self.parser.parse(&mut slice, false);
            self.fed += before - slice.len();
            let ev = match res {
                Ok(Some(ev)) => ev,
                Ok(None) => return Ok(None),
                Err(rxml::error::EndOrError::NeedMoreData) => {
                    if self.too_many_attrs_at.is_some_and(|at| self.fed >= at) {
                        return Err(too_many_attributes(self.limits.max_attributes));
                    }
                    self.check_pending()?;
                    self.compact();
                    return Ok(None);
                }
                Err(rxml::error::EndOrError::Error(e)) => return Err(self.xml_error(e)),
            };
            // rxml's metrics do not account for every byte: an empty CDATA
            // section (`<![CDATA[]]>`) makes no event and its 12 bytes are in no
            // event's length. The parser stops consuming right after the `>` of
            // a tag, so for element events the end is exactly `fed`; text
            // events read one byte ahead and are placed by length.
            let len = ev.metrics().len();
            let ev_start = match ev {
                Event::StartElement(..) | Event::EndElement(..) => {
                    self.pos = self.fed;
                    self.fed.saturating_sub(len)
                }
                _ => {
                    let start = self.pos;
                    self.pos += len;
                    start
                }
            };
            if let Some(frame) = self.on_event(ev, ev_start)? {
                return Ok(Some(frame));
            }
        }
    }

    /// [`map_xml_error`], and (oracle only) a PI whose target starts with `xml`
    /// at the very start of the stream (`<?xml-stylesheet ...?>`) is lenient:
    /// rxml takes it for a malformed XML declaration (`not-well-formed`).
    fn xml_error(&self, e: rxml::Error) -> FrameError {
        let mut err = map_xml_error(e);
        let b = &self.buf;
        if self.depth == 0
            && self.pos == 0
            && b.len() > 5
            && b.starts_with(b"<?xml")
            && !matches!(b[5], b' ' | b'\t' | b'\r' | b'\n' | b'?')
        {
            err.lenient = true;
        }
        err
    }

    /// Bytes taken by the parser but not yet part of a finished event: bounded
    /// by the stanza size limit, so no read can grow the buffer without end.
    fn check_pending(&self) -> Result<(), FrameError> {
        let start = self.cur.as_ref().map(|c| c.start).unwrap_or(self.pos);
        if self.fed - start > self.limits.max_stanza_size {
            return Err(FrameError::new(
                StreamCondition::PolicyViolation,
                format!(
                    "element larger than max_stanza_size ({} bytes)",
                    self.limits.max_stanza_size
                ),
            ));
        }
        Ok(())
    }

    /// Forget bytes that belong to no pending element.
    fn compact(&mut self) {
        let keep_from = self.cur.as_ref().map(|c| c.start).unwrap_or(self.pos);
        if keep_from > 0 {
            self.consume(keep_from);
            if let Some(c) = self.cur.as_mut() {
                c.start = 0;
            }
        }
    }

    /// Drop the first `n` bytes of `buf` (all of them fed and accounted for).
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.fed -= n;
        self.pos -= n;
        self.scanned -= n;
        if let Some(at) = self.too_many_attrs_at.as_mut() {
            *at -= n;
        }
    }

    fn on_event(&mut self, ev: Event, ev_start: usize) -> Result<Option<Frame>, FrameError> {
        match ev {
            Event::XmlDeclaration(..) => Ok(None),
            Event::StartElement(_, (ns, name), attrs) => {
                self.depth += 1;
                match self.depth {
                    1 => self.on_header(ns, name.as_str(), attrs, ev_start).map(Some),
                    2 => {
                        let head = Head {
                            name: classify_name(name.as_str()),
                            ns: classify_ns(&ns),
                        };
                        let attrs = take_attrs(attrs, self.limits.max_attributes)?;
                        self.cur = Some(Current {
                            start: ev_start,
                            head,
                            attrs,
                            text: String::new(),
                            has_children: false,
                            first_child: None,
                        });
                        self.check_size()?;
                        Ok(Some(Frame::Start(head)))
                    }
                    d => {
                        if d - 1 > self.limits.max_depth {
                            return Err(FrameError::new(
                                StreamCondition::PolicyViolation,
                                format!("elements nested deeper than {}", self.limits.max_depth),
                            ));
                        }
                        if attrs.len() > self.limits.max_attributes {
                            return Err(too_many_attributes(self.limits.max_attributes));
                        }
                        if let Some(c) = self.cur.as_mut() {
                            if !c.has_children && d == 3 && c.head.name == Name::Error {
                                c.first_child = Some(name.as_str().to_string());
                            }
                            c.has_children = true;
                        }
                        self.check_size()?;
                        Ok(None)
                    }
                }
            }
            Event::EndElement(_) => {
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    0 => {
                        self.ended = true;
                        Ok(Some(Frame::End))
                    }
                    1 => {
                        self.check_size()?;
                        let Some(cur) = self.cur.take() else {
                            return Ok(None);
                        };
                        let end = self.pos;
                        let bytes = self.buf[cur.start..end].to_vec();
                        self.consume(end);
                        Ok(Some(Frame::Stanza(Stanza {
                            head: cur.head,
                            attrs: cur.attrs,
                            bytes,
                            text: cur.text,
                            has_children: cur.has_children,
                            first_child: cur.first_child,
                        })))
                    }
                    _ => {
                        self.check_size()?;
                        Ok(None)
                    }
                }
            }
            Event::Text(_, text) => {
                if self.depth <= 1 {
                    // Between stanzas only whitespace (a keepalive) is allowed.
                    if !text
                        .bytes()
                        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    {
                        return Err(FrameError::new(
                            StreamCondition::BadFormat,
                            "character data between stanzas",
                        ));
                    }
                    return Ok(None);
                }
                self.check_size()?;
                if self.depth == 2 {
                    if let Some(c) = self.cur.as_mut() {
                        if c.head.name == Name::Handshake {
                            if c.text.len() + text.len() > MAX_HANDSHAKE_TEXT {
                                c.has_children = true; // treated as invalid
                            } else {
                                c.text.push_str(&text);
                            }
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    fn check_size(&self) -> Result<(), FrameError> {
        if let Some(c) = &self.cur {
            if self.pos - c.start > self.limits.max_stanza_size {
                return Err(FrameError::new(
                    StreamCondition::PolicyViolation,
                    format!(
                        "stanza larger than max_stanza_size ({} bytes)",
                        self.limits.max_stanza_size
                    ),
                ));
            }
        }
        Ok(())
    }

    fn on_header(
        &mut self,
        ns: Namespace<'static>,
        name: &str,
        mut attrs: AttrMap,
        start: usize,
    ) -> Result<Frame, FrameError> {
        if ns.as_str() != NS_STREAMS || name != "stream" {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                "first element is not <stream:stream/> in http://etherx.jabber.org/streams",
            ));
        }
        // The header's bytes include any whitespace between the XML declaration
        // and `<stream:stream`, which the raw parser would take for text before
        // the root element.
        let header = &self.buf[start..self.pos];
        let decls = namespace_declarations(&header[leading_whitespace(header)..])?;
        if decls.default.as_deref() != Some(NS_COMPONENT) {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                format!(
                    "default namespace is {:?}, not jabber:component:accept",
                    decls.default.unwrap_or_default()
                ),
            ));
        }
        if let Some(p) = decls.other_prefix {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                format!("stream header declares prefix {p:?}; only 'stream' is supported"),
            ));
        }
        self.header_seen = true;
        self.compact_header();
        Ok(Frame::Header(StreamHeader {
            to: attrs.remove(&Namespace::NONE, "to"),
            version: attrs.remove(&Namespace::NONE, "version"),
            id: attrs.remove(&Namespace::NONE, "id"),
            from: attrs.remove(&Namespace::NONE, "from"),
        }))
    }

    fn compact_header(&mut self) {
        // Nothing before the first stanza is ever forwarded.
        self.consume(self.pos);
    }
}

/// Counts the attributes of each tag in the bytes before they reach rxml (see
/// the old `src/xml.rs` for the reasoning).
#[derive(Debug, Default)]
struct AttrScan {
    state: ScanState,
    /// `=` seen in the current tag.
    count: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    #[default]
    Content,
    /// After `<`.
    Open,
    /// In a tag, outside attribute values.
    Tag,
    /// In an attribute value quoted with this byte.
    Value(u8),
    /// After `<!`.
    Bang,
    /// In `<![CDATA[…`; how many `]` just went by (at most 2).
    Cdata(u8),
    /// In `<?…`; whether `?` just went by.
    Pi(bool),
    /// In `<!…` other than CDATA (rxml rejects these): until `>`.
    Decl,
}

impl AttrScan {
    /// Scan `bytes`; the offset of the `=` that makes a tag exceed `max` attributes.
    fn scan(&mut self, bytes: &[u8], max: usize) -> Option<usize> {
        use ScanState::*;
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let skip = match self.state {
                Content => rest.iter().position(|&b| b == b'<'),
                Tag => rest
                    .iter()
                    .position(|&b| matches!(b, b'=' | b'\'' | b'"' | b'>')),
                Value(q) => rest.iter().position(|&b| b == q),
                _ => Some(0),
            };
            i += skip?;
            let b = bytes[i];
            self.state = match (self.state, b) {
                (Content, _) => Open,
                (Open, b'!') => Bang,
                (Open, b'?') => Pi(false),
                (Open, _) => {
                    self.count = 0;
                    Tag
                }
                (Tag, b'=') => {
                    self.count += 1;
                    if self.count > max {
                        return Some(i);
                    }
                    Tag
                }
                (Tag, b'>') => Content,
                (Tag, _) => Value(b),
                (Value(_), _) => Tag,
                (Bang, b'[') => Cdata(0),
                (Bang, b'>') => Content,
                (Bang, _) => Decl,
                (Cdata(n), b']') => Cdata((n + 1).min(2)),
                (Cdata(2), b'>') => Content,
                (Cdata(_), _) => Cdata(0),
                (Pi(true), b'>') => Content,
                (Pi(_), _) => Pi(b == b'?'),
                (Decl, b'>') => Content,
                (Decl, _) => Decl,
            };
            i += 1;
        }
        None
    }
}

struct Decls {
    default: Option<String>,
    other_prefix: Option<String>,
}

/// Read the namespace declarations of a stream header by re-lexing its bytes raw.
fn namespace_declarations(header: &[u8]) -> Result<Decls, FrameError> {
    let mut p = rxml::RawParser::new();
    let mut slice = header;
    let mut decls = Decls {
        default: None,
        other_prefix: None,
    };
    loop {
        match p.parse(&mut slice, false) {
            Ok(Some(RawEvent::Attribute(_, (prefix, local), value))) => {
                match prefix.as_ref().map(|p| p.as_str()) {
                    None if local.as_str() == "xmlns" => decls.default = Some(value),
                    Some("xmlns") if local.as_str() != "stream" => {
                        decls.other_prefix = Some(local.as_str().to_string())
                    }
                    _ => {}
                }
            }
            Ok(Some(RawEvent::ElementHeadClose(..))) | Ok(None) => return Ok(decls),
            Ok(Some(_)) => {}
            Err(rxml::error::EndOrError::NeedMoreData) => return Ok(decls),
            Err(rxml::error::EndOrError::Error(e)) => return Err(map_xml_error(e)),
        }
    }
}

/// Number of XML whitespace bytes at the start of `b`.
fn leading_whitespace(b: &[u8]) -> usize {
    b.iter()
        .take_while(|&&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count()
}

fn classify_name(name: &str) -> Name {
    match name {
        "message" => Name::Message,
        "presence" => Name::Presence,
        "iq" => Name::Iq,
        "handshake" => Name::Handshake,
        "error" => Name::Error,
        _ => Name::Other,
    }
}

fn classify_ns(ns: &Namespace<'_>) -> Ns {
    match ns.as_str() {
        NS_COMPONENT => Ns::Component,
        NS_CLIENT => Ns::Client,
        NS_STREAMS => Ns::Streams,
        _ => Ns::Other,
    }
}

fn take_attrs(attrs: AttrMap, max: usize) -> Result<Attrs, FrameError> {
    if attrs.len() > max {
        return Err(too_many_attributes(max));
    }
    let mut out = Attrs::default();
    for ((ns, name), value) in attrs {
        if !ns.is_none() {
            continue;
        }
        match name.as_str() {
            "to" => out.to = Some(value),
            "from" => out.from = Some(value),
            "type" => out.type_ = Some(value),
            "id" => out.id = Some(value),
            _ => {}
        }
    }
    Ok(out)
}

fn too_many_attributes(max: usize) -> FrameError {
    FrameError::new(
        StreamCondition::PolicyViolation,
        format!("more than {max} attributes on one element"),
    )
}

fn map_xml_error(e: rxml::Error) -> FrameError {
    // Where `restricted-xml` and `not-well-formed` are both accepted (README,
    // "Behaviour choices"): rxml says
    // "comments" after `<!--`, "processing instructions" after `<?` (other than
    // the XML declaration), and one of the two "malformed ... start" syntax
    // errors for any other `<!` (`<!DOCTYPE`, `<!ENTITY`, `<!-x`, `<![CDAx`).
    let lenient = matches!(
        e,
        rxml::Error::RestrictedXml("comments" | "processing instructions")
            | rxml::Error::InvalidSyntax(
                "malformed cdata or comment section start" | "malformed cdata section start"
            )
    );
    let mut err = match e {
        rxml::Error::RestrictedXml("long name or reference")
        | rxml::Error::RestrictedXml("event too long") => FrameError::new(
            StreamCondition::PolicyViolation,
            format!("a name or attribute value longer than {MAX_TOKEN} bytes"),
        ),
        rxml::Error::RestrictedXml(what) => FrameError::new(
            StreamCondition::RestrictedXml,
            format!("restricted XML: {what}"),
        ),
        other => FrameError::new(StreamCondition::NotWellFormed, other.to_string()),
    };
    err.lenient = lenient;
    err
}

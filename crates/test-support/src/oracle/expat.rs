//! expat as a second, independent oracle for the framer: the parser that
//! Prosody (through lxp), ejabberd (fast_xml) and slixmpp (pyexpat) read
//! their streams with, so the one whose verdict decides whether a receiver's
//! stream survives what the router forwards. Linked from the system's
//! libexpat (Debian's `libexpat1-dev`), in namespace mode with triplets, as
//! Prosody sets it up (separator `\x01`).
//!
//! Used by `tests/framer_diff.rs` and `fuzz/fuzz_targets/framer_diff.rs`; it
//! depends on nothing but libexpat, std and the daemon's public framer API
//! (through [`crate::xcr`]).
//!
//! # What is compared
//!
//! [`check`] runs the framer on a stream (whole) and, if the framer accepted
//! its header, expat on the same stream *body* (everything after the header)
//! behind a canonical component stream header: the framer admits only headers
//! that bind the default namespace `jabber:component:accept` and the prefix
//! `stream`, so the body means the same behind either, and the router's
//! receivers read forwarded stanzas behind such a header too. (Prolog and
//! header checks are the rxml oracle's and the header rules' business; expat
//! refuses e.g. `version='1.1'`, which XML 1.0 reads as 1.0.) Then:
//!
//! 1. *Never forwards what expat refuses.* The stanzas the framer forwarded
//!    are, byte for byte, the first top-level elements expat read whole
//!    before any error of its own.
//! 2. *Same infoset.* Each forwarded stanza, parsed by expat alone behind a
//!    fresh receiving stream header, is one element with exactly the infoset
//!    (expanded names with prefixes, attributes, text, children) expat read
//!    for it in the sender's stream; and what the framer reports of it agrees
//!    with expat: name, namespace, prefix, `to`/`from`/`type`/`id`, the
//!    `xmlns` value span, a `<handshake/>`'s text, whether it has children.
//! 3. *Refuses what expat refuses.* If expat failed, so did the framer (at
//!    that element or before).
//! 4. *Accepts what expat accepts*, up to the named rules of
//!    [`allowed_refusal`]: if the framer stopped short of a top-level element
//!    expat read whole, its error is one of those.

use crate::xcr::stanza::StreamCondition;
use crate::xcr::xml::{Frame, Framer, Limits, Name, Ns, Stanza};
use std::ffi::{c_char, c_int, c_void, CStr};

// ===========================================================================
// libexpat

type Parser = *mut c_void;
type StartHandler = unsafe extern "C" fn(*mut c_void, *const c_char, *mut *const c_char);
type EndHandler = unsafe extern "C" fn(*mut c_void, *const c_char);
type CharHandler = unsafe extern "C" fn(*mut c_void, *const c_char, c_int);
type CommentHandler = unsafe extern "C" fn(*mut c_void, *const c_char);
type PiHandler = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char);
type DoctypeHandler =
    unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *const c_char, c_int);

#[link(name = "expat")]
extern "C" {
    fn XML_ParserCreateNS(encoding: *const c_char, separator: c_char) -> Parser;
    fn XML_ParserFree(p: Parser);
    fn XML_SetUserData(p: Parser, data: *mut c_void);
    fn XML_SetReturnNSTriplet(p: Parser, do_nst: c_int);
    fn XML_SetElementHandler(p: Parser, start: Option<StartHandler>, end: Option<EndHandler>);
    fn XML_SetCharacterDataHandler(p: Parser, h: Option<CharHandler>);
    fn XML_SetCommentHandler(p: Parser, h: Option<CommentHandler>);
    fn XML_SetProcessingInstructionHandler(p: Parser, h: Option<PiHandler>);
    fn XML_SetStartDoctypeDeclHandler(p: Parser, h: Option<DoctypeHandler>);
    fn XML_Parse(p: Parser, s: *const c_char, len: c_int, is_final: c_int) -> c_int;
    fn XML_GetErrorCode(p: Parser) -> c_int;
    fn XML_ErrorString(code: c_int) -> *const c_char;
    // XML_Index: `long` or `long long`, 64 bits either way on LP64.
    fn XML_GetCurrentByteIndex(p: Parser) -> i64;
    fn XML_GetCurrentByteCount(p: Parser) -> c_int;
}

/// The receiving stream's header: what the router's receivers read behind.
pub const CANON_HEADER: &[u8] = crate::stanza::CANON_HEADER.as_bytes();

/// A node of an element's infoset. Names are expat's triplets:
/// `uri\x01local\x01prefix` (`local` alone without a namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Elem {
        name: String,
        /// In document order.
        attrs: Vec<(String, String)>,
        children: Vec<Node>,
    },
    Text(String),
}

/// A top-level element expat read whole: its span in the parsed bytes.
#[derive(Clone, Debug)]
pub struct XElem {
    pub start: usize,
    pub end: usize,
    pub tree: Node,
}

/// What expat made of some bytes (`isFinal` false: an unfinished stream is
/// not an error).
#[derive(Debug, Default)]
pub struct XRun {
    pub elems: Vec<XElem>,
    /// Error and where expat saw it.
    pub error: Option<(String, usize)>,
    /// Where a comment, processing instruction or DOCTYPE was.
    pub restricted: Option<usize>,
    /// Where character data other than whitespace was between stanzas.
    pub text_between: Option<usize>,
    /// Where the stream root ended (`</stream:stream>`).
    pub root_end: Option<usize>,
}

struct Rec {
    parser: Parser,
    depth: usize,
    /// Open elements below the root, outermost first, with their start.
    stack: Vec<(usize, Node)>,
    run: XRun,
}

impl Rec {
    fn at(&self) -> usize {
        unsafe { XML_GetCurrentByteIndex(self.parser) }.max(0) as usize
    }
}

unsafe fn string(s: *const c_char) -> String {
    CStr::from_ptr(s).to_string_lossy().into_owned()
}

unsafe extern "C" fn on_start(data: *mut c_void, name: *const c_char, atts: *mut *const c_char) {
    let r = &mut *(data as *mut Rec);
    r.depth += 1;
    if r.depth < 2 {
        return;
    }
    let mut attrs = Vec::new();
    let mut p = atts;
    while !(*p).is_null() {
        attrs.push((string(*p), string(*p.add(1))));
        p = p.add(2);
    }
    let at = r.at();
    r.stack.push((
        at,
        Node::Elem {
            name: string(name),
            attrs,
            children: Vec::new(),
        },
    ));
}

unsafe extern "C" fn on_end(data: *mut c_void, _name: *const c_char) {
    let r = &mut *(data as *mut Rec);
    r.depth -= 1;
    let end = r.at() + XML_GetCurrentByteCount(r.parser).max(0) as usize;
    if r.depth == 0 {
        r.run.root_end = Some(end);
        return;
    }
    let Some((start, node)) = r.stack.pop() else {
        return;
    };
    match r.stack.last_mut() {
        Some((_, Node::Elem { children, .. })) => children.push(node),
        _ => r.run.elems.push(XElem {
            start,
            end,
            tree: node,
        }),
    }
}

unsafe extern "C" fn on_text(data: *mut c_void, s: *const c_char, len: c_int) {
    let r = &mut *(data as *mut Rec);
    let bytes = std::slice::from_raw_parts(s as *const u8, len.max(0) as usize);
    let text = String::from_utf8_lossy(bytes);
    if r.depth <= 1 {
        if !text.bytes().all(|b| b" \t\r\n".contains(&b)) && r.run.text_between.is_none() {
            r.run.text_between = Some(r.at());
        }
        return;
    }
    if let Some((_, Node::Elem { children, .. })) = r.stack.last_mut() {
        match children.last_mut() {
            Some(Node::Text(t)) => t.push_str(&text),
            _ => children.push(Node::Text(text.into_owned())),
        }
    }
}

unsafe fn restricted(data: *mut c_void) {
    let r = &mut *(data as *mut Rec);
    if r.run.restricted.is_none() {
        r.run.restricted = Some(r.at());
    }
}

unsafe extern "C" fn on_comment(data: *mut c_void, _: *const c_char) {
    restricted(data);
}

unsafe extern "C" fn on_pi(data: *mut c_void, _: *const c_char, _: *const c_char) {
    restricted(data);
}

unsafe extern "C" fn on_doctype(
    data: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    _: c_int,
) {
    restricted(data);
}

/// Parse `bytes` with expat as Prosody does (namespaces, separator `\x01`,
/// triplets), not as the final piece.
pub fn expat(bytes: &[u8]) -> XRun {
    unsafe {
        let parser = XML_ParserCreateNS(std::ptr::null(), 1);
        assert!(!parser.is_null(), "libexpat: out of memory");
        let mut rec = Box::new(Rec {
            parser,
            depth: 0,
            stack: Vec::new(),
            run: XRun::default(),
        });
        XML_SetUserData(parser, &mut *rec as *mut Rec as *mut c_void);
        XML_SetReturnNSTriplet(parser, 1);
        XML_SetElementHandler(parser, Some(on_start), Some(on_end));
        XML_SetCharacterDataHandler(parser, Some(on_text));
        XML_SetCommentHandler(parser, Some(on_comment));
        XML_SetProcessingInstructionHandler(parser, Some(on_pi));
        XML_SetStartDoctypeDeclHandler(parser, Some(on_doctype));
        let ok = XML_Parse(
            parser,
            bytes.as_ptr() as *const c_char,
            bytes.len() as c_int,
            0,
        );
        if ok == 0 {
            let code = XML_GetErrorCode(parser);
            let at = rec.at();
            rec.run.error = Some((string(XML_ErrorString(code)), at));
        }
        XML_ParserFree(parser);
        rec.run
    }
}

// ===========================================================================
// The framer's side

/// What the framer made of a whole stream.
#[derive(Debug, Default)]
pub struct FRun {
    /// Where its header ended (`None`: it did not accept one).
    pub body_at: Option<usize>,
    pub stanzas: Vec<Stanza>,
    pub error: Option<(StreamCondition, String)>,
    /// It read `</stream:stream>` (or a header that closed itself).
    pub ended: bool,
    /// Frames after the header, stanzas or not.
    pub frames_after_header: usize,
}

pub fn frame(data: &[u8], limits: Limits) -> FRun {
    let mut f = Framer::new(limits);
    let mut run = FRun::default();
    f.buf_mut().extend_from_slice(data);
    loop {
        match f.next_frame() {
            Ok(Some(Frame::Header(_))) => {
                // The header is dropped from the buffer as soon as it is read.
                run.body_at = Some(data.len() - f.buf_mut().len());
            }
            Ok(Some(Frame::Stanza(s))) => {
                run.frames_after_header += 1;
                run.stanzas.push(s);
            }
            Ok(Some(Frame::End)) => {
                run.ended = true;
                return run;
            }
            Ok(Some(_)) => run.frames_after_header += 1,
            Ok(None) => return run,
            Err(e) => {
                run.error = Some((e.condition, e.detail));
                return run;
            }
        }
    }
}

/// Undo references and attribute-value normalisation (what a parser does
/// to an attribute value), for values the framer accepted.
pub fn decode_value(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    let mut out = String::new();
    let mut rest = &*s;
    while let Some(c) = rest.chars().next() {
        if c == '&' {
            if let Some(semi) = rest.find(';') {
                let r = &rest[1..semi];
                let ch = match r {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "apos" => Some('\''),
                    "quot" => Some('"'),
                    _ if r.starts_with("#x") => u32::from_str_radix(&r[2..], 16)
                        .ok()
                        .and_then(char::from_u32),
                    _ if r.starts_with('#') => r[1..].parse().ok().and_then(char::from_u32),
                    _ => None,
                };
                if let Some(ch) = ch {
                    out.push(ch);
                    rest = &rest[semi + 1..];
                    continue;
                }
            }
        }
        if rest.starts_with("\r\n") {
            out.push(' ');
            rest = &rest[2..];
            continue;
        }
        out.push(if matches!(c, '\t' | '\n' | '\r') {
            ' '
        } else {
            c
        });
        rest = &rest[c.len_utf8()..];
    }
    out
}

// ===========================================================================
// The comparison

/// Where the framer may refuse a top-level element that expat reads whole
/// (`from`: where its forwarded stanzas end, in expat's offsets). Each is a
/// choice the README documents ("Behaviour choices").
fn allowed_refusal(
    cond: StreamCondition,
    detail: &str,
    x: &XRun,
    from: usize,
) -> Option<&'static str> {
    use StreamCondition::*;
    match cond {
        // Limits: expat has none (Prosody applies its own, on whole stanzas).
        PolicyViolation => Some("limits"),
        // Comments, processing instructions and DTDs are well-formed XML that
        // XMPP forbids (RFC 6120 11.1); expat reports them as events.
        RestrictedXml | NotWellFormed if x.restricted.is_some_and(|at| at >= from) => {
            Some("restricted XML")
        }
        // Text between stanzas is well-formed, but not XMPP (bad-format).
        BadFormat if detail == "character data between stanzas" && x.text_between.is_some() => {
            Some("text between stanzas")
        }
        _ => None,
    }
}

fn triplet(name: &str) -> (Option<&str>, &str, Option<&str>) {
    let mut parts = name.split('\x01');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(uri), Some(local), prefix) => (Some(uri), local, prefix),
        (Some(local), None, _) => (None, local, None),
        _ => (None, name, None),
    }
}

/// What the framer reports of a forwarded stanza, against expat's tree.
fn agrees(s: &Stanza, tree: &Node) -> Result<(), String> {
    let Node::Elem {
        name,
        attrs,
        children,
    } = tree
    else {
        return Err("not an element".into());
    };
    let (uri, local, prefix) = triplet(name);
    let want_name = match local {
        "message" => Name::Message,
        "presence" => Name::Presence,
        "iq" => Name::Iq,
        "handshake" => Name::Handshake,
        "error" => Name::Error,
        _ => Name::Other,
    };
    let want_ns = match uri {
        Some("jabber:component:accept") => Ns::Component,
        Some("jabber:client") => Ns::Client,
        Some("http://etherx.jabber.org/streams") => Ns::Streams,
        _ => Ns::Other,
    };
    let mut errs = Vec::new();
    if s.head.name != want_name || s.head.ns != want_ns {
        errs.push(format!("head {:?}, expat {name:?}", s.head));
    }
    if s.prefixed != prefix.is_some() {
        errs.push(format!("prefixed {}, expat {name:?}", s.prefixed));
    }
    let attr = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let a = &s.attrs;
    let mine = [&a.to, &a.from, &a.type_, &a.id].map(|v| v.as_ref().map(|v| v.to_string()));
    let theirs = ["to", "from", "type", "id"].map(attr);
    if mine != theirs {
        errs.push(format!("routing attributes {mine:?}, expat {theirs:?}"));
    }
    match (&s.xmlns_value, prefix) {
        (Some(r), None) => {
            let v = decode_value(&s.bytes[r.clone()]);
            if Some(v.as_str()) != uri.or(Some("")) {
                errs.push(format!("xmlns value {v:?}, expat namespace {uri:?}"));
            }
        }
        (None, None) if uri != Some("jabber:component:accept") => {
            errs.push(format!("no xmlns value, expat namespace {uri:?}"));
        }
        _ => {}
    }
    let elems = children.iter().any(|c| matches!(c, Node::Elem { .. }));
    if s.head.name == Name::Handshake && !s.has_children {
        let text: String = children
            .iter()
            .filter_map(|c| match c {
                Node::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        if text != s.text || elems {
            errs.push(format!("handshake text {:?}, expat {text:?}", s.text));
        }
    } else if s.has_children != elems && s.head.name != Name::Handshake {
        errs.push(format!("has_children {}, expat {elems}", s.has_children));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Properties 1 and 2 for the forwarded stanza number `i`: it is expat's
/// top-level element number `i`, byte for byte; read alone in a receiving
/// stream it has the same infoset; the framer's facts agree with expat's.
fn forwarded(i: usize, s: &Stanza, x: &XRun, parsed: &[u8]) -> Result<(), String> {
    let Some(e) = x.elems.get(i) else {
        return Err(format!(
            "forwarded stanza {i} that expat did not read whole: {}",
            escape(&s.bytes)
        ));
    };
    let theirs = &parsed[e.start..e.end];
    if &s.bytes[..] != theirs {
        return Err(format!(
            "stanza {i}: forwarded {}\nexpat's element: {}",
            escape(&s.bytes),
            escape(theirs)
        ));
    }
    let mut alone = CANON_HEADER.to_vec();
    alone.extend_from_slice(&s.bytes);
    let r = expat(&alone);
    if r.error.is_some() || r.elems.len() != 1 || r.elems[0].tree != e.tree {
        return Err(format!(
            "stanza {i} read alone in a receiving stream: {:?} {:?}\nin the sender's stream: {:?}",
            r.error,
            r.elems.first().map(|e| &e.tree),
            e.tree
        ));
    }
    agrees(s, &e.tree).map_err(|why| format!("stanza {i}: {why}"))
}

/// Check properties 1–4 of the module documentation for one stream.
pub fn check(data: &[u8], limits: Limits) -> Result<(), String> {
    let f = frame(data, limits);
    let Some(body_at) = f.body_at else {
        return Ok(());
    };
    if f.ended && f.frames_after_header == 0 && body_at < data.len() && data[body_at - 2] == b'/' {
        // The header closed itself: the stream ended there.
        return Ok(());
    }
    let body = &data[body_at..];
    let mut parsed = CANON_HEADER.to_vec();
    parsed.extend_from_slice(body);
    let x = expat(&parsed);
    let off = CANON_HEADER.len();
    let rel = |at: usize| at.saturating_sub(off);
    let err = |what: String| {
        Err(format!(
            "{what}\ninput ({} bytes): {}\nlimits: {limits:?}\nframer: {} stanzas, error {:?}\nexpat: {} elements, error {:?}",
            data.len(),
            escape(data),
            f.stanzas.len(),
            f.error,
            x.elems.len(),
            x.error.as_ref().map(|(e, at)| (e, rel(*at))),
        ))
    };
    // 1. and 2.
    for (i, s) in f.stanzas.iter().enumerate() {
        if let Err(why) = forwarded(i, s, &x, &parsed) {
            return err(why);
        }
    }
    // Where the framer's forwarded stanzas end in expat's view.
    let forwarded_to = match f.stanzas.len() {
        0 => off,
        n => x.elems[n - 1].end,
    };
    // 3. What expat refuses, the framer refuses.
    if let Some((what, at)) = &x.error {
        if f.error.is_none() && !(f.ended && x.root_end.is_some_and(|r| r <= *at)) {
            return err(format!(
                "expat refuses ({what} at {}) what the framer accepted",
                rel(*at)
            ));
        }
    }
    // 4. What expat reads whole, the framer forwards, but for named rules.
    let after_root = |e: &XElem| x.root_end.is_some_and(|r| e.start >= r);
    if let Some(e) = x.elems.get(f.stanzas.len()).filter(|e| !after_root(e)) {
        let Some((cond, detail)) = &f.error else {
            return err(format!(
                "the framer did not forward an element expat read whole: {}",
                escape(&parsed[e.start..e.end])
            ));
        };
        if allowed_refusal(*cond, detail, &x, forwarded_to).is_none() {
            return err(format!(
                "the framer refused ({cond:?}: {detail}) an element expat read whole: {}",
                escape(&parsed[e.start..e.end])
            ));
        }
    }
    Ok(())
}

/// [`check`], and on failure the same failure (same first line) on the
/// shortest input found by deleting bytes from `data`.
pub fn check_minimized(data: &[u8], limits: Limits) -> Result<(), String> {
    let Err(first) = check(data, limits) else {
        return Ok(());
    };
    let line = |m: &str| {
        m.lines()
            .next()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let want = line(&first);
    let fails = |d: &[u8]| matches!(check(d, limits), Err(e) if line(&e) == want);
    let mut cur = data.to_vec();
    let mut chunk = cur.len() / 2;
    let mut budget = 3000;
    while chunk > 0 && budget > 0 {
        let mut i = 0;
        while i + chunk <= cur.len() && budget > 0 {
            budget -= 1;
            let mut cand = cur[..i].to_vec();
            cand.extend_from_slice(&cur[i + chunk..]);
            if fails(&cand) {
                cur = cand;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    let short = check(&cur, limits).err().unwrap_or_default();
    Err(format!(
        "{short}\n\n(minimised by deleting bytes from the original input of {} bytes: {})",
        data.len(),
        escape(data)
    ))
}

/// An input as a byte-string literal.
pub fn escape(data: &[u8]) -> String {
    format!("b\"{}\"", data.escape_ascii())
}

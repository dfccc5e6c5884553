//! Stream framing: from the bytes a peer sends to stream headers and stanzas.
//!
//! The router never builds a DOM and never re-serialises what it forwards. The
//! strict, namespace-aware `rxml::Parser` checks well-formedness (it rejects
//! DTDs, entity declarations, processing instructions and comments) and reports
//! how many input bytes made each event; summing those gives the exact byte span
//! of every top-level element, which is cut out of the read buffer as a shared
//! `Bytes` and forwarded as is. Only what routing needs is kept from the parse:
//! the top-level name and namespace and the `to`, `from`, `type` and `id`
//! attributes (plus the text of a `<handshake/>`).
//!
//! Limits are checked on every parser event and whenever the parser asks for more
//! data, so a single huge read cannot slip an oversized stanza through. The
//! attribute limit is checked before rxml sees the bytes (see [`AttrScan`]):
//! rxml collects all attributes of a start tag before reporting it, so a tag
//! with 100,000 attributes would otherwise cost far more memory than its bytes.
//!
//! A stanza's bytes are copied out of the read buffer: a slice would keep the
//! whole read allocation (up to 64 KiB) alive while the stanza sits in a queue,
//! memory that the queues' byte bounds do not see.
//!
//! Stream headers may declare no namespace prefix but `stream`: with any other
//! prefix bound on the stream, a stanza could use it and its forwarded bytes would
//! carry an unbound prefix into the receiving stream. Such headers get
//! `invalid-namespace` (documented in the README).

use bytes::{Buf, Bytes, BytesMut};
use rxml::{AttrMap, Event, Namespace, Parse, RawEvent, WithOptions};

use crate::stanza::StreamCondition;

pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub const NS_COMPONENT: &str = "jabber:component:accept";
pub const NS_CLIENT: &str = "jabber:client";

/// rxml's limit on a single token (a name or an attribute value). rxml reserves
/// this much scratch space per connection while parsing, so it stays small; a
/// longer attribute value is a `policy-violation`.
const MAX_TOKEN: usize = 8192;
/// Text of a `<handshake/>` is 40 hex digits; anything much longer is not a handshake.
const MAX_HANDSHAKE_TEXT: usize = 256;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_stanza_size: usize,
    /// Maximum element depth inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Maximum attributes on one element (namespace declarations count).
    pub max_attributes: usize,
}

impl Limits {
    pub fn new(max_stanza_size: usize) -> Self {
        Limits {
            max_stanza_size,
            max_depth: 64,
            max_attributes: 256,
        }
    }
}

/// Local name of a top-level element, as far as the router cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Message,
    Presence,
    Iq,
    Handshake,
    /// `error` (a `<stream:error/>` when in the streams namespace).
    Error,
    Other,
}

impl Name {
    pub fn as_str(self) -> &'static str {
        match self {
            Name::Message => "message",
            Name::Presence => "presence",
            Name::Iq => "iq",
            Name::Handshake => "handshake",
            Name::Error => "error",
            Name::Other => "other",
        }
    }
    pub fn is_stanza(self) -> bool {
        matches!(self, Name::Message | Name::Presence | Name::Iq)
    }
}

/// Namespace of a top-level element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    Component,
    Client,
    Streams,
    Other,
}

/// What the router reads of a top-level element's start tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub name: Name,
    pub ns: Ns,
}

/// The routing attributes of a stanza (logical values, entities expanded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    pub to: Option<String>,
    pub from: Option<String>,
    pub type_: Option<String>,
    pub id: Option<String>,
}

/// A complete top-level element.
#[derive(Debug)]
pub struct Stanza {
    pub head: Head,
    pub attrs: Attrs,
    /// The exact bytes the peer sent for this element.
    pub bytes: Bytes,
    /// Concatenated text directly inside (kept for `<handshake/>` only).
    pub text: String,
    /// Whether the element had child elements.
    pub has_children: bool,
    /// Local name of the first child (kept for `<stream:error/>` only).
    pub first_child: Option<String>,
}

/// The peer's stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    pub to: Option<String>,
    pub version: Option<String>,
    /// The stream id (a server's reply header; the upstream handshake needs it).
    pub id: Option<String>,
    pub from: Option<String>,
}

#[derive(Debug)]
pub enum Frame {
    Header(StreamHeader),
    /// A top-level element has started; sent before its [`Frame::Stanza`] so the
    /// caller can refuse it early (the element may never end).
    Start(Head),
    Stanza(Stanza),
    /// `</stream:stream>`: the peer closed its stream.
    End,
}

/// A framing failure: the stream error to send, and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{condition}: {detail}")]
pub struct FrameError {
    pub condition: StreamCondition,
    pub detail: String,
}

impl FrameError {
    fn new(condition: StreamCondition, detail: impl Into<String>) -> Self {
        FrameError {
            condition,
            detail: detail.into(),
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
pub struct Framer {
    parser: rxml::Parser,
    buf: BytesMut,
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
    pub fn new(limits: Limits) -> Self {
        let opts = rxml::parser::Options {
            max_token_length: MAX_TOKEN,
            ..Default::default()
        };
        Framer {
            parser: rxml::Parser::with_options(opts),
            buf: BytesMut::new(),
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

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The buffer to read into. Bytes appended here are framed by [`Framer::next_frame`].
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Whether no bytes are held (nothing partial is pending).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.cur.is_none()
    }

    /// Drop buffers held by an idle stream (the read buffer and rxml's scratch
    /// space), so an idle connection costs little memory.
    pub fn shrink(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.fed = 0;
            self.pos = 0;
            self.scanned = 0;
            self.parser.release_temporaries();
        }
    }

    /// The next frame from the bytes buffered so far; `Ok(None)` when more bytes
    /// are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
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
                Err(rxml::error::EndOrError::Error(e)) => return Err(map_xml_error(e)),
            };
            // rxml's metrics do not account for every byte: an empty CDATA
            // section (`<![CDATA[]]>`) makes no event and its 12 bytes are in no
            // event's length, so summed lengths drift behind the input and the
            // spans cut from them would be shifted (forwarding bytes that were
            // never validated as a stanza). The parser stops consuming right
            // after the `>` of a tag, so for element events the end is exactly
            // `fed`; text events read one byte ahead and are placed by length.
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
        self.buf.advance(n);
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
                        let bytes = Bytes::copy_from_slice(&self.buf[cur.start..end]);
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
        // and `<stream:stream` (`<?xml version='1.0'?>\n<stream:stream ...>`, as
        // tokio-xmpp sends it), which the raw parser would take for text
        // before the root element.
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

/// Counts the attributes of each tag in the bytes before they reach rxml: a
/// tokenizer just fine enough to know, in well-formed XML, whether a `=` is
/// between an attribute's name and value (in a tag, outside quotes, not in
/// CDATA, a comment or a processing instruction). On input that is not
/// well-formed it may count wrong, but rxml rejects such input anyway at or
/// before the point where the count matters.
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
            // The common states skip ahead to the next byte that matters.
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
                    // This byte (a name's first) is not one the tag state looks for.
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

/// Read the namespace declarations of a stream header (rxml's namespace-resolving
/// parser does not report them) by re-lexing the header bytes raw.
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
    // One pass that moves the four values out (no copies, no map look-ups).
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
    match e {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='a.example'>";

    fn feed_all(f: &mut Framer, data: &[u8]) -> Result<Vec<Frame>, FrameError> {
        f.buf_mut().extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(fr) = f.next_frame()? {
            out.push(fr);
        }
        Ok(out)
    }

    fn framer() -> Framer {
        Framer::new(Limits::new(10_000))
    }

    #[test]
    fn header_and_stanzas() {
        let mut f = framer();
        let s1 = "<message to='b@b.example' from='a.example' id='1'><body>hi &amp; <![CDATA[<x>]]> é</body></message>";
        let s2 = "<iq type='get' to='b' from='a.example' id='2'/>";
        let input = format!("{HEADER}\n{s1} \n\t{s2}</stream:stream>");
        let frames = feed_all(&mut f, input.as_bytes()).unwrap();
        let mut stanzas = Vec::new();
        let mut header = None;
        let mut ended = false;
        for fr in frames {
            match fr {
                Frame::Header(h) => header = Some(h),
                Frame::Stanza(s) => stanzas.push(s),
                Frame::Start(_) => {}
                Frame::End => ended = true,
            }
        }
        assert_eq!(header.unwrap().to.as_deref(), Some("a.example"));
        assert_eq!(stanzas.len(), 2);
        assert_eq!(&stanzas[0].bytes[..], s1.as_bytes());
        assert_eq!(stanzas[0].attrs.to.as_deref(), Some("b@b.example"));
        assert_eq!(stanzas[0].head.name, Name::Message);
        assert_eq!(stanzas[0].head.ns, Ns::Component);
        assert_eq!(&stanzas[1].bytes[..], s2.as_bytes());
        assert_eq!(stanzas[1].attrs.type_.as_deref(), Some("get"));
        assert!(ended);
    }

    fn header_error(h: &str) -> StreamCondition {
        feed_all(&mut framer(), h.as_bytes()).unwrap_err().condition
    }

    #[test]
    fn bad_headers() {
        assert_eq!(
            header_error("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"),
            StreamCondition::InvalidNamespace
        );
        assert_eq!(
            header_error("<foo xmlns='jabber:component:accept'>"),
            StreamCondition::InvalidNamespace
        );
        assert_eq!(
            header_error("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' xmlns:foo='urn:foo'>"),
            StreamCondition::InvalidNamespace
        );
        assert_eq!(
            header_error("<s:stream xmlns='jabber:component:accept' xmlns:s='http://etherx.jabber.org/streams'>"),
            StreamCondition::InvalidNamespace
        );
        // SPEC §4 allows either condition for a DTD.
        assert!(matches!(
            header_error("<!DOCTYPE x><stream:stream>"),
            StreamCondition::RestrictedXml | StreamCondition::NotWellFormed
        ));
        assert_eq!(header_error("<<<"), StreamCondition::NotWellFormed);
    }

    #[test]
    fn restricted_and_malformed_in_stream() {
        for (bad, cond) in [
            ("<?pi x?>", StreamCondition::RestrictedXml),
            ("<!-- c -->", StreamCondition::RestrictedXml),
            ("<message><a></b></message>", StreamCondition::NotWellFormed),
            ("<message>&foo;</message>", StreamCondition::NotWellFormed),
            ("text<", StreamCondition::BadFormat),
        ] {
            let mut f = framer();
            let err = feed_all(&mut f, format!("{HEADER}{bad}").as_bytes()).unwrap_err();
            assert_eq!(err.condition, cond, "{bad}");
        }
    }

    #[test]
    fn size_limit_in_one_read_and_in_many() {
        let big = format!("<message><body>{}</body></message>", "x".repeat(20_000));
        let mut f = framer();
        let err = feed_all(&mut f, format!("{HEADER}{big}").as_bytes()).unwrap_err();
        assert_eq!(err.condition, StreamCondition::PolicyViolation);
        let mut f = framer();
        feed_all(&mut f, HEADER.as_bytes()).unwrap();
        let mut failed = false;
        for chunk in big.as_bytes().chunks(100) {
            if let Err(e) = feed_all(&mut f, chunk) {
                assert_eq!(e.condition, StreamCondition::PolicyViolation);
                failed = true;
                break;
            }
            assert!(f.buf.len() <= 10_100);
        }
        assert!(failed);
    }

    #[test]
    fn depth_and_attribute_limits() {
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        let mut f = framer();
        let err = feed_all(
            &mut f,
            format!("{HEADER}<message>{deep}</message>").as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.condition, StreamCondition::PolicyViolation);
        let attrs: String = (0..300).map(|i| format!(" a{i}='x'")).collect();
        let mut f = framer();
        let err = feed_all(&mut f, format!("{HEADER}<message{attrs}/>").as_bytes()).unwrap_err();
        assert_eq!(err.condition, StreamCondition::PolicyViolation);
    }

    #[test]
    fn attribute_limit_is_checked_before_the_parser_collects_them() {
        let limits = Limits {
            max_stanza_size: 1 << 30,
            max_depth: 64,
            max_attributes: 3,
        };
        // Namespace declarations count; `=`, `>` and quotes inside values,
        // CDATA, text and the XML declaration do not.
        let ok = "<message xmlns:x='u' a='=>\"' b=\"'=\"><x:b y=\"1\"> a=b <![CDATA[<c d='1' e='2' f='3' g='4'>]]]]></x:b></message>";
        let mut f = Framer::new(limits);
        let frames = feed_all(&mut f, format!("{HEADER}{ok}").as_bytes()).unwrap();
        assert!(frames
            .iter()
            .any(|f| matches!(f, Frame::Stanza(s) if &s.bytes[..] == ok.as_bytes())));
        // The stanza before the offending one is still framed, byte by byte too.
        let bad: String = (0..100_000).map(|i| format!(" a{i}=''")).collect();
        let input = format!("{HEADER}{ok}<message{bad}/>");
        for chunk in [input.len(), 1, 7, 4096] {
            let mut f = Framer::new(limits);
            let mut stanzas = 0;
            let mut err = None;
            'feed: for c in input.as_bytes().chunks(chunk) {
                f.buf_mut().extend_from_slice(c);
                loop {
                    match f.next_frame() {
                        Ok(Some(Frame::Stanza(_))) => stanzas += 1,
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            err = Some(e);
                            break 'feed;
                        }
                    }
                }
            }
            assert_eq!(stanzas, 1, "chunk {chunk}");
            assert_eq!(
                err.map(|e| e.condition),
                Some(StreamCondition::PolicyViolation)
            );
            // rxml never saw more than the first four attributes.
            assert!(f.fed < HEADER.len() + ok.len() + 40, "fed {}", f.fed);
        }
        // The same on the stream header, before any authentication.
        let mut f = Framer::new(limits);
        let err = feed_all(&mut f, format!("<stream:stream{bad}>").as_bytes()).unwrap_err();
        assert_eq!(err.condition, StreamCondition::PolicyViolation);
    }

    #[test]
    fn stanza_bytes_do_not_share_the_read_buffer() {
        let mut f = framer();
        let pad = " ".repeat(60_000);
        let frames = feed_all(
            &mut f,
            format!("{HEADER}{pad}<iq type='get' to='b' from='a.example' id='1'/>{pad}").as_bytes(),
        )
        .unwrap();
        let st = frames
            .into_iter()
            .find_map(|f| match f {
                Frame::Stanza(s) => Some(s),
                _ => None,
            })
            .unwrap();
        // Not a view into the framer's read buffer, which is still alive.
        assert!(st.bytes.is_unique());
        assert!(f.buf.capacity() > 0);
    }

    #[test]
    fn handshake_text() {
        let mut f = framer();
        let frames = feed_all(
            &mut f,
            format!("{HEADER}<handshake> abc </handshake>").as_bytes(),
        )
        .unwrap();
        let s = frames
            .into_iter()
            .find_map(|f| match f {
                Frame::Stanza(s) => Some(s),
                _ => None,
            })
            .unwrap();
        assert_eq!(s.head.name, Name::Handshake);
        assert_eq!(s.text, " abc ");
        assert!(!s.has_children);
    }
}

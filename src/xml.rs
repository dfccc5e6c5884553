//! Stream framing: from the bytes a peer sends to stream headers and stanzas.
//!
//! The router never builds a DOM and never re-serialises what it forwards. A
//! hand-written scanner walks each top-level element once, checking it is
//! well-formed XML 1.0 and namespace-well-formed (names, characters, UTF-8,
//! references to the five predefined entities only, matching end tags, bound
//! prefixes, no duplicate attributes after namespace expansion), and refuses
//! DTDs, processing instructions and comments as restricted XML. Its exact byte
//! span is then copied out as one `Bytes` and forwarded as is. Only what routing
//! needs is kept: the top-level name and namespace and the `to`, `from`, `type`
//! and `id` attributes (plus the text of a `<handshake/>`), and where the
//! element's own `xmlns` value lies in its bytes ([`Stanza::xmlns_value`]) and
//! whether its name has a prefix ([`Stanza::prefixed`]), so that its default
//! namespace can be rewritten by replacing exactly that span. The per-byte work is
//! in [`lex`]; this module keeps the element stack and the namespace scope,
//! both in buffers reused from stanza to stanza, so a stanza costs no
//! allocation beyond its `Bytes` and its routing attributes.
//!
//! Input arrives in pieces. Character data is checked as far as it can be and
//! markup is read only once its end has arrived; the search for that end
//! resumes where it stopped, so no byte is scanned twice however small the
//! reads. Limits are checked while searching: a start tag with more than
//! `max_attributes` attributes fails when the one too many is seen, and any
//! element fails once its bytes pass `max_stanza_size`, whether complete or not.
//!
//! A stanza's bytes are copied out of the read buffer: a slice would keep the
//! whole read allocation (up to 64 KiB) alive while the stanza sits in a queue,
//! memory that the queues' byte bounds do not see.
//!
//! Stream headers may declare no namespace prefix but `stream`: with any other
//! prefix bound on the stream, a stanza could use it and its forwarded bytes would
//! carry an unbound prefix into the receiving stream. Such headers get
//! `invalid-namespace` (documented in the README).

mod lex;

use bytes::{Buf, Bytes, BytesMut};
use lex::{nwf, restricted, Collect, QName, MAX_TOKEN};

use crate::stanza::StreamCondition;

pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub const NS_COMPONENT: &str = "jabber:component:accept";
pub const NS_CLIENT: &str = "jabber:client";

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
    pub to: Option<Value>,
    pub from: Option<Value>,
    pub type_: Option<Value>,
    pub id: Option<Value>,
}

/// The logical value of an attribute. Written plainly (no references, no
/// whitespace that normalisation would change), it is a slice of the stanza's
/// own bytes and costs no allocation; otherwise it holds the decoded text.
#[derive(Clone)]
pub struct Value(ValueRepr);

#[derive(Clone)]
enum ValueRepr {
    /// Bytes the framer checked to be UTF-8.
    Shared(Bytes),
    Owned(Box<str>),
}

impl Value {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // The framer only makes a `Shared` value of bytes it checked as UTF-8.
            ValueRepr::Shared(b) => std::str::from_utf8(b).unwrap_or_default(),
            ValueRepr::Owned(s) => s,
        }
    }
}

impl std::ops::Deref for Value {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Value {}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value(ValueRepr::Owned(s.into_boxed_str()))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value(ValueRepr::Owned(s.into()))
    }
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
    /// Where in `bytes` the value of this element's own `xmlns` attribute lies:
    /// the bytes between its quotes, as written (references not expanded),
    /// wherever the attribute sits and however it is quoted or spaced. `None`
    /// when the element declares no default namespace. Replacing exactly this
    /// span rewrites the default namespace and changes no other byte.
    pub xmlns_value: Option<std::ops::Range<usize>>,
    /// The element's name has a prefix (`<c:message xmlns:c='jabber:client'>`):
    /// `head.ns` was reached through that prefix, not the default namespace.
    pub prefixed: bool,
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

/// The top-level element being read.
struct Current {
    /// Offset in `buf` of its `<`.
    start: usize,
    head: Head,
    /// The routing attributes: `to`, `from`, `type`, `id`.
    attrs: [Pending; 4],
    /// Text of a `<handshake/>`.
    text: Option<Collect>,
    has_children: bool,
    first_child: Option<String>,
    /// Offsets of its `xmlns` value from its start.
    xmlns_value: Option<(u32, u32)>,
    prefixed: bool,
}

/// A routing attribute of the element being read, until its bytes are complete.
#[derive(Debug, Default)]
enum Pending {
    #[default]
    Absent,
    /// Written plainly: offsets of the value from the element's start.
    Plain(u32, u32),
    Decoded(Box<str>),
}

impl Pending {
    fn value(self, bytes: &Bytes) -> Option<Value> {
        match self {
            Pending::Absent => None,
            Pending::Plain(s, l) => Some(Value(ValueRepr::Shared(
                bytes.slice(s as usize..(s + l) as usize),
            ))),
            Pending::Decoded(v) => Some(Value(ValueRepr::Owned(v))),
        }
    }
}

/// A namespace URI, as found: built in, or an attribute value inside the
/// current top-level element (offsets from its start).
#[derive(Clone, Copy, Debug)]
enum Uri {
    Static(&'static str),
    At { start: u32, len: u32, plain: bool },
}

/// A prefix declared inside the current top-level element.
#[derive(Clone, Copy, Debug)]
struct Decl {
    /// Depth of the element that declared it.
    depth: u32,
    prefix_start: u32,
    prefix_len: u32,
    uri: Uri,
}

/// One attribute of the tag being read (offsets from the tag's `<`).
#[derive(Clone, Copy, Debug)]
struct AttrTok {
    name_start: u32,
    name: QName,
    value_start: u32,
    value_len: u32,
    plain: bool,
    /// Namespace of a prefixed attribute, once resolved.
    uri: Option<Uri>,
}

/// Where reading a start tag stopped when its bytes ran out: it resumes there,
/// so a tag that arrives in many reads is still read once.
#[derive(Debug, Default, Clone, Copy)]
struct TagLex {
    /// Offset from the tag's `<` to go on at (0: a new tag).
    at: usize,
    state: TagState,
    /// The element's name, once read.
    name: Option<QName>,
    /// Start of the attribute being read, its name once read, and its value's start.
    attr_start: usize,
    attr_name: Option<QName>,
    value_start: usize,
    quote: u8,
    plain: bool,
    /// Whitespace since the last name or value (attributes must be separated).
    ws: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum TagState {
    #[default]
    Name,
    /// After the name or an attribute: whitespace, an attribute, `/` or `>`.
    Between,
    /// After `/`: only `>`.
    Slash,
    AttrName,
    /// After an attribute's name: whitespace, then `=`.
    BeforeEq,
    /// After `=`: whitespace, then a quote.
    AfterEq,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing read yet: an XML declaration may come.
    Start,
    /// Before the stream header.
    Prolog,
    /// Inside the stream.
    Stream,
    Ended,
}

/// A frame owed to the caller without reading further.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Owed {
    #[default]
    Nothing,
    /// A top-level element closed itself (`<iq/>`): its `Stanza` after its `Start`.
    Stanza,
    /// The stream header closed itself.
    End,
}

/// What one step over markup produced.
// A frame is moved, not boxed: boxing would cost an allocation per stanza.
#[allow(clippy::large_enum_variant)]
enum Step {
    Frame(Frame),
    Continue,
    /// The markup at `pos` has not fully arrived.
    More,
}

/// Incremental framer for one inbound XML stream.
pub struct Framer {
    buf: BytesMut,
    /// Bytes of `buf` checked and accounted for.
    pos: usize,
    /// Where the search for the end of the markup at `pos` goes on (0: start over).
    resume: usize,
    tag: TagLex,
    /// Open elements, the stream root included.
    depth: usize,
    phase: Phase,
    owed: Owed,
    cur: Option<Current>,
    /// Qualified names of the open elements of the current top-level element
    /// (offset from its start, length), for matching end tags.
    open: Vec<(u32, u32)>,
    /// Prefixes declared inside the current top-level element, innermost last.
    decls: Vec<Decl>,
    /// Scratch for the attributes of one tag.
    attrs: Vec<AttrTok>,
    limits: Limits,
}

const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";
const STREAM_ROOT: &[u8] = b"stream:stream";

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            buf: BytesMut::new(),
            pos: 0,
            resume: 0,
            tag: TagLex::default(),
            depth: 0,
            phase: Phase::Start,
            owed: Owed::Nothing,
            cur: None,
            open: Vec::new(),
            decls: Vec::new(),
            attrs: Vec::new(),
            limits,
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

    /// Drop buffers held by an idle stream, so an idle connection costs little memory.
    pub fn shrink(&mut self) {
        if self.buf.is_empty() && self.cur.is_none() {
            self.buf = BytesMut::new();
            self.pos = 0;
            self.resume = 0;
            self.open = Vec::new();
            self.decls = Vec::new();
            self.attrs = Vec::new();
        }
    }

    /// The next frame from the bytes buffered so far; `Ok(None)` when more bytes
    /// are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        match std::mem::take(&mut self.owed) {
            Owed::Nothing => {}
            Owed::Stanza => return Ok(Some(self.finish_stanza())),
            Owed::End => {
                self.phase = Phase::Ended;
                return Ok(Some(Frame::End));
            }
        }
        if self.phase == Phase::Ended {
            return Ok(None);
        }
        loop {
            let Some(&first) = self.buf.get(self.pos) else {
                self.compact();
                return Ok(None);
            };
            if first != b'<' {
                if !self.char_data()? {
                    self.check_pending()?;
                    self.compact();
                    return Ok(None);
                }
                continue;
            }
            match self.markup()? {
                Step::Frame(f) => return Ok(Some(f)),
                Step::Continue => {}
                Step::More => {
                    self.check_pending()?;
                    self.compact();
                    return Ok(None);
                }
            }
        }
    }

    /// Where the bytes not yet handed out start: the open top-level element,
    /// else the next unread byte.
    fn pending_start(&self) -> usize {
        self.cur.as_ref().map_or(self.pos, |c| c.start)
    }

    /// End of the bytes that may be examined: no further than one byte past
    /// `max_stanza_size` from the start of the pending element, so that an
    /// element over the limit fails as such (in [`Framer::check_pending`]) and
    /// not on whatever error lies beyond the limit.
    fn visible_end(&self) -> usize {
        let start = self.pending_start();
        self.buf.len().min(
            start
                .saturating_add(self.limits.max_stanza_size)
                .saturating_add(1),
        )
    }

    /// Check the character data at `pos` (up to the next `<`); whether any
    /// progress was made.
    fn char_data(&mut self) -> Result<bool, FrameError> {
        let rest = &self.buf[self.pos..self.visible_end()];
        let (t, last) = match memchr::memchr(b'<', rest) {
            Some(e) => (&rest[..e], true),
            None => (rest, false),
        };
        let collect = match (&mut self.cur, self.depth) {
            (Some(c), 2) => c.text.as_mut(),
            _ => None,
        };
        let ws_only: Option<fn() -> FrameError> = match self.phase {
            Phase::Start | Phase::Prolog => Some(|| nwf("character data before the stream header")),
            _ if self.depth <= 1 => Some(between_stanzas),
            _ => None,
        };
        let consumed = lex::text(t, lex::Chars::Text, last, collect, ws_only)?;
        if matches!(self.phase, Phase::Start) && consumed > 0 {
            self.phase = Phase::Prolog;
        }
        self.pos += consumed;
        self.check_size()?;
        Ok(consumed > 0)
    }

    /// Read the markup at `pos` (`buf[pos] == b'<'`).
    fn markup(&mut self) -> Result<Step, FrameError> {
        let rest = &self.buf[self.pos..self.visible_end()];
        let Some(&b1) = rest.get(1) else {
            return Ok(Step::More);
        };
        match b1 {
            b'/' => self.end_tag(),
            b'!' => self.bang(),
            b'?' => self.question(),
            _ => self.start_tag(),
        }
    }

    /// `<?`: the XML declaration at the very start, else a processing instruction.
    fn question(&mut self) -> Result<Step, FrameError> {
        let rest = &self.buf[self.pos..self.visible_end()];
        if self.phase == Phase::Start {
            let n = rest.len().min(6);
            if rest[..n] == b"<?xml "[..n]
                || (n == 6 && rest.starts_with(b"<?xml") && lex::is_ws(rest[5]))
            {
                if n < 6 {
                    return Ok(Step::More);
                }
                // No `>` can appear in a declaration but in its closing `?>`, and
                // only a few kinds of byte at all: garbage fails at once.
                let body = &rest[5..];
                let e = memchr::memchr(b'>', body);
                let junk = body[..e.unwrap_or(body.len())]
                    .iter()
                    .any(|&b| !(b.is_ascii_alphanumeric() || b"?='\" ._-\t\r\n".contains(&b)));
                if junk {
                    return Err(nwf("malformed XML declaration"));
                }
                let Some(e) = e else {
                    if rest.len() > 256 {
                        return Err(nwf("malformed XML declaration"));
                    }
                    return Ok(Step::More);
                };
                if e == 0 || body[e - 1] != b'?' {
                    return Err(nwf("malformed XML declaration"));
                }
                lex::xml_decl(&body[..e - 1])?;
                self.pos += 5 + e + 1;
                self.phase = Phase::Prolog;
                return Ok(Step::Continue);
            }
        }
        Err(restricted("processing instruction"))
    }

    /// `<!`: a CDATA section inside a stanza; comments and DTDs are refused.
    fn bang(&mut self) -> Result<Step, FrameError> {
        const OPEN: &[u8] = b"<![CDATA[";
        let rest = &self.buf[self.pos..self.visible_end()];
        match rest.get(2) {
            None => return Ok(Step::More),
            Some(b'[') => {}
            Some(b'-') => return Err(restricted("comment")),
            Some(_) => return Err(restricted("document type or markup declaration")),
        }
        let n = rest.len().min(OPEN.len());
        if rest[..n] != OPEN[..n] {
            return Err(nwf("malformed CDATA section"));
        }
        if n < OPEN.len() {
            return Ok(Step::More);
        }
        if matches!(self.phase, Phase::Start | Phase::Prolog) {
            return Err(nwf("CDATA section before the stream header"));
        }
        // Content is checked as it arrives, up to where a `]]>` could begin.
        let content = self.pos + OPEN.len();
        let checked = self.resume.max(content);
        let end = self.pos + rest.len();
        let search_from = checked.saturating_sub(2).max(content);
        let found =
            memchr::memmem::find(&self.buf[search_from..end], b"]]>").map(|e| search_from + e);
        let (upto, last) = match found {
            Some(e) => (e, true),
            None => {
                // Hold back only a `]` or `]]` that may begin the `]]>`.
                let tail = &self.buf[checked..end];
                let hold = if tail.ends_with(b"]]") {
                    2
                } else {
                    usize::from(tail.ends_with(b"]"))
                };
                (end - hold, false)
            }
        };
        let collect = match (&mut self.cur, self.depth) {
            (Some(c), 2) => c.text.as_mut(),
            _ => None,
        };
        let ws_only: Option<fn() -> FrameError> = (self.depth <= 1).then_some(between_stanzas);
        let n = lex::text(
            &self.buf[checked..upto],
            lex::Chars::Cdata,
            last,
            collect,
            ws_only,
        )?;
        let Some(e) = found else {
            self.resume = checked + n;
            return Ok(Step::More);
        };
        self.resume = 0;
        self.pos = e + 3;
        self.check_size()?;
        Ok(Step::Continue)
    }

    fn start_tag(&mut self) -> Result<Step, FrameError> {
        let tag_start = self.pos;
        let Some((end, name, self_closing)) = lex_tag(
            &self.buf[tag_start..self.visible_end()],
            &mut self.tag,
            &mut self.attrs,
            self.limits.max_attributes,
        )?
        else {
            return Ok(Step::More);
        };
        self.tag = TagLex::default();
        let end = tag_start + end;
        match self.phase {
            Phase::Start | Phase::Prolog => return self.header(end, name, self_closing),
            Phase::Stream => {}
            Phase::Ended => return Ok(Step::More),
        }
        let depth = self.depth + 1;
        if depth == 2 {
            self.cur = Some(Current {
                start: tag_start,
                head: Head {
                    name: Name::Other,
                    ns: Ns::Other,
                },
                attrs: Default::default(),
                text: None,
                has_children: false,
                first_child: None,
                xmlns_value: None,
                prefixed: false,
            });
            self.open.clear();
            self.decls.clear();
        }
        let Some(cur) = self.cur.as_mut() else {
            return Err(nwf("element outside the stream"));
        };
        let base = cur.start;
        let rel = (tag_start - base) as u32;
        let elem_ns = resolve(
            &self.buf[base..],
            rel,
            depth as u32,
            name,
            &mut self.attrs,
            &mut self.decls,
            true,
        )?;
        if depth > 2 && depth - 1 > self.limits.max_depth {
            return Err(FrameError::new(
                StreamCondition::PolicyViolation,
                format!("elements nested deeper than {}", self.limits.max_depth),
            ));
        }
        let tag = &self.buf[tag_start..=end];
        let qname = &tag[1..1 + name.len];
        self.depth = depth;
        self.pos = end + 1;
        if depth == 2 {
            let head = Head {
                name: classify_name(name.local(qname)),
                ns: classify_ns(elem_ns, &self.buf[base..]),
            };
            let mut attrs: [Pending; 4] = Default::default();
            for a in self.attrs.iter().filter(|a| a.name.colon.is_none()) {
                let slot = match a.name_bytes(tag) {
                    b"to" => 0,
                    b"from" => 1,
                    b"type" => 2,
                    b"id" => 3,
                    _ => continue,
                };
                attrs[slot] = if a.plain {
                    Pending::Plain(rel + a.value_start, a.value_len)
                } else {
                    Pending::Decoded(lex::decode_attr(a.value(tag), false).into())
                };
            }
            cur.head = head;
            cur.attrs = attrs;
            cur.prefixed = name.colon.is_some();
            cur.xmlns_value = self
                .attrs
                .iter()
                .find(|a| a.name_bytes(tag) == b"xmlns")
                .map(|a| (rel + a.value_start, a.value_len));
            if head.name == Name::Handshake {
                cur.text = Some(Collect {
                    cap: MAX_HANDSHAKE_TEXT,
                    ..Collect::default()
                });
            }
            if self_closing {
                self.owed = Owed::Stanza;
            } else {
                self.open.push((rel + 1, name.len as u32));
            }
            self.check_size()?;
            return Ok(Step::Frame(Frame::Start(head)));
        }
        if !cur.has_children && depth == 3 && cur.head.name == Name::Error {
            cur.first_child = Some(String::from_utf8_lossy(name.local(qname)).into_owned());
        }
        cur.has_children = true;
        if self_closing {
            self.close_element();
        } else {
            self.open.push((rel + 1, name.len as u32));
        }
        self.check_size()?;
        Ok(Step::Continue)
    }

    /// The stream header: the root element's start tag.
    fn header(&mut self, end: usize, name: QName, self_closing: bool) -> Result<Step, FrameError> {
        let tag = &self.buf[self.pos..=end];
        self.decls.clear();
        let ns = resolve(tag, 0, 1, name, &mut self.attrs, &mut self.decls, false)?;
        let qname = &tag[1..1 + name.len];
        let in_streams = matches!(ns, Some(u) if uri_is(u, tag, NS_STREAMS));
        if !in_streams || name.local(qname) != b"stream" {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                "first element is not <stream:stream/> in http://etherx.jabber.org/streams",
            ));
        }
        let mut default = None;
        let mut other_prefix = None;
        let mut header = StreamHeader {
            to: None,
            version: None,
            id: None,
            from: None,
        };
        for a in &self.attrs {
            let n = a.name_bytes(tag);
            let value = || lex::decode_attr(a.value(tag), a.plain).into_owned();
            match a.name.prefix(n) {
                None if n == b"xmlns" => default = Some(value()),
                Some(b"xmlns") if a.name.local(n) != b"stream" => {
                    other_prefix = Some(String::from_utf8_lossy(a.name.local(n)).into_owned())
                }
                None => match n {
                    b"to" => header.to = Some(value()),
                    b"version" => header.version = Some(value()),
                    b"id" => header.id = Some(value()),
                    b"from" => header.from = Some(value()),
                    _ => {}
                },
                _ => {}
            }
        }
        if default.as_deref() != Some(NS_COMPONENT) {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                format!(
                    "default namespace is {:?}, not jabber:component:accept",
                    default.unwrap_or_default()
                ),
            ));
        }
        if let Some(p) = other_prefix {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                format!("stream header declares prefix {p:?}; only 'stream' is supported"),
            ));
        }
        self.decls.clear();
        self.depth = 1;
        self.phase = Phase::Stream;
        self.pos = end + 1;
        // Nothing before the first stanza is ever forwarded.
        self.consume(self.pos);
        if self_closing {
            self.owed = Owed::End;
        }
        Ok(Step::Frame(Frame::Header(header)))
    }

    fn end_tag(&mut self) -> Result<Step, FrameError> {
        let from = self.resume.max(self.pos + 2);
        let visible = self.visible_end();
        let Some(e) = memchr::memchr(b'>', &self.buf[from.min(visible)..visible]) else {
            self.resume = visible;
            if visible - self.pos > MAX_TOKEN + 3 {
                return Err(lex::too_long());
            }
            // What has come must be the start of a name and whitespace.
            let so_far = &self.buf[self.pos + 2..visible];
            if let Some(name) = lex::qname(so_far)? {
                self.check_end_name(&so_far[..name.len])?;
                if lex::skip_ws(&so_far[name.len..]) != so_far.len() - name.len {
                    return Err(nwf("malformed end tag"));
                }
            }
            return Ok(Step::More);
        };
        self.resume = 0;
        let end = from + e;
        // The same bound whether or not the `>` came in the same read.
        if end - self.pos > MAX_TOKEN + 3 {
            return Err(lex::too_long());
        }
        let tag = &self.buf[self.pos..=end];
        let Some(name) = lex::qname(&tag[2..])? else {
            return Err(nwf("malformed end tag"));
        };
        let after = 2 + name.len;
        self.check_end_name(&tag[2..after])?;
        if after + lex::skip_ws(&tag[after..]) != tag.len() - 1 {
            return Err(nwf("malformed end tag"));
        }
        if self.depth == 1 {
            self.depth = 0;
            self.pos = end + 1;
            self.phase = Phase::Ended;
            return Ok(Step::Frame(Frame::End));
        }
        self.open.pop();
        self.pos = end + 1;
        self.check_size()?;
        if self.depth == 2 {
            self.depth = 1;
            return Ok(Step::Frame(self.finish_stanza()));
        }
        self.close_element();
        Ok(Step::Continue)
    }

    /// Whether `qname` names the element an end tag may close now.
    fn check_end_name(&self, qname: &[u8]) -> Result<(), FrameError> {
        let matches = match self.depth {
            0 => return Err(nwf("end tag before the stream header")),
            1 => qname == STREAM_ROOT,
            _ => match (self.open.last(), &self.cur) {
                (Some(&(s, l)), Some(c)) => {
                    let s = c.start + s as usize;
                    self.buf[s..s + l as usize] == *qname
                }
                _ => false,
            },
        };
        if !matches {
            return Err(nwf("end tag does not match the start tag"));
        }
        Ok(())
    }

    /// Leave an element below the top level: its declarations go out of scope.
    fn close_element(&mut self) {
        let d = self.depth as u32;
        while self.decls.last().is_some_and(|x| x.depth >= d) {
            self.decls.pop();
        }
        self.depth -= 1;
    }

    fn finish_stanza(&mut self) -> Frame {
        self.depth = 1;
        let Some(cur) = self.cur.take() else {
            // Unreachable: only called with a top-level element open.
            return Frame::End;
        };
        let bytes = Bytes::copy_from_slice(&self.buf[cur.start..self.pos]);
        self.consume(self.pos);
        self.decls.clear();
        self.open.clear();
        let (text, overflow) = match cur.text {
            // Too long to be a handshake: nothing of it is kept.
            Some(c) if c.overflow => (String::new(), true),
            Some(c) => (c.text, false),
            None => (String::new(), false),
        };
        let [to, from, type_, id] = cur.attrs;
        let attrs = Attrs {
            to: to.value(&bytes),
            from: from.value(&bytes),
            type_: type_.value(&bytes),
            id: id.value(&bytes),
        };
        Frame::Stanza(Stanza {
            head: cur.head,
            attrs,
            bytes,
            text,
            // An overlong handshake text is treated like one with children: invalid.
            has_children: cur.has_children || overflow,
            first_child: cur.first_child,
            xmlns_value: cur.xmlns_value.map(|(s, l)| s as usize..(s + l) as usize),
            prefixed: cur.prefixed,
        })
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

    /// Bytes held but not yet part of finished markup: bounded by the stanza size
    /// limit, so no read can grow the buffer without end.
    fn check_pending(&self) -> Result<(), FrameError> {
        let start = self.pending_start();
        if self.buf.len() - start > self.limits.max_stanza_size {
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
        let keep_from = self.pending_start();
        if keep_from > 0 {
            self.consume(keep_from);
        }
    }

    /// Drop the first `n` bytes of `buf` (all checked and accounted for).
    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.pos -= n;
        self.resume = self.resume.saturating_sub(n);
        if let Some(c) = self.cur.as_mut() {
            c.start -= n;
        }
    }
}

impl AttrTok {
    fn name_bytes<'t>(&self, tag: &'t [u8]) -> &'t [u8] {
        let s = self.name_start as usize;
        &tag[s..s + self.name.len]
    }
    fn value<'t>(&self, tag: &'t [u8]) -> &'t [u8] {
        let s = self.value_start as usize;
        &tag[s..s + self.value_len as usize]
    }
}

/// Read the start tag at the start of `t` (`t[0] == b'<'`), going on from where
/// `lx` stopped: its `>` (offset in `t`), name and whether it closes itself,
/// with its attributes in `attrs`; `None` when `t` ends first. The attribute
/// count is checked at each attribute's `=`, so a tag with too many fails
/// before the rest of it is read.
fn lex_tag(
    t: &[u8],
    lx: &mut TagLex,
    attrs: &mut Vec<AttrTok>,
    max_attributes: usize,
) -> Result<Option<(usize, QName, bool)>, FrameError> {
    use TagState::*;
    if lx.at == 0 {
        *lx = TagLex {
            at: 1,
            ..TagLex::default()
        };
        attrs.clear();
    }
    let mut i = lx.at;
    loop {
        match lx.state {
            Name => match lex::qname(&t[1..])? {
                None => break,
                Some(q) => {
                    lx.name = Some(q);
                    i = 1 + q.len;
                    lx.state = Between;
                    lx.ws = false;
                }
            },
            Between => {
                let w = lex::skip_ws(&t[i..]);
                lx.ws |= w > 0;
                i += w;
                let Some(&b) = t.get(i) else {
                    break;
                };
                match b {
                    b'>' => return Ok(lx.name.map(|n| (i, n, false))),
                    b'/' => {
                        i += 1;
                        lx.state = Slash;
                    }
                    _ if !lx.ws => return Err(nwf("malformed start tag")),
                    _ => {
                        lx.attr_start = i;
                        lx.state = AttrName;
                    }
                }
            }
            Slash => match t.get(i) {
                None => break,
                Some(b'>') => return Ok(lx.name.map(|n| (i, n, true))),
                Some(_) => return Err(nwf("'/' not followed by '>' in a start tag")),
            },
            AttrName => match lex::qname(&t[lx.attr_start..])? {
                None => break,
                Some(q) => {
                    lx.attr_name = Some(q);
                    i = lx.attr_start + q.len;
                    lx.state = BeforeEq;
                }
            },
            BeforeEq => {
                i += lex::skip_ws(&t[i..]);
                match t.get(i) {
                    None => break,
                    Some(b'=') => {
                        if attrs.len() >= max_attributes {
                            return Err(too_many_attributes(max_attributes));
                        }
                        i += 1;
                        lx.state = AfterEq;
                    }
                    Some(_) => return Err(nwf("attribute without '='")),
                }
            }
            AfterEq => {
                i += lex::skip_ws(&t[i..]);
                match t.get(i) {
                    None => break,
                    Some(&q @ (b'\'' | b'"')) => {
                        lx.quote = q;
                        lx.plain = true;
                        i += 1;
                        lx.value_start = i;
                        lx.state = Value;
                    }
                    Some(_) => return Err(nwf("attribute value not quoted")),
                }
            }
            Value => {
                let v = &t[lx.value_start..];
                match lex::value(v, i - lx.value_start, lx.quote, &mut lx.plain)? {
                    Err(at) => {
                        i = lx.value_start + at;
                        break;
                    }
                    Ok(len) => {
                        let Some(name) = lx.attr_name else {
                            return Err(nwf("malformed start tag"));
                        };
                        // The same name twice; the same expanded name under two
                        // prefixes is found once the tag's declarations are known.
                        let this = &t[lx.attr_start..lx.attr_start + name.len];
                        if attrs.iter().any(|a| a.name_bytes(t) == this) {
                            return Err(nwf("duplicate attribute"));
                        }
                        if this.starts_with(b"xmlns") {
                            let v = &t[lx.value_start..lx.value_start + len];
                            check_declaration(name, this, &lex::decode_attr(v, lx.plain))?;
                        }
                        attrs.push(AttrTok {
                            name_start: lx.attr_start as u32,
                            name,
                            value_start: lx.value_start as u32,
                            value_len: len as u32,
                            plain: lx.plain,
                            uri: None,
                        });
                        i = lx.value_start + len + 1;
                        lx.state = Between;
                        lx.ws = false;
                    }
                }
            }
        }
    }
    lx.at = i;
    Ok(None)
}

/// The constraints of Namespaces in XML 1.0 on a declaration by itself
/// (section 3): the reserved prefixes and namespaces, and no undeclaring.
/// `n` is the attribute's name; anything but `xmlns` and `xmlns:*` passes.
fn check_declaration(name: QName, n: &[u8], value: &str) -> Result<(), FrameError> {
    let reserved = value == NS_XML || value == NS_XMLNS;
    match name.prefix(n) {
        None if n == b"xmlns" && reserved => {
            return Err(nwf("default namespace bound to a reserved namespace"));
        }
        Some(b"xmlns") => match name.local(n) {
            b"xmlns" => return Err(nwf("the xmlns prefix declared")),
            b"xml" if value != NS_XML => {
                return Err(nwf("the xml prefix bound to another namespace"))
            }
            b"xml" => {}
            _ if value.is_empty() => {
                return Err(nwf("a prefix undeclared (not allowed in XML 1.0)"))
            }
            _ if reserved => return Err(nwf("a prefix bound to a reserved namespace")),
            _ => {}
        },
        _ => {}
    }
    Ok(())
}

/// Apply Namespaces in XML to one start tag: record its declarations in
/// `decls`, check every prefix is bound and no two prefixed attributes share
/// an expanded name (the same name twice and the declarations' own
/// constraints were checked as the tag was read). `base` holds the bytes the offsets in `decls` and `rel` (the
/// tag's `<`) count from. The element's namespace comes back, `None` for an
/// unprefixed element without a default declared here (the caller knows the
/// inherited default). `stream_bound`: the stream header bound `stream`.
fn resolve(
    base: &[u8],
    rel: u32,
    depth: u32,
    name: QName,
    attrs: &mut [AttrTok],
    decls: &mut Vec<Decl>,
    stream_bound: bool,
) -> Result<Option<Uri>, FrameError> {
    let tag = &base[rel as usize..];
    let mut default = None;
    for a in attrs.iter() {
        let n = a.name_bytes(tag);
        let is_default = n == b"xmlns";
        let prefix = a.name.prefix(n);
        if !is_default && prefix != Some(b"xmlns") {
            continue;
        }
        let uri = Uri::At {
            start: rel + a.value_start,
            len: a.value_len,
            plain: a.plain,
        };
        if is_default {
            default = Some(uri);
            continue;
        }
        // `xmlns:xml` (checked in `check_declaration`) binds what is built in.
        if a.name.local(n) == b"xml" {
            continue;
        }
        decls.push(Decl {
            depth,
            prefix_start: rel + a.name_start + 6,
            prefix_len: (a.name.len - 6) as u32,
            uri,
        });
    }
    let lookup = |decls: &[Decl], p: &[u8]| -> Option<Uri> {
        for d in decls.iter().rev() {
            let s = d.prefix_start as usize;
            if &base[s..s + d.prefix_len as usize] == p {
                return Some(d.uri);
            }
        }
        match p {
            b"xml" => Some(Uri::Static(NS_XML)),
            b"stream" if stream_bound => Some(Uri::Static(NS_STREAMS)),
            _ => None,
        }
    };
    let qn = &tag[1..1 + name.len];
    let elem = match name.prefix(qn) {
        Some(b"xmlns") => return Err(nwf("an element with the xmlns prefix")),
        Some(p) => match lookup(decls, p) {
            Some(u) => Some(u),
            None => return Err(nwf("an element with an undeclared prefix")),
        },
        None => default,
    };
    for a in attrs.iter_mut() {
        let n = a.name_bytes(tag);
        match a.name.prefix(n) {
            None | Some(b"xmlns") => {}
            Some(p) => match lookup(decls, p) {
                Some(u) => a.uri = Some(u),
                None => return Err(nwf("an attribute with an undeclared prefix")),
            },
        }
    }
    for (i, a) in attrs.iter().enumerate() {
        let an = a.name_bytes(tag);
        for b in &attrs[..i] {
            let bn = b.name_bytes(tag);
            if let (Some(ua), Some(ub)) = (a.uri, b.uri) {
                if a.name.local(an) == b.name.local(bn) && uri_eq(ua, ub, base) {
                    return Err(nwf("duplicate attribute (same namespace and name)"));
                }
            }
        }
    }
    Ok(elem)
}

fn uri_value(u: Uri, base: &[u8]) -> std::borrow::Cow<'_, str> {
    match u {
        Uri::Static(s) => std::borrow::Cow::Borrowed(s),
        Uri::At { start, len, plain } => {
            let s = start as usize;
            lex::decode_attr(&base[s..s + len as usize], plain)
        }
    }
}

fn uri_is(u: Uri, base: &[u8], ns: &str) -> bool {
    match u {
        Uri::At {
            start,
            len,
            plain: true,
        } => {
            let s = start as usize;
            &base[s..s + len as usize] == ns.as_bytes()
        }
        _ => uri_value(u, base) == ns,
    }
}

fn uri_eq(a: Uri, b: Uri, base: &[u8]) -> bool {
    uri_value(a, base) == uri_value(b, base)
}

fn classify_name(name: &[u8]) -> Name {
    match name {
        b"message" => Name::Message,
        b"presence" => Name::Presence,
        b"iq" => Name::Iq,
        b"handshake" => Name::Handshake,
        b"error" => Name::Error,
        _ => Name::Other,
    }
}

/// Namespace of a top-level element: declared on it, or the stream's default.
fn classify_ns(ns: Option<Uri>, base: &[u8]) -> Ns {
    let Some(u) = ns else {
        return Ns::Component;
    };
    if uri_is(u, base, NS_COMPONENT) {
        Ns::Component
    } else if uri_is(u, base, NS_CLIENT) {
        Ns::Client
    } else if uri_is(u, base, NS_STREAMS) {
        Ns::Streams
    } else {
        Ns::Other
    }
}

/// Between stanzas only whitespace (a keepalive) is allowed.
fn between_stanzas() -> FrameError {
    FrameError::new(StreamCondition::BadFormat, "character data between stanzas")
}

fn too_many_attributes(max: usize) -> FrameError {
    FrameError::new(
        StreamCondition::PolicyViolation,
        format!("more than {max} attributes on one element"),
    )
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
        // The offending tag never ends: it must fail on the attribute too many.
        let input = format!("{HEADER}{ok}<message{bad}");
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
            format!("{HEADER}{pad}<iq type='get' to='b' from='a.example' id='1'/>{pad}<mess")
                .as_bytes(),
        )
        .unwrap();
        let st = frames
            .into_iter()
            .find_map(|f| match f {
                Frame::Stanza(s) => Some(s),
                _ => None,
            })
            .unwrap();
        // The routing attributes are views into the stanza's own bytes...
        assert_eq!(st.attrs.to.as_deref(), Some("b"));
        let Stanza { bytes, attrs, .. } = st;
        assert!(!bytes.is_unique());
        drop(attrs);
        // ...which are not a view into the framer's read buffer, still alive.
        assert!(bytes.is_unique());
        assert!(f.buf.capacity() > 0);
    }

    /// Found by fuzzing (framer_diff): each of these is wrong before its markup
    /// ends, and must fail at once, the same in one read or byte by byte.
    #[test]
    fn faults_are_reported_before_the_markup_ends() {
        for bad in [
            &b"<message><![CDATA[ab\x01cd"[..],
            b"<message>&xy",
            b"<message>&#99999999",
            b"<message>&a\xC3",
            b"<message></mess ",
            b"<message a='1'b",
        ] {
            for chunk in [usize::MAX, 1] {
                let mut f = framer();
                let mut data = HEADER.as_bytes().to_vec();
                data.extend_from_slice(bad);
                let mut err = None;
                for c in data.chunks(chunk.min(data.len())) {
                    if let Err(e) = feed_all(&mut f, c) {
                        err = Some(e.condition);
                        break;
                    }
                }
                assert_eq!(
                    err,
                    Some(StreamCondition::NotWellFormed),
                    "{} in chunks of {chunk}",
                    bad.escape_ascii()
                );
            }
        }
        // A junk byte in an unfinished XML declaration.
        let mut f = framer();
        let err = feed_all(&mut f, b"<?xml version='1.0' encoding='f'\x00").unwrap_err();
        assert_eq!(err.condition, StreamCondition::NotWellFormed);
    }

    /// Frames `data` after the header in chunks of `chunk` bytes; the stanzas.
    fn stanzas_in_chunks(data: &[u8], chunk: usize, limits: Limits) -> Vec<Stanza> {
        let mut f = Framer::new(limits);
        feed_all(&mut f, HEADER.as_bytes()).unwrap();
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            for fr in feed_all(&mut f, c).unwrap() {
                if let Frame::Stanza(s) = fr {
                    out.push(s);
                }
            }
        }
        out
    }

    #[test]
    fn default_namespace_value_span() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("<message xmlns='jabber:client' to='b'/>", Some("jabber:client"), false),
            // After a value holding `>` and a double-quoted look-alike.
            (
                "<message id=\"xmlns='jabber:client'\" a='>' xmlns = \"jabber:client\"><body/></message>",
                Some("jabber:client"),
                false,
            ),
            ("<message xmlns\n=\t'jabber&#58;client'/>", Some("jabber&#58;client"), false),
            ("<message to='b'><x xmlns='jabber:client'/></message>", None, false),
            ("<c:message xmlns:c='jabber:client' to='b'/>", None, true),
            ("<c:message xmlns:c='jabber:client' xmlns='urn:x'/>", Some("urn:x"), true),
        ];
        for &(st, want, prefixed) in cases {
            for chunk in [usize::MAX, 1, 3] {
                let got = stanzas_in_chunks(st.as_bytes(), chunk, Limits::new(10_000));
                let s = &got[0];
                assert_eq!(&s.bytes[..], st.as_bytes());
                let span = s.xmlns_value.clone().map(|r| &st[r]);
                assert_eq!(span, want, "{st} in chunks of {chunk}");
                assert_eq!(s.prefixed, prefixed, "{st}");
            }
        }
        let st = stanzas_in_chunks(
            b"<c:message xmlns:c='jabber:client'/>",
            5,
            Limits::new(10_000),
        );
        assert_eq!(st[0].head.ns, Ns::Client);
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

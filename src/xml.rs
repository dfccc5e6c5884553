//! Stream framing: from the bytes a peer sends to stream headers and stanzas.
//!
//! The router never builds a DOM and never re-serialises what it forwards. A
//! hand-written scanner walks each top-level element once, checking it is
//! well-formed XML 1.0 and namespace-well-formed (names, characters, UTF-8,
//! references to the five predefined entities only, matching end tags, bound
//! prefixes, no duplicate attributes after namespace expansion), and refuses
//! DTDs, processing instructions and comments as restricted XML. Names are
//! those of XML 1.0 fourth edition ([`names`]), as expat reads them. Its exact
//! byte span is then copied out as one `Bytes` and forwarded as is. Only what
//! routing needs is kept: the top-level name and namespace and the `to`,
//! `from`, `type` and `id` attributes (plus the text of a `<handshake/>`), and
//! where the element's own `xmlns` value lies in its bytes
//! ([`Stanza::xmlns_value`]) and whether its name has a prefix
//! ([`Stanza::prefixed`]), so that its default namespace can be rewritten by
//! replacing exactly that span. The per-byte work is in [`lex`] and [`tag`];
//! namespaces in [`ns`]; this module keeps the element stack, in buffers
//! reused from stanza to stanza, so a stanza costs no allocation beyond its
//! `Bytes` and its routing attributes.
//!
//! # Cost
//!
//! Input arrives in pieces. Character data is checked as it arrives; markup
//! is read as far as it has arrived, and reading resumes where it stopped, so
//! no byte is looked at twice however small the reads (but the at most three
//! bytes of a UTF-8 sequence cut by a read, and the XML declaration, at most
//! 256 bytes once per stream). Namespace prefixes are found through hash
//! tables and duplicate attributes through a hash set once a tag has more
//! than a few ([`ns`]): the work per byte is bounded by a small constant
//! whatever the input (`cargo bench --bench worst_case` measures it).
//!
//! # Limits
//!
//! [`Limits`] are checked while reading: a start tag with more than
//! `max_attributes` attributes trips at the one too many, a name, value or
//! reference at its byte `max_token + 1`, an element once its bytes pass
//! `max_stanza_size`, whether complete or not. No byte past `max_stanza_size`
//! from the element's start is examined before that, so an element over the
//! limit fails as such and not on what lies beyond. With [`Excess::Fail`] (the
//! component side) that is a `policy-violation`. With [`Excess::Skip`] (the
//! upstream link, whose stanzas come from anyone on the network) a top-level
//! element past a limit is *skipped*: from then on its bytes are dropped as
//! they are read, never buffered; the rest of it is still checked for
//! well-formedness (names and prefixes by key, see [`ns`]); when it ends the
//! framer yields [`Frame::Skipped`] with its head and routing attributes when
//! its start tag was read before the limit. While skipping, the framer keeps
//! at most about `max_stanza_size` bytes of bookkeeping: element-name keys for
//! end-tag matching up to `max_stanza_size / 16` levels (deeper end tags are
//! counted, not matched), and namespace and duplicate-attribute checks up to
//! `max(max_stanza_size / 128, max_attributes)` declarations in scope and
//! attributes on one tag (past that, those two checks stop for the rest of
//! the element). The stream header is never skipped.
//!
//! A stanza's bytes are copied out of the read buffer: a slice would keep the
//! whole read allocation (up to 64 KiB) alive while the stanza sits in a queue,
//! memory that the queues' byte bounds do not see.
//!
//! Stream headers may declare no namespace prefix but `stream`: with any other
//! prefix bound on the stream, a stanza could use it and its forwarded bytes would
//! carry an unbound prefix into the receiving stream. Such headers get
//! `invalid-namespace`; a root element in the streams namespace under another
//! prefix (`<s:stream xmlns:s=…>`) or none gets `bad-namespace-prefix`
//! (documented in the README).

mod lex;
mod names;
mod ns;
mod tag;

use bytes::{Buf, Bytes, BytesMut};
use lex::{nwf, restricted, Collect, QName, RefLex};
use ns::{DupSet, Keys, Scope, NO_NS};
use tag::{AttrKind, AttrTok, EndCx, EndLex, Expect, Hashing, ResolveCx, TagCx, TagLex, TagStep};

use crate::proto::ns::{NS_CLIENT, NS_COMPONENT, NS_STREAMS};
use crate::proto::StreamCondition;

/// Text of a `<handshake/>` is 40 hex digits; anything much longer is not a handshake.
const MAX_HANDSHAKE_TEXT: usize = 256;

/// Longest name, attribute value or reference by default: nothing XMPP needs
/// comes near it, and it bounds the work spent on one token.
pub const DEFAULT_MAX_TOKEN: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_stanza_size: usize,
    /// Maximum element depth inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Maximum attributes on one element (namespace declarations count).
    pub max_attributes: usize,
    /// Longest name, attribute value or character reference, in bytes.
    pub max_token: usize,
    /// What a top-level element beyond these limits gets.
    pub excess: Excess,
}

/// What a top-level element beyond the [`Limits`] gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Excess {
    /// A `policy-violation` stream error.
    #[default]
    Fail,
    /// It is skipped (dropped unbuffered, still checked) and reported as
    /// [`Frame::Skipped`]; only XML that is not well-formed is an error.
    Skip,
}

impl Limits {
    /// `max_stanza_size` with the defaults of the other limits
    /// (`crate::config::defaults`), failing on excess.
    pub fn new(max_stanza_size: usize) -> Self {
        Limits {
            max_stanza_size,
            max_depth: crate::config::defaults::MAX_STANZA_DEPTH,
            max_attributes: crate::config::defaults::MAX_ATTRIBUTES,
            max_token: DEFAULT_MAX_TOKEN,
            excess: Excess::Fail,
        }
    }
}

/// A limit a top-level element went beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `max_stanza_size`.
    Size,
    /// `max_depth`.
    Depth,
    /// `max_attributes`.
    Attributes,
    /// `max_token`.
    Token,
}

impl Limit {
    /// What was too large, for a log line or an error text.
    pub fn describe(self, limits: &Limits) -> String {
        match self {
            Limit::Size => format!(
                "stanza larger than max_stanza_size ({} bytes)",
                limits.max_stanza_size
            ),
            Limit::Depth => format!("elements nested deeper than {}", limits.max_depth),
            Limit::Attributes => format!(
                "more than {} attributes on one element",
                limits.max_attributes
            ),
            Limit::Token => format!(
                "a name or attribute value longer than {} bytes",
                limits.max_token
            ),
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

/// A top-level element skipped for going beyond a limit ([`Excess::Skip`]):
/// its bytes were checked and dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its name and namespace, when its start tag was read whole before the
    /// limit was passed (otherwise nothing of it is known).
    pub head: Option<Head>,
    /// Its routing attributes (all `None` when `head` is).
    pub attrs: Attrs,
    /// The first limit it went beyond.
    pub limit: Limit,
    /// Its length in bytes.
    pub size: u64,
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
    /// A top-level element went beyond a limit and was skipped
    /// ([`Excess::Skip`] only). A [`Frame::Start`] came before it when its
    /// start tag was read before the limit.
    Skipped(Skipped),
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

/// The top-level element being read (from its `<`).
struct Current {
    /// Stream offset of its `<`.
    start: usize,
    /// Its name and namespace, once its start tag is read.
    head: Option<Head>,
    /// The routing attributes: `to`, `from`, `type`, `id`.
    attrs: [Pending; 4],
    /// Text of a `<handshake/>`.
    text: Option<Collect>,
    has_children: bool,
    first_child: Option<String>,
    /// Offsets of its `xmlns` value from its start.
    xmlns_value: Option<(u32, u32)>,
    prefixed: bool,
    /// Skipped since it went beyond this limit.
    skip: Option<Limit>,
    /// Skipping, the namespace and duplicate checks went past their budget
    /// and stopped for the rest of the element.
    ns_unchecked: bool,
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

/// An open element of the current top-level element, for matching its end tag.
#[derive(Clone, Copy, Debug)]
enum Open {
    /// Its qualified name: stream offset and length.
    At(usize, u32),
    /// The key of its qualified name (skipping: the bytes are gone).
    Key(u64),
}

/// A start tag just read: where its `<` is, its name (with its key while
/// skipping), and whether its namespaces go unchecked (skipping, past budget).
#[derive(Clone, Copy, Debug)]
struct Read {
    open: usize,
    name: QName,
    key: Option<ns::NameKey>,
    unchecked: bool,
}

/// Markup being read, which goes on at the next read.
#[derive(Debug, Default, Clone, Copy)]
enum Markup {
    /// None: the next byte starts character data or markup.
    #[default]
    None,
    /// A start tag: [`Framer::tag`].
    Start,
    /// An end tag: [`Framer::end`].
    End,
    /// Inside `<![CDATA[`: its content starts at `content`, checked up to `at`.
    Cdata { content: usize, at: usize },
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

/// What one step over the input produced. Small, so that it is cheap to
/// return; a stanza's frame is built only where it is handed out.
enum Step {
    Continue,
    /// More bytes are needed.
    More,
    /// A top-level element's start tag was read.
    Start(Head),
    /// The current top-level element ended: its frame is owed.
    Element,
    /// The stream header (once per stream).
    Header(Box<StreamHeader>),
    /// `</stream:stream>`.
    End,
}

/// Incremental framer for one inbound XML stream.
pub struct Framer {
    buf: BytesMut,
    /// Stream offset of `buf[0]`: how many bytes were dropped before it.
    base: usize,
    /// Stream offset up to which bytes are checked and accounted for (the
    /// start of the markup being read, if any).
    pos: usize,
    markup: Markup,
    /// The start tag being read (reused from tag to tag).
    tag: TagLex,
    /// The end tag being read.
    end: EndLex,
    /// Keys of what a skipped element's tags hold, as they go by.
    hashing: Hashing,
    /// The last start tag has a prefixed name or a namespace declaration.
    ns_work: bool,
    /// The current top-level element is being skipped (`cur.skip` is set).
    skip: bool,
    /// A reference cut by the end of a read, in character data.
    text_ref: RefLex,
    /// Open elements, the stream root included.
    depth: usize,
    phase: Phase,
    owed: Owed,
    cur: Option<Current>,
    /// Names of the open elements of the current top-level element, it included.
    open: Vec<Open>,
    /// Namespace bindings inside the current top-level element.
    scope: Scope,
    /// Scratch for the attributes of one tag.
    attrs: Vec<AttrTok>,
    dups: DupSet,
    decoded: String,
    keys: Keys,
    limits: Limits,
}

const STREAM_ROOT: &[u8] = b"stream:stream";
/// Longest XML declaration (`<?xml` to `?>`) read.
const MAX_DECL: usize = 256;

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            buf: BytesMut::new(),
            base: 0,
            pos: 0,
            markup: Markup::None,
            tag: TagLex::new(0),
            end: EndLex::new(0),
            hashing: Hashing::default(),
            ns_work: false,
            skip: false,
            text_ref: RefLex::default(),
            depth: 0,
            phase: Phase::Start,
            owed: Owed::Nothing,
            cur: None,
            open: Vec::new(),
            scope: Scope::default(),
            attrs: Vec::new(),
            dups: DupSet::default(),
            decoded: String::new(),
            keys: Keys::new(),
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
        self.buf.is_empty() && self.cur.is_none() && matches!(self.markup, Markup::None)
    }

    /// Drop buffers held by an idle stream, so an idle connection costs little memory.
    pub fn shrink(&mut self) {
        if self.is_idle() {
            self.buf = BytesMut::new();
            self.open = Vec::new();
            self.attrs = Vec::new();
            self.decoded = String::new();
            self.scope.release();
            self.dups.release();
        }
    }

    /// The next frame from the bytes buffered so far; `Ok(None)` when more bytes
    /// are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        match std::mem::take(&mut self.owed) {
            Owed::Nothing => {}
            Owed::Stanza => return Ok(Some(self.finish_element())),
            Owed::End => {
                self.phase = Phase::Ended;
                return Ok(Some(Frame::End));
            }
        }
        if self.phase == Phase::Ended {
            return Ok(None);
        }
        if self.quick() {
            // All that came was taken: nothing more to read.
            return self.wait().map(|_| None);
        }
        loop {
            let step = match self.markup {
                Markup::None => self.at_pos()?,
                Markup::Start => self.start_tag()?,
                Markup::End => self.end_tag()?,
                Markup::Cdata { .. } => self.cdata()?,
            };
            match step {
                Step::Start(h) => return Ok(Some(Frame::Start(h))),
                Step::Element => return Ok(Some(self.finish_element())),
                Step::Header(h) => return Ok(Some(Frame::Header(*h))),
                Step::End => return Ok(Some(Frame::End)),
                Step::Continue => {}
                Step::More => {
                    if !self.wait()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Fast path for small reads (a peer dribbling its bytes): the new bytes
    /// that only go on with character data, an attribute value or a name
    /// inside a stanza, the common bytes, are taken in one go, with the checks
    /// of the lexers' own fast paths (plain ASCII classes, the token limit).
    /// What is left goes the ordinary way.
    /// Whether all the bytes at hand were taken.
    #[inline(always)]
    fn quick(&mut self) -> bool {
        if self.skip || self.phase != Phase::Stream {
            return false;
        }
        let all = self.base + self.buf.len();
        let end = self.visible_end();
        match self.markup {
            Markup::None if self.depth >= 2 && self.text_ref.len == 0 => {
                let collecting =
                    self.depth == 2 && self.cur.as_ref().is_some_and(|c| c.text.is_some());
                if collecting || self.pos >= end {
                    return false;
                }
                self.pos += lex::plain_text(tag::at(&self.buf, self.base, self.pos, end));
                self.pos == all
            }
            Markup::Start if self.tag.at < end => {
                let rest = tag::at(&self.buf, self.base, self.tag.at, end);
                let lim = tag::QuickLimits {
                    max_token: self.limits.max_token,
                    max_attributes: self.limits.max_attributes,
                    attrs: self.attrs.len(),
                };
                self.tag.quick(rest, lim, &self.hashing);
                self.tag.at == all
            }
            _ => false,
        }
    }

    /// The current top-level element is being skipped.
    #[inline]
    fn skipping(&self) -> bool {
        self.skip
    }

    /// The bytes between stream offsets `start` and `end`.
    fn bytes(&self, start: usize, end: usize) -> &[u8] {
        tag::at(&self.buf, self.base, start, end)
    }

    /// Where the bytes not yet handed out start: the open top-level element,
    /// else the next unread byte.
    fn pending_start(&self) -> usize {
        self.cur.as_ref().map_or(self.pos, |c| c.start)
    }

    /// Stream offset of the end of the bytes that may be examined: no further
    /// than one byte past `max_stanza_size` from the start of the pending
    /// element, so that an element over the limit fails as such (in
    /// [`Framer::check_pending`]) and not on whatever error lies beyond the
    /// limit. A skipped element has no such bound.
    fn visible_end(&self) -> usize {
        let end = self.base + self.buf.len();
        if self.skipping() {
            return end;
        }
        end.min(
            self.pending_start()
                .saturating_add(self.limits.max_stanza_size)
                .saturating_add(1),
        )
    }

    /// The limits that hold now: none but memory safety's while skipping.
    fn max_token(&self) -> usize {
        if self.skipping() {
            usize::MAX
        } else {
            self.limits.max_token
        }
    }

    /// A limit was passed: a `policy-violation`, or (skipping on excess,
    /// inside a top-level element) the element is skipped from here on.
    fn exceed(&mut self, limit: Limit) -> Result<(), FrameError> {
        let skippable = self.limits.excess == Excess::Skip && self.phase == Phase::Stream;
        match &self.cur {
            Some(c) if skippable => {
                if c.skip.is_none() {
                    self.begin_skip(limit);
                }
                Ok(())
            }
            _ => Err(self.limit_error(limit, false)),
        }
    }

    fn limit_error(&self, limit: Limit, pending: bool) -> FrameError {
        let mut detail = limit.describe(&self.limits);
        if pending {
            detail = detail.replacen("stanza", "element", 1);
        }
        FrameError::new(StreamCondition::PolicyViolation, detail)
    }

    /// Character data or the start of markup at `pos`.
    fn at_pos(&mut self) -> Result<Step, FrameError> {
        let end = self.visible_end();
        let rest = self.bytes(self.pos.min(end), end);
        let Some(&first) = rest.first() else {
            return Ok(Step::More);
        };
        if first != b'<' || self.text_ref.len > 0 {
            return self.char_data();
        }
        let Some(&b1) = rest.get(1) else {
            return Ok(Step::More);
        };
        match b1 {
            b'/' => {
                self.end = EndLex::new(self.pos);
                self.markup = Markup::End;
            }
            b'!' => return self.bang(),
            b'?' => return self.question(),
            _ => {
                if self.phase == Phase::Stream && self.depth == 1 {
                    self.begin_element();
                }
                self.tag.reset(self.pos);
                self.markup = Markup::Start;
            }
        }
        Ok(Step::Continue)
    }

    /// A top-level element starts at `pos`.
    fn begin_element(&mut self) {
        self.cur = Some(Current {
            start: self.pos,
            head: None,
            attrs: Default::default(),
            text: None,
            has_children: false,
            first_child: None,
            xmlns_value: None,
            prefixed: false,
            skip: None,
            ns_unchecked: false,
        });
    }

    /// Check the character data at `pos` (up to the next `<`).
    fn char_data(&mut self) -> Result<Step, FrameError> {
        let end = self.visible_end();
        let max_ref = self.max_token();
        let rest = tag::at(&self.buf, self.base, self.pos, end);
        let (t, last) = match memchr::memchr(b'<', rest) {
            Some(e) => (&rest[..e], true),
            None => (rest, false),
        };
        let out = match (&mut self.cur, self.depth) {
            (Some(c), 2) => c.text.as_mut(),
            _ => None,
        };
        let ws_only: Option<fn() -> FrameError> = match self.phase {
            Phase::Start | Phase::Prolog => Some(|| nwf("character data before the stream header")),
            _ if self.depth <= 1 => Some(between_stanzas),
            _ => None,
        };
        let cx = lex::TextCtx {
            last,
            out,
            ws_only,
            pending: &mut self.text_ref,
            max_ref,
        };
        let consumed = lex::text(t, lex::Chars::Text, cx)?;
        if matches!(self.phase, Phase::Start) && consumed > 0 {
            self.phase = Phase::Prolog;
        }
        self.pos += consumed;
        if self.text_ref.len > max_ref {
            self.exceed(Limit::Token)?;
        }
        self.check_size()?;
        // Without a `<` among all the bytes at hand, nothing more can be read.
        let all = end == self.base + self.buf.len();
        Ok(if consumed == 0 || (!last && all) {
            Step::More
        } else {
            Step::Continue
        })
    }

    /// `<?`: the XML declaration at the very start, else a processing instruction.
    fn question(&mut self) -> Result<Step, FrameError> {
        let rest = self.bytes(self.pos, self.visible_end());
        if self.phase == Phase::Start {
            let n = rest.len().min(6);
            if rest[..n] == b"<?xml "[..n]
                || (n == 6 && rest.starts_with(b"<?xml") && lex::is_ws(rest[5]))
            {
                if n < 6 {
                    return Ok(Step::More);
                }
                // No `>` can appear in a declaration but in its closing `?>`, and
                // only a few kinds of byte at all: garbage fails at once. A
                // declaration is at most `MAX_DECL` bytes, whatever the reads.
                let body = &rest[5..rest.len().min(MAX_DECL)];
                let e = memchr::memchr(b'>', body);
                let junk = body[..e.unwrap_or(body.len())]
                    .iter()
                    .any(|&b| !(b.is_ascii_alphanumeric() || b"?='\" ._-\t\r\n".contains(&b)));
                if junk {
                    return Err(nwf("malformed XML declaration"));
                }
                let Some(e) = e else {
                    if rest.len() >= MAX_DECL {
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
        let rest = self.bytes(self.pos, self.visible_end());
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
        let content = self.pos + OPEN.len();
        self.markup = Markup::Cdata {
            content,
            at: content,
        };
        Ok(Step::Continue)
    }

    /// Inside a CDATA section: its content is checked as it arrives, up to
    /// where a `]]>` could begin.
    fn cdata(&mut self) -> Result<Step, FrameError> {
        let Markup::Cdata { content, at } = self.markup else {
            return Ok(Step::Continue);
        };
        let end = self.visible_end();
        // A `]]>` may begin in the (at most two) `]` held back last time.
        let search_from = at.saturating_sub(2).max(content).max(self.base);
        let found =
            memchr::memmem::find(self.bytes(search_from, end), b"]]>").map(|e| search_from + e);
        let (upto, last) = match found {
            Some(e) => (e, true),
            None => {
                // Hold back only a `]` or `]]` that may begin the `]]>`.
                let tail = self.bytes(at, end);
                let hold = if tail.ends_with(b"]]") {
                    2
                } else {
                    usize::from(tail.ends_with(b"]"))
                };
                (end - hold, false)
            }
        };
        let out = match (&mut self.cur, self.depth) {
            (Some(c), 2) => c.text.as_mut(),
            _ => None,
        };
        let ws_only: Option<fn() -> FrameError> = (self.depth <= 1).then_some(between_stanzas);
        let mut no_ref = RefLex::default();
        let cx = lex::TextCtx {
            last,
            out,
            ws_only,
            pending: &mut no_ref,
            max_ref: 0,
        };
        let t = tag::at(&self.buf, self.base, at, upto);
        let n = lex::text(t, lex::Chars::Cdata, cx)?;
        let Some(e) = found else {
            self.markup = Markup::Cdata {
                content,
                at: at + n,
            };
            return Ok(Step::More);
        };
        self.markup = Markup::None;
        self.pos = e + 3;
        self.check_size()?;
        Ok(Step::Continue)
    }

    /// Go on reading the start tag at `pos`.
    fn start_tag(&mut self) -> Result<Step, FrameError> {
        let end = self.visible_end();
        let skipping = self.skipping();
        let max_attributes = if skipping {
            usize::MAX
        } else {
            self.limits.max_attributes
        };
        let lx = &mut self.tag;
        let mut cx = TagCx {
            buf: &self.buf,
            base: self.base,
            end,
            max_token: if skipping {
                usize::MAX
            } else {
                self.limits.max_token
            },
            max_attributes,
            budget: if skipping {
                (self.limits.max_stanza_size / 128).max(self.limits.max_attributes)
            } else {
                usize::MAX
            },
            keys: &self.keys,
            skipping,
            attrs: &mut self.attrs,
            dups: &mut self.dups,
            decoded: &mut self.decoded,
            hashing: &mut self.hashing,
            ns_work: &mut self.ns_work,
        };
        match lx.step(&mut cx)? {
            TagStep::More => Ok(Step::More),
            TagStep::Limit(l) => {
                self.exceed(l)?;
                Ok(Step::Continue)
            }
            TagStep::Done { gt, self_closing } => {
                self.markup = Markup::None;
                let Some((name, key)) = lx.elem else {
                    return Err(nwf("malformed start tag"));
                };
                let read = Read {
                    open: lx.open,
                    name,
                    key,
                    unchecked: lx.unchecked,
                };
                self.tag_done(read, gt, self_closing)
            }
        }
    }

    /// A start tag has been read whole: its `>` is at `gt`.
    fn tag_done(&mut self, mut r: Read, gt: usize, self_closing: bool) -> Result<Step, FrameError> {
        match self.phase {
            Phase::Start | Phase::Prolog => return self.header(r, gt, self_closing),
            Phase::Stream => {}
            Phase::Ended => return Ok(Step::More),
        }
        let depth = self.depth + 1;
        let unchecked = self.skipping()
            && (r.unchecked || self.scope.len() + self.attrs.len() > self.skip_budget());
        let ns_unchecked = match self.cur.as_mut() {
            Some(c) => {
                c.ns_unchecked |= unchecked;
                c.ns_unchecked
            }
            None => false,
        };
        let ns = if ns_unchecked || !self.ns_work {
            NO_NS
        } else {
            self.resolve(&r, depth, true)?
        };
        // Checked after the namespaces, as a parser would find those faults
        // in the tag before the tag's depth counts.
        if depth > 2 && depth - 1 > self.limits.max_depth && !self.skipping() {
            self.exceed(Limit::Depth)?;
            if self.skipping() {
                self.key_finished_tag(&mut r);
            }
        }
        let skipping = self.skipping();
        self.depth = depth;
        self.pos = gt + 1;
        if depth == 2 && !skipping {
            return self.top_level_start(&r, ns, self_closing);
        }
        if let Some(cur) = self.cur.as_mut() {
            if !skipping && !cur.has_children && depth == 3 && cur.head_is(Name::Error) {
                let q = tag::at(&self.buf, self.base, r.open + 1, r.open + 1 + r.name.len);
                cur.first_child = Some(String::from_utf8_lossy(r.name.local(q)).into_owned());
            }
            cur.has_children = true;
        }
        if self_closing {
            if depth == 2 {
                self.owed = Owed::Stanza;
            } else {
                self.close_element();
            }
        } else {
            self.push_open(&r);
        }
        self.check_size()?;
        Ok(Step::Continue)
    }

    /// While skipping, how many attributes of one tag and namespace bindings
    /// are kept for the namespace and duplicate checks.
    fn skip_budget(&self) -> usize {
        (self.limits.max_stanza_size / 128).max(self.limits.max_attributes)
    }

    /// Skipping began as a tag ended: the keys of its names from its bytes.
    fn key_finished_tag(&mut self, r: &mut Read) {
        for a in self.attrs.iter_mut() {
            tag::ensure_key(a, &self.buf, self.base, &self.keys);
        }
        if r.key.is_none() {
            let s = r.open + 1;
            let name = tag::at(&self.buf, self.base, s, s + r.name.len);
            r.key = Some(self.keys.name(name, r.name.colon));
        }
    }

    /// Apply Namespaces in XML to the tag just read (see [`tag::resolve`]).
    fn resolve(&mut self, r: &Read, depth: usize, stream_bound: bool) -> Result<u32, FrameError> {
        let mut cx = ResolveCx {
            buf: &self.buf,
            base: self.base,
            keys: &self.keys,
            scope: &mut self.scope,
            attrs: &mut self.attrs,
            decoded: &self.decoded,
            exact: !self.skip,
            stream_bound,
        };
        tag::resolve(
            &mut cx,
            &mut self.dups,
            r.open,
            (r.name, r.key),
            depth as u32,
        )
    }

    /// The decoded value of the tag's `xmlns` attribute, when it has one.
    fn default_ns(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        let a = self.attrs.iter().find(|a| a.kind == AttrKind::Default)?;
        Some(match a.decl {
            Some((_, _, Some((s, l)))) => {
                std::borrow::Cow::Borrowed(&self.decoded.as_bytes()[s as usize..(s + l) as usize])
            }
            _ => std::borrow::Cow::Borrowed(self.bytes(a.value_start, a.value_start + a.value_len)),
        })
    }

    /// The namespace of the element whose tag was just read: through its
    /// prefix (`ns`), or its own `xmlns`, else `None` (inherited).
    fn elem_ns(&self, prefixed: bool, ns: u32) -> Option<std::borrow::Cow<'_, [u8]>> {
        if prefixed {
            return Some(std::borrow::Cow::Borrowed(
                self.scope.uri_bytes(ns).unwrap_or_default(),
            ));
        }
        self.default_ns()
    }

    /// The start tag of a top-level element was read: its head, its routing
    /// attributes, and [`Frame::Start`].
    fn top_level_start(
        &mut self,
        r: &Read,
        ns: u32,
        self_closing: bool,
    ) -> Result<Step, FrameError> {
        let q = r.name;
        let qname = self.bytes(r.open + 1, r.open + 1 + q.len);
        let head = Head {
            name: classify_name(q.local(qname)),
            ns: classify_ns(self.elem_ns(q.colon.is_some(), ns).as_deref()),
        };
        let Some(cur) = self.cur.as_mut() else {
            return Err(nwf("element outside the stream"));
        };
        let rel = |at: usize| (at - cur.start) as u32;
        for a in self.attrs.iter().filter(|a| a.kind == AttrKind::Plain) {
            let n = tag::at(
                &self.buf,
                self.base,
                a.name_start,
                a.name_start + a.name.len,
            );
            let slot = match n {
                b"to" => 0,
                b"from" => 1,
                b"type" => 2,
                b"id" => 3,
                _ => continue,
            };
            cur.attrs[slot] = if a.plain {
                Pending::Plain(rel(a.value_start), a.value_len as u32)
            } else {
                let v = tag::at(
                    &self.buf,
                    self.base,
                    a.value_start,
                    a.value_start + a.value_len,
                );
                Pending::Decoded(lex::decode_attr(v, false).into())
            };
        }
        cur.xmlns_value = self
            .attrs
            .iter()
            .find(|a| a.kind == AttrKind::Default)
            .map(|a| (rel(a.value_start), a.value_len as u32));
        cur.prefixed = q.colon.is_some();
        cur.head = Some(head);
        if head.name == Name::Handshake {
            cur.text = Some(Collect {
                cap: MAX_HANDSHAKE_TEXT,
                ..Collect::default()
            });
        }
        if self_closing {
            self.owed = Owed::Stanza;
        } else {
            self.push_open(r);
        }
        self.check_size()?;
        Ok(Step::Start(head))
    }

    /// Remember an element's name until its end tag: where it is, or (while
    /// skipping) its key, for up to `max_stanza_size / 16` levels.
    fn push_open(&mut self, r: &Read) {
        let entry = match r.key {
            Some(k) if self.skipping() => Open::Key(k.raw()),
            _ => Open::At(r.open + 1, r.name.len as u32),
        };
        if !self.skipping() || self.open.len() < (self.limits.max_stanza_size / 16).max(64) {
            self.open.push(entry);
        }
    }

    /// The stream header: the root element's start tag.
    fn header(&mut self, r: Read, gt: usize, self_closing: bool) -> Result<Step, FrameError> {
        self.scope.reset();
        let ns = self.resolve(&r, 1, false)?;
        let q = r.name;
        let qname = self.bytes(r.open + 1, r.open + 1 + q.len);
        let in_streams =
            self.elem_ns(q.colon.is_some(), ns).as_deref() == Some(NS_STREAMS.as_bytes());
        if !in_streams || q.local(qname) != b"stream" {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                "first element is not <stream:stream/> in http://etherx.jabber.org/streams",
            ));
        }
        if q.prefix(qname) != Some(b"stream") {
            let p = String::from_utf8_lossy(q.prefix(qname).unwrap_or_default()).into_owned();
            return Err(FrameError::new(
                StreamCondition::BadNamespacePrefix,
                format!("the streams namespace has the prefix {p:?}, not 'stream'"),
            ));
        }
        let header = self.header_attrs()?;
        self.scope.reset();
        self.depth = 1;
        self.phase = Phase::Stream;
        self.pos = gt + 1;
        // Nothing before the first stanza is ever forwarded.
        self.consume(self.pos - self.base);
        if self_closing {
            self.owed = Owed::End;
        }
        Ok(Step::Header(Box::new(header)))
    }

    /// The stream header's attributes, and its declarations checked.
    fn header_attrs(&self) -> Result<StreamHeader, FrameError> {
        let default = self
            .default_ns()
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let mut other_prefix = None;
        let mut header = StreamHeader {
            to: None,
            version: None,
            id: None,
            from: None,
        };
        for a in &self.attrs {
            let n = self.bytes(a.name_start, a.name_start + a.name.len);
            let value = || {
                let v = self.bytes(a.value_start, a.value_start + a.value_len);
                lex::decode_attr(v, a.plain).into_owned()
            };
            match a.kind {
                AttrKind::Declaration if a.name.local(n) != b"stream" => {
                    other_prefix = Some(String::from_utf8_lossy(a.name.local(n)).into_owned())
                }
                AttrKind::Plain => match n {
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
        Ok(header)
    }

    /// Go on reading the end tag at `pos`.
    fn end_tag(&mut self) -> Result<Step, FrameError> {
        let end = self.visible_end();
        let skipping = self.skipping();
        let max_token = self.max_token();
        let expect = match self.depth {
            0 => Expect::Nothing,
            1 => Expect::Bytes(STREAM_ROOT),
            d if self.open.len() < d - 1 => Expect::Any,
            _ => match self.open.last() {
                Some(&Open::At(s, l)) => {
                    Expect::Bytes(tag::at(&self.buf, self.base, s, s + l as usize))
                }
                Some(&Open::Key(k)) => Expect::Key(k),
                None => Expect::Any,
            },
        };
        let lx = &mut self.end;
        let cx = EndCx {
            buf: &self.buf,
            base: self.base,
            end,
            max_token,
            keys: &self.keys,
            skipping,
            expect,
        };
        let gt = match lx.step(&cx, &mut self.hashing.name)? {
            TagStep::More => return Ok(Step::More),
            TagStep::Limit(l) => {
                self.exceed(l)?;
                return Ok(Step::Continue);
            }
            TagStep::Done { gt, .. } => gt,
        };
        self.markup = Markup::None;
        self.pos = gt + 1;
        if self.depth == 1 {
            self.depth = 0;
            self.phase = Phase::Ended;
            return Ok(Step::End);
        }
        if self.open.len() >= self.depth - 1 {
            self.open.pop();
        }
        self.check_size()?;
        if self.depth == 2 {
            self.depth = 1;
            return Ok(Step::Element);
        }
        self.close_element();
        Ok(Step::Continue)
    }

    /// Leave an element below the top level: its declarations go out of scope.
    fn close_element(&mut self) {
        self.scope.close(self.depth as u32);
        self.depth -= 1;
    }

    /// The current top-level element has ended (at `pos`).
    fn finish_element(&mut self) -> Frame {
        self.depth = 1;
        let Some(cur) = self.cur.take() else {
            // Unreachable: only called with a top-level element open.
            return Frame::End;
        };
        self.open.clear();
        self.scope.reset();
        if let Some(limit) = cur.skip {
            self.skip = false;
            self.hashing = Hashing::default();
            self.consume(self.pos - self.base);
            let [to, from, type_, id] = cur.attrs.map(|p| p.value(&Bytes::new()));
            return Frame::Skipped(Skipped {
                head: cur.head,
                attrs: Attrs {
                    to,
                    from,
                    type_,
                    id,
                },
                limit,
                size: (self.pos - cur.start) as u64,
            });
        }
        let bytes = Bytes::copy_from_slice(self.bytes(cur.start, self.pos));
        self.consume(self.pos - self.base);
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
            head: cur.head.unwrap_or(Head {
                name: Name::Other,
                ns: Ns::Other,
            }),
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

    /// The current top-level element went beyond `limit` (and [`Excess::Skip`]
    /// applies): from now on its bytes are dropped as they are read. What is
    /// still needed of the bytes read so far becomes keys and owned values.
    fn begin_skip(&mut self, limit: Limit) {
        let Some(cur) = self.cur.as_mut() else {
            return;
        };
        cur.skip = Some(limit);
        self.skip = true;
        cur.text = None;
        if cur.head.is_some() {
            for p in cur.attrs.iter_mut() {
                if let Pending::Plain(s, l) = *p {
                    let s = cur.start + s as usize;
                    let v = tag::at(&self.buf, self.base, s, s + l as usize);
                    *p = Pending::Decoded(String::from_utf8_lossy(v).into());
                }
            }
        } else {
            cur.attrs = Default::default();
        }
        for o in self.open.iter_mut() {
            if let Open::At(s, l) = *o {
                let name = tag::at(&self.buf, self.base, s, s + l as usize);
                let colon = memchr::memchr(b':', name);
                *o = Open::Key(self.keys.name(name, colon).raw());
            }
        }
        match self.markup {
            Markup::Start => {
                let mut cx = TagCx {
                    buf: &self.buf,
                    base: self.base,
                    end: self.base + self.buf.len(),
                    max_token: usize::MAX,
                    max_attributes: usize::MAX,
                    budget: usize::MAX,
                    keys: &self.keys,
                    skipping: true,
                    attrs: &mut self.attrs,
                    dups: &mut self.dups,
                    decoded: &mut self.decoded,
                    hashing: &mut self.hashing,
                    ns_work: &mut self.ns_work,
                };
                self.tag.start_hashing(&mut cx);
            }
            Markup::End => {
                let h = &mut self.hashing.name;
                self.end.start_hashing(&self.buf, self.base, &self.keys, h);
            }
            _ => {}
        }
    }

    /// After a piece of markup: the element so far within `max_stanza_size`.
    fn check_size(&mut self) -> Result<(), FrameError> {
        match &self.cur {
            Some(c) if !self.skip && self.pos - c.start > self.limits.max_stanza_size => {
                self.exceed(Limit::Size)
            }
            _ => Ok(()),
        }
    }

    /// More bytes are needed. Bytes held but not yet part of finished markup
    /// are bounded by the stanza size limit, so no read can grow the buffer
    /// without end; then the bytes no longer needed are dropped: those before
    /// the pending element, or while skipping, all that were read. `Ok(true)`:
    /// the element is skipped from now on, and reading goes on.
    #[inline]
    fn wait(&mut self) -> Result<bool, FrameError> {
        let keep = if self.skip {
            match &self.markup {
                Markup::None => self.pos,
                Markup::Start => self.tag.at,
                Markup::End => self.end.at,
                Markup::Cdata { at, .. } => *at,
            }
        } else {
            let start = self.pending_start();
            if self.base + self.buf.len() - start > self.limits.max_stanza_size {
                let skippable = self.limits.excess == Excess::Skip
                    && self.phase == Phase::Stream
                    && self.cur.is_some();
                if !skippable {
                    return Err(self.limit_error(Limit::Size, true));
                }
                self.begin_skip(Limit::Size);
                return Ok(true);
            }
            start
        };
        if keep > self.base {
            self.consume(keep - self.base);
        }
        Ok(false)
    }

    /// Drop the first `n` bytes of `buf` (all checked and accounted for).
    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.base += n;
    }
}

impl Current {
    fn head_is(&self, name: Name) -> bool {
        self.head.is_some_and(|h| h.name == name)
    }
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

/// Namespace of a top-level element: declared on it (or through its
/// prefix), else the stream's default.
fn classify_ns(ns: Option<&[u8]>) -> Ns {
    match ns {
        None => Ns::Component,
        Some(u) if u == NS_COMPONENT.as_bytes() => Ns::Component,
        Some(u) if u == NS_CLIENT.as_bytes() => Ns::Client,
        Some(u) if u == NS_STREAMS.as_bytes() => Ns::Streams,
        Some(_) => Ns::Other,
    }
}

/// Between stanzas only whitespace (a keepalive) is allowed.
fn between_stanzas() -> FrameError {
    FrameError::new(StreamCondition::BadFormat, "character data between stanzas")
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
                Frame::Start(_) | Frame::Skipped(_) => {}
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
        // The streams namespace under another prefix, or none.
        assert_eq!(
            header_error("<s:stream xmlns='jabber:component:accept' xmlns:s='http://etherx.jabber.org/streams'>"),
            StreamCondition::BadNamespacePrefix
        );
        assert_eq!(
            header_error("<stream xmlns='http://etherx.jabber.org/streams'>"),
            StreamCondition::BadNamespacePrefix
        );
        // The prefix `stream` bound to something else.
        assert_eq!(
            header_error("<stream:stream xmlns='jabber:component:accept' xmlns:stream='urn:x'>"),
            StreamCondition::InvalidNamespace
        );
        // docs/behaviour.md#stream allows either condition for a DTD.
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
            max_attributes: 3,
            ..Limits::new(1 << 30)
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
        // A declaration longer than its bound fails the same whether its `>`
        // came in the same read or not (found by fuzzing: framer).
        let long = format!("<?xml version='1.0{}'?>", "3".repeat(300));
        for chunk in [long.len(), 7] {
            let mut f = framer();
            let mut err = None;
            for c in long.as_bytes().chunks(chunk) {
                if let Err(e) = feed_all(&mut f, c) {
                    err = Some(e.detail);
                    break;
                }
            }
            assert_eq!(
                err.as_deref(),
                Some("malformed XML declaration"),
                "chunk {chunk}"
            );
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

    fn skipping(max_stanza_size: usize) -> Limits {
        Limits {
            excess: Excess::Skip,
            ..Limits::new(max_stanza_size)
        }
    }

    /// Frames `HEADER` + `data` in chunks of `chunk` bytes: the frames after
    /// the header, or the error; and the most bytes held after a read.
    fn run_chunked(
        data: &str,
        chunk: usize,
        limits: Limits,
    ) -> (Vec<Frame>, Option<FrameError>, usize) {
        let mut f = Framer::new(limits);
        feed_all(&mut f, HEADER.as_bytes()).unwrap();
        let (mut frames, mut held) = (Vec::new(), 0);
        for c in data.as_bytes().chunks(chunk.max(1)) {
            match feed_all(&mut f, c) {
                Ok(fr) => frames.extend(fr),
                Err(e) => return (frames, Some(e), held),
            }
            held = held.max(f.buf.len());
        }
        (frames, None, held)
    }

    fn skipped(frames: &[Frame]) -> Vec<&Skipped> {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::Skipped(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn stanza_bytes(frames: &[Frame]) -> Vec<&[u8]> {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::Stanza(s) => Some(&s.bytes[..]),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn skip_mode_skips_what_is_beyond_a_limit_and_goes_on() {
        let small = "<message from='a@x' to='b@y' id='s'/>";
        let body = "&apos;".repeat(2000);
        let big = format!(
            "<message from='c@x/r' to='d@y' id='big' type='chat'><body>{body}</body>\
             <x:y xmlns:x='urn:x' x:a='1' b:c='2' xmlns:b='urn:b'/><!-- -->"
        );
        // (The comment is restricted XML: cut it off below.)
        let big = big.replace("<!-- -->", "</message>");
        let deep = format!(
            "<iq from='e@x' to='f@y' id='deep'>{}{}</iq>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        let attrs: String = (0..20).map(|i| format!(" a{i}='v'")).collect();
        let many = format!("<presence from='g@x' id='many'><c{attrs}/></presence>");
        let long = format!("<message id='long'><b v='{}'/></message>", "v".repeat(100));
        let data = format!("{small}{big}{small} {deep}{many}{long}{small}");
        let limits = Limits {
            max_depth: 10,
            max_attributes: 8,
            max_token: 64,
            ..skipping(1000)
        };
        for chunk in [usize::MAX, 1, 7, 333] {
            let (frames, err, held) = run_chunked(&data, chunk, limits);
            assert!(err.is_none(), "chunk {chunk}: {err:?}");
            assert_eq!(
                stanza_bytes(&frames),
                [small.as_bytes(); 3],
                "chunk {chunk}"
            );
            let sk = skipped(&frames);
            let got: Vec<_> = sk
                .iter()
                .map(|s| (s.limit, s.attrs.id.as_deref().unwrap_or("")))
                .collect();
            assert_eq!(
                got,
                [
                    (Limit::Size, "big"),
                    (Limit::Depth, "deep"),
                    (Limit::Attributes, "many"),
                    (Limit::Token, "long")
                ],
                "chunk {chunk}"
            );
            let s = sk[0];
            assert_eq!(
                s.head,
                Some(Head {
                    name: Name::Message,
                    ns: Ns::Component
                })
            );
            assert_eq!(s.attrs.from.as_deref(), Some("c@x/r"));
            assert_eq!(s.attrs.to.as_deref(), Some("d@y"));
            assert_eq!(s.attrs.type_.as_deref(), Some("chat"));
            assert_eq!(s.size, big.len() as u64);
            // Never more held than the limit and a read.
            assert!(
                held <= 1000 + chunk.min(data.len()),
                "chunk {chunk}: held {held}"
            );
        }
    }

    #[test]
    fn skip_mode_start_tag_beyond_the_limit_has_no_head() {
        let big = format!(
            "<message to='b@y' from='a@x' v='{}'><body/></message>",
            "x".repeat(5000)
        );
        let data = format!("{big}<iq from='a@x' id='after'/>");
        let limits = Limits {
            max_token: usize::MAX,
            ..skipping(1000)
        };
        for chunk in [usize::MAX, 1, 100] {
            let (frames, err, held) = run_chunked(&data, chunk, limits);
            assert!(err.is_none(), "{err:?}");
            assert!(!frames
                .iter()
                .any(|f| matches!(f, Frame::Start(h) if h.name == Name::Message)));
            let sk = skipped(&frames);
            assert_eq!(sk.len(), 1);
            assert_eq!(sk[0].head, None);
            assert_eq!(sk[0].attrs, Attrs::default());
            assert_eq!(sk[0].size, big.len() as u64);
            assert_eq!(stanza_bytes(&frames), [&b"<iq from='a@x' id='after'/>"[..]]);
            assert!(held <= 1000 + chunk.min(data.len()));
        }
    }

    #[test]
    fn skip_mode_still_refuses_what_is_not_well_formed() {
        let pad = "x".repeat(3000);
        for (bad, why) in [
            (
                format!("<message><b>{pad}</c></message>"),
                "end tag does not match",
            ),
            (
                format!("<message><b>{pad}</b><p:q/></message>"),
                "undeclared prefix",
            ),
            (
                format!("<message><b>{pad}</b><q a='1' a='2'/></message>"),
                "duplicate",
            ),
            (
                format!(
                    "<message><b>{pad}</b><q xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'/></message>"
                ),
                "duplicate",
            ),
            (
                format!("<message><b>{pad}&bogus;</b></message>"),
                "undeclared entity",
            ),
            (
                format!("<message><b>{pad}\u{1}</b></message>"),
                "control character",
            ),
            (
                format!("<message><b>{pad}</b><𝒳/></message>"),
                "fourth edition",
            ),
            (
                format!("<message><b>{pad}</b><q xmlns:p=''/></message>"),
                "undeclared",
            ),
            (
                format!("<message><b>{pad}</b><!-- c --></message>"),
                "comment",
            ),
        ] {
            for chunk in [usize::MAX, 1, 64] {
                let (frames, err, _) = run_chunked(&bad, chunk, skipping(1000));
                let err = err.unwrap_or_else(|| panic!("{why}: no error in chunks of {chunk}"));
                assert!(
                    matches!(
                        err.condition,
                        StreamCondition::NotWellFormed | StreamCondition::RestrictedXml
                    ),
                    "{why}: {err:?}"
                );
                assert!(err.detail.contains(why), "{why}: {err:?}");
                assert!(skipped(&frames).is_empty());
            }
        }
        // What is well-formed passes, prefixes declared while skipping included.
        let ok = format!(
            "<message><b>{pad}</b><p:q xmlns:p='u' xmlns:r='u' p:x='1' r:y='2'><p:z/></p:q>\
             <stream:q/><q a='1' b='2' xml:lang='en' xmlns:stream='urn:s' stream:z=''/></message>"
        );
        for chunk in [usize::MAX, 1, 64] {
            let (frames, err, _) = run_chunked(&ok, chunk, skipping(1000));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(skipped(&frames).len(), 1);
        }
    }

    #[test]
    fn skip_mode_deep_nesting_costs_bounded_memory() {
        // 300,000 levels: far deeper than the names kept for end-tag matching
        // (max_stanza_size / 16 = 625 here), which are checked as deep as kept.
        let n = 300_000;
        let data = format!(
            "<message>{}{}</message><iq/>",
            "<a>".repeat(n),
            "</a>".repeat(n)
        );
        for chunk in [usize::MAX, 65536] {
            let mut f = Framer::new(skipping(10_000));
            feed_all(&mut f, HEADER.as_bytes()).unwrap();
            let mut frames = Vec::new();
            for c in data.as_bytes().chunks(chunk.min(data.len())) {
                frames.extend(feed_all(&mut f, c).unwrap());
                assert!(f.open.len() <= 10_000 / 16 + 1);
                assert!(f.buf.len() <= 10_000 + chunk.min(data.len()));
            }
            assert_eq!(skipped(&frames).len(), 1);
            assert_eq!(stanza_bytes(&frames), [&b"<iq/>"[..]]);
        }
        // A wrong end tag among the levels kept is still found.
        let bad = format!(
            "<message>{}</b>{}</message>",
            "<a>".repeat(2000),
            "</a>".repeat(2000)
        );
        let (_, err, _) = run_chunked(&bad, 4096, skipping(10_000));
        assert_eq!(
            err.map(|e| e.condition),
            Some(StreamCondition::NotWellFormed)
        );
    }

    #[test]
    fn fail_mode_limits_are_errors() {
        for (limits, data) in [
            (
                Limits {
                    max_token: 40,
                    ..Limits::new(10_000)
                },
                format!("<message a='{}'/>", "x".repeat(41)),
            ),
            (
                Limits {
                    max_token: 40,
                    ..Limits::new(10_000)
                },
                format!("<message><{}/></message>", "x".repeat(41)),
            ),
            (
                Limits {
                    max_token: 40,
                    ..Limits::new(10_000)
                },
                format!("<message>&#{};</message>", "0".repeat(41)),
            ),
            // A value made of references, cut by every read (found by fuzzing:
            // framer; the reference's bound and the value's were mixed up, and
            // reading stopped without a verdict).
            (
                Limits {
                    max_token: 40,
                    ..Limits::new(10_000)
                },
                format!("<message a='{}'/>", "&#x41;&lt;".repeat(5)),
            ),
            // A malformed reference past the bound: the bound comes first,
            // whatever the reads (fuzz: framer).
            (
                Limits {
                    max_token: 40,
                    ..Limits::new(10_000)
                },
                format!("<message a='{}&#650&lt;'/>", "x".repeat(38)),
            ),
        ] {
            for chunk in [usize::MAX, 1, 2, 3] {
                let (_, err, _) = run_chunked(&data, chunk, limits);
                assert_eq!(
                    err.map(|e| e.condition),
                    Some(StreamCondition::PolicyViolation),
                    "{data}"
                );
            }
        }
    }

    #[test]
    fn long_values_pass_with_a_larger_token_limit() {
        // A client's 1,500 apostrophes, re-escaped by the server as `&apos;`.
        let v = "&apos;".repeat(1500);
        let st = format!("<message from='a@x' to='b@y' id='{v}'><body>{v}</body></message>");
        let limits = Limits {
            max_token: 1 << 20,
            ..skipping(1 << 20)
        };
        for chunk in [usize::MAX, 1, 1000] {
            let (frames, err, _) = run_chunked(&st, chunk, limits);
            assert!(err.is_none());
            assert_eq!(stanza_bytes(&frames), [st.as_bytes()]);
        }
        let (_, err, _) = run_chunked(&st, 100, Limits::new(1 << 20));
        assert_eq!(
            err.map(|e| e.condition),
            Some(StreamCondition::PolicyViolation)
        );
    }

    /// The namespace-heavy input that cost quadratic time (255 prefixes bound
    /// to ~1 KB URIs with a reference in them, then child tags using every
    /// prefix): accepted, and the same whatever the reads. Its cost is
    /// measured by `cargo bench --bench worst_case`.
    #[test]
    fn many_prefixes_reused_by_many_attributes() {
        let uri = |i: usize| format!("urn:{}&amp;{i}", "u".repeat(1000));
        let decls: String = (0..255)
            .map(|i| format!(" xmlns:p{i}='{}'", uri(i)))
            .collect();
        let uses: String = (0..255).map(|i| format!(" p{i}:a='1'")).collect();
        let child = format!("<c{uses}/>");
        let st = format!("<message{decls}>{}</message>", child.repeat(20));
        let limits = Limits::new(1 << 20);
        for chunk in [usize::MAX, 4096] {
            let (frames, err, _) = run_chunked(&st, chunk, limits);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(stanza_bytes(&frames), [st.as_bytes()]);
        }
        // The same URI under two prefixes is the same namespace.
        let dup = format!(
            "<message{decls} xmlns:q='{}'><c p7:a='1' q:a='2'/></message>",
            uri(7)
        );
        let (_, err, _) = run_chunked(&dup, usize::MAX, limits);
        assert_eq!(
            err.map(|e| e.detail),
            Some("duplicate attribute (same namespace and name)".to_string())
        );
        // Plain attributes: duplicates found past the pairwise threshold too.
        let plain: String = (0..200).map(|i| format!(" a{i}='1'")).collect();
        let (_, err, _) = run_chunked(&format!("<message{plain} a150='2'/>"), 7, limits);
        assert_eq!(
            err.map(|e| e.detail),
            Some("duplicate attribute".to_string())
        );
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

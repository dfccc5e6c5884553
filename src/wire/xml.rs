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
mod resolve;
mod tag;

use bytes::{Buf, Bytes, BytesMut};
use lex::{nwf, restricted, Collect, QName, RefLex};
use ns::{DupSet, Keys, Scope, NO_NS};
use resolve::ResolveCx;
use tag::{AttrKind, AttrTok, EndCx, EndLex, Expect, Hashing, TagCx, TagLex, TagStep};

use crate::proto::ns::{NS_CLIENT, NS_COMPONENT, NS_STREAMS};
use crate::proto::StreamCondition;

/// Text of a `<handshake/>` is 40 hex digits; anything much longer is not a handshake.
const MAX_HANDSHAKE_TEXT: usize = 256;
/// Most of a stream error's `<text/>` kept (for a log line).
const MAX_ERROR_TEXT: usize = 1024;

/// Longest name, attribute value or reference by default: nothing XMPP needs
/// comes near it, and it bounds the work spent on one token.
pub const DEFAULT_MAX_TOKEN: usize = 8192;

mod element;
mod frame;
#[cfg(test)]
mod tests;

use frame::ValueRepr;
pub use frame::{
    Attrs, Excess, Frame, FrameError, Head, Limit, Limits, Name, Ns, Skipped, Stanza, StreamHeader,
    Value,
};

/// The top-level element being read (from its `<`).
struct Current {
    /// Stream offset of its `<`.
    start: usize,
    /// Its name and namespace, once its start tag is read.
    head: Option<Head>,
    /// The routing attributes: `to`, `from`, `type`, `id`.
    attrs: [Pending; 4],
    /// Text of a `<handshake/>`, or of a `<stream:error/>`'s `<text/>` child.
    text: Option<Collect>,
    /// The depth whose character data goes to `text`.
    text_depth: usize,
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
                let collecting = self
                    .cur
                    .as_ref()
                    .is_some_and(|c| c.text.is_some() && c.text_depth == self.depth);
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
            text_depth: 2,
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
            (Some(c), d) if d == c.text_depth => c.text.as_mut(),
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
            (Some(c), d) if d == c.text_depth => c.text.as_mut(),
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
}

impl Framer {
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

//! What the framer hands out: frames, stanzas and their routing attributes,
//! limits and errors.

use bytes::Bytes;

use super::DEFAULT_MAX_TOKEN;
use crate::proto::StreamCondition;

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

impl Attrs {
    /// Bytes the values hold beyond the element's own (decoded values).
    pub fn heap_len(&self) -> usize {
        [&self.to, &self.from, &self.type_, &self.id]
            .into_iter()
            .flatten()
            .map(Value::heap_len)
            .sum()
    }

    /// The same attributes in `new`: see [`Value::moved`].
    pub fn moved(&self, old: &Bytes, new: &Bytes, at: usize, delta: isize) -> Attrs {
        let m = |v: &Option<Value>| v.as_ref().map(|v| v.moved(old, new, at, delta));
        Attrs {
            to: m(&self.to),
            from: m(&self.from),
            type_: m(&self.type_),
            id: m(&self.id),
        }
    }
}

/// The logical value of an attribute. Written plainly (no references, no
/// whitespace that normalisation would change), it is a slice of the stanza's
/// own bytes and costs no allocation; otherwise it holds the decoded text.
#[derive(Clone)]
pub struct Value(pub(super) ValueRepr);

#[derive(Clone)]
pub(super) enum ValueRepr {
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

    /// A value that is exactly these bytes (a slice of the element it belongs
    /// to), if they are UTF-8.
    pub fn shared(b: Bytes) -> Option<Value> {
        std::str::from_utf8(&b).ok()?;
        Some(Value(ValueRepr::Shared(b)))
    }

    /// Bytes this value holds beyond the element's own (a decoded value).
    pub fn heap_len(&self) -> usize {
        match &self.0 {
            ValueRepr::Shared(_) => 0,
            ValueRepr::Owned(s) => s.len(),
        }
    }

    /// The same value in `new`, a copy of `old` whose bytes from offset `at`
    /// on moved by `delta` (the value lies wholly before or after `at`). A
    /// value that is not a slice of `old` is copied.
    pub fn moved(&self, old: &Bytes, new: &Bytes, at: usize, delta: isize) -> Value {
        if let ValueRepr::Shared(b) = &self.0 {
            let off = (b.as_ptr() as usize).wrapping_sub(old.as_ptr() as usize);
            if off.checked_add(b.len()).is_some_and(|end| end <= old.len()) {
                let start = if off >= at {
                    off.checked_add_signed(delta)
                } else {
                    Some(off)
                };
                if let Some(start) = start.filter(|s| s + b.len() <= new.len()) {
                    return Value(ValueRepr::Shared(new.slice(start..start + b.len())));
                }
            }
        }
        Value(ValueRepr::Owned(self.as_str().into()))
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
    /// The character data of a `<stream:error/>`'s first `<text/>` child (at
    /// most 1 KiB of it), references expanded; `None` for other elements.
    pub error_text: Option<String>,
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
    pub(super) fn new(condition: StreamCondition, detail: impl Into<String>) -> Self {
        FrameError {
            condition,
            detail: detail.into(),
        }
    }
}

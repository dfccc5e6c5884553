//! What the router itself writes on a stream: headers, stream errors and stanza
//! errors (bounces), serialised by hand with every attribute value escaped.
//!
//! A bounce is built from the captured top-level attributes of the original
//! stanza (RFC 6120 §8.3.1: `to` and `from` swapped, the same `id`,
//! `type='error'`) and is never built in reply to `type='error'` or
//! `type='result'`, which would risk error loops.
//!
//! A bounce is never much larger than what it answers: a `to`, `from` or `id`
//! longer than a JID can be ([`MAX_ECHO`]) is left out of it, and each echoed
//! value is quoted with whichever quote it contains less of, so a value full of
//! apostrophes is not re-escaped to six bytes per character (README, "Limits").

use std::fmt::{self, Write as _};

use bytes::Bytes;

use crate::proto::ns::{NS_PROSODY_COMPONENT, NS_STANZA_ERRORS, NS_STREAM_ERRORS};
use crate::proto::{ErrorType, StanzaCondition, StreamCondition};
use crate::wire::out::Envelope;
use crate::wire::xml::{Attrs, Head, Name, Ns, Value};

/// Longest `to`, `from` or `id` a bounce echoes: the longest JID (RFC 7622: three
/// parts of at most 1023 bytes, an `@` and a `/`). A longer `to` or `from`
/// cannot be an address; an `id` that long is not worth six times its size.
pub const MAX_ECHO: usize = 3 * 1023 + 2;

/// A stream error to send: the condition and an optional human-readable text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamCondition,
    pub text: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }
    pub fn with_text(condition: StreamCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    /// `<stream:error>…</stream:error></stream:stream>`.
    pub fn to_bytes(&self) -> Bytes {
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "<stream:error><{} xmlns='{NS_STREAM_ERRORS}'/>",
            self.condition.as_str()
        );
        if let Some(t) = &self.text {
            let _ = write!(s, "<text xmlns='{NS_STREAM_ERRORS}'>{}</text>", Escaped(t));
        }
        s.push_str("</stream:error></stream:stream>");
        Bytes::from(s)
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(t) => write!(f, "{} ({t})", self.condition),
            None => write!(f, "{}", self.condition),
        }
    }
}

/// Our stream header in reply to a component (XEP-0114 §3).
pub fn accept_header(from: &str, id: &str) -> Bytes {
    Bytes::from(format!(
        "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='{}' id='{}'>",
        Escaped(from),
        Escaped(id)
    ))
}

/// The header sent when a stream error has to go out before any header was
/// sent (RFC 6120 §4.9.1.2); no `from`/`id` when there is nothing to echo.
pub fn error_header(from: Option<&str>) -> Bytes {
    let mut s = String::from(
        "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept'",
    );
    if let Some(f) = from {
        let _ = write!(s, " from='{}'", Escaped(f));
    }
    s.push('>');
    Bytes::from(s)
}

/// Our stream header as a component towards an upstream server.
pub fn connect_header(to: &str) -> Bytes {
    Bytes::from(format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        Escaped(to)
    ))
}

/// A stanza error the router bounces to a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    pub type_: ErrorType,
    pub condition: StanzaCondition,
    pub text: Option<&'static str>,
    /// Prosody's extension element marking "component not connected".
    pub not_connected: bool,
}

impl Bounce {
    pub const BAD_REQUEST: Bounce =
        Bounce::new(ErrorType::Modify, StanzaCondition::BadRequest, None);
    pub const JID_MALFORMED: Bounce =
        Bounce::new(ErrorType::Modify, StanzaCondition::JidMalformed, None);
    pub const COMPONENT_UNAVAILABLE: Bounce = Bounce {
        type_: ErrorType::Wait,
        condition: StanzaCondition::RemoteServerTimeout,
        text: Some("Component unavailable"),
        not_connected: true,
    };
    pub const UPSTREAM_UNAVAILABLE: Bounce = Bounce::new(
        ErrorType::Wait,
        StanzaCondition::RemoteServerTimeout,
        Some("Upstream server unavailable"),
    );
    pub const NOT_FOUND: Bounce = Bounce::new(
        ErrorType::Cancel,
        StanzaCondition::RemoteServerNotFound,
        None,
    );
    pub const QUEUE_FULL: Bounce =
        Bounce::new(ErrorType::Wait, StanzaCondition::ResourceConstraint, None);
    /// From the upstream server, beyond the link's limits (skipped unread).
    pub const TOO_LARGE: Bounce = Bounce::new(
        ErrorType::Modify,
        StanzaCondition::PolicyViolation,
        Some("Stanza too large"),
    );
    /// Queued for a session that ended (replaced, or its peer gone) before it
    /// was written.
    pub const NOT_DELIVERED: Bounce = Bounce::new(
        ErrorType::Wait,
        StanzaCondition::RemoteServerTimeout,
        Some("Component connection closed before delivery"),
    );

    pub const fn new(
        type_: ErrorType,
        condition: StanzaCondition,
        text: Option<&'static str>,
    ) -> Self {
        Bounce {
            type_,
            condition,
            text,
            not_connected: false,
        }
    }

    /// The error stanza in reply to a stanza with these attributes, or `None`
    /// when the original is itself an error or a result (never answered).
    pub fn reply(&self, name: Name, attrs: &Attrs) -> Option<Bytes> {
        self.envelope(name, attrs).map(|e| e.bytes)
    }

    /// [`Bounce::reply`] with its routing attributes, ready to be routed and
    /// queued. Its values are slices of its own bytes (or, when escaped,
    /// copies of at most [`MAX_ECHO`] bytes): it holds nothing of the stanza
    /// it answers.
    pub fn envelope(&self, name: Name, attrs: &Attrs) -> Option<Envelope> {
        if matches!(attrs.type_.as_deref(), Some("error") | Some("result")) {
            return None;
        }
        let kind = name.as_str();
        let mut s = String::with_capacity(256);
        let _ = write!(s, "<{kind}");
        // Swapped: the original's `to` is the bounce's `from`, and back.
        let echoed = [("from", &attrs.to), ("to", &attrs.from), ("id", &attrs.id)];
        let mut spans = [None; 3];
        for (span, (key, value)) in spans.iter_mut().zip(echoed) {
            if let Some(v) = value.as_deref().filter(|v| v.len() <= MAX_ECHO) {
                let _ = write!(s, " {key}=");
                let start = s.len() + 1;
                let _ = write!(s, "{}", Quoted(v));
                // Written as is (nothing escaped) when the length is the same.
                *span = Some((start, s.len() - 1, s.len() - 1 - start == v.len()));
            }
        }
        let type_at = s.len() + " type='".len();
        let _ = write!(
            s,
            " type='error'><error type='{}'><{} xmlns='{NS_STANZA_ERRORS}'/>",
            self.type_.as_str(),
            self.condition.as_str()
        );
        if let Some(t) = self.text {
            let _ = write!(s, "<text xmlns='{NS_STANZA_ERRORS}'>{}</text>", Escaped(t));
        }
        if self.not_connected {
            let _ = write!(s, "<not-connected xmlns='{NS_PROSODY_COMPONENT}'/>");
        }
        let _ = write!(s, "</error></{kind}>");
        let bytes = Bytes::from(s);
        let value = |i: usize, original: &Option<Value>| {
            let (start, end, plain) = spans[i]?;
            if plain {
                Value::shared(bytes.slice(start..end))
            } else {
                original.as_deref().map(Value::from)
            }
        };
        let attrs = Attrs {
            from: value(0, &attrs.to),
            to: value(1, &attrs.from),
            id: value(2, &attrs.id),
            type_: Value::shared(bytes.slice(type_at..type_at + "error".len())),
        };
        Some(Envelope {
            head: Head {
                name,
                ns: Ns::Component,
            },
            attrs,
            bytes,
            xmlns_value: None,
            prefixed: false,
        })
    }
}

/// An attribute value with its quotes: `"` around a value with more `'` than
/// `"` in it, `'` otherwise; only `&`, `<`, that quote and tab, newline and
/// carriage return are escaped. So the value takes no more bytes than it
/// needed in any well-formed stanza it came from, plus a few.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (apos, quot) = self.0.bytes().fold((0usize, 0usize), |(a, q), b| {
            (a + usize::from(b == b'\''), q + usize::from(b == b'"'))
        });
        let (quote, esc): (char, &str) = if apos > quot {
            ('"', "&quot;")
        } else {
            ('\'', "&apos;")
        };
        f.write_char(quote)?;
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', quote, '\t', '\n', '\r']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'\t' => "&#x9;",
                b'\n' => "&#xA;",
                b'\r' => "&#xD;",
                _ => esc,
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)?;
        f.write_char(quote)
    }
}

/// XML-escapes text or an attribute value (quoted with either quote).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        // Tab, newline and carriage return as character references: literal
        // ones in an attribute value are normalised to spaces by the reader
        // (XML 1.0 §3.3.3), so a bounce's `id` would not match the original.
        while let Some(i) = rest.find(['&', '<', '>', '\'', '"', '\t', '\n', '\r']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'\'' => "&apos;",
                b'\t' => "&#x9;",
                b'\n' => "&#xA;",
                b'\r' => "&#xD;",
                _ => "&quot;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            Escaped("a'b\"<&>").to_string(),
            "a&apos;b&quot;&lt;&amp;&gt;"
        );
        assert_eq!(Escaped("a\tb\nc\rd").to_string(), "a&#x9;b&#xA;c&#xD;d");
    }

    /// Regression (fuzz target stream_header): a value with a newline, echoed in
    /// an attribute, must read back unchanged, not with the newline normalised
    /// to a space.
    #[test]
    fn escaped_attribute_values_round_trip() {
        use rxml::{Event, Parse};
        for v in ["a\nb", "\t\r\n", " x\r\ny ", "é'\"<&>\u{10000}"] {
            let doc = format!("<x a='{}' b=\"{}\"/>", Escaped(v), Escaped(v));
            let mut p = rxml::Parser::default();
            let mut slice = doc.as_bytes();
            let Ok(Some(Event::StartElement(_, _, mut attrs))) = p.parse(&mut slice, true) else {
                panic!("{doc}");
            };
            assert_eq!(
                attrs.remove(&rxml::Namespace::NONE, "a").as_deref(),
                Some(v)
            );
            assert_eq!(
                attrs.remove(&rxml::Namespace::NONE, "b").as_deref(),
                Some(v)
            );
        }
    }

    #[test]
    fn bounce_swaps_addresses() {
        let attrs = Attrs {
            to: Some("b.x".into()),
            from: Some("a'x".into()),
            type_: Some("chat".into()),
            id: Some("1".into()),
        };
        let b = Bounce::COMPONENT_UNAVAILABLE
            .reply(Name::Message, &attrs)
            .unwrap();
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.starts_with("<message from='b.x' to=\"a'x\" id='1' type='error'><error type='wait'><remote-server-timeout"), "{s}");
        assert!(s.contains("<not-connected xmlns='xmpp:prosody.im/protocol/component'/>"));
        for t in ["error", "result"] {
            let a = Attrs {
                type_: Some(t.into()),
                ..attrs.clone()
            };
            assert!(Bounce::BAD_REQUEST.reply(Name::Iq, &a).is_none());
        }
    }

    /// Each echoed value reads back unchanged, and costs no more bytes than in
    /// the stanza it answers (where every `'` inside `'…'` took six).
    #[test]
    fn bounce_values_are_quoted_compactly_and_read_back() {
        use rxml::{Event, Parse};
        for v in ["'''", "\"\"'", "a'b\"c<d&e>f", "\t\n\r", "plain"] {
            let attrs = Attrs {
                to: Some("b.x".into()),
                from: Some("a.x".into()),
                type_: None,
                id: Some(v.into()),
            };
            let b = Bounce::BAD_REQUEST.reply(Name::Iq, &attrs).unwrap();
            let doc = std::str::from_utf8(&b).unwrap();
            let mut p = rxml::Parser::default();
            let mut slice = doc.as_bytes();
            let Ok(Some(Event::StartElement(_, _, mut got))) = p.parse(&mut slice, false) else {
                panic!("{doc}");
            };
            assert_eq!(
                got.remove(&rxml::Namespace::NONE, "id").as_deref(),
                Some(v),
                "{doc}"
            );
        }
        let apos = "'".repeat(1000);
        let attrs = Attrs {
            id: Some(apos.as_str().into()),
            ..Attrs::default()
        };
        let b = Bounce::BAD_REQUEST.reply(Name::Iq, &attrs).unwrap();
        assert!(b.len() < 1000 + 200, "{} bytes", b.len());
    }

    #[test]
    fn over_long_values_are_not_echoed() {
        let long = "x".repeat(MAX_ECHO + 1);
        let ok = "y".repeat(MAX_ECHO);
        let attrs = Attrs {
            to: Some(long.as_str().into()),
            from: Some(ok.as_str().into()),
            type_: None,
            id: Some(long.as_str().into()),
        };
        let b = Bounce::BAD_REQUEST.reply(Name::Message, &attrs).unwrap();
        let s = std::str::from_utf8(&b).unwrap();
        assert!(!s.contains(" from="), "{s}");
        assert!(!s.contains(" id="), "{s}");
        assert!(
            s.starts_with(&format!("<message to='{ok}' type='error'>")),
            "{s}"
        );
        assert!(b.len() < MAX_ECHO + 300);
    }

    #[test]
    fn stream_error_bytes() {
        let e = StreamError::with_text(StreamCondition::Conflict, "Replaced <x>");
        assert_eq!(
            &e.to_bytes()[..],
            b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced &lt;x&gt;</text></stream:error></stream:stream>"
        );
    }

    /// A bounce carries its own routing attributes, slices of its own bytes
    /// where nothing was escaped, and `type='error'` (so it is never bounced).
    #[test]
    fn bounce_envelope_carries_its_addresses() {
        let attrs = Attrs {
            to: Some("b.x".into()),
            from: Some("a'x@c.example/r".into()),
            type_: Some("chat".into()),
            id: Some("1".into()),
        };
        let e = Bounce::NOT_DELIVERED
            .envelope(Name::Message, &attrs)
            .unwrap();
        assert_eq!(e.attrs.from.as_deref(), Some("b.x"));
        assert_eq!(e.attrs.to.as_deref(), Some("a'x@c.example/r"));
        assert_eq!(e.attrs.id.as_deref(), Some("1"));
        assert_eq!(e.attrs.type_.as_deref(), Some("error"));
        assert_eq!(
            Some(e.bytes.clone()),
            Bounce::NOT_DELIVERED.reply(Name::Message, &attrs)
        );
        // Only the escaped value is held apart.
        assert_eq!(e.attrs.heap_len(), 0);
        let attrs = Attrs {
            from: Some("a&b@c.example".into()),
            ..attrs
        };
        let e = Bounce::NOT_DELIVERED.envelope(Name::Iq, &attrs).unwrap();
        assert_eq!(e.attrs.to.as_deref(), Some("a&b@c.example"));
        assert_eq!(e.attrs.heap_len(), "a&b@c.example".len());
        assert!(Bounce::NOT_DELIVERED.envelope(Name::Iq, &e.attrs).is_none());
    }
}

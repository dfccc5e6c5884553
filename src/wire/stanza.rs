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
use crate::wire::xml::{Attrs, Frame, Framer, Limits, Name};

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
        if matches!(attrs.type_.as_deref(), Some("error") | Some("result")) {
            return None;
        }
        let kind = name.as_str();
        let mut s = String::with_capacity(256);
        let _ = write!(s, "<{kind}");
        // Swapped: the original's `to` is the bounce's `from`, and back.
        for (key, value) in [("from", &attrs.to), ("to", &attrs.from), ("id", &attrs.id)] {
            if let Some(v) = value.as_deref().filter(|v| v.len() <= MAX_ECHO) {
                let _ = write!(s, " {key}={}", Quoted(v));
            }
        }
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
        Some(Bytes::from(s))
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

/// Name and routing attributes of a queued stanza, by framing its start tag
/// again (as an empty element) in a stream like the one it came from.
pub fn reframe(b: &[u8]) -> Option<(Name, Attrs)> {
    const HEADER: &[u8] = b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>";
    let tag = start_tag_only(b)?;
    let size = tag.len().max(10_000) + 64;
    let mut f = Framer::new(Limits {
        max_stanza_size: size,
        max_depth: 1,
        max_attributes: usize::MAX,
        // It was framed once already, maybe with larger tokens (a link's).
        max_token: size,
        ..Limits::new(size)
    });
    f.buf_mut().extend_from_slice(HEADER);
    f.buf_mut().extend_from_slice(&tag);
    loop {
        match f.next_frame() {
            Ok(Some(Frame::Stanza(st))) => return Some((st.head.name, st.attrs)),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The start tag of a serialised element, made an empty element (`<x a='1'/>`).
fn start_tag_only(b: &[u8]) -> Option<Vec<u8>> {
    let mut quote = None;
    for (i, &c) in b.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'>' => {
                let mut v = b[..i].to_vec();
                if v.last() != Some(&b'/') {
                    v.push(b'/');
                }
                v.push(b'>');
                return Some(v);
            }
            None => {}
        }
    }
    None
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
    fn reframe_recovers_name_and_addresses() {
        let (name, attrs) =
            reframe(b"<message to='u@x' from='c.example/r' id='a&amp;b' type='chat'><body>hi</body></message>")
                .unwrap();
        assert_eq!(name, Name::Message);
        assert_eq!(attrs.to.as_deref(), Some("u@x"));
        assert_eq!(attrs.from.as_deref(), Some("c.example/r"));
        assert_eq!(attrs.id.as_deref(), Some("a&b"));
        let reply = Bounce::UPSTREAM_UNAVAILABLE.reply(name, &attrs).unwrap();
        let s = std::str::from_utf8(&reply).unwrap();
        assert!(s.starts_with("<message from='u@x' to='c.example/r' id='a&amp;b' type='error'><error type='wait'><remote-server-timeout"), "{s}");
        assert!(s.contains("Upstream server unavailable"));
        let (name, attrs) =
            reframe(b"<iq xmlns='jabber:component:accept' type='result' id='1' to='x' from='c'/>")
                .unwrap();
        assert_eq!(name, Name::Iq);
        assert!(Bounce::UPSTREAM_UNAVAILABLE.reply(name, &attrs).is_none());
        assert!(reframe(b"<message").is_none());
        // Only the start tag is framed again: quoted '>' and '/' do not end it.
        let (name, attrs) =
            reframe(b"<presence from='c/a>b' to=\"u/x\"><status>1 > 0</status></presence>")
                .unwrap();
        assert_eq!(name, Name::Presence);
        assert_eq!(attrs.from.as_deref(), Some("c/a>b"));
        assert_eq!(attrs.to.as_deref(), Some("u/x"));
        assert_eq!(
            start_tag_only(b"<iq id='1'/>").as_deref(),
            Some(&b"<iq id='1'/>"[..])
        );
    }

    #[test]
    fn stream_error_bytes() {
        let e = StreamError::with_text(StreamCondition::Conflict, "Replaced <x>");
        assert_eq!(
            &e.to_bytes()[..],
            b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced &lt;x&gt;</text></stream:error></stream:stream>"
        );
    }
}

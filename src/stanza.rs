//! What the router itself writes on a stream: headers, stream errors and stanza
//! errors (bounces), serialised by hand with every attribute value escaped.
//!
//! A bounce is built from the captured top-level attributes of the original
//! stanza (RFC 6120 §8.3.1: `to` and `from` swapped, the same `id`,
//! `type='error'`) and is never built in reply to `type='error'` or
//! `type='result'`, which would risk error loops.

use std::fmt::{self, Write as _};

use bytes::Bytes;

use crate::xml::{Attrs, Name};

pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// RFC 6120 §4.9.3 stream error conditions the router sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamCondition {
    BadFormat,
    /// RFC 6120 4.9.3.2: a namespace prefix that is not supported (a stream
    /// header whose streams namespace is not under the prefix `stream`).
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostUnknown,
    ImproperAddressing,
    InvalidFrom,
    InvalidNamespace,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    ResourceConstraint,
    RestrictedXml,
    SystemShutdown,
    /// RFC 6120 4.9.3.22: the stream is not UTF-8 (an XML declaration naming another encoding).
    UnsupportedEncoding,
    UnsupportedStanzaType,
}

impl StreamCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamCondition::BadFormat => "bad-format",
            StreamCondition::BadNamespacePrefix => "bad-namespace-prefix",
            StreamCondition::Conflict => "conflict",
            StreamCondition::ConnectionTimeout => "connection-timeout",
            StreamCondition::HostUnknown => "host-unknown",
            StreamCondition::ImproperAddressing => "improper-addressing",
            StreamCondition::InvalidFrom => "invalid-from",
            StreamCondition::InvalidNamespace => "invalid-namespace",
            StreamCondition::NotAuthorized => "not-authorized",
            StreamCondition::NotWellFormed => "not-well-formed",
            StreamCondition::PolicyViolation => "policy-violation",
            StreamCondition::ResourceConstraint => "resource-constraint",
            StreamCondition::RestrictedXml => "restricted-xml",
            StreamCondition::SystemShutdown => "system-shutdown",
            StreamCondition::UnsupportedEncoding => "unsupported-encoding",
            StreamCondition::UnsupportedStanzaType => "unsupported-stanza-type",
        }
    }
}

impl fmt::Display for StreamCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// RFC 6120 §8.3.2 error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Cancel,
    Modify,
    Wait,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza error the router bounces to a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    pub type_: ErrorType,
    pub condition: &'static str,
    pub text: Option<&'static str>,
    /// Prosody's extension element marking "component not connected".
    pub not_connected: bool,
}

impl Bounce {
    pub const BAD_REQUEST: Bounce = Bounce::new(ErrorType::Modify, "bad-request", None);
    pub const JID_MALFORMED: Bounce = Bounce::new(ErrorType::Modify, "jid-malformed", None);
    pub const COMPONENT_UNAVAILABLE: Bounce = Bounce {
        type_: ErrorType::Wait,
        condition: "remote-server-timeout",
        text: Some("Component unavailable"),
        not_connected: true,
    };
    pub const UPSTREAM_UNAVAILABLE: Bounce = Bounce::new(
        ErrorType::Wait,
        "remote-server-timeout",
        Some("Upstream server unavailable"),
    );
    pub const NOT_FOUND: Bounce = Bounce::new(ErrorType::Cancel, "remote-server-not-found", None);
    pub const QUEUE_FULL: Bounce = Bounce::new(ErrorType::Wait, "resource-constraint", None);

    pub const fn new(
        type_: ErrorType,
        condition: &'static str,
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
        if let Some(to) = &attrs.to {
            let _ = write!(s, " from='{}'", Escaped(to));
        }
        if let Some(from) = &attrs.from {
            let _ = write!(s, " to='{}'", Escaped(from));
        }
        if let Some(id) = &attrs.id {
            let _ = write!(s, " id='{}'", Escaped(id));
        }
        let _ = write!(
            s,
            " type='error'><error type='{}'><{} xmlns='{NS_STANZA_ERRORS}'/>",
            self.type_.as_str(),
            self.condition
        );
        if let Some(t) = self.text {
            let _ = write!(s, "<text xmlns='{NS_STANZA_ERRORS}'>{}</text>", Escaped(t));
        }
        if self.not_connected {
            s.push_str("<not-connected xmlns='xmpp:prosody.im/protocol/component'/>");
        }
        let _ = write!(s, "</error></{kind}>");
        Some(Bytes::from(s))
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
        assert!(s.starts_with("<message from='b.x' to='a&apos;x' id='1' type='error'><error type='wait'><remote-server-timeout"), "{s}");
        assert!(s.contains("<not-connected xmlns='xmpp:prosody.im/protocol/component'/>"));
        for t in ["error", "result"] {
            let a = Attrs {
                type_: Some(t.into()),
                ..attrs.clone()
            };
            assert!(Bounce::BAD_REQUEST.reply(Name::Iq, &a).is_none());
        }
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

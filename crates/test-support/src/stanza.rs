//! What test clients write: stream headers, the handshake, messages.

use std::fmt::Display;

use sha1::{Digest, Sha1};

/// A component stream header to `a.example`, without an XML declaration: the
/// literal behind [`HEADER_A`] and [`DECL_HEADER_A`].
macro_rules! header_a {
    () => {
        "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='a.example'>"
    };
}

/// The XML declaration test clients send first.
pub const XML_DECL: &str = "<?xml version='1.0'?>";

/// A component stream header to `a.example` (framer tests put stanzas after it).
pub const HEADER_A: &str = header_a!();

/// [`HEADER_A`] after the XML declaration.
pub const DECL_HEADER_A: &str = concat!("<?xml version='1.0'?>", header_a!());

/// The component stream header every receiver of the router reads stanzas
/// behind: the default namespace and the `stream` prefix, nothing else.
pub const CANON_HEADER: &str = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>";

/// The XML declaration and a component's stream header to `to` (XEP-0114).
pub fn header(to: &str) -> String {
    format!(
        "{XML_DECL}<stream:stream xmlns='{}' xmlns:stream='{}' to='{to}'>",
        crate::ns::COMPONENT,
        crate::ns::STREAMS
    )
}

/// The XML declaration and a client's stream header to `host` (RFC 6120).
pub fn c2s_header(host: &str) -> String {
    format!(
        "{XML_DECL}<stream:stream xmlns='{}' xmlns:stream='{}' to='{}' version='1.0'>",
        crate::ns::CLIENT,
        crate::ns::STREAMS,
        crate::inspect::escape(host)
    )
}

/// The XEP-0114 handshake digest: lower-case hex SHA-1 of stream id + secret.
/// The test client's own, not the router's.
pub fn handshake_token(id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(id.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// `<handshake>` with the digest for stream `id` and `secret`.
pub fn handshake(id: &str, secret: &str) -> String {
    format!("<handshake>{}</handshake>", handshake_token(id, secret))
}

/// A chat `<message>` (values are written as given: escape them yourself).
pub fn message(from: &str, to: &str, id: impl Display, body: &str) -> String {
    format!("<message from='{from}' to='{to}' id='{id}' type='chat'><body>{body}</body></message>")
}

/// A chat `<message>` whose body is its id: what arrives names itself.
pub fn msg(from: &str, to: &str, id: &str) -> String {
    message(from, to, id, id)
}

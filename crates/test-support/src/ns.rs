//! XML namespaces the tests name.

/// The stream namespace (`stream:` prefix): `<stream:stream>`, `<stream:error>`.
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// XEP-0114's content namespace.
pub const COMPONENT: &str = "jabber:component:accept";
/// RFC 6120's client namespace.
pub const CLIENT: &str = "jabber:client";
/// Stream error conditions.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions.
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Prosody's `<not-connected/>` in a bounce for a component that is offline.
pub const PROSODY_COMPONENT: &str = "xmpp:prosody.im/protocol/component";
/// SASL (c2s login).
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding (c2s login).
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

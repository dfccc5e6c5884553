//! Namespace names the router reads or writes.

/// The streams namespace (`<stream:stream>`, `<stream:error>`).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// XEP-0114's stream namespace.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// The client namespace, which components may use for their stanzas.
pub const NS_CLIENT: &str = "jabber:client";
/// RFC 6120 §4.9: stream error conditions and their `<text/>`.
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// RFC 6120 §8.3: stanza error conditions and their `<text/>`.
pub const NS_STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Prosody's marker for "component not connected" in a bounce.
pub const NS_PROSODY_COMPONENT: &str = "xmpp:prosody.im/protocol/component";
/// XEP-0199 (the upstream links' liveness ping).
pub const NS_PING: &str = "urn:xmpp:ping";

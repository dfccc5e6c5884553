//! Upstream links: one XEP-0114 client stream per authenticated component to the
//! XMPP server behind the router (SPEC §5). Placeholder until the gateway work lands:
//! no link is ever up, so stanzas for unknown domains bounce as "upstream unavailable".

use bytes::Bytes;

/// Why a stanza could not be handed to an upstream link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSendError {
    /// The link is not authenticated right now (connecting, backing off).
    Down,
    /// The link's queue is full.
    Full,
}

/// One component's link to the upstream server.
pub struct Link {}

impl Link {
    pub fn try_send(&self, _stanza: Bytes) -> Result<(), LinkSendError> {
        Err(LinkSendError::Down)
    }
    pub fn close(&self) {}
    pub fn reconfigure(&self) {}
}

/// Start the upstream link of a freshly authenticated session, when an
/// upstream is configured. Placeholder: no link yet.
pub fn start(
    _router: &std::sync::Arc<crate::router::Router>,
    _reg: &std::sync::Arc<crate::router::Registration>,
    _session: &std::sync::Arc<crate::router::Session>,
) {
}

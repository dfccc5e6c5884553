//! Phase 3 of a component connection: the checks on every top-level element,
//! in the order of docs/behaviour.md#stanza-checks, then the routing decision;
//! the connection queues the bounce, if any, for its own peer.

use tracing::debug;

use super::conn::{Connection, End, Input, Live};
use crate::proto::{jid, StreamCondition};
use crate::router::{Routed, Source};
use crate::wire::out::Out;
use crate::wire::stanza::StreamError;
use crate::wire::xml::{Frame, Head, Name, Ns, Stanza};

pub(super) const HANDSHAKE: Head = Head {
    name: Name::Handshake,
    ns: Ns::Component,
};

pub(super) fn is_peer_stream_error(head: Head) -> bool {
    head.name == Name::Error && head.ns == Ns::Streams
}

/// Checks on a top-level start tag after authentication.
fn check_head(head: Head) -> Option<StreamError> {
    if head == HANDSHAKE || is_peer_stream_error(head) {
        return None;
    }
    if !head.name.is_stanza() {
        return Some(StreamError::new(StreamCondition::UnsupportedStanzaType));
    }
    if !matches!(head.ns, Ns::Component | Ns::Client) {
        return Some(StreamError::new(StreamCondition::InvalidNamespace));
    }
    None
}

/// `from` must be at the component's domain (XEP-0114 §3): `None` if it is.
fn check_from(st: &Stanza, domain: &str) -> Option<StreamError> {
    let from_ok = st
        .attrs
        .from
        .as_deref()
        .and_then(jid::split)
        // Equal to our own (valid) domain means valid: no label scan.
        .is_some_and(|j| jid::same_domain(j.domain, domain));
    (!from_ok).then(|| {
        StreamError::with_text(
            StreamCondition::InvalidFrom,
            format!(
                "'from' must be an address at {domain} (got {})",
                st.attrs.from.as_deref().unwrap_or("none")
            ),
        )
    })
}

impl Connection {
    /// Phase 3, until the connection ends.
    pub(super) async fn route_loop(&mut self, live: &Live) -> End {
        let domain: &str = &live.domain.name;
        loop {
            let st = match self.next(None).await {
                Input::Frame(Frame::Stanza(st)) => st,
                Input::Frame(Frame::Start(head)) => {
                    if let Some(err) = check_head(head) {
                        debug!(peer = %self.peer, domain, "refusing top-level element: {err}");
                        return End::Error(err);
                    }
                    continue;
                }
                Input::Frame(_) => continue,
                Input::End(e) => return e,
            };
            if st.head.name == Name::Handshake {
                continue; // a second handshake is ignored
            }
            if is_peer_stream_error(st.head) {
                self.log_peer_error(&st);
                return End::PeerClosed;
            }
            self.counters.stanza_in(st.bytes.len());
            if live.domain.is_detached() {
                self.discard();
                continue;
            }
            if let Some(err) = check_from(&st, domain) {
                return End::Error(err);
            }
            // Its response comes back to this connection of a balanced set.
            (live.domain).note_request(st.head.name, &st.attrs, live.session.id);
            let routed = self
                .env
                .router
                .route(Source::Component(&live.domain), st.into());
            if let Err(end) = self.answer(routed).await {
                return end;
            }
        }
    }

    /// Perform the routing decision's answer: queue a bounce for our own peer
    /// (waiting for room: only this connection is held back).
    async fn answer(&self, routed: Routed) -> Result<(), End> {
        match routed {
            Routed::Delivered => {}
            Routed::Discarded => self.discard(),
            Routed::Bounce(b, item) => {
                self.counters.bounce(b.condition.into());
                let reply = item
                    .into_stanza()
                    .and_then(|e| b.envelope(e.head.name, &e.attrs));
                if let Some(reply) = reply {
                    if self.out.push(Out::Stanza(reply)).await.is_err() {
                        return Err(End::Gone);
                    }
                }
            }
        }
        Ok(())
    }
}

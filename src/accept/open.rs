//! Phases 1 and 2 of a component connection: the stream header and the
//! handshake, then the session joins its domain under the conflict policy.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{info, warn};

use super::conn::{Connection, End, Input, Live};
use super::stanzas::{is_peer_stream_error, HANDSHAKE};
use crate::metrics::{ConnectionState, Outcome};
use crate::proto::{handshake_matches, handshake_token, jid, new_stream_id, StreamCondition};
use crate::router::{hold, Attach, Domain};
use crate::session::Session;
use crate::wire::out::Out;
use crate::wire::reader::Sizing;
use crate::wire::stanza::{accept_header, StreamError};
use crate::wire::xml::{Frame, Stanza};

fn improper_addressing(text: &str) -> End {
    End::Error(StreamError::with_text(
        StreamCondition::ImproperAddressing,
        text,
    ))
}

impl Connection {
    /// Phases 1 and 2: the stream header, then the handshake.
    pub(super) async fn open_and_authenticate(&mut self) -> Result<Live, End> {
        let deadline = Instant::now() + self.env.router.settings().handshake_timeout;
        let (domain, stream_id) = self.open_stream(deadline).await?;
        self.authenticate(&domain, &stream_id, deadline).await
    }

    /// Phase 1: the peer's stream header names an attached domain; ours
    /// answers it with a fresh stream id.
    async fn open_stream(&mut self, deadline: Instant) -> Result<(Arc<Domain>, String), End> {
        let header = match self.next(Some(deadline)).await {
            Input::Frame(Frame::Header(h)) => h,
            Input::Frame(_) => {
                return Err(End::Error(StreamError::new(
                    StreamCondition::InvalidNamespace,
                )));
            }
            Input::End(e) => return Err(e),
        };
        let Some(to) = header.to else {
            return Err(improper_addressing(
                "A 'to' attribute is required on stream headers",
            ));
        };
        let Some(j) = jid::parse(&to) else {
            return Err(improper_addressing(
                "The 'to' attribute is not a valid domain",
            ));
        };
        if j.local.is_some() || j.resource.is_some() {
            return Err(improper_addressing(
                "The 'to' attribute must be a bare domain",
            ));
        }
        let Some(domain) = self.env.router.domain(&jid::routing_key(j.domain)) else {
            info!(event = "header.refused", condition = "host-unknown", peer = %self.peer, domain = %to, "connection for unknown component refused (host-unknown)");
            return Err(End::Error(StreamError::with_text(
                StreamCondition::HostUnknown,
                format!("{to} does not match any configured external component"),
            )));
        };
        self.domain = Some(domain.name.clone());
        let stream_id = new_stream_id();
        if self.send(accept_header(&to, &stream_id)).await.is_err() {
            return Err(End::Gone);
        }
        self.header_sent = true;
        Ok((domain, stream_id))
    }

    /// Phase 2: a valid `<handshake/>` before anything else.
    async fn authenticate(
        &mut self,
        domain: &Arc<Domain>,
        stream_id: &str,
        deadline: Instant,
    ) -> Result<Live, End> {
        let st = loop {
            match self.next(Some(deadline)).await {
                Input::Frame(Frame::Start(head)) => {
                    if is_peer_stream_error(head) || head == HANDSHAKE {
                        continue;
                    }
                    warn!(peer = %self.peer, domain = %domain.name, element = head.name.as_str(), "element before authentication");
                    return Err(End::Error(StreamError::with_text(
                        StreamCondition::NotAuthorized,
                        "Authenticate with <handshake/> first",
                    )));
                }
                Input::Frame(Frame::Stanza(st)) => break st,
                Input::Frame(_) => continue,
                Input::End(e) => return Err(e),
            }
        };
        if is_peer_stream_error(st.head) {
            self.log_peer_error(&st);
            return Err(End::PeerClosed);
        }
        if let Some(end) = self.check_handshake(domain, stream_id, &st) {
            return Err(end);
        }
        self.attach(domain).await
    }

    /// `Some(end)` when the handshake fails.
    fn check_handshake(&self, domain: &Domain, stream_id: &str, st: &Stanza) -> Option<End> {
        let not_authorized = |why: &str| {
            self.env.router.globals.handshake(Outcome::Failed);
            warn!(event = "handshake.failed", peer = %self.peer, domain = %domain.name, "authentication failed: {why}");
            Some(End::Error(StreamError::with_text(
                StreamCondition::NotAuthorized,
                "Given token does not match calculated token",
            )))
        };
        if st.has_children {
            return not_authorized("handshake has child elements");
        }
        let Some(token) = handshake_token(&st.text) else {
            return not_authorized("handshake is not 40 hex digits");
        };
        let settings = domain.settings();
        if !handshake_matches(stream_id, settings.secret.expose(), token) {
            return not_authorized("wrong secret");
        }
        self.env.router.globals.handshake(Outcome::Ok);
        None
    }

    /// Join the domain under its conflict policy and confirm the handshake.
    async fn attach(&mut self, domain: &Arc<Domain>) -> Result<Live, End> {
        let session = self.new_session(domain);
        // `<handshake/>` is queued only once the conflict policy accepted the
        // session (a connection refused with `conflict` must not be told it
        // authenticated; Prosody sends only the conflict too), and before the
        // session becomes routable, so it precedes every stanza routed to the
        // component. Our outbox holds at most our header here, so `try_push`
        // fails only when the connection is gone.
        let out = &self.out;
        let confirm = || {
            out.try_push(Out::Raw(Bytes::from_static(b"<handshake/>")))
                .is_ok()
        };
        let router = &self.env.router;
        let (link, drain) = match domain.attach(session.clone(), router.upstream_queue(), confirm) {
            Attach::Attached {
                replaced,
                link,
                drain,
            } => {
                for old in replaced {
                    info!(domain = %domain.name, old_peer = %old.peer, new_peer = %self.peer, "conflict: replacing the existing session");
                    // The old connection bounces what it could not write, then
                    // the domain renews its upstream link.
                    old.control.kill(StreamError::with_text(
                        StreamCondition::Conflict,
                        "Replaced by a new connection",
                    ));
                }
                (link, drain)
            }
            Attach::Gone => return Err(End::Gone),
            refused => return Err(self.refusal(domain, refused)),
        };
        info!(event = "session.authenticated", peer = %self.peer, domain = %domain.name, "component authenticated");
        if let Some(new) = link {
            self.env.links.drive(router, domain, new);
        }
        if let Some(gen) = drain {
            // The held stanzas go first, in order, then live traffic.
            self.env.tasks.spawn(hold::drain(domain.clone(), gen));
        }
        self.authenticated = true;
        self.reader
            .set_limits(router.settings().limits, Sizing::STREAM);
        // The handshake phase needed a read buffer; an idle session does not.
        self.reader.shrink();
        Ok(Live {
            domain: domain.clone(),
            session,
        })
    }

    /// The session this connection becomes, its counters joining the domain's.
    fn new_session(&mut self, domain: &Domain) -> Arc<Session> {
        let since = SystemTime::now();
        let mut state = self
            .metrics
            .take()
            .unwrap_or_else(|| self.env.router.globals.connection_opened());
        state.set_state(ConnectionState::Authenticated);
        Arc::new(Session {
            id: self.id,
            domain: domain.name.clone(),
            peer: self.peer,
            since,
            outbox: self.out.clone(),
            control: self.control.clone(),
            metrics: domain
                .metrics
                .adopt_session(self.counters.clone(), self.peer, since),
            state: Mutex::new(state),
        })
    }

    /// Why the domain did not take this connection, as its end.
    fn refusal(&self, domain: &Domain, refused: Attach) -> End {
        match refused {
            Attach::Conflict => {
                info!(domain = %domain.name, peer = %self.peer, "conflict: component already connected, new connection refused");
                End::Error(StreamError::with_text(
                    StreamCondition::Conflict,
                    "Component already connected",
                ))
            }
            Attach::Full(max) => {
                info!(domain = %domain.name, peer = %self.peer, max, "conflict: the component's set of connections is full (max_instances), new connection refused");
                End::Error(StreamError::with_text(
                    StreamCondition::Conflict,
                    format!("Component already has {max} connections (max_instances)"),
                ))
            }
            Attach::Detached => End::Error(StreamError::with_text(
                StreamCondition::HostUnknown,
                format!("{} is no longer served", domain.name),
            )),
            // Not refusals: `attach` handles them itself.
            Attach::Attached { .. } | Attach::Gone => End::Gone,
        }
    }
}

//! The state of one component connection and what every phase uses: the next
//! frame (with the kill and the deadline checked before every read), and how
//! the connection ends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use super::{Env, PRE_AUTH_MAX_ELEMENT};
use crate::metrics::{ConnectionMetrics, SessionCounters};
use crate::proto::StreamCondition;
use crate::router::Domain;
use crate::session::{Control, Outbox, PushError, Session};
use crate::wire::out::Out;
use crate::wire::reader::{FramedReader, ReadError};
use crate::wire::stanza::{error_header, StreamError};
use crate::wire::writer::Closing;
use crate::wire::xml::{Frame, FrameError, Stanza};

/// How a connection ended.
pub(super) enum End {
    /// Send this stream error, then close.
    Error(StreamError),
    /// The peer closed its stream or sent a stream error: answer `</stream:stream>`.
    PeerClosed,
    /// The TCP connection is gone (EOF or I/O error): nothing to send.
    Gone,
}

/// What interrupted a read.
// A frame is moved, not boxed: boxing would cost an allocation per stanza.
#[allow(clippy::large_enum_variant)]
pub(super) enum Input {
    Frame(Frame),
    End(End),
}

/// An authenticated session of a domain: what phase 3 works with.
pub(super) struct Live {
    pub domain: Arc<Domain>,
    pub session: Arc<Session>,
}

pub(super) struct Connection {
    pub id: u64,
    pub peer: SocketAddr,
    pub env: Env,
    pub reader: FramedReader,
    pub out: Outbox,
    close_tx: Option<oneshot::Sender<Closing>>,
    pub control: Arc<Control>,
    pub header_sent: bool,
    /// The domain from the stream header, once accepted.
    pub domain: Option<Arc<str>>,
    /// The handshake succeeded: the full limits and read sizes apply.
    pub authenticated: bool,
    /// Its place in the `connections{state}` gauge until it authenticates
    /// (then its session holds it).
    pub metrics: Option<ConnectionMetrics>,
    /// Its stanza counters (shared with its writer).
    pub counters: Arc<SessionCounters>,
}

impl Connection {
    pub fn new(
        id: u64,
        peer: SocketAddr,
        env: Env,
        reader: FramedReader,
        out: Outbox,
        close_tx: oneshot::Sender<Closing>,
        control: Arc<Control>,
    ) -> Self {
        Connection {
            id,
            peer,
            env,
            reader,
            out,
            close_tx: Some(close_tx),
            control,
            header_sent: false,
            domain: None,
            authenticated: false,
            metrics: None,
            counters: Arc::default(),
        }
    }

    /// Run the protocol; returns how it ended, and the session if it got that far.
    pub async fn run(&mut self) -> (End, Option<Live>) {
        let live = match self.open_and_authenticate().await {
            Ok(live) => live,
            Err(end) => return (end, None),
        };
        let end = self.route_loop(&live).await;
        (end, Some(live))
    }

    /// Queue bytes for the peer (waits for room in our own outbox).
    pub async fn send(&self, b: Bytes) -> Result<(), PushError> {
        self.out.push(Out::Raw(b)).await
    }

    /// The next frame, or why there is none. Reads as needed; waits at most
    /// until `deadline`; ends early when the connection is killed. The kill and
    /// the deadline are checked before every read, so a peer that keeps
    /// sending cannot delay them.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Input {
        loop {
            match self.reader.frame() {
                // `</stream:stream>` ends the connection in every phase: answer
                // with ours and close.
                Ok(Some(Frame::End)) => return Input::End(End::PeerClosed),
                Ok(Some(f)) => return Input::Frame(f),
                Ok(None) => {}
                Err(e) => return Input::End(self.xml_error(e)),
            }
            if let Some(err) = self.control.reason() {
                return Input::End(End::Error(err));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Input::End(self.handshake_timed_out());
            }
            tokio::select! {
                biased;
                err = self.control.killed() => return Input::End(End::Error(err)),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    return Input::End(self.handshake_timed_out());
                }
                r = self.reader.fill() => if let Err(e) = r {
                    self.read_failed(&e);
                    return Input::End(End::Gone);
                },
            }
        }
    }

    fn read_failed(&self, e: &ReadError) {
        match e {
            ReadError::Closed => debug!(peer = %self.peer, "peer closed the TCP connection"),
            e => debug!(peer = %self.peer, "read error: {e}"),
        }
    }

    fn domain_name(&self) -> &str {
        self.domain.as_deref().unwrap_or("-")
    }

    fn handshake_timed_out(&self) -> End {
        warn!(peer = %self.peer, domain = self.domain_name(), "no valid handshake in time");
        End::Error(StreamError::new(StreamCondition::ConnectionTimeout))
    }

    fn xml_error(&self, e: FrameError) -> End {
        let domain = self.domain_name();
        if !self.authenticated && e.condition == StreamCondition::PolicyViolation {
            info!(peer = %self.peer, domain, "stream error policy-violation: stream header or handshake larger than {PRE_AUTH_MAX_ELEMENT} bytes before authentication");
            return End::Error(StreamError::with_text(
                StreamCondition::PolicyViolation,
                format!("Before authentication, the stream header and the handshake are limited to {PRE_AUTH_MAX_ELEMENT} bytes"),
            ));
        }
        info!(peer = %self.peer, domain, "stream error {}: {}", e.condition, e.detail);
        End::Error(StreamError::new(e.condition))
    }

    pub fn log_peer_error(&self, st: &Stanza) {
        info!(
            peer = %self.peer,
            domain = self.domain_name(),
            condition = st.first_child.as_deref().unwrap_or("unknown"),
            "peer sent a stream error"
        );
    }

    /// A stanza from a detached component: read and discarded (counted,
    /// logged at debug).
    pub fn discard(&self) {
        let n = self
            .env
            .router
            .discarded_from_detached
            .fetch_add(1, Ordering::Relaxed);
        debug!(event = "detached.discarded", peer = %self.peer, domain = self.domain_name(), discarded = n + 1, "stanza from detached component discarded");
    }

    /// A session the router ends for what its component did (a protocol
    /// violation, a dead peer) is worth a warning with the reason; shutdown,
    /// a replace and a re-add are logged where they are decided.
    fn log_end(&self, err: &StreamError) {
        use StreamCondition::{Conflict, Reset, SystemShutdown};
        if self.authenticated && !matches!(err.condition, SystemShutdown | Conflict | Reset) {
            let domain = self.domain_name();
            warn!(event = "session.ended_by_router", peer = %self.peer, domain, condition = err.condition.as_str(), "component session for {domain} ended by the router: stream error {err}");
        } else {
            debug!(peer = %self.peer, "closing with stream error {err}");
        }
    }

    /// Hand the writer what the end calls for: it writes that and closes the
    /// connection. A replaced session's queue is not written but bounced;
    /// with `hand_over` (a member of a balanced set leaving) it is not written
    /// but re-routed to the other members.
    pub fn finish(&mut self, end: End, hand_over: bool) {
        let abandon = hand_over
            || matches!(&end, End::Error(e) if e.condition == StreamCondition::Conflict && self.authenticated);
        let bytes = match &end {
            End::Error(err) => {
                self.log_end(err);
                let mut v = Vec::new();
                if !self.header_sent {
                    v.extend_from_slice(&error_header(self.domain.as_deref()));
                }
                v.extend_from_slice(&err.to_bytes());
                Bytes::from(v)
            }
            End::PeerClosed => Bytes::from_static(b"</stream:stream>"),
            End::Gone => Bytes::new(),
        };
        let closing = if abandon {
            Closing::Abandon(bytes)
        } else {
            Closing::Flush(bytes)
        };
        if let Some(tx) = self.close_tx.take() {
            let _ = tx.send(closing);
        }
    }
}

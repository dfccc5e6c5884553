//! One component connection, XEP-0114 server side: the whole protocol in one place.
//!
//! A connection goes through three phases, each error condition raised next to
//! the check that decides it (README, "What it does"):
//! 1. stream header: namespace, `to`, attached domain → our header with a fresh id;
//! 2. handshake: SHA-1(id + secret) compared in constant time, then the conflict
//!    policy → `<handshake/>`, and the session is attached to its registration;
//! 3. stanzas: name, namespace, size (in the framer), `from`, `to`, then routing.
//!
//! The reader (this task) owns the framer; a writer task owns the socket's write
//! half and drains the bounded outbox, so a slow peer only ever slows itself.
//! When nothing was written for `keepalive_interval`, the writer sends a single
//! space (a whitespace keepalive, only after our stream header): it keeps NAT and
//! firewall state alive, and a half-open connection then has unacknowledged
//! data, which `TCP_USER_TIMEOUT` (set on accept, see [`crate::server`]) turns
//! into an error, so the reader ends the session and frees the domain.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use crate::proto::{handshake_matches, handshake_token, jid, new_stream_id, StreamCondition};
use crate::router::{Attach, Domain, NewLink, Routed, Router, Source};
use crate::session::{outbox, Control, Outbox, OutboxReceiver, PushError, Session};
use crate::wire::out::Out;
use crate::wire::reader::{FramedReader, ReadError, Sizing};
use crate::wire::stanza::{accept_header, error_header, Bounce, StreamError};
use crate::wire::writer::{Closing, Writer, CLOSE_GRACE};
use crate::wire::xml::{Frame, FrameError, Head, Limits, Name, Ns, Stanza};

/// Before authentication the stream header and the `<handshake/>` element may
/// each be at most this large (`policy-violation` beyond), so an
/// unauthenticated peer holds at most a few KiB (README, "Limits").
pub const PRE_AUTH_MAX_ELEMENT: usize = 4096;
/// Read size before authentication (reads do not grow until then).
const PRE_AUTH_READ: usize = 2048;

/// Serve one accepted TCP connection until it ends.
///
/// Socket options are set by the caller ([`crate::server::configure_socket`]).
pub async fn serve(stream: TcpStream, peer: SocketAddr, router: Arc<Router>) {
    let id = router.next_id();
    let control = Arc::new(Control::default());
    router.register_control(id, control.clone());
    let settings = router.settings();
    let (rd, wr) = stream.into_split();
    let (out, out_rx) = outbox(settings.queue);
    let (close_tx, close_rx) = oneshot::channel();
    let mut writer = tokio::spawn(write_task(
        Writer::new(wr, settings.keepalive_interval, None),
        out_rx,
        close_rx,
    ));
    let mut conn = Connection {
        id,
        peer,
        router: router.clone(),
        reader: FramedReader::new(
            rd,
            pre_auth_limits(settings.limits),
            Sizing::fixed(PRE_AUTH_READ),
        ),
        out,
        close_tx: Some(close_tx),
        control,
        header_sent: false,
        domain: None,
        authenticated: false,
    };
    debug!(%peer, "connection accepted");
    let (end, live) = conn.run().await;
    if let Some(l) = &live {
        // No new stanza is routed to it from here on.
        l.domain.release(l.session.id);
    }
    conn.finish(end);
    drop(conn);
    // The writer returns within its own grace periods; this bound is a backstop.
    let unwritten = match timeout(3 * CLOSE_GRACE, &mut writer).await {
        Ok(Ok((mut rx, mut unwritten))) => {
            // Whatever got into the queue is written or bounced, never dropped:
            // close it, then take what is left, including what a sender that
            // had already reserved room puts in now.
            rx.close();
            let _ = timeout(CLOSE_GRACE, async {
                while let Some(b) = rx.recv().await {
                    unwritten.push(b);
                }
            })
            .await;
            unwritten
        }
        _ => {
            debug!(%peer, "writer did not finish in time");
            writer.abort();
            Vec::new()
        }
    };
    if let Some(l) = live {
        // Bounces for remote senders go over the domain's upstream link, so
        // the domain decides about the link only after them.
        bounce_unwritten(&router, &l.domain, unwritten);
        if let Some(new) = l.domain.left(router.upstream_queue()) {
            drive_link(&router, &l.domain, new);
        }
        info!(%peer, domain = %l.domain.name, "component session ended");
    }
    router.unregister_control(id);
}

/// The limits before authentication: those of the config, with elements (the
/// stream header, the `<handshake/>`) at most [`PRE_AUTH_MAX_ELEMENT`] bytes.
fn pre_auth_limits(limits: Limits) -> Limits {
    Limits {
        max_stanza_size: PRE_AUTH_MAX_ELEMENT,
        ..limits
    }
}

/// Drive a link the domain opened.
fn drive_link(router: &Arc<Router>, domain: &Arc<Domain>, new: NewLink) {
    crate::upstream::start(router, domain, new);
}

/// Bounce the stanzas a session's writer could not write (the session was
/// replaced, or its peer is gone) to their senders: local components directly,
/// anyone else over the domain's upstream link (still open here). A bounce
/// that finds no room is dropped and counted in the log line.
fn bounce_unwritten(router: &Router, domain: &Domain, unwritten: Vec<Out>) {
    let (mut bounced, mut lost) = (0usize, 0usize);
    // Our header, `<handshake/>` and keepalives are not stanzas.
    for env in unwritten.into_iter().filter_map(Out::into_stanza) {
        if !env.head.name.is_stanza() {
            continue;
        }
        let Some(reply) = Bounce::NOT_DELIVERED.envelope(env.head.name, &env.attrs) else {
            continue;
        };
        match router.route(Source::Bounce(domain), reply) {
            Routed::Delivered => bounced += 1,
            Routed::Bounce(..) | Routed::Discarded => lost += 1,
        }
    }
    if bounced + lost > 0 {
        info!(domain = %domain.name, bounced, lost, "{} stanza(s) queued for {} were not written: {bounced} bounced to their senders, {lost} could not be", bounced + lost, domain.name);
    }
}

/// How a connection ended.
enum End {
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
enum Input {
    Frame(Frame),
    End(End),
}

struct Connection {
    id: u64,
    peer: SocketAddr,
    router: Arc<Router>,
    reader: FramedReader,
    out: Outbox,
    close_tx: Option<oneshot::Sender<Closing>>,
    control: Arc<Control>,
    header_sent: bool,
    /// The domain from the stream header, once accepted.
    domain: Option<Arc<str>>,
    /// The handshake succeeded: the full limits and read sizes apply.
    authenticated: bool,
}

/// An authenticated, attached session: what phase 3 works with.
struct Live {
    domain: Arc<Domain>,
    session: Arc<Session>,
}

impl Connection {
    /// Run the protocol; returns how it ended, and the session if it got that far.
    async fn run(&mut self) -> (End, Option<Live>) {
        let end = match self.open_and_authenticate().await {
            Ok(live) => live,
            Err(end) => return (end, None),
        };
        let end_of = self.route_loop(&end).await;
        (end_of, Some(end))
    }

    /// Phases 1 and 2: the stream header, then the handshake.
    async fn open_and_authenticate(&mut self) -> Result<Live, End> {
        let deadline = Instant::now() + self.router.settings().handshake_timeout;

        // Phase 1: stream header.
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
            return Err(End::Error(StreamError::with_text(
                StreamCondition::ImproperAddressing,
                "A 'to' attribute is required on stream headers",
            )));
        };
        let Some(j) = jid::parse(&to) else {
            return Err(End::Error(StreamError::with_text(
                StreamCondition::ImproperAddressing,
                "The 'to' attribute is not a valid domain",
            )));
        };
        if j.local.is_some() || j.resource.is_some() {
            return Err(End::Error(StreamError::with_text(
                StreamCondition::ImproperAddressing,
                "The 'to' attribute must be a bare domain",
            )));
        }
        let key = jid::routing_key(j.domain);
        let Some(reg) = self.router.domain(&key) else {
            info!(peer = %self.peer, domain = %to, "connection for unknown component refused (host-unknown)");
            return Err(End::Error(StreamError::with_text(
                StreamCondition::HostUnknown,
                format!("{to} does not match any configured external component"),
            )));
        };
        self.domain = Some(reg.name.clone());
        let stream_id = new_stream_id();
        if self.send(accept_header(&to, &stream_id)).await.is_err() {
            return Err(End::Gone);
        }
        self.header_sent = true;

        // Phase 2: handshake.
        loop {
            let st = match self.next(Some(deadline)).await {
                Input::Frame(Frame::Start(head)) => {
                    if is_peer_stream_error(head) || head == HANDSHAKE {
                        continue;
                    }
                    warn!(peer = %self.peer, domain = %reg.name, element = head.name.as_str(), "element before authentication");
                    return Err(End::Error(StreamError::with_text(
                        StreamCondition::NotAuthorized,
                        "Authenticate with <handshake/> first",
                    )));
                }
                Input::Frame(Frame::Stanza(st)) => st,
                Input::Frame(_) => continue,
                Input::End(e) => return Err(e),
            };
            if is_peer_stream_error(st.head) {
                self.log_peer_error(&st);
                return Err(End::PeerClosed);
            }
            if let Some(end) = self.check_handshake(&reg, &stream_id, &st) {
                return Err(end);
            }
            return self.attach(&reg).await;
        }
    }

    /// `Some(end)` when the handshake fails.
    fn check_handshake(&self, reg: &Domain, stream_id: &str, st: &Stanza) -> Option<End> {
        let not_authorized = |why: &str| {
            warn!(peer = %self.peer, domain = %reg.name, "authentication failed: {why}");
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
        let settings = reg.settings();
        if !handshake_matches(stream_id, settings.secret.expose(), token) {
            return not_authorized("wrong secret");
        }
        None
    }

    /// Attach the authenticated session under the conflict policy and confirm it.
    async fn attach(&mut self, reg: &Arc<Domain>) -> Result<Live, End> {
        let session = Arc::new(Session {
            id: self.id,
            domain: reg.name.clone(),
            peer: self.peer,
            since: SystemTime::now(),
            outbox: self.out.clone(),
            control: self.control.clone(),
        });
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
        let link = match reg.attach(session.clone(), self.router.upstream_queue(), confirm) {
            Attach::Attached { replaced, link } => {
                for old in replaced {
                    info!(domain = %reg.name, old_peer = %old.peer, new_peer = %self.peer, "conflict: replacing the existing session");
                    // The old connection bounces what it could not write, then
                    // the domain renews its upstream link.
                    old.control.kill(StreamError::with_text(
                        StreamCondition::Conflict,
                        "Replaced by a new connection",
                    ));
                }
                link
            }
            Attach::Conflict => {
                info!(domain = %reg.name, peer = %self.peer, "conflict: component already connected, new connection refused");
                return Err(End::Error(StreamError::with_text(
                    StreamCondition::Conflict,
                    "Component already connected",
                )));
            }
            Attach::Detached => {
                return Err(End::Error(StreamError::with_text(
                    StreamCondition::HostUnknown,
                    format!("{} is no longer served", reg.name),
                )));
            }
            Attach::Gone => return Err(End::Gone),
        };
        info!(peer = %self.peer, domain = %reg.name, "component authenticated");
        if let Some(new) = link {
            drive_link(&self.router, reg, new);
        }
        self.authenticated = true;
        self.reader
            .set_limits(self.router.settings().limits, Sizing::STREAM);
        // The handshake phase needed a read buffer; an idle session does not.
        self.reader.shrink();
        Ok(Live {
            domain: reg.clone(),
            session,
        })
    }

    async fn route_loop(&mut self, live: &Live) -> End {
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
            if live.domain.is_detached() {
                self.discard();
                continue;
            }
            // `from` must be at the component's domain (XEP-0114 §3).
            let from_ok = st
                .attrs
                .from
                .as_deref()
                .and_then(jid::split)
                // Equal to our own (valid) domain means valid: no label scan.
                .map(|j| jid::same_domain(j.domain, domain))
                .unwrap_or(false);
            if !from_ok {
                return End::Error(StreamError::with_text(
                    StreamCondition::InvalidFrom,
                    format!(
                        "'from' must be an address at {domain} (got {})",
                        st.attrs.from.as_deref().unwrap_or("none")
                    ),
                ));
            }
            match self
                .router
                .route(Source::Component(&live.domain), st.into())
            {
                Routed::Delivered => {}
                Routed::Discarded => self.discard(),
                Routed::Bounce(b, item) => {
                    let reply = item
                        .into_stanza()
                        .and_then(|e| b.envelope(e.head.name, &e.attrs));
                    if let Some(reply) = reply {
                        if self.out.push(Out::Stanza(reply)).await.is_err() {
                            return End::Gone;
                        }
                    }
                }
            }
        }
    }

    /// A stanza from a detached component: read and discarded (counted,
    /// logged at debug).
    fn discard(&self) {
        let n = self
            .router
            .discarded_from_detached
            .fetch_add(1, Ordering::Relaxed);
        debug!(peer = %self.peer, domain = self.domain.as_deref().unwrap_or("-"), discarded = n + 1, "stanza from detached component discarded");
    }

    fn log_peer_error(&self, st: &Stanza) {
        info!(
            peer = %self.peer,
            domain = self.domain.as_deref().unwrap_or("-"),
            condition = st.first_child.as_deref().unwrap_or("unknown"),
            "peer sent a stream error"
        );
    }

    /// Queue bytes for the peer (waits for room in our own outbox).
    async fn send(&self, b: Bytes) -> Result<(), PushError> {
        self.out.push(Out::Raw(b)).await
    }

    /// The next frame, or why there is none. Reads as needed; waits at most
    /// until `deadline`; ends early when the connection is killed. The kill and
    /// the deadline are checked before every read, so a peer that keeps
    /// sending cannot delay them.
    async fn next(&mut self, deadline: Option<Instant>) -> Input {
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
                r = self.reader.fill() => match r {
                    Ok(()) => {}
                    Err(ReadError::Closed) => {
                        debug!(peer = %self.peer, "peer closed the TCP connection");
                        return Input::End(End::Gone);
                    }
                    Err(e) => {
                        debug!(peer = %self.peer, "read error: {e}");
                        return Input::End(End::Gone);
                    }
                },
            }
        }
    }

    fn handshake_timed_out(&self) -> End {
        warn!(peer = %self.peer, domain = self.domain.as_deref().unwrap_or("-"), "no valid handshake in time");
        End::Error(StreamError::new(StreamCondition::ConnectionTimeout))
    }

    fn xml_error(&self, e: FrameError) -> End {
        let domain = self.domain.as_deref().unwrap_or("-");
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

    /// Hand the writer what the end calls for: it writes that and closes the
    /// connection. A replaced session's queue is not written but bounced.
    fn finish(&mut self, end: End) {
        let abandon = matches!(&end, End::Error(e) if e.condition == StreamCondition::Conflict && self.authenticated);
        let bytes = match &end {
            End::Error(err) => {
                if err.condition != StreamCondition::SystemShutdown {
                    debug!(peer = %self.peer, "closing with stream error {err}");
                }
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

const HANDSHAKE: Head = Head {
    name: Name::Handshake,
    ns: Ns::Component,
};

fn is_peer_stream_error(head: Head) -> bool {
    head.name == Name::Error && head.ns == Ns::Streams
}

/// Checks on a top-level start tag after authentication, in the order of the
/// README's "What it does".
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

/// The writer task: runs the writer until the connection hands over how to
/// close (or every sender is gone and it then does), then closes. Returns the
/// queue and what was taken from it but not written, for the connection to
/// bounce.
async fn write_task(
    mut w: Writer,
    mut q: OutboxReceiver,
    mut close: oneshot::Receiver<Closing>,
) -> (OutboxReceiver, Vec<Out>) {
    let how = match w.run(&mut q, None, &mut close).await {
        Ok(Some(c)) => c.ok(),
        // Every sender is gone: the connection has ended, and it hands over
        // its final bytes (stream error, `</stream:stream>`) before dropping
        // its outbox.
        Ok(None) => (&mut close).await.ok(),
        Err(_) => None,
    };
    let unsent = w.close(&mut q, how.unwrap_or(Closing::Drop)).await;
    (q, unsent)
}

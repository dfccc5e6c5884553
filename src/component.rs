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

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use crate::proto::ns::NS_COMPONENT;
use crate::proto::{handshake_matches, handshake_token, jid, new_stream_id, StreamCondition};
use crate::router::{
    outbox, Attach, Control, Delivery, Outbox, OutboxReceiver, PushError, Registration, Router,
    Session,
};
use crate::upstream::LinkSendError;
use crate::wire::reader::{FramedReader, ReadError, Sizing};
use crate::wire::stanza::{accept_header, error_header, reframe, Bounce, StreamError};
use crate::wire::xml::{Frame, FrameError, Head, Limits, Name, Ns, Stanza};

/// How long a closing connection may take to flush its last bytes.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most stanzas the writer takes from the queue for one `writev`.
const WRITE_BATCH: usize = 64;
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
    let mut writer = tokio::spawn(write_loop(
        wr,
        out_rx,
        close_rx,
        settings.keepalive_interval,
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
        router.release(&l.reg, l.session.id);
    }
    conn.finish(end);
    drop(conn);
    // The writer returns within its own grace periods; this bound is a backstop.
    let unwritten = match timeout(3 * CLOSE_GRACE, &mut writer).await {
        Ok(Ok((mut rx, mut unwritten))) => {
            // Whatever got into the queue is written or bounced, never dropped:
            // close it, then take what is left, including what a sender that
            // had already reserved room puts in now.
            rx.rx.close();
            let _ = timeout(CLOSE_GRACE, async {
                while let Some(b) = rx.rx.recv().await {
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
        // Bounces for remote senders go over the session's own upstream link,
        // so it is closed only after them.
        bounce_unwritten(&router, &l.session, unwritten);
        l.session.close_upstream();
        info!(%peer, domain = %l.reg.domain, "component session ended");
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

/// Bounce the stanzas a session's writer could not write (the session was
/// replaced, or its peer is gone) to their senders: local components directly,
/// anyone else over the session's upstream link (still open here). A bounce
/// that finds no room is dropped and counted in the log line.
fn bounce_unwritten(router: &Router, session: &Session, stanzas: Vec<Bytes>) {
    let (mut bounced, mut lost) = (0usize, 0usize);
    for b in &stanzas {
        let Some((name, attrs)) = reframe(b) else {
            continue; // our header, `<handshake/>` or a keepalive
        };
        if !name.is_stanza() {
            continue;
        }
        let Some(reply) = Bounce::NOT_DELIVERED.reply(name, &attrs) else {
            continue;
        };
        let delivered = match attrs.from.as_deref().and_then(jid::split) {
            None => false,
            Some(j) => match router.deliver(&jid::routing_key(j.domain), &reply) {
                Delivery::Delivered => true,
                Delivery::Full | Delivery::Offline => false,
                Delivery::Unknown => session
                    .upstream
                    .load_full()
                    .is_some_and(|link| link.try_send(reply).is_ok()),
            },
        };
        if delivered {
            bounced += 1;
        } else {
            lost += 1;
        }
    }
    if bounced + lost > 0 {
        info!(domain = %session.domain, bounced, lost, "{} stanza(s) queued for {} were not written: {bounced} bounced to their senders, {lost} could not be", bounced + lost, session.domain);
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

/// What a connection hands its writer when it ends.
struct Closing {
    /// Written last: a stream error, `</stream:stream>`, or nothing.
    bytes: Bytes,
    /// Leave the queue unwritten (it is bounced): the session was replaced.
    abandon: bool,
}

/// An authenticated, attached session: what phase 3 works with.
struct Live {
    reg: Arc<Registration>,
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
        let Some(reg) = self.router.registration(&key) else {
            info!(peer = %self.peer, domain = %to, "connection for unknown component refused (host-unknown)");
            return Err(End::Error(StreamError::with_text(
                StreamCondition::HostUnknown,
                format!("{to} does not match any configured external component"),
            )));
        };
        self.domain = Some(reg.domain.clone());
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
                    warn!(peer = %self.peer, domain = %reg.domain, element = head.name.as_str(), "element before authentication");
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
    fn check_handshake(&self, reg: &Registration, stream_id: &str, st: &Stanza) -> Option<End> {
        let not_authorized = |why: &str| {
            warn!(peer = %self.peer, domain = %reg.domain, "authentication failed: {why}");
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
    async fn attach(&mut self, reg: &Arc<Registration>) -> Result<Live, End> {
        let session = Arc::new(Session {
            id: self.id,
            domain: reg.domain.clone(),
            peer: self.peer,
            outbox: self.out.clone(),
            control: self.control.clone(),
            upstream: ArcSwapOption::empty(),
        });
        // `<handshake/>` is queued only once the conflict policy accepted the
        // session (a connection refused with `conflict` must not be told it
        // authenticated; Prosody sends only the conflict too), and before the
        // session becomes routable, so it precedes every stanza routed to the
        // component. Our outbox holds at most our header here, so `try_push`
        // fails only when the connection is gone.
        let out = &self.out;
        let confirm = || out.try_push(Bytes::from_static(b"<handshake/>")).is_ok();
        match self.router.attach(reg, session.clone(), confirm) {
            Attach::Attached { replaced } => {
                if let Some(old) = replaced {
                    info!(domain = %reg.domain, old_peer = %old.peer, new_peer = %self.peer, "conflict: replacing the existing session");
                    // The old connection bounces what it could not write, then
                    // closes its upstream link; ours opens only after that.
                    old.control.kill(StreamError::with_text(
                        StreamCondition::Conflict,
                        "Replaced by a new connection",
                    ));
                }
            }
            Attach::Conflict => {
                info!(domain = %reg.domain, peer = %self.peer, "conflict: component already connected, new connection refused");
                return Err(End::Error(StreamError::with_text(
                    StreamCondition::Conflict,
                    "Component already connected",
                )));
            }
            Attach::Detached => {
                return Err(End::Error(StreamError::with_text(
                    StreamCondition::HostUnknown,
                    format!("{} is no longer served", reg.domain),
                )));
            }
            Attach::Gone => return Err(End::Gone),
        }
        info!(peer = %self.peer, domain = %reg.domain, "component authenticated");
        crate::upstream::start(&self.router, reg, &session);
        self.authenticated = true;
        self.reader
            .set_limits(self.router.settings().limits, Sizing::STREAM);
        // The handshake phase needed a read buffer; an idle session does not.
        self.reader.shrink();
        Ok(Live {
            reg: reg.clone(),
            session,
        })
    }

    async fn route_loop(&mut self, live: &Live) -> End {
        let domain: &str = &live.reg.domain;
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
            // Held until the stanza is delivered: a reload's detach waits for
            // it, so nothing is routed from here once that reload is done.
            let Some(routing) = live.reg.routing() else {
                let n = self
                    .router
                    .discarded_from_detached
                    .fetch_add(1, Ordering::Relaxed);
                debug!(peer = %self.peer, domain, discarded = n + 1, "stanza from detached component discarded");
                continue;
            };
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
            let bounce = self.route(live, &st);
            drop(routing);
            if let Some(b) = bounce.and_then(|b| b.reply(st.head.name, &st.attrs)) {
                if self.out.push(b).await.is_err() {
                    return End::Gone;
                }
            }
        }
    }

    /// Deliver one checked stanza; returns the bounce to send back, if any.
    fn route(&self, live: &Live, st: &Stanza) -> Option<Bounce> {
        let Some(to) = st.attrs.to.as_deref() else {
            return Some(Bounce::BAD_REQUEST);
        };
        let Some(j) = jid::split(to) else {
            return Some(Bounce::JID_MALFORMED);
        };
        match self.router.deliver(&jid::routing_key(j.domain), &st.bytes) {
            Delivery::Delivered => None,
            Delivery::Full => Some(Bounce::QUEUE_FULL),
            Delivery::Offline => Some(Bounce::COMPONENT_UNAVAILABLE),
            Delivery::Unknown => {
                // A served domain is valid by construction; anything else is
                // checked before it leaves.
                if jid::parse(to).is_none() {
                    return Some(Bounce::JID_MALFORMED);
                }
                if self.router.settings().upstream.is_none() {
                    return Some(Bounce::NOT_FOUND);
                }
                let Some(link) = live.session.upstream.load_full() else {
                    return Some(Bounce::UPSTREAM_UNAVAILABLE);
                };
                let bytes = match for_upstream(st) {
                    Ok(b) => b,
                    Err(bounce) => return Some(bounce),
                };
                match link.try_send(bytes) {
                    Ok(()) => None,
                    Err(LinkSendError::Down) => Some(Bounce::UPSTREAM_UNAVAILABLE),
                    Err(LinkSendError::Full) => Some(Bounce::QUEUE_FULL),
                }
            }
        }
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
        self.out.push(b).await
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
        if let Some(tx) = self.close_tx.take() {
            let _ = tx.send(Closing { bytes, abandon });
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

/// The bytes to send upstream: a top-level `jabber:client` default namespace is
/// rewritten to `jabber:component:accept`, which Prosody would otherwise drop
/// silently. Exactly the value the framer recorded is replaced (wherever the
/// declaration sits, however it is quoted, spaced or written with references);
/// no other byte changes. A top-level element that is in `jabber:client` only
/// through a prefix cannot be rewritten so: it is bounced `bad-request`.
fn for_upstream(st: &Stanza) -> Result<Bytes, Bounce> {
    if st.head.ns != Ns::Client {
        return Ok(st.bytes.clone());
    }
    match (&st.xmlns_value, st.prefixed) {
        (Some(span), false) => Ok(replace_span(&st.bytes, span.clone(), NS_COMPONENT)),
        _ => Err(Bounce::BAD_REQUEST),
    }
}

/// `b` with the bytes in `span` replaced by `with`.
fn replace_span(b: &[u8], span: std::ops::Range<usize>, with: &str) -> Bytes {
    let mut v = Vec::with_capacity(b.len() + with.len());
    v.extend_from_slice(&b[..span.start]);
    v.extend_from_slice(with.as_bytes());
    v.extend_from_slice(&b[span.end..]);
    Bytes::from(v)
}

/// The writer task: drains the outbox in batches into `writev`, sends a
/// whitespace keepalive after `keepalive` without writing (once something, our
/// header, was written), and on close writes the final bytes and shuts the
/// socket down: after flushing what is queued, or (a replaced session) after
/// only the stanza in progress. Returns the queue and the stanzas taken from it
/// but not completely written, for the connection to bounce.
async fn write_loop(
    mut w: OwnedWriteHalf,
    mut q: OutboxReceiver,
    mut close: oneshot::Receiver<Closing>,
    keepalive: Option<Duration>,
) -> (OutboxReceiver, Vec<Bytes>) {
    // Allocated on first use (`recv_many` reserves): an unauthenticated
    // connection may never need it.
    let mut batch: Vec<Bytes> = Vec::new();
    let mut wrote_any = false;
    let mut last_write = Instant::now();
    loop {
        let ka_due = keepalive.map(|k| last_write + k);
        // Bytes of this batch that count against the queue's byte bound.
        let len = tokio::select! {
            biased;
            n = q.rx.recv_many(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    // Every sender is gone: the connection has ended, and it hands
                    // over its final bytes (stream error, `</stream:stream>`) on
                    // `close` before dropping its outbox. This arm is polled first
                    // (`biased`), so wait for them here instead of losing them.
                    let fin = (&mut close).await.ok();
                    return close_out(w, q, batch, Cursor::default(), fin).await;
                }
                batch.iter().map(|b| b.len()).sum()
            }
            r = &mut close => return close_out(w, q, batch, Cursor::default(), r.ok()).await,
            _ = sleep_until(ka_due.unwrap_or_else(Instant::now)), if ka_due.is_some() && wrote_any => {
                batch.push(Bytes::from_static(b" "));
                0
            }
        };
        let mut cur = Cursor::default();
        let closing = {
            let fut = write_all_vectored(&mut w, &batch, &mut cur);
            tokio::pin!(fut);
            tokio::select! {
                r = &mut fut => match r {
                    Ok(()) => None,
                    Err(_) => Some(None),
                },
                r = &mut close => Some(r.ok()),
            }
        };
        if let Some(fin) = closing {
            q.release(len);
            return close_out(w, q, batch, cur, fin).await;
        }
        q.release(len);
        batch.clear();
        wrote_any = true;
        last_write = Instant::now();
    }
}

/// The end of [`write_loop`]: `batch` was written up to `cur`. `fin` is what
/// the connection handed over (`None`: the socket failed, write nothing more).
async fn close_out(
    mut w: OwnedWriteHalf,
    mut q: OutboxReceiver,
    mut batch: Vec<Bytes>,
    mut cur: Cursor,
    fin: Option<Closing>,
) -> (OutboxReceiver, Vec<Bytes>) {
    let Some(fin) = fin else {
        return (q, batch.split_off(cur.idx.min(batch.len())));
    };
    let written = timeout(CLOSE_GRACE, async {
        if fin.abandon {
            // Finish the stanza in progress, so the peer can still parse the
            // stream error that follows; the rest is bounced.
            if cur.offset > 0 {
                let upto = cur.idx + 1;
                write_all_vectored(&mut w, &batch[..upto], &mut cur).await?;
            }
        } else {
            loop {
                write_all_vectored(&mut w, &batch, &mut cur).await?;
                batch.clear();
                cur = Cursor::default();
                while batch.len() < WRITE_BATCH {
                    match q.rx.try_recv() {
                        Ok(b) => batch.push(b),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    break;
                }
            }
        }
        w.write_all(&fin.bytes).await?;
        w.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        debug!("could not write the end of a connection in time");
    }
    (q, batch.split_off(cur.idx.min(batch.len())))
}

/// How far [`write_all_vectored`] got: buffers before `idx` are written, and
/// `offset` bytes of the one at `idx`.
#[derive(Default, Clone, Copy)]
struct Cursor {
    idx: usize,
    offset: usize,
}

/// Write every buffer completely with `writev`, from `cur` on; `cur` follows
/// each completed write, so it is exact also when the future is dropped.
async fn write_all_vectored(
    w: &mut OwnedWriteHalf,
    bufs: &[Bytes],
    cur: &mut Cursor,
) -> io::Result<()> {
    while cur.idx < bufs.len() {
        if cur.offset >= bufs[cur.idx].len() {
            cur.idx += 1;
            cur.offset = 0;
            continue;
        }
        let n = {
            let mut iov = [io::IoSlice::new(&[]); WRITE_BATCH];
            let mut k = 0;
            for (i, b) in bufs[cur.idx..].iter().take(WRITE_BATCH).enumerate() {
                iov[k] = io::IoSlice::new(if i == 0 { &b[cur.offset..] } else { b });
                k += 1;
            }
            w.write_vectored(&iov[..k]).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut n = n;
        while n > 0 && cur.idx < bufs.len() {
            let rest = bufs[cur.idx].len() - cur.offset;
            if n >= rest {
                n -= rest;
                cur.idx += 1;
                cur.offset = 0;
            } else {
                cur.offset += n;
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::xml::Framer;

    /// Frame one stanza (after a component stream header).
    fn frame(st: &str) -> Stanza {
        let mut f = Framer::new(Limits::new(100_000));
        f.buf_mut().extend_from_slice(
            b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='x'>",
        );
        f.buf_mut().extend_from_slice(st.as_bytes());
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Stanza(s))) => return s,
                Ok(Some(_)) => continue,
                other => panic!("{st}: {other:?}"),
            }
        }
    }

    #[test]
    fn client_namespace_rewrite_replaces_exactly_the_value() {
        let cases = [
            (
                "<message xmlns='jabber:client' to='x'><body xmlns='jabber:client'/></message>",
                "<message xmlns='jabber:component:accept' to='x'><body xmlns='jabber:client'/></message>",
            ),
            (
                "<message a='>' id=\"xmlns='jabber:client'\" xmlns = \"jabber:client\"/>",
                "<message a='>' id=\"xmlns='jabber:client'\" xmlns = \"jabber:component:accept\"/>",
            ),
            (
                "<iq xmlns='jabber&#x3A;client' type='get'/>",
                "<iq xmlns='jabber:component:accept' type='get'/>",
            ),
        ];
        for (input, want) in cases {
            let got = for_upstream(&frame(input)).unwrap();
            assert_eq!(std::str::from_utf8(&got).unwrap(), want);
        }
        // Already jabber:component:accept (or inherited): unchanged.
        let st = frame("<message to='x'/>");
        assert_eq!(for_upstream(&st).unwrap(), st.bytes);
        // jabber:client only through a prefix: bounced.
        let st = frame("<c:message xmlns:c='jabber:client' to='x'/>");
        assert_eq!(for_upstream(&st), Err(Bounce::BAD_REQUEST));
    }
}

//! One component connection, XEP-0114 server side: the whole protocol in one place.
//!
//! A connection goes through three phases, each error condition raised next to
//! the check that decides it (SPEC §4):
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
use bytes::{Buf, Bytes};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use crate::jid;
use crate::router::{
    outbox, Attach, Control, Delivery, Outbox, OutboxReceiver, PushError, Registration, Router,
    Session,
};
use crate::stanza::{accept_header, error_header, Bounce, StreamCondition, StreamError};
use crate::upstream::LinkSendError;
use crate::xml::{Frame, FrameError, Framer, Head, Name, Ns, Stanza};

/// How long a closing connection may take to flush its last bytes.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// After this long without input, an idle connection drops its buffers.
const IDLE_SHRINK: Duration = Duration::from_secs(2);
/// Most stanzas the writer takes from the queue for one `writev`.
const WRITE_BATCH: usize = 64;
const MIN_READ: usize = 4096;
const MAX_READ: usize = 64 * 1024;

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
    let writer = tokio::spawn(write_loop(
        wr,
        out_rx,
        close_rx,
        settings.keepalive_interval,
    ));
    let mut conn = Connection {
        id,
        peer,
        router: router.clone(),
        rd,
        framer: Framer::new(settings.limits),
        out,
        close_tx: Some(close_tx),
        control,
        header_sent: false,
        domain: None,
        read_size: MIN_READ,
    };
    debug!(%peer, "connection accepted");
    let end = conn.run().await;
    conn.finish(end).await;
    drop(conn);
    if timeout(CLOSE_GRACE + CLOSE_GRACE, writer).await.is_err() {
        debug!(%peer, "writer did not finish in time");
    }
    router.unregister_control(id);
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
    rd: OwnedReadHalf,
    framer: Framer,
    out: Outbox,
    close_tx: Option<oneshot::Sender<Bytes>>,
    control: Arc<Control>,
    header_sent: bool,
    /// The domain from the stream header, once accepted.
    domain: Option<Arc<str>>,
    read_size: usize,
}

/// An authenticated, attached session: what phase 3 works with.
struct Live {
    reg: Arc<Registration>,
    session: Arc<Session>,
}

impl Connection {
    async fn run(&mut self) -> End {
        let deadline = Instant::now() + self.router.settings().handshake_timeout;

        // Phase 1: stream header.
        let header = match self.next(Some(deadline)).await {
            Input::Frame(Frame::Header(h)) => h,
            Input::Frame(_) => {
                return End::Error(StreamError::new(StreamCondition::InvalidNamespace));
            }
            Input::End(e) => return e,
        };
        let Some(to) = header.to else {
            return End::Error(StreamError::with_text(
                StreamCondition::ImproperAddressing,
                "A 'to' attribute is required on stream headers",
            ));
        };
        let Some(j) = jid::parse(&to) else {
            return End::Error(StreamError::with_text(
                StreamCondition::ImproperAddressing,
                "The 'to' attribute is not a valid domain",
            ));
        };
        if j.local.is_some() || j.resource.is_some() {
            return End::Error(StreamError::with_text(
                StreamCondition::ImproperAddressing,
                "The 'to' attribute must be a bare domain",
            ));
        }
        let key = jid::routing_key(j.domain);
        let Some(reg) = self.router.registration(&key) else {
            info!(peer = %self.peer, domain = %to, "connection for unknown component refused (host-unknown)");
            return End::Error(StreamError::with_text(
                StreamCondition::HostUnknown,
                format!("{to} does not match any configured external component"),
            ));
        };
        self.domain = Some(reg.domain.clone());
        let stream_id = new_stream_id();
        if self.send(accept_header(&to, &stream_id)).await.is_err() {
            return End::Gone;
        }
        self.header_sent = true;

        // Phase 2: handshake.
        let live = loop {
            let st = match self.next(Some(deadline)).await {
                Input::Frame(Frame::Start(head)) => {
                    if is_peer_stream_error(head) || head == HANDSHAKE {
                        continue;
                    }
                    warn!(peer = %self.peer, domain = %reg.domain, element = head.name.as_str(), "element before authentication");
                    return End::Error(StreamError::with_text(
                        StreamCondition::NotAuthorized,
                        "Authenticate with <handshake/> first",
                    ));
                }
                Input::Frame(Frame::Stanza(st)) => st,
                Input::Frame(_) => continue,
                Input::End(e) => return e,
            };
            if is_peer_stream_error(st.head) {
                self.log_peer_error(&st);
                return End::PeerClosed;
            }
            if let Some(end) = self.check_handshake(&reg, &stream_id, &st) {
                return end;
            }
            match self.attach(&reg).await {
                Ok(live) => break live,
                Err(end) => return end,
            }
        };

        // Phase 3: stanzas.
        let end = self.route_loop(&live).await;
        self.router.release(&live.reg, live.session.id);
        live.session.close_upstream();
        info!(peer = %self.peer, domain = %live.reg.domain, "component session ended");
        end
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
                    old.close_upstream();
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
        // The handshake phase needed a read buffer; an idle session does not.
        self.framer.shrink();
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
                match link.try_send(for_upstream(st)) {
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
    /// until `deadline`; ends early when the connection is killed.
    async fn next(&mut self, deadline: Option<Instant>) -> Input {
        loop {
            match self.framer.next_frame() {
                // `</stream:stream>` ends the connection in every phase: answer
                // with ours and close (SPEC §4 "Anywhere").
                Ok(Some(Frame::End)) => return Input::End(End::PeerClosed),
                Ok(Some(f)) => return Input::Frame(f),
                Ok(None) => {}
                Err(e) => return Input::End(self.xml_error(e)),
            }
            if self.read_size > MIN_READ {
                // The last read filled the buffer, so the peer is sending fast and
                // the socket is likely readable again at once. Let the writers we
                // just queued stanzas for run first (they sit in this worker's
                // LIFO slot); otherwise a flood fills their bounded queues before
                // they get a turn and healthy receivers see resource-constraint.
                tokio::task::yield_now().await;
            }
            let shrink_after = !self.framer.is_idle() || self.framer.buf_mut().capacity() > 0;
            tokio::select! {
                biased;
                r = self.rd.readable() => {
                    if let Err(e) = r {
                        debug!(peer = %self.peer, "read error: {e}");
                        return Input::End(End::Gone);
                    }
                    let want = self.read_size;
                    let buf = self.framer.buf_mut();
                    buf.reserve(want);
                    match self.rd.try_read_buf(buf) {
                        Ok(0) => {
                            debug!(peer = %self.peer, "peer closed the TCP connection");
                            return Input::End(End::Gone);
                        }
                        Ok(n) => {
                            // Grow reads while they come back full, shrink when not.
                            self.read_size = if n >= want { (want * 2).min(MAX_READ) } else { MIN_READ };
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            debug!(peer = %self.peer, "read error: {e}");
                            return Input::End(End::Gone);
                        }
                    }
                }
                err = self.control.killed() => return Input::End(End::Error(err)),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    warn!(peer = %self.peer, domain = self.domain.as_deref().unwrap_or("-"), "no valid handshake in time");
                    return Input::End(End::Error(StreamError::new(StreamCondition::ConnectionTimeout)));
                }
                _ = sleep(IDLE_SHRINK), if shrink_after => {
                    self.framer.shrink();
                }
            }
        }
    }

    fn xml_error(&self, e: FrameError) -> End {
        info!(peer = %self.peer, domain = self.domain.as_deref().unwrap_or("-"), "stream error {}: {}", e.condition, e.detail);
        End::Error(StreamError::new(e.condition))
    }

    /// Send what the end calls for and close the connection.
    async fn finish(&mut self, end: End) {
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
            let _ = tx.send(bytes);
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

/// Checks on a top-level start tag after authentication, in SPEC order.
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

/// The digest in a `<handshake/>`'s text: the text with XML whitespace trimmed,
/// if that is exactly 40 hex digits (SPEC §4).
pub fn handshake_token(text: &str) -> Option<&str> {
    let token = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    (token.len() == 40 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some(token)
}

/// XEP-0114 §3: hex(SHA-1(stream id + secret)), compared case-insensitively in constant time.
pub fn handshake_matches(stream_id: &str, secret: &str, token: &str) -> bool {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    let want = hex::encode(h.finalize());
    let got = token.to_ascii_lowercase();
    got.as_bytes().ct_eq(want.as_bytes()).into()
}

/// A stream id of 128 bits from the OS CSPRNG, as hex.
pub fn new_stream_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // The OS RNG failing is not something a peer controls; fall back to
        // something unique rather than aborting the connection.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    hex::encode(b)
}

/// The bytes to send upstream: a top-level `jabber:client` default namespace is
/// rewritten to `jabber:component:accept`, which Prosody would otherwise drop.
fn for_upstream(st: &Stanza) -> Bytes {
    if st.head.ns != Ns::Client {
        return st.bytes.clone();
    }
    rewrite_default_ns(&st.bytes).unwrap_or_else(|| st.bytes.clone())
}

/// Replace `xmlns='jabber:client'` (either quote) in the start tag.
fn rewrite_default_ns(b: &[u8]) -> Option<Bytes> {
    let tag_end = b.iter().position(|&c| c == b'>')?;
    let tag = &b[..tag_end];
    for pat in [
        &b"xmlns='jabber:client'"[..],
        &b"xmlns=\"jabber:client\""[..],
    ] {
        if let Some(i) = tag.windows(pat.len()).position(|w| w == pat) {
            // Must be the attribute `xmlns`, not e.g. `foo:xmlns` or `xxmlns`.
            if i > 0 && !tag[i - 1].is_ascii_whitespace() {
                continue;
            }
            let mut v = Vec::with_capacity(b.len() + 16);
            v.extend_from_slice(&b[..i]);
            v.extend_from_slice(b"xmlns='jabber:component:accept'");
            v.extend_from_slice(&b[i + pat.len()..]);
            return Some(Bytes::from(v));
        }
    }
    None
}

/// The writer task: drains the outbox in batches into `writev`, sends a
/// whitespace keepalive after `keepalive` without writing (once something, our
/// header, was written), and on close flushes what is queued plus the final
/// bytes, then shuts the socket down.
async fn write_loop(
    mut w: OwnedWriteHalf,
    mut q: OutboxReceiver,
    mut close: oneshot::Receiver<Bytes>,
    keepalive: Option<Duration>,
) {
    let mut batch: Vec<Bytes> = Vec::with_capacity(WRITE_BATCH);
    let mut wrote_any = false;
    let mut last_write = Instant::now();
    let final_bytes: Option<Bytes> = loop {
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
                    break (&mut close).await.ok();
                }
                batch.iter().map(|b| b.len()).sum()
            }
            r = &mut close => break r.ok(),
            _ = sleep_until(ka_due.unwrap_or_else(Instant::now)), if ka_due.is_some() && wrote_any => {
                batch.push(Bytes::from_static(b" "));
                0
            }
        };
        let closing = {
            let fut = write_all_vectored(&mut w, &mut batch);
            tokio::pin!(fut);
            tokio::select! {
                r = &mut fut => {
                    if r.is_err() { return; }
                    None
                }
                r = &mut close => {
                    // Closing while blocked on a slow peer: give it a moment, then give up.
                    if !matches!(timeout(CLOSE_GRACE, &mut fut).await, Ok(Ok(()))) {
                        return;
                    }
                    Some(r.ok())
                }
            }
        };
        q.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        batch.clear();
        wrote_any = true;
        last_write = Instant::now();
        if let Some(fin) = closing {
            break fin;
        }
    };
    let _ = timeout(CLOSE_GRACE, async {
        batch.clear();
        while let Ok(b) = q.rx.try_recv() {
            batch.push(b);
            if batch.len() == WRITE_BATCH {
                write_all_vectored(&mut w, &mut batch).await?;
                batch.clear();
            }
        }
        if let Some(f) = final_bytes {
            batch.push(f);
        }
        write_all_vectored(&mut w, &mut batch).await?;
        w.shutdown().await
    })
    .await;
}

/// Write every buffer completely with `writev`; consumes `bufs`' contents.
async fn write_all_vectored(w: &mut OwnedWriteHalf, bufs: &mut [Bytes]) -> io::Result<()> {
    let mut idx = 0;
    while idx < bufs.len() {
        if bufs[idx].is_empty() {
            idx += 1;
            continue;
        }
        let n = {
            let mut iov = [io::IoSlice::new(&[]); WRITE_BATCH];
            let mut k = 0;
            for b in bufs[idx..].iter().take(WRITE_BATCH) {
                iov[k] = io::IoSlice::new(b);
                k += 1;
            }
            w.write_vectored(&iov[..k]).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut n = n;
        while n > 0 && idx < bufs.len() {
            let l = bufs[idx].len();
            if n >= l {
                n -= l;
                idx += 1;
            } else {
                bufs[idx].advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_vector() {
        // printf '3BF96D32secret' | sha1sum
        assert!(handshake_matches(
            "3BF96D32",
            "secret",
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        ));
        assert!(handshake_matches(
            "3BF96D32",
            "secret",
            "B09EA9B3B7F586BE8A08D0A3DD7466F110AEB136"
        ));
        assert!(!handshake_matches(
            "3BF96D32",
            "secreT",
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        ));
    }

    #[test]
    fn handshake_token_shape() {
        let hex40 = "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136";
        assert_eq!(handshake_token(hex40), Some(hex40));
        assert_eq!(handshake_token(&format!(" \r\n\t{hex40}\n")), Some(hex40));
        assert_eq!(
            handshake_token(&hex40.to_uppercase()).map(str::len),
            Some(40)
        );
        assert_eq!(handshake_token(&hex40[1..]), None);
        assert_eq!(handshake_token(&format!("{hex40}0")), None);
        assert_eq!(handshake_token(&format!("{}g", &hex40[1..])), None);
        // Non-XML whitespace is not trimmed; multi-byte characters are not digits.
        assert_eq!(handshake_token(&format!("\u{a0}{hex40}")), None);
        assert_eq!(handshake_token(&format!("{}é", &hex40[2..])), None);
        assert_eq!(handshake_token(""), None);
    }

    #[test]
    fn stream_ids_are_unique_and_long() {
        let a = new_stream_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_stream_id());
    }

    #[test]
    fn client_namespace_rewrite() {
        let r = rewrite_default_ns(
            b"<message xmlns='jabber:client' to='x'><body xmlns='jabber:client'/></message>",
        )
        .unwrap();
        assert_eq!(
            &r[..],
            b"<message xmlns='jabber:component:accept' to='x'><body xmlns='jabber:client'/></message>"
        );
        assert!(rewrite_default_ns(b"<message to='x'/>").is_none());
    }
}

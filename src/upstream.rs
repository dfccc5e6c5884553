//! Upstream links: one XEP-0114 client stream per authenticated component to the
//! XMPP server behind the router (README, "In front of Prosody").
//!
//! Each link is one task that owns the link's bounded queue and loops:
//! connect (TCP, with a timeout), send our header `to=DOMAIN`, read the server's
//! header with the router's own [`Framer`], authenticate with
//! `<handshake>hex(SHA-1(id + upstream_secret))</handshake>` and wait for
//! `<handshake/>`. The address and the secret are read again at every attempt,
//! so a reload applies at the next (re)connect.
//!
//! While the link is up, a reader delivers everything the server sends to the
//! component unchanged (also what arrives together with `<handshake/>`, such as
//! XEP-0356 `<privilege/>` messages) and a writer drains the queue in batched
//! `writev`s. [`Link::try_send`] never waits: it fails with
//! [`LinkSendError::Down`] while the link is not authenticated and with
//! [`LinkSendError::Full`] when the queue is at its bound.
//!
//! A failure (refused, timeout, `host-unknown`, `not-authorized`, `conflict`,
//! dropped TCP, dead link) never touches the component's own connection. It is
//! logged once per state change (the same reason again is logged at debug only),
//! and the link retries after 1 s, doubling up to 30 s, each delay randomised
//! by ±25 % (never above 30 s); a link that stayed up for [`STABLE_UP`] starts
//! again at 1 s. Stanzas that were queued but not completely written when the
//! link failed are bounced to the component with `wait`/`remote-server-timeout`
//! "Upstream server unavailable" (re-framed to recover name and addresses; never
//! for `type='error'`/`'result'`).
//!
//! Liveness (see [`Liveness`]): a whitespace keepalive after an idle period
//! without writes; after the same period without reads, a ping that loops
//! through the server (an `iq` from DOMAIN to DOMAIN, which the server routes
//! back over this same link; the echo and any reply with its id are swallowed);
//! if nothing at all arrives within the ping timeout, the link is declared dead
//! and replaced. TCP keepalive and `TCP_USER_TIMEOUT` back this up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use crate::config::UpstreamConfig;
use crate::router::{deliver, Domain, NewLink, Reserved, Routed, Router};
use crate::session::link::Event;
use crate::session::{wait_until, Link, OutboxReceiver, PushError};
use crate::wire::out::{Envelope, Out};
use crate::wire::reader::{FramedReader, ReadError, Sizing};
use crate::wire::socket::SocketOptions;
use crate::wire::stanza::{connect_header, Bounce, Escaped};
use crate::wire::writer::{Closing, WriteError, Writer, CLOSE_GRACE};
use crate::wire::xml::{Excess, Frame, Limit, Limits, Name, Ns, Skipped, Stanza};

/// First retry delay; it doubles with every failed attempt up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Each delay is multiplied by a random factor in `[1 - JITTER, 1 + JITTER]`.
const JITTER: f64 = 0.25;
/// A link that stayed up this long starts the backoff again at [`BACKOFF_MIN`];
/// one that keeps failing sooner (e.g. kicked by a `conflict`) keeps backing off.
const STABLE_UP: Duration = Duration::from_secs(30);
/// TCP connect to the upstream address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From TCP connect to the server's `<handshake/>`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Attributes on one element of a stanza from the server (each costs the
/// framer a few dozen bytes of scratch while its tag is read).
const LINK_MAX_ATTRIBUTES: usize = 4096;
/// After the link stops: how long it keeps reading and delivering what the
/// server still sends.
const LINGER: Duration = Duration::from_secs(4);
/// Longest wait for the domain's previous link to close before connecting: it
/// takes at most its flush and its linger, [`CLOSE_GRACE`] three times.
const PREDECESSOR_WAIT: Duration = Duration::from_secs(8);
/// Liveness timers of every link, all derived from one idle interval `idle`
/// (`[upstream] keepalive_interval`, 30 s by default; read at every connect):
/// - a whitespace keepalive after `idle` without writes;
/// - a ping (`iq` DOMAIN → DOMAIN, routed back by the server) after `idle`
///   without reads;
/// - the link is dead when nothing at all is read within `idle / 2` of that
///   ping (so after at most 45 s of silence), or when a write makes no progress
///   for `1.5 × idle`;
/// - `TCP_USER_TIMEOUT` is `1.5 × idle` too: unacknowledged data ends the link.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub idle: Duration,
    pub ping_timeout: Duration,
    pub write_stall: Duration,
}

impl Liveness {
    fn from_idle(idle: Duration) -> Self {
        Liveness {
            idle,
            ping_timeout: idle / 2,
            write_stall: idle + idle / 2,
        }
    }
}

/// Drive a link a domain has opened. It connects only once the domain's
/// previous link has closed, so the server never sees two at once and answers
/// the new one with `conflict`.
pub fn start(router: &Arc<Router>, domain: &Arc<Domain>, new: NewLink) {
    let task = LinkTask {
        router: router.clone(),
        domain: domain.clone(),
        link: new.link,
        rx: new.rx,
        logged: None,
        ping_prefix: format!("xcr-ping-{}-", crate::proto::new_stream_id()),
        ping_seq: 0,
    };
    tokio::spawn(task.run(new.predecessor));
}

/// Apply a change of `[upstream]` from a reload: when it appears, every domain
/// with a session opens its link; when it disappears, every link is closed;
/// when the address changes, every link reconnects to the new one now.
pub fn apply_reload(
    router: &Arc<Router>,
    old: Option<&UpstreamConfig>,
    new: Option<&UpstreamConfig>,
) {
    let domains = router.domains();
    match (old, new) {
        (Some(_), None) => {
            info!("reload: [upstream] removed, closing the upstream links");
            for d in domains {
                d.close_upstream();
            }
        }
        (None, Some(u)) => {
            info!(address = %u.address, "reload: [upstream] added, starting the upstream links");
            let Some(limits) = router.upstream_queue() else {
                return;
            };
            for d in domains {
                if let Some(new) = d.open_upstream(limits) {
                    start(router, &d, new);
                }
            }
        }
        // A changed `max_stanza_size` applies at the next (re)connect.
        (Some(a), Some(b)) if a.address != b.address => {
            info!(old = %a.address, new = %b.address, "reload: upstream address changed, reconnecting the upstream links");
            for d in domains {
                if let Some(link) = d.link().as_ref() {
                    link.reconfigure();
                }
            }
        }
        _ => {}
    }
}

/// What was last logged about a link (so a state is logged once, not per retry).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Logged {
    Up,
    Down(String),
}

/// Why a connection of the link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reason {
    /// [`Link::close`], or the component's session is gone.
    Close,
    /// The upstream address changed.
    Reconfigure,
    /// The link failed; the text says why (for the log).
    Failed(String),
}

impl Reason {
    fn graceful(&self) -> bool {
        matches!(self, Reason::Close | Reason::Reconfigure)
    }
}

struct LinkTask {
    router: Arc<Router>,
    domain: Arc<Domain>,
    link: Arc<Link>,
    rx: OutboxReceiver,
    logged: Option<Logged>,
    ping_prefix: String,
    ping_seq: u64,
}

/// A connection that completed the handshake; the framer may already hold
/// what the server sent right after `<handshake/>`.
struct Conn {
    reader: FramedReader,
    wr: OwnedWriteHalf,
    limits: Limits,
    live: Liveness,
}

impl LinkTask {
    async fn run(mut self, predecessor: Option<Arc<Link>>) {
        if let Some(prev) = predecessor {
            self.await_predecessor(&prev).await;
        }
        self.serve_until_closed().await;
        self.link.set_finished();
    }

    /// Wait (bounded) until the domain's previous link has closed.
    async fn await_predecessor(&self, prev: &Link) {
        tokio::select! {
            biased;
            _ = self.link.event() => {}
            _ = prev.finished() => {}
            _ = sleep(PREDECESSOR_WAIT) => {
                debug!(domain = %self.link.domain(), "the previous upstream link of {} did not close in time; connecting anyway", self.link.domain());
            }
        }
    }

    async fn serve_until_closed(&mut self) {
        let mut backoff = Backoff::new();
        let domain = self.link.domain().clone();
        loop {
            if self.link.is_closing() || !self.is_current() {
                break;
            }
            self.link.clear_reconfigure();
            let Some(upstream) = self.router.settings().upstream.clone() else {
                break;
            };
            let limits = link_limits(&upstream);
            let live = Liveness::from_idle(upstream.keepalive_interval);
            let address = upstream.address;
            let secret = self.domain.settings().upstream_secret.clone();
            let attempt = tokio::select! {
                biased;
                ev = self.link.event() => Err(ev),
                r = connect(&address, &domain, secret.expose(), limits, live) => Ok(r),
            };
            let mut unsent = Vec::new();
            let failure = match attempt {
                Err(Event::Close) => break,
                Err(Event::Reconfigure) => {
                    backoff.reset();
                    continue;
                }
                Ok(Err(reason)) => reason,
                Ok(Ok(conn)) => {
                    // Leftovers of a race with the previous failure (queued after
                    // it was drained): bounce them rather than send them late.
                    self.bounce_queued().await;
                    self.link.set_up(true);
                    if self.link.is_closing() {
                        self.link.set_up(false);
                    }
                    if self.logged != Some(Logged::Up) {
                        info!(domain = %domain, address = %address, "upstream link for {domain} up");
                        self.logged = Some(Logged::Up);
                    }
                    let since = Instant::now();
                    let (reason, left) = self.serve(conn).await;
                    self.link.set_up(false);
                    unsent = left;
                    match reason {
                        Reason::Close => {
                            self.bounce(unsent).await;
                            break;
                        }
                        Reason::Reconfigure => {
                            info!(domain = %domain, "upstream link for {domain}: address changed, reconnecting");
                            self.bounce(unsent).await;
                            self.logged = None;
                            backoff.reset();
                            continue;
                        }
                        Reason::Failed(why) => {
                            if since.elapsed() >= STABLE_UP {
                                backoff.reset();
                            }
                            why
                        }
                    }
                }
            };
            let delay = backoff.next_delay();
            // The state change first, then its consequences.
            self.log_down(&address, &failure, delay);
            self.bounce(unsent).await;
            tokio::select! {
                biased;
                ev = self.link.event() => match ev {
                    Event::Close => break,
                    Event::Reconfigure => backoff.reset(),
                },
                _ = sleep(delay) => {}
            }
        }
        self.link.set_up(false);
        self.bounce_queued().await;
        info!(domain = %domain, "upstream link for {domain} closed");
    }

    /// The domain still wants this link (it closes it otherwise).
    fn is_current(&self) -> bool {
        !self.link.is_closing() && !self.domain.is_detached()
    }

    fn log_down(&mut self, address: &str, reason: &str, delay: Duration) {
        let domain = &self.link.domain();
        let secs = delay.as_secs_f64();
        let state = Logged::Down(reason.to_string());
        if self.logged.as_ref() == Some(&state) {
            debug!(domain = %domain, address, "upstream link for {domain} still down: {reason}; retrying in {secs:.1} s");
        } else {
            warn!(domain = %domain, address, "upstream link for {domain} down: {reason}; retrying in {secs:.1} s");
            self.logged = Some(state);
        }
    }

    /// Run an authenticated connection until it ends; returns why, and the
    /// stanzas taken from the queue but not completely written.
    async fn serve(&mut self, conn: Conn) -> (Reason, Vec<Out>) {
        let Conn {
            reader,
            wr,
            limits,
            live,
        } = conn;
        let stop = Stop::default();
        let (ctl_tx, ctl_rx) = mpsc::channel::<Bytes>(4);
        let reader = Reader {
            reader,
            limits,
            domain_ref: &self.domain,
            link: &self.link,
            router: &self.router,
            give_up: None,
            stop: &stop,
            ctl: ctl_tx,
            domain: self.link.domain(),
            ping_prefix: &self.ping_prefix,
            ping_seq: &mut self.ping_seq,
            live,
        };
        let mut writer = Writer::new(wr, Some(live.idle), Some(live.write_stall));
        // Our header and handshake went out: the keepalive timer runs from now.
        writer.written_now();
        let writer = write_side(writer, &mut self.rx, ctl_rx, &stop);
        let link = &self.link;
        let watcher = async {
            tokio::select! {
                ev = link.event() => stop.fire(match ev {
                    Event::Close => Reason::Close,
                    Event::Reconfigure => Reason::Reconfigure,
                }),
                _ = stop.wait() => {}
            }
        };
        let ((), unsent, ()) = tokio::join!(reader.run(), writer, watcher);
        (stop.reason(), unsent)
    }

    /// Bounce what is still in the queue.
    async fn bounce_queued(&mut self) {
        self.bounce(Vec::new()).await;
    }

    /// Send "Upstream server unavailable" back for `stanzas` (taken from the
    /// writer) and what is still queued: they never reached the server. Never
    /// for `type='error'`/`'result'`.
    async fn bounce(&mut self, mut stanzas: Vec<Out>) {
        stanzas.extend(self.rx.drain());
        // Keepalives and pings are not stanzas.
        let stanzas: Vec<Envelope> = stanzas.into_iter().filter_map(Out::into_stanza).collect();
        if stanzas.is_empty() {
            return;
        }
        let (mut n, mut lost) = (0usize, 0usize);
        // The senders are the domain's component.
        let session = self.domain.sessions().pick().cloned();
        for st in &stanzas {
            let Some(reply) = Bounce::UPSTREAM_UNAVAILABLE.envelope(st.head.name, &st.attrs) else {
                continue;
            };
            let Some(session) = &session else {
                lost += 1;
                continue;
            };
            // Wait for the component to make room (it is the sender), unless
            // the link is being closed: then only what fits now.
            let outbox = &session.outbox;
            let try_push = |e| outbox.try_push(Out::Stanza(e)).map_err(|r| r.why);
            let pushed = if self.link.is_closing() {
                try_push(reply)
            } else {
                tokio::select! {
                    biased;
                    r = outbox.push(Out::Stanza(reply.clone())) => r,
                    _ = self.link.event() => try_push(reply),
                }
            };
            match pushed {
                Ok(()) => n += 1,
                Err(PushError::Full) => lost += 1,
                Err(PushError::Closed) => break,
            }
        }
        let domain = &self.link.domain();
        info!(domain = %domain, unsent = stanzas.len(), bounced = n, "upstream link for {domain}: {} stanza(s) not sent upstream, {n} bounced", stanzas.len());
        if lost > 0 {
            warn!(domain = %domain, lost, "upstream link for {domain}: {lost} bounce(s) dropped, the component's queue is full while its link closes");
        }
    }
}

/// The first reason to end a connection wins; everyone waiting is woken.
#[derive(Default)]
struct Stop {
    reason: Mutex<Option<Reason>>,
    drained: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// The reader has handled what the server sent before the stop (delivered
    /// it, or queued bounces for it): the writer may close the stream.
    fn mark_drained(&self) {
        self.drained.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    async fn drained(&self) {
        wait_until(&self.notify, || self.drained.load(Ordering::Acquire)).await
    }

    fn fire(&self, r: Reason) {
        if let Ok(mut g) = self.reason.lock() {
            if g.is_none() {
                *g = Some(r);
            }
        }
        self.notify.notify_waiters();
    }

    fn fired(&self) -> bool {
        self.reason.lock().map(|g| g.is_some()).unwrap_or(true)
    }

    fn reason(&self) -> Reason {
        self.reason
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_else(|| Reason::Failed("link ended".into()))
    }

    async fn wait(&self) {
        wait_until(&self.notify, || self.fired()).await
    }
}

/// Connect and authenticate; `Err` carries the reason for the log.
async fn connect(
    address: &str,
    domain: &str,
    secret: &str,
    limits: Limits,
    live: Liveness,
) -> Result<Conn, String> {
    let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Err(_) => {
            return Err(format!(
                "no TCP connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        }
        Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
        Ok(Ok(s)) => s,
    };
    let _ = SocketOptions::link(live.write_stall).apply(socket2::SockRef::from(&stream));
    let (rd, mut wr) = stream.into_split();
    let mut reader = FramedReader::new(rd, limits, Sizing::STREAM);
    match timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut reader, &mut wr, domain, secret),
    )
    .await
    {
        Err(_) => Err(format!(
            "no handshake reply within {} s",
            HANDSHAKE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(Conn {
            reader,
            wr,
            limits,
            live,
        }),
    }
}

/// XEP-0114 §3 from the component's side.
async fn handshake(
    reader: &mut FramedReader,
    wr: &mut OwnedWriteHalf,
    domain: &str,
    secret: &str,
) -> Result<(), String> {
    wr.write_all(&connect_header(domain))
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    let mut sent = false;
    loop {
        let frame = match reader.read_frame().await {
            Ok(f) => f,
            Err(ReadError::Xml(e)) => return Err(format!("invalid XML from the server: {e}")),
            Err(ReadError::Closed) if sent => {
                return Err("connection closed by the server during the handshake".into())
            }
            Err(ReadError::Closed) => {
                return Err("connection closed by the server before its stream header".into())
            }
            Err(e) => return Err(e.to_string()),
        };
        match frame {
            Frame::Header(h) => {
                let Some(id) = h.id else {
                    return Err("the server's stream header has no id".into());
                };
                // Prosody's header before a stream error has `id=''`: wait for the error.
                if !id.is_empty() {
                    let token = crate::proto::handshake_digest(&id, secret);
                    wr.write_all(format!("<handshake>{token}</handshake>").as_bytes())
                        .await
                        .map_err(|e| format!("write failed: {e}"))?;
                    sent = true;
                }
            }
            Frame::Start(_) | Frame::Skipped(_) => {}
            Frame::Stanza(st) => {
                if is_stream_error(&st) {
                    return Err(stream_error_reason(&st));
                }
                if st.head.name == Name::Handshake && sent {
                    return Ok(());
                }
                return Err(format!(
                    "unexpected <{}/> before the handshake reply",
                    st.head.name.as_str()
                ));
            }
            Frame::End => return Err("the server closed the stream".into()),
        }
    }
}

fn is_stream_error(st: &Stanza) -> bool {
    st.head.name == Name::Error && st.head.ns == Ns::Streams
}

/// `condition (text)` of a `<stream:error/>`, for the log.
fn stream_error_reason(st: &Stanza) -> String {
    let cond = st
        .first_child
        .as_deref()
        .unwrap_or("undefined-condition")
        .to_string();
    match stream_error_text(st) {
        Some(t) => format!("{cond} ({t})"),
        None => cond,
    }
}

/// The `<text/>` of a stream error, sanitised for a log line (control
/// characters as spaces, at most 200 characters).
fn stream_error_text(st: &Stanza) -> Option<String> {
    let clean: String = st
        .error_text
        .as_deref()?
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty()).then_some(clean)
}

/// The reading half of an authenticated connection.
struct Reader<'a> {
    reader: FramedReader,
    limits: Limits,
    domain_ref: &'a Domain,
    /// The link's own queue: bounces to the server's senders go there.
    link: &'a Link,
    router: &'a Router,
    /// Once the link is stopping: how long a stanza read from the server may
    /// still wait for room in the component's queue.
    give_up: Option<Instant>,
    stop: &'a Stop,
    /// Control bytes (pings) for the writer.
    ctl: mpsc::Sender<Bytes>,
    domain: &'a str,
    ping_prefix: &'a str,
    ping_seq: &'a mut u64,
    live: Liveness,
}

/// What the reader does after a frame.
enum Next {
    Continue,
    /// The connection is over (the reason has been fired).
    Done,
}

impl Reader<'_> {
    async fn run(mut self) {
        self.serve().await;
        self.stop.mark_drained();
    }

    async fn serve(&mut self) {
        let mut last_rx = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        loop {
            if let Next::Done = self.drain_frames().await {
                return;
            }
            let deadline = match ping_sent {
                Some(t) => t + self.live.ping_timeout,
                None => last_rx + self.live.idle,
            };
            tokio::select! {
                biased;
                _ = self.stop.wait() => {
                    // What the server sent before the stop is handled before
                    // our `</stream:stream>` goes out (the writer waits for it).
                    self.drain_available().await;
                    self.stop.mark_drained();
                    if self.stop.reason().graceful() {
                        self.linger().await;
                    }
                    return;
                }
                r = self.reader.fill() => match r {
                    Ok(()) => {
                        last_rx = Instant::now();
                        ping_sent = None;
                    }
                    Err(e) => {
                        self.stop.fire(Reason::Failed(read_failure(&e)));
                        return;
                    }
                },
                _ = sleep_until(deadline) => {
                    if ping_sent.is_some() {
                        let silent = self.live.idle + self.live.ping_timeout;
                        self.stop.fire(Reason::Failed(format!(
                            "nothing received for {:.1} s, not even the answer to a ping (dead link)",
                            silent.as_secs_f64()
                        )));
                        return;
                    }
                    self.reader.shrink();
                    *self.ping_seq += 1;
                    let ping = format!(
                        "<iq type='get' from='{d}' to='{d}' id='{p}{n}'><ping xmlns='urn:xmpp:ping'/></iq>",
                        d = Escaped(self.domain),
                        p = self.ping_prefix,
                        n = self.ping_seq
                    );
                    let _ = self.ctl.try_send(Bytes::from(ping));
                    ping_sent = Some(Instant::now());
                }
            }
        }
    }

    /// After the stop: handle what has already arrived (without waiting for
    /// more), a bounded amount.
    async fn drain_available(&mut self) {
        for _ in 0..16 {
            if let Next::Done = self.drain_frames().await {
                return;
            }
            if self.reader.try_fill().is_err() {
                return;
            }
        }
    }

    /// After a graceful stop (our `</stream:stream>` is being sent): keep
    /// delivering what the server still sends until it closes, for a moment.
    async fn linger(&mut self) {
        let deadline = Instant::now() + LINGER;
        self.give_up = Some(deadline);
        loop {
            if let Next::Done = self.drain_frames().await {
                return;
            }
            tokio::select! {
                r = self.reader.fill() => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = sleep_until(deadline) => return,
            }
        }
    }

    /// Handle every complete frame buffered so far.
    async fn drain_frames(&mut self) -> Next {
        loop {
            let frame = match self.reader.frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Next::Continue,
                Err(e) => {
                    self.stop
                        .fire(Reason::Failed(format!("invalid XML from the server: {e}")));
                    return Next::Done;
                }
            };
            let st = match frame {
                Frame::Stanza(st) => st,
                Frame::End => {
                    self.stop
                        .fire(Reason::Failed("the server closed the stream".into()));
                    return Next::Done;
                }
                Frame::Skipped(sk) => {
                    self.skipped(sk).await;
                    continue;
                }
                Frame::Header(_) | Frame::Start(_) => continue,
            };
            if is_stream_error(&st) {
                self.stop.fire(Reason::Failed(format!(
                    "{} from the server",
                    stream_error_reason(&st)
                )));
                return Next::Done;
            }
            if !st.head.name.is_stanza() {
                debug!(domain = %self.domain, element = st.head.name.as_str(), "ignoring a non-stanza element from the upstream server");
                continue;
            }
            if st.head.name == Name::Iq
                && st
                    .attrs
                    .id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(self.ping_prefix))
            {
                continue; // our ping (or its answer): proof of life, nothing more
            }
            // The namespace check a component's stanzas get; one stanza never
            // ends the link, so it is bounced instead.
            if !matches!(st.head.ns, Ns::Component | Ns::Client) {
                info!(domain = %self.domain, element = st.head.name.as_str(), "stanza from the upstream server in a foreign namespace bounced (bad-request)");
                self.bounce_upstream(&Envelope::from(st), Bounce::BAD_REQUEST)
                    .await;
                continue;
            }
            if let Next::Done = self.deliver(st).await {
                return Next::Done;
            }
        }
    }

    /// Queue a stanza from the server for the component. While its queue is
    /// full the link reads nothing more (TCP back-pressure on the server). It
    /// is delivered only if a reload has not detached the component meanwhile.
    async fn deliver(&mut self, st: Stanza) -> Next {
        let st = Envelope::from(st);
        // A session whose queue closed while the link waited for room.
        let mut gone = None;
        loop {
            if self.domain_ref.is_detached() {
                self.discard_for_detached();
                return Next::Continue;
            }
            let session = self.domain_ref.sessions().pick().cloned();
            let Some(session) = session.filter(|s| Some(s.id) != gone) else {
                // Its connection is ending: the sender hears of it.
                self.bounce_upstream(&st, Bounce::COMPONENT_UNAVAILABLE)
                    .await;
                return Next::Continue;
            };
            let give_up = self.give_up;
            let room = tokio::select! {
                biased;
                r = session.outbox.reserve(st.cost()) => Some(r),
                _ = self.stop.wait(), if give_up.is_none() => None,
                _ = sleep_until(give_up.unwrap_or_else(Instant::now)), if give_up.is_some() => {
                    info!(domain = %self.domain, "stanza from the upstream server not delivered: the component did not read it before its link closed");
                    self.bounce_upstream(&st, Bounce::COMPONENT_UNAVAILABLE).await;
                    return Next::Done;
                }
            };
            match room {
                None if self.domain_ref.is_detached() => {
                    self.discard_for_detached();
                    return Next::Continue;
                }
                // The link is stopping: deliver it if room comes soon.
                None => self.give_up = Some(Instant::now() + LINGER),
                Some(Err(_)) => gone = Some(session.id),
                Some(Ok(room)) => {
                    let room = Reserved {
                        session: session.id,
                        room,
                    };
                    // The gate is held until the stanza is queued: a reload's
                    // detach waits for it, so nothing reaches the component
                    // once it is done.
                    let routed = match self.domain_ref.routing() {
                        Some(_routing) => deliver(self.domain_ref, st, Some(room)),
                        None => Routed::Discarded,
                    };
                    match routed {
                        Routed::Delivered => {}
                        Routed::Discarded => self.discard_for_detached(),
                        Routed::Bounce(b, item) => {
                            if let Some(st) = item.into_stanza() {
                                self.bounce_upstream(&st, b).await;
                            }
                        }
                    }
                    return Next::Continue;
                }
            }
        }
    }

    /// A stanza beyond the link's limits was skipped (never buffered): its
    /// sender gets `modify`/`policy-violation` over this link.
    async fn skipped(&self, sk: Skipped) {
        let from = sk.attrs.from.as_deref().unwrap_or("an unknown sender");
        let why = match sk.limit {
            Limit::Size => format!(
                "larger than [upstream] max_stanza_size ({} bytes)",
                self.limits.max_stanza_size
            ),
            other => other.describe(&self.limits),
        };
        info!(domain = %self.domain, size = sk.size, "upstream link for {}: stanza from {from} skipped and bounced with policy-violation: {why}", self.domain);
        match sk.head {
            Some(head) if head.name.is_stanza() => {
                if let Some(reply) = Bounce::TOO_LARGE.envelope(head.name, &sk.attrs) {
                    self.queue_upstream(Out::Stanza(reply)).await;
                }
            }
            // Its start tag alone went past the limits: nothing to answer to.
            _ => {}
        }
    }

    /// A reload detached the component: what the server still sends it is
    /// dropped (as what the component sends is), counted and logged at debug.
    fn discard_for_detached(&self) {
        let n = self
            .router
            .discarded_for_detached
            .fetch_add(1, Ordering::Relaxed);
        debug!(domain = %self.domain, discarded = n + 1, "stanza from the upstream server for a detached component discarded");
    }

    /// Answer a stanza from the server with a stanza error over this link
    /// (never for `type='error'`/`'result'`). Waits for room in the link's
    /// queue unless the link is stopping.
    async fn bounce_upstream(&self, st: &Envelope, bounce: Bounce) {
        if let Some(reply) = bounce.envelope(st.head.name, &st.attrs) {
            self.queue_upstream(Out::Stanza(reply)).await;
        }
    }

    /// Queue a stanza of ours for the server: waits for room in the link's
    /// queue unless the link is stopping.
    async fn queue_upstream(&self, reply: Out) {
        let queue = self.link.queue();
        let pushed = if self.stop.fired() {
            queue.try_push(reply).map_err(|r| r.why)
        } else {
            // Room is reserved first, so the reply stays ours if the stop wins.
            let cost = reply.cost();
            tokio::select! {
                biased;
                r = queue.reserve(cost) => r.map(|room| room.send(reply)),
                _ = self.stop.wait() => queue.try_push(reply).map_err(|r| r.why),
            }
        };
        if pushed.is_err() {
            debug!(domain = %self.domain, "bounce to the upstream server dropped: the link is closing");
        }
    }
}

/// Why a read ended the connection, for the log.
fn read_failure(e: &ReadError) -> String {
    match e {
        ReadError::Closed => "connection closed by the server".into(),
        e => e.to_string(),
    }
}

/// The writing half: runs the writer until the link stops, then closes the
/// stream: on a graceful stop, once the reader has handled what the server
/// sent before it (its bounces go out first), what is queued and
/// `</stream:stream>`; on a failure, nothing. Returns what was taken from the
/// queue and not written.
async fn write_side(
    mut writer: Writer,
    q: &mut OutboxReceiver,
    mut ctl: mpsc::Receiver<Bytes>,
    stop: &Stop,
) -> Vec<Out> {
    match writer.run(q, Some(&mut ctl), stop.wait()).await {
        Ok(Some(())) => {}
        // Cannot happen while the link (which holds the sender) lives.
        Ok(None) => stop.fire(Reason::Close),
        Err(WriteError::Io(e)) => stop.fire(Reason::Failed(format!("write failed: {e}"))),
        Err(WriteError::Stalled(d)) => stop.fire(Reason::Failed(format!(
            "the server read nothing for {:.1} s (dead link)",
            d.as_secs_f64()
        ))),
    }
    let how = if stop.reason().graceful() {
        let _ = timeout(CLOSE_GRACE, stop.drained()).await;
        Closing::Flush(Bytes::from_static(b"</stream:stream>"))
    } else {
        Closing::Drop
    };
    writer.close(q, how).await
}

/// The limits of a link's framer. What the server relays comes from anyone on
/// the network, re-escaped (an apostrophe becomes six bytes), so they are the
/// link's own: `[upstream] max_stanza_size`, and no depth or token limit but
/// the size (each level takes at least three bytes of it). A stanza beyond
/// them is skipped, not buffered, and bounced; only XML that is not
/// well-formed ends the link.
fn link_limits(u: &UpstreamConfig) -> Limits {
    Limits {
        max_stanza_size: u.max_stanza_size,
        max_depth: u.max_stanza_size,
        max_attributes: LINK_MAX_ATTRIBUTES,
        max_token: u.max_stanza_size,
        excess: Excess::Skip,
    }
}

/// Exponential backoff with jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The delay before the next attempt; the one after doubles (up to the cap).
    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(BACKOFF_MAX);
        jitter(base, random_unit())
    }
}

/// `base` scaled by a factor in `[1 - JITTER, 1 + JITTER]` chosen by `u` in
/// `[0, 1]`, never above [`BACKOFF_MAX`].
fn jitter(base: Duration, u: f64) -> Duration {
    let lo = base.mul_f64(1.0 - JITTER);
    let hi = base.mul_f64(1.0 + JITTER).min(BACKOFF_MAX).max(lo);
    lo + (hi - lo).mul_f64(u.clamp(0.0, 1.0))
}

/// Uniform in `[0, 1]` from the OS RNG (0.5 if it fails).
fn random_unit() -> f64 {
    getrandom::u32()
        .map(|x| f64::from(x) / f64::from(u32::MAX))
        .unwrap_or(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new();
        let mut bases = Vec::new();
        for _ in 0..8 {
            bases.push(b.next);
            let d = b.next_delay();
            let base = *bases.last().unwrap();
            assert!(
                d >= base.mul_f64(0.75) && d <= base.mul_f64(1.25),
                "{d:?} for {base:?}"
            );
            assert!(d <= BACKOFF_MAX);
            assert!(d >= Duration::from_millis(750));
        }
        let secs: Vec<u64> = bases.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next, BACKOFF_MIN);
        assert_eq!(jitter(Duration::from_secs(30), 1.0), BACKOFF_MAX);
        assert_eq!(
            jitter(Duration::from_secs(30), 0.0),
            Duration::from_millis(22_500)
        );
        assert_eq!(
            jitter(Duration::from_secs(1), 0.0),
            Duration::from_millis(750)
        );
        assert_eq!(
            jitter(Duration::from_secs(1), 1.0),
            Duration::from_millis(1250)
        );
    }

    /// Frame one element from a server (after its stream header).
    fn from_server(el: &str) -> Stanza {
        let mut f = crate::wire::xml::Framer::new(Limits::new(100_000));
        f.buf_mut().extend_from_slice(
            b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>",
        );
        f.buf_mut().extend_from_slice(el.as_bytes());
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Stanza(s))) => return s,
                Ok(Some(_)) => continue,
                other => panic!("{el}: {other:?}"),
            }
        }
    }

    #[test]
    fn stream_error_text_is_extracted() {
        let st = from_server("<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>c.example does not match &lt;x&gt;</text></stream:error>");
        assert_eq!(
            stream_error_text(&st).as_deref(),
            Some("c.example does not match <x>")
        );
        assert_eq!(
            stream_error_reason(&st),
            "host-unknown (c.example does not match <x>)"
        );
        let st = from_server("<stream:error><conflict xmlns='x'/></stream:error>");
        assert_eq!(stream_error_text(&st), None);
        let st = from_server("<stream:error><textual/><text/></stream:error>");
        assert_eq!(stream_error_text(&st), None);
        let st = from_server("<stream:error><c/><text>a&#xA;b&#x9;</text></stream:error>");
        assert_eq!(stream_error_text(&st).as_deref(), Some("a b"));
    }

    #[test]
    fn liveness_is_derived_from_idle() {
        let l = Liveness::from_idle(Duration::from_secs(30));
        assert_eq!(l.ping_timeout, Duration::from_secs(15));
        assert_eq!(l.write_stall, Duration::from_secs(45));
    }
}

//! The reading half of an authenticated link: what the server sends goes to
//! the component (within its queue bounds: while it does not read, the link
//! reads nothing more, so the server is held back by TCP), the link's own
//! pings are swallowed, and what the component cannot be given is answered
//! over the link. It also keeps the link's liveness: a ping after an idle
//! period without reads, and the link is dead when nothing answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info};

use super::connect::{is_stream_error, server_error};
use super::error::LinkError;
use super::timing::Liveness;
use crate::proto::jid;
use crate::router::{deliver, Domain, Reserved, Routed, Router, Source};
use crate::session::{wait_until, Link, PushError};
use crate::wire::out::{Envelope, Out};
use crate::wire::reader::{FramedReader, ReadError};
use crate::wire::stanza::{Bounce, Escaped};
use crate::wire::xml::{Frame, Limit, Limits, Name, Ns, Skipped, Stanza};

/// After the link stops: how long it keeps reading and delivering what the
/// server still sends.
pub const LINGER: Duration = Duration::from_secs(4);

/// Why a connection of the link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// [`Link::close`]: the domain does not want the link any more.
    Close,
    /// The upstream address changed.
    Reconfigure,
    Failed(LinkError),
}

impl Reason {
    pub fn graceful(&self) -> bool {
        matches!(self, Reason::Close | Reason::Reconfigure)
    }
}

/// The first reason to end a connection wins; everyone waiting is woken.
#[derive(Default)]
pub struct Stop {
    reason: Mutex<Option<Reason>>,
    drained: AtomicBool,
    notify: Notify,
}

impl Stop {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Reason>> {
        self.reason.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader has handled what the server sent before the stop (delivered
    /// it, or queued bounces for it): the writer may close the stream.
    pub fn mark_drained(&self) {
        self.drained.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub async fn drained(&self) {
        wait_until(&self.notify, || self.drained.load(Ordering::Acquire)).await
    }

    pub fn fire(&self, r: Reason) {
        {
            let mut g = self.lock();
            if g.is_none() {
                *g = Some(r);
            }
        }
        self.notify.notify_waiters();
    }

    pub fn fired(&self) -> bool {
        self.lock().is_some()
    }

    pub fn reason(&self) -> Reason {
        self.lock()
            .clone()
            .unwrap_or(Reason::Failed(LinkError::Closed))
    }

    pub async fn wait(&self) {
        wait_until(&self.notify, || self.fired()).await
    }
}

/// What the reader does after a frame.
enum Next {
    Continue,
    /// The connection is over (the reason has been fired).
    Done,
}

/// The reading half of an authenticated connection.
pub struct Reader<'a> {
    pub reader: FramedReader,
    pub limits: Limits,
    pub domain: &'a Domain,
    /// The link's own queue: bounces to the server's senders go there.
    pub link: &'a Link,
    pub router: &'a Router,
    /// Once the link is stopping: how long a stanza read from the server may
    /// still wait for room in the component's queue.
    pub give_up: Option<Instant>,
    pub stop: &'a Stop,
    /// Control bytes (pings) for the writer.
    pub ctl: mpsc::Sender<Bytes>,
    pub ping_prefix: &'a str,
    pub ping_seq: &'a mut u64,
    pub live: Liveness,
}

impl Reader<'_> {
    pub async fn run(mut self) {
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
                        self.stop.fire(Reason::Failed(read_failure(e)));
                        return;
                    }
                },
                _ = sleep_until(deadline) => {
                    if ping_sent.is_some() {
                        let silent = self.live.idle + self.live.ping_timeout;
                        self.stop.fire(Reason::Failed(LinkError::PingTimeout(silent)));
                        return;
                    }
                    self.ping();
                    ping_sent = Some(Instant::now());
                }
            }
        }
    }

    /// A ping that loops through the server (an `iq` from DOMAIN to DOMAIN,
    /// which it routes back over this same link); the idle stream drops its
    /// buffers meanwhile.
    fn ping(&mut self) {
        self.reader.shrink();
        *self.ping_seq += 1;
        let ping = format!(
            "<iq type='get' from='{d}' to='{d}' id='{p}{n}'><ping xmlns='urn:xmpp:ping'/></iq>",
            d = Escaped(&self.domain.name),
            p = self.ping_prefix,
            n = self.ping_seq
        );
        let _ = self.ctl.try_send(Bytes::from(ping));
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
            let st = match self.reader.frame() {
                Ok(Some(Frame::Stanza(st))) => st,
                Ok(Some(Frame::Skipped(sk))) => {
                    self.skipped(sk).await;
                    continue;
                }
                Ok(Some(Frame::Header(_) | Frame::Start(_))) => continue,
                Ok(None) => return Next::Continue,
                Ok(Some(Frame::End)) => {
                    self.stop.fire(Reason::Failed(LinkError::StreamClosed));
                    return Next::Done;
                }
                Err(e) => {
                    self.stop.fire(Reason::Failed(LinkError::InvalidXml(e)));
                    return Next::Done;
                }
            };
            if let Next::Done = self.stanza(st).await {
                return Next::Done;
            }
        }
    }

    /// One complete top-level element from the server.
    async fn stanza(&mut self, st: Stanza) -> Next {
        if is_stream_error(&st) {
            let e = server_error(&st);
            self.stop.fire(Reason::Failed(LinkError::StreamError(e)));
            return Next::Done;
        }
        if !st.head.name.is_stanza() {
            debug!(domain = %self.domain.name, element = st.head.name.as_str(), "ignoring a non-stanza element from the upstream server");
            return Next::Continue;
        }
        let ours = st.head.name == Name::Iq
            && st
                .attrs
                .id
                .as_deref()
                .is_some_and(|id| id.starts_with(self.ping_prefix));
        if ours {
            return Next::Continue; // our ping (or its answer): proof of life, nothing more
        }
        // The namespace check a component's stanzas get; one stanza never
        // ends the link, so it is bounced instead.
        if !matches!(st.head.ns, Ns::Component | Ns::Client) {
            info!(domain = %self.domain.name, element = st.head.name.as_str(), "stanza from the upstream server in a foreign namespace bounced (bad-request)");
            self.bounce_upstream(&Envelope::from(st), Bounce::BAD_REQUEST)
                .await;
            return Next::Continue;
        }
        let env = Envelope::from(st);
        if !self.is_for_own_domain(&env) {
            let routed = self.router.route(Source::Upstream(self.domain), env);
            self.answer(routed).await;
            return Next::Continue;
        }
        self.deliver(env).await
    }

    /// The stanza is addressed to this link's domain (or carries no usable
    /// `to`: the server means the component it sends to). Anything else is
    /// routed by its `to` (docs/behaviour.md#upstream).
    fn is_for_own_domain(&self, env: &Envelope) -> bool {
        let Some(j) = env.attrs.to.as_deref().and_then(jid::split) else {
            return true;
        };
        let own: &str = &self.domain.name;
        j.domain == own || *jid::routing_key(j.domain) == *own
    }

    /// Queue a stanza from the server for the component. While its queue is
    /// full the link reads nothing more (TCP back-pressure on the server). It
    /// is delivered only if a reload has not detached the component meanwhile.
    async fn deliver(&mut self, st: Envelope) -> Next {
        // A session whose queue closed while the link waited for room.
        let mut gone = None;
        loop {
            if self.domain.is_detached() {
                self.discard_for_detached();
                return Next::Continue;
            }
            let session = {
                let set = self.domain.sessions();
                // The request stays remembered until `deliver` takes it.
                (self.domain)
                    .pick(&set, st.head.name, &st.attrs, false)
                    .cloned()
            };
            let session = session.filter(|s| Some(s.id) != gone);
            let Some(session) = session.filter(|_| !self.domain.hold().is_holding()) else {
                // No session, or the domain is held: routed without waiting
                // (to the hold queue, or the sender hears of it).
                let routed = match self.domain.routing() {
                    Some(_routing) => deliver(self.domain, st, None),
                    None => Routed::Discarded,
                };
                self.answer(routed).await;
                return Next::Continue;
            };
            let give_up = self.give_up;
            let room = tokio::select! {
                biased;
                r = session.outbox.reserve(st.cost()) => Some(r),
                _ = self.stop.wait(), if give_up.is_none() => None,
                _ = sleep_until(give_up.unwrap_or_else(Instant::now)), if give_up.is_some() => {
                    info!(domain = %self.domain.name, "stanza from the upstream server not delivered: the component did not read it before its link closed");
                    self.bounce_upstream(&st, Bounce::COMPONENT_UNAVAILABLE).await;
                    return Next::Done;
                }
            };
            match room {
                None if self.domain.is_detached() => {
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
                    let routed = match self.domain.routing() {
                        Some(_routing) => deliver(self.domain, st, Some(room)),
                        None => Routed::Discarded,
                    };
                    self.answer(routed).await;
                    return Next::Continue;
                }
            }
        }
    }

    /// Perform a routing decision's answer for a stanza from the server.
    async fn answer(&self, routed: Routed) {
        match routed {
            Routed::Delivered => {}
            Routed::Discarded => self.discard_for_detached(),
            Routed::Bounce(b, item) => {
                if let Some(st) = item.into_stanza() {
                    self.bounce_upstream(&st, b).await;
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
        let domain = &self.domain.name;
        info!(domain = %domain, size = sk.size, "upstream link for {domain}: stanza from {from} skipped and bounced with policy-violation: {why}");
        match sk.head {
            Some(head) if head.name.is_stanza() => {
                self.count_bounce(Bounce::TOO_LARGE);
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
        debug!(event = "detached.discarded_from_upstream", domain = %self.domain.name, discarded = n + 1, "stanza from the upstream server for a detached component discarded");
    }

    /// Answer a stanza from the server with a stanza error over this link
    /// (never for `type='error'`/`'result'`). Waits for room in the link's
    /// queue unless the link is stopping.
    async fn bounce_upstream(&self, st: &Envelope, bounce: Bounce) {
        self.count_bounce(bounce);
        if let Some(reply) = bounce.envelope(st.head.name, &st.attrs) {
            self.queue_upstream(Out::Stanza(reply)).await;
        }
    }

    /// A stanza from the server is refused: counted for the link's domain.
    fn count_bounce(&self, bounce: Bounce) {
        self.domain
            .metrics
            .counters()
            .bounce(bounce.condition.into());
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
        if let Err(PushError::Full | PushError::Closed) = pushed {
            debug!(domain = %self.domain.name, "bounce to the upstream server dropped: the link is closing");
        }
    }
}

/// Why a read ended the connection.
fn read_failure(e: ReadError) -> LinkError {
    match e {
        ReadError::Closed => LinkError::Closed,
        ReadError::Io(e) => LinkError::Read(e.to_string()),
        ReadError::Xml(e) => LinkError::InvalidXml(e),
    }
}

//! The task that drives one link: it waits for the domain's previous link to
//! close, then connects, serves the connection and reconnects with backoff
//! until the domain closes the link.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use super::connect::{connect, Conn};
use super::error::LinkError;
use super::reader::{Reader, Reason, Stop};
use super::timing::{Backoff, FIRST_STANZAS_WAIT, STABLE_UP};
use crate::config::UpstreamConfig;
use crate::router::{Domain, Routed, Router};
use crate::session::link::Event;
use crate::session::{Link, OutboxReceiver, PushError};
use crate::wire::out::{Envelope, Out};
use crate::wire::stanza::Bounce;
use crate::wire::writer::{Closing, WriteError, Writer, CLOSE_GRACE};

/// Longest wait for the domain's previous link to close before connecting: it
/// takes at most its flush and its linger, [`CLOSE_GRACE`] three times.
const PREDECESSOR_WAIT: Duration = Duration::from_secs(8);

/// What was last logged about a link (so a state is logged once, not per retry).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Logged {
    Up,
    Down(LinkError),
}

/// How one connection attempt ended.
enum Attempt {
    /// The link was closed.
    Closed,
    /// Connect again at once (the address changed).
    Again,
    /// It failed: retry after the backoff; the stanzas it did not write.
    Failed(LinkError, Vec<Out>),
}

pub struct LinkTask {
    pub router: Arc<Router>,
    pub domain: Arc<Domain>,
    pub link: Arc<Link>,
    pub rx: OutboxReceiver,
    logged: Option<Logged>,
    /// Until the first attempt ends (or this instant passes), what the
    /// component sends waits in the queue instead of bouncing.
    first_wait: Option<Instant>,
    ping_prefix: String,
    ping_seq: u64,
}

impl LinkTask {
    pub fn new(
        router: Arc<Router>,
        domain: Arc<Domain>,
        link: Arc<Link>,
        rx: OutboxReceiver,
    ) -> Self {
        LinkTask {
            router,
            domain,
            link,
            rx,
            logged: None,
            first_wait: Some(Instant::now() + FIRST_STANZAS_WAIT),
            ping_prefix: format!("xcr-ping-{}-", crate::proto::new_stream_id()),
            ping_seq: 0,
        }
    }

    pub async fn run(mut self, predecessor: Option<Arc<Link>>) {
        if let Some(prev) = predecessor {
            self.await_predecessor(&prev).await;
        }
        self.serve_until_closed().await;
        self.link.set_finished();
    }

    /// Wait (bounded) until the domain's previous link has closed.
    async fn await_predecessor(&mut self, prev: &Link) {
        let link = self.link.clone();
        let give_up = sleep(PREDECESSOR_WAIT);
        tokio::pin!(give_up);
        loop {
            tokio::select! {
                biased;
                _ = link.event() => return,
                _ = prev.finished() => return,
                _ = &mut give_up => {
                    debug!(domain = %self.domain.name, "the previous upstream link of {} did not close in time; connecting anyway", self.domain.name);
                    return;
                }
                _ = first_wait_over(self.first_wait) => self.end_first_wait().await,
            }
        }
    }

    /// The first stanzas waited long enough: bounce them; from now on the
    /// link bounces at once until it is up.
    async fn end_first_wait(&mut self) {
        if self.first_wait.take().is_some() {
            self.link.close_gate().await;
            self.bounce(Vec::new()).await;
        }
    }

    async fn serve_until_closed(&mut self) {
        let mut backoff = Backoff::new();
        while self.is_current() {
            self.link.clear_reconfigure();
            let Some(upstream) = self.router.settings().upstream.clone() else {
                break;
            };
            let (failure, unsent) = match self.attempt(&upstream, &mut backoff).await {
                Attempt::Closed => break,
                Attempt::Again => continue,
                Attempt::Failed(e, unsent) => (e, unsent),
            };
            let delay = backoff.next_delay();
            self.link.set_retry_in(delay);
            // The state change first, then its consequences.
            self.log_down(&upstream.address, failure, delay);
            self.first_wait = None;
            self.link.close_gate().await;
            self.bounce(unsent).await;
            let ev = tokio::select! {
                biased;
                ev = self.link.event() => Some(ev),
                _ = self.link.retry_requested() => {
                    let domain = &self.domain.name;
                    info!(event = "upstream.retry_now", domain = %domain, "upstream link for {domain}: retrying now (SIGHUP)");
                    None
                }
                _ = sleep(delay) => None,
            };
            // The next attempt starts: nothing is scheduled any more.
            self.link.set_up(false);
            match ev {
                Some(Event::Close) => break,
                Some(Event::Reconfigure) => backoff.reset(),
                None => {}
            }
        }
        self.link.set_up(false);
        self.link.close_gate().await;
        self.bounce(Vec::new()).await;
        let domain = &self.domain.name;
        info!(event = "upstream.closed", domain = %domain, "upstream link for {domain} closed");
    }

    /// One connection: connect, then serve it until it ends.
    async fn attempt(&mut self, upstream: &UpstreamConfig, backoff: &mut Backoff) -> Attempt {
        let conn = match self.connect(upstream, backoff).await {
            Ok(conn) => conn,
            Err(a) => return a,
        };
        self.first_wait = None;
        self.link.set_up(true);
        self.link.open_gate();
        if self.link.is_closing() {
            self.link.close_gate().await;
        }
        if self.logged != Some(Logged::Up) {
            let domain = &self.domain.name;
            info!(event = "upstream.up", domain = %domain, address = %upstream.address, "upstream link for {domain} up");
            self.logged = Some(Logged::Up);
        }
        let since = Instant::now();
        let (reason, unsent) = self.serve(conn).await;
        self.link.set_up(false);
        self.link.close_gate().await;
        match reason {
            Reason::Close => {
                self.bounce(unsent).await;
                Attempt::Closed
            }
            Reason::Reconfigure => {
                let domain = &self.domain.name;
                info!(domain = %domain, "upstream link for {domain}: address changed, reconnecting");
                self.bounce(unsent).await;
                self.logged = None;
                backoff.reset();
                Attempt::Again
            }
            Reason::Failed(e) => {
                if since.elapsed() >= STABLE_UP {
                    backoff.reset();
                }
                Attempt::Failed(e, unsent)
            }
        }
    }

    /// Connect and authenticate, unless the link is closed or reconfigured
    /// meanwhile; ends the first stanzas' wait when its time is up.
    async fn connect(
        &mut self,
        upstream: &UpstreamConfig,
        backoff: &mut Backoff,
    ) -> Result<Conn, Attempt> {
        let secret = self.domain.settings().upstream_secret.clone();
        let (link, name) = (self.link.clone(), self.domain.name.clone());
        self.link.set_up(false);
        self.domain.metrics.upstream_attempt();
        let conn = connect(upstream, &name, secret.expose());
        tokio::pin!(conn);
        loop {
            tokio::select! {
                biased;
                ev = link.event() => return Err(match ev {
                    Event::Close => Attempt::Closed,
                    Event::Reconfigure => {
                        backoff.reset();
                        Attempt::Again
                    }
                }),
                r = &mut conn => return r.map_err(|e| Attempt::Failed(e, Vec::new())),
                _ = first_wait_over(self.first_wait) => self.end_first_wait().await,
            }
        }
    }

    /// The domain still wants this link (it closes it otherwise).
    fn is_current(&self) -> bool {
        !self.link.is_closing() && !self.domain.is_detached()
    }

    fn log_down(&mut self, address: &str, reason: LinkError, delay: Duration) {
        let domain = &self.domain.name;
        let secs = delay.as_secs_f64();
        if let Some(Logged::Down(last)) = &self.logged {
            if *last == reason {
                info!(event = "upstream.still_down", domain = %domain, address, kind = reason.kind(), condition = reason.condition(), retry_in_s = secs, "upstream link for {domain} still down: {reason}; retrying in {secs:.1} s");
                return;
            }
        }
        warn!(event = "upstream.down", domain = %domain, address, kind = reason.kind(), condition = reason.condition(), retry_in_s = secs, "upstream link for {domain} down: {reason}; retrying in {secs:.1} s");
        self.logged = Some(Logged::Down(reason));
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
            domain: &self.domain,
            link: &self.link,
            router: &self.router,
            give_up: None,
            stop: &stop,
            ctl: ctl_tx,
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
        let counters = self.domain.metrics.counters();
        for st in &stanzas {
            counters.bounce(Bounce::UPSTREAM_UNAVAILABLE.condition.into());
            let Some(reply) = Bounce::UPSTREAM_UNAVAILABLE.envelope(st.head.name, &st.attrs) else {
                continue;
            };
            // The senders are the domain's members: the bounce goes where a
            // stanza from its `from` would (an `iq` error to the requester).
            let session = {
                let set = self.domain.sessions();
                (self.domain)
                    .pick(&set, reply.head.name, &reply.attrs, true)
                    .cloned()
            };
            let Some(session) = &session else {
                // No member: kept for the next one if the domain is held.
                match self.domain.hold().push(reply) {
                    Ok(Routed::Delivered) => n += 1,
                    _ => lost += 1,
                }
                continue;
            };
            // Wait for the component to make room (it is the sender), unless
            // the link is being closed: then only what fits now.
            let outbox = &session.outbox;
            let pushed = if self.link.is_closing() {
                outbox.try_push(Out::Stanza(reply)).map_err(|r| r.why)
            } else {
                let cost = reply.cost();
                tokio::select! {
                    biased;
                    r = outbox.reserve(cost) => r.map(|room| room.send(Out::Stanza(reply))),
                    _ = self.link.event() => outbox.try_push(Out::Stanza(reply)).map_err(|r| r.why),
                }
            };
            match pushed {
                Ok(()) => n += 1,
                // A member that is leaving: its queue is gone.
                Err(PushError::Full | PushError::Closed) => lost += 1,
            }
        }
        let domain = &self.domain.name;
        info!(domain = %domain, unsent = stanzas.len(), bounced = n, "upstream link for {domain}: {} stanza(s) not sent upstream, {n} bounced", stanzas.len());
        if lost > 0 {
            warn!(domain = %domain, lost, "upstream link for {domain}: {lost} bounce(s) dropped, the component's queue is full while its link closes");
        }
    }
}

/// Resolves when the first stanzas' wait ends (never, when there is none).
async fn first_wait_over(until: Option<Instant>) {
    match until {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
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
        Err(WriteError::Io(e)) => stop.fire(Reason::Failed(LinkError::Write(e.to_string()))),
        Err(WriteError::Stalled(d)) => stop.fire(Reason::Failed(LinkError::WriteStall(d))),
    }
    let how = if stop.reason().graceful() {
        let _ = timeout(CLOSE_GRACE, stop.drained()).await;
        Closing::Flush(Bytes::from_static(b"</stream:stream>"))
    } else {
        Closing::Drop
    };
    writer.close(q, how).await
}

//! One component connection, XEP-0114 server side.
//!
//! A connection goes through three phases, each error condition raised next to
//! the check that decides it (docs/behaviour.md#stream, #authentication,
//! #stanza-checks):
//! 1. stream header: namespace, `to`, attached domain → our header with a
//!    fresh id ([`open`]);
//! 2. handshake: SHA-1(id + secret) compared in constant time, then the
//!    conflict policy → `<handshake/>`, and the session joins its domain
//!    ([`open`]);
//! 3. stanzas: name, namespace, size (in the framer), `from`, then the routing
//!    decision ([`Router::route`]), whose bounce the connection queues for its
//!    own peer ([`stanzas`]).
//!
//! The connection's task owns the framed reader ([`conn`]); a writer task owns
//! the socket's write half and drains the bounded outbox, so a slow peer only
//! ever slows itself. When nothing was written for `keepalive_interval`, the
//! writer sends a single space (a whitespace keepalive, only after our stream
//! header): it keeps NAT and firewall state alive, and a half-open connection
//! then has unacknowledged data, which `TCP_USER_TIMEOUT` (set on accept)
//! turns into an error, so the reader ends the session and frees the domain.
//!
//! When the connection ends, what its writer could not write is bounced to the
//! senders (over the domain's upstream link for senders behind the server), and
//! then the domain decides about its link.

mod conn;
mod open;
mod stanzas;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::metrics::{Globals, RefusedReason, SessionCounters};
use crate::router::{hold, Domain, LinkDriver, Requeued, Router};
use crate::session::{outbox, Control, OutboxReceiver};
use crate::wire::out::Out;
use crate::wire::reader::{FramedReader, Sizing};
use crate::wire::stanza::Bounce;
use crate::wire::writer::{Closing, Writer, CLOSE_GRACE};
use crate::wire::xml::Limits;

use conn::{Connection, End, Live};

/// Before authentication the stream header and the `<handshake/>` element may
/// each be at most this large (`policy-violation` beyond), so an
/// unauthenticated peer holds at most a few KiB (README, "Limits").
pub const PRE_AUTH_MAX_ELEMENT: usize = 4096;
/// Read size before authentication (reads do not grow until then).
const PRE_AUTH_READ: usize = 2048;

/// What every connection needs of the daemon.
#[derive(Clone)]
pub struct Env {
    pub router: Arc<Router>,
    /// Drives the upstream links the domains open.
    pub links: Arc<dyn LinkDriver>,
    /// Every task that serves a peer, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

/// Serve one accepted TCP connection until it ends. Socket options are set
/// by the caller.
pub async fn serve(stream: TcpStream, peer: SocketAddr, env: Env) {
    let router = &env.router;
    let id = router.next_id();
    let control = Arc::new(Control::default());
    router.register_control(id, control.clone());
    let settings = router.settings();
    let (rd, wr) = stream.into_split();
    let (out, out_rx) = outbox(settings.queue);
    let (close_tx, close_rx) = oneshot::channel();
    // The session's counters (they join its domain's at authentication):
    // the reader counts `in`, the writer `out`.
    let counters = Arc::new(SessionCounters::default());
    let writer = tokio::spawn(write_task(
        Writer::new(wr, settings.keepalive_interval, None).counting(counters.clone()),
        out_rx,
        close_rx,
    ));
    let reader = FramedReader::new(
        rd,
        pre_auth_limits(settings.limits),
        Sizing::fixed(PRE_AUTH_READ),
    );
    let mut conn = Connection::new(id, peer, env.clone(), reader, out, close_tx, control);
    conn.metrics = Some(router.globals.connection_opened());
    conn.counters = counters;
    debug!(%peer, "connection accepted");
    let (end, live) = conn.run().await;
    count_end(&router.globals, &end, live.is_some());
    // A member of a balanced set with others stays routable until its queue
    // is handed over; any other session is released at once.
    let hand_over = live
        .as_ref()
        .is_some_and(|l| l.domain.hands_over(l.session.id));
    let mut held = false;
    if let Some(l) = live.as_ref().filter(|_| !hand_over) {
        // No new stanza is routed to it from here on (while the domain is
        // held, they are queued for its next connection).
        held = release(&env, l);
    }
    // What a held domain's connection has not written goes to the next one.
    conn.finish(end, hand_over || held);
    drop(conn);
    let (rx, mut unwritten) = collect_unwritten(writer, peer).await;
    if let Some(l) = live {
        if hand_over {
            unwritten = hand_over_unwritten(&env, &l, unwritten, rx);
        } else {
            unwritten.extend(close_and_drain(rx).await);
        }
        end_session(&env, l, unwritten);
    }
    router.unregister_control(id);
}

/// A stream error the connection ends with is counted, and before
/// authentication it is why the connection was refused.
fn count_end(globals: &Globals, end: &End, authenticated: bool) {
    if let End::Error(e) = end {
        globals.stream_error(e.condition.into());
        if !authenticated {
            globals.refused(RefusedReason::Stream(e.condition.into()));
        }
    }
}

/// Release a session from its domain; true when that began a hold (whose
/// expiry timer is then running).
fn release(env: &Env, l: &Live) -> bool {
    let queue = env.router.settings().queue;
    let gen = l.domain.release(l.session.id, queue);
    if let Some(gen) = gen {
        time_hold(env, &l.domain, gen);
    }
    gen.is_some()
}

/// Run the expiry timer of hold `gen` of `domain`.
fn time_hold(env: &Env, domain: &Arc<Domain>, gen: u64) {
    let task = hold::expire(env.router.clone(), domain.clone(), gen);
    env.tasks.spawn(task);
}

/// A member of a balanced set leaves: its unwritten stanzas go to the other
/// members (in order), or to the hold if it was the last after all; what
/// cannot is returned, to be bounced.
fn hand_over_unwritten(
    env: &Env,
    l: &Live,
    unwritten: Vec<Out>,
    rx: Option<OutboxReceiver>,
) -> Vec<Out> {
    let Some(mut rx) = rx else {
        // The writer did not finish in time: nothing more can be taken.
        release(env, l);
        return unwritten;
    };
    let queue = env.router.settings().queue;
    let h = l.domain.hand_over(l.session.id, unwritten, &mut rx, queue);
    if let Some(gen) = h.held {
        time_hold(env, &l.domain, gen);
    }
    if h.moved > 0 || !h.failed.is_empty() {
        info!(event = "balance.handover", peer = %l.session.peer, domain = %l.domain.name, moved = h.moved, failed = h.failed.len(), "a leaving connection's unwritten stanzas were re-routed to the rest of its set");
    }
    h.failed
}

/// The limits before authentication: those of the config, with elements (the
/// stream header, the `<handshake/>`) at most [`PRE_AUTH_MAX_ELEMENT`] bytes.
fn pre_auth_limits(limits: Limits) -> Limits {
    Limits {
        max_stanza_size: PRE_AUTH_MAX_ELEMENT,
        ..limits
    }
}

/// Wait for the writer task; take its queue and what it took and could not
/// write.
async fn collect_unwritten(
    mut writer: tokio::task::JoinHandle<(OutboxReceiver, Vec<Out>)>,
    peer: SocketAddr,
) -> (Option<OutboxReceiver>, Vec<Out>) {
    // The writer returns within its own grace periods; this bound is a backstop.
    match timeout(3 * CLOSE_GRACE, &mut writer).await {
        Ok(Ok((rx, unwritten))) => (Some(rx), unwritten),
        _ => {
            debug!(%peer, "writer did not finish in time");
            writer.abort();
            (None, Vec::new())
        }
    }
}

/// Whatever got into a released session's queue is written or bounced, never
/// dropped: close it, then take what is left, including what a sender that
/// had already reserved room puts in now.
async fn close_and_drain(rx: Option<OutboxReceiver>) -> Vec<Out> {
    let mut left = Vec::new();
    if let Some(mut rx) = rx {
        rx.close();
        let _ = timeout(CLOSE_GRACE, async {
            while let Some(b) = rx.recv().await {
                left.push(b);
            }
        })
        .await;
    }
    left
}

/// A session has ended: bounce what it could not write (bounces for remote
/// senders go over the domain's upstream link), then let the domain decide
/// about its link.
fn end_session(env: &Env, l: Live, unwritten: Vec<Out>) {
    let unwritten = match l.domain.requeue(l.session.id, unwritten) {
        Requeued::NotHeld(v) => v,
        Requeued::Kept { overflow } => {
            let n = overflow.len();
            if n > 0 {
                let (bounced, lost) =
                    env.router
                        .bounce_all(&l.domain, overflow, Bounce::QUEUE_FULL);
                warn!(event = "hold.overflow", domain = %l.domain.name, bounced, lost, "{n} stanza(s) held for {} did not fit in its queue with the old connection's unwritten ones in front: {bounced} bounced (resource-constraint), {lost} could not be", l.domain.name);
            }
            Vec::new()
        }
    };
    bounce_unwritten(&env.router, &l.domain, unwritten);
    if let Some(new) = l.domain.left(env.router.upstream_queue()) {
        env.links.drive(&env.router, &l.domain, new);
    }
    info!(event = "session.ended", peer = %l.session.peer, domain = %l.domain.name, "component session ended");
}

/// Bounce the stanzas a session's writer could not write (the session was
/// replaced, or its peer is gone, or no other member could take them) to
/// their senders: local components directly,
/// anyone else over the domain's upstream link (still open here). A bounce
/// that finds no room is dropped and counted in the log line.
fn bounce_unwritten(router: &Router, domain: &Domain, unwritten: Vec<Out>) {
    // Our header, `<handshake/>` and keepalives are not stanzas.
    let stanzas = unwritten
        .into_iter()
        .filter_map(Out::into_stanza)
        .filter(|env| env.head.name.is_stanza());
    let (bounced, lost) = router.bounce_all(domain, stanzas, Bounce::NOT_DELIVERED);
    if bounced + lost > 0 {
        info!(domain = %domain.name, bounced, lost, "{} stanza(s) queued for {} were not written: {bounced} bounced to their senders, {lost} could not be", bounced + lost, domain.name);
    }
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

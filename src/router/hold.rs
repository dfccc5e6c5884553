//! Holding a domain while its component restarts (README, "Restart without
//! loss"; docs/behaviour.md#hold).
//!
//! With `hold_seconds` set, a domain whose last connection ends (not by a
//! reload that removes it, not at shutdown) is held: a set of size zero that
//! keeps its upstream link and a queue. The queue has the bounds of a
//! connection's (`max_queue_stanzas`, `max_queue_bytes`; beyond them the
//! sender gets `resource-constraint`, as for a slow reader). It fills from
//! two sides, in this order:
//! - the old connection's stanzas that were not written to its socket, handed
//!   back by its writer once it has closed ([`Hold::requeue`]): they go in
//!   front;
//! - every stanza routed to the domain meanwhile ([`Hold::push`]).
//!
//! The phase goes `Off` → `Held` (no connection; a timer, [`expire`], ends it
//! at the deadline) → `Draining` (a connection authenticated; [`drain`] hands
//! the queue to the set, one stanza at a time, waiting for room) → `Off`.
//! While the phase is not `Off`, routing puts every stanza for the domain in
//! the queue, also while it drains, so nothing live overtakes a held stanza;
//! the drain waits until every old connection's unwritten stanzas are back in
//! front, and the phase becomes `Off` only when the queue is empty. The flag
//! routing reads per stanza is set before the emptied set is published, and
//! read after the set, so a stanza never finds an empty set without seeing
//! the hold.
//!
//! The hold's lock is a leaf: nothing else is locked while it is held (the
//! drain picks a member under it, which takes the `iq` requests' lock).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::info;

use super::domain::Domain;
use super::route::Routed;
use super::Router;
use crate::session::{wait_until, QueueLimits, Session};
use crate::wire::out::{Envelope, Out};
use crate::wire::stanza::Bounce;

/// Why a hold ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A connection authenticated and received the queue.
    Resumed,
    /// `hold_seconds` passed without a connection.
    Expired,
    /// A reload removed the domain.
    Removed,
    /// The daemon is shutting down.
    Shutdown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Resumed => "resumed",
            Outcome::Expired => "expired",
            Outcome::Removed => "removed",
            Outcome::Shutdown => "shutdown",
        }
    }

    /// The stanza error the held stanzas get: as for an attached component
    /// without a session, or as for a domain that is not served any more.
    pub fn bounce(self) -> Bounce {
        match self {
            Outcome::Removed => Bounce::NOT_FOUND,
            _ => Bounce::COMPONENT_UNAVAILABLE,
        }
    }
}

/// What a hold did, for its end line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Stanzas that entered the queue (the old connection's included).
    pub held: usize,
    /// Refused for want of room (their senders got `resource-constraint`).
    pub refused: usize,
    /// Handed to a new connection.
    pub delivered: usize,
}

/// A hold that ended: what was still queued (to bounce) and its counts.
pub struct Ended {
    pub outcome: Outcome,
    pub left: Vec<Envelope>,
    pub counts: Counts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Off,
    /// No connection since `since`.
    Held {
        since: Instant,
    },
    /// A connection authenticated: the queue goes to the set.
    Draining,
}

struct State {
    phase: Phase,
    /// Changes with every phase change: a timer or a drain serves one.
    gen: u64,
    /// `hold_seconds` (a reload may change it during a hold).
    hold: Duration,
    queue: VecDeque<Envelope>,
    bytes: usize,
    limits: QueueLimits,
    /// Sessions released into the hold whose unwritten stanzas are not back.
    owed: Vec<u64>,
    counts: Counts,
    /// Shutdown: no hold begins any more.
    closed: bool,
}

/// The hold of one domain.
pub struct Hold {
    /// The phase is not `Off` (read per stanza, without the lock).
    holding: AtomicBool,
    state: Mutex<State>,
    /// Woken when the phase, the deadline or the owed sessions change.
    changed: Notify,
}

/// What [`Hold::requeue`] did with an old connection's unwritten stanzas.
pub enum Requeued {
    /// In front of the queue; these did not fit (newest first out), to be
    /// bounced `resource-constraint`.
    Kept { overflow: Vec<Envelope> },
    /// The domain is not held for this session (any more): bounce them as
    /// usual.
    NotHeld(Vec<Out>),
}

/// The drain's next step.
enum Step {
    /// The phase changed: another drain, a timer or nobody takes over.
    Gone,
    /// The queue was handed over: the hold is over.
    Done(Ended),
    /// Old connections' stanzas are not back yet.
    Wait,
    /// The front stanza goes to this member (none: the set is changing).
    To(Option<Arc<Session>>, usize),
}

impl Hold {
    pub fn new(hold: Duration) -> Self {
        Hold {
            holding: AtomicBool::new(false),
            state: Mutex::new(State {
                phase: Phase::Off,
                gen: 0,
                hold,
                queue: VecDeque::new(),
                bytes: 0,
                limits: QueueLimits {
                    max_stanzas: 1,
                    max_bytes: 0,
                },
                owed: Vec::new(),
                counts: Counts::default(),
                closed: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is valid whatever a panicking holder did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stanzas for the domain go to the queue (read after the set).
    pub fn is_holding(&self) -> bool {
        self.holding.load(Ordering::SeqCst)
    }

    /// Stanzas in the queue now.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// A reload set `hold_seconds`: a running hold's deadline moves with it
    /// (counted from when the hold began; zero ends it at once).
    pub fn set_hold(&self, hold: Duration) {
        self.lock().hold = hold;
        self.changed.notify_waiters();
    }

    /// The last session of the set, `session`, is being released (the
    /// caller holds the domain's lock and publishes the empty set after
    /// this): hold the domain, unless `hold_seconds` is zero or the daemon is
    /// shutting down. Returns the generation for the expiry timer.
    pub fn begin(&self, domain: &str, session: u64, limits: QueueLimits) -> Option<u64> {
        let mut s = self.lock();
        if s.closed || s.hold.is_zero() {
            return None;
        }
        if s.phase == Phase::Off {
            s.queue.clear();
            s.bytes = 0;
            s.counts = Counts::default();
            s.owed.clear();
        }
        s.limits = limits;
        s.phase = Phase::Held {
            since: Instant::now(),
        };
        s.gen += 1;
        s.owed.push(session);
        self.holding.store(true, Ordering::SeqCst);
        info!(event = "hold.start", domain, held = s.queue.len(), hold_s = s.hold.as_secs(), "{domain} held for {} s: its last connection ended; stanzas for it are kept until a connection authenticates", s.hold.as_secs());
        let gen = s.gen;
        drop(s);
        self.changed.notify_waiters();
        Some(gen)
    }

    /// A connection joined the empty set of a held domain: the queue goes to
    /// it. Returns the generation for the drain.
    pub fn resume(&self, domain: &str) -> Option<u64> {
        let mut s = self.lock();
        let Phase::Held { since } = s.phase else {
            return None;
        };
        s.phase = Phase::Draining;
        s.gen += 1;
        let after_ms = since.elapsed().as_millis() as u64;
        info!(event = "hold.resume", domain, held = s.queue.len(), after_ms, "{domain}: a connection authenticated {after_ms} ms into the hold; it receives the {} held stanza(s) first", s.queue.len());
        let gen = s.gen;
        drop(s);
        self.changed.notify_waiters();
        Some(gen)
    }

    /// Queue a stanza routed to the held domain; `Err` gives it back when
    /// the domain is not held (any more).
    // Handed back by value: boxing it would allocate per stanza.
    #[allow(clippy::result_large_err)]
    pub fn push(&self, env: Envelope) -> Result<Routed, Envelope> {
        let mut s = self.lock();
        if s.phase == Phase::Off {
            return Err(env);
        }
        let cost = env.cost();
        let full = s.queue.len() >= s.limits.max_stanzas
            || (s.bytes > 0 && s.bytes.saturating_add(cost) > s.limits.max_bytes);
        if full {
            s.counts.refused += 1;
            return Ok(Routed::Bounce(Bounce::QUEUE_FULL, Out::Stanza(env)));
        }
        s.bytes += cost;
        s.counts.held += 1;
        s.queue.push_back(env);
        Ok(Routed::Delivered)
    }

    /// The old connection `session` hands back what it did not write (its
    /// writer has closed): in front of the queue, in order, if the domain is
    /// held for it. The queue keeps its bounds: the newest stanzas that no
    /// longer fit come out.
    pub fn requeue(&self, session: u64, unwritten: Vec<Out>) -> Requeued {
        let mut s = self.lock();
        let Some(i) = s.owed.iter().position(|&id| id == session) else {
            return Requeued::NotHeld(unwritten);
        };
        s.owed.swap_remove(i);
        let old: Vec<Envelope> = unwritten
            .into_iter()
            .filter_map(Out::into_stanza)
            .filter(|e| e.head.name.is_stanza())
            .collect();
        for env in old.into_iter().rev() {
            s.bytes += env.cost();
            s.counts.held += 1;
            s.queue.push_front(env);
        }
        let mut overflow = Vec::new();
        while s.queue.len() > s.limits.max_stanzas
            || (s.queue.len() > 1 && s.bytes > s.limits.max_bytes)
        {
            let Some(env) = s.queue.pop_back() else { break };
            s.bytes -= env.cost();
            s.counts.held -= 1;
            s.counts.refused += 1;
            overflow.push(env);
        }
        drop(s);
        self.changed.notify_waiters();
        Requeued::Kept { overflow }
    }

    /// The deadline of hold `gen`, while it is held without a connection.
    fn deadline(&self, gen: u64) -> Option<Instant> {
        let s = self.lock();
        match s.phase {
            Phase::Held { since } if s.gen == gen => Some(since + s.hold),
            _ => None,
        }
    }

    fn is_gen(&self, gen: u64) -> bool {
        self.lock().gen == gen
    }

    /// Hold `gen` has reached its deadline: it ends.
    pub fn expire(&self, gen: u64) -> Option<Ended> {
        let mut s = self.lock();
        match s.phase {
            Phase::Held { since } if s.gen == gen && since + s.hold <= Instant::now() => {
                Some(self.end_locked(&mut s, Outcome::Expired))
            }
            _ => None,
        }
    }

    /// End the hold now (a reload removed the domain, or shutdown; then no
    /// hold begins any more).
    pub fn end(&self, outcome: Outcome) -> Option<Ended> {
        let mut s = self.lock();
        if outcome == Outcome::Shutdown {
            s.closed = true;
        }
        (s.phase != Phase::Off).then(|| self.end_locked(&mut s, outcome))
    }

    fn end_locked(&self, s: &mut State, outcome: Outcome) -> Ended {
        s.phase = Phase::Off;
        s.gen += 1;
        s.owed.clear();
        s.bytes = 0;
        self.holding.store(false, Ordering::SeqCst);
        self.changed.notify_waiters();
        Ended {
            outcome,
            left: s.queue.drain(..).collect(),
            counts: s.counts,
        }
    }

    /// Ready to hand over the front stanza (or over)?
    fn step(&self, gen: u64, pick: impl FnOnce(&Envelope) -> Option<Arc<Session>>) -> Step {
        let mut s = self.lock();
        if s.gen != gen || s.phase != Phase::Draining {
            return Step::Gone;
        }
        if !s.owed.is_empty() {
            return Step::Wait;
        }
        match s.queue.front() {
            Some(env) => Step::To(pick(env), env.cost()),
            None => Step::Done(self.end_locked(&mut s, Outcome::Resumed)),
        }
    }

    /// Move the front stanza into `room` if it still goes to member `to`.
    fn hand(
        &self,
        gen: u64,
        to: u64,
        room: crate::session::Reservation<'_>,
        pick: impl FnOnce(&Envelope) -> Option<Arc<Session>>,
    ) {
        let mut s = self.lock();
        if s.gen != gen || !s.owed.is_empty() {
            return;
        }
        let same = s.queue.front().and_then(pick).is_some_and(|m| m.id == to);
        if !same {
            return;
        }
        if let Some(env) = s.queue.pop_front() {
            s.bytes -= env.cost();
            s.counts.delivered += 1;
            room.send(Out::Stanza(env));
        }
    }
}

/// Log the end of a hold (after its stanzas were bounced, if any).
fn log_end(domain: &str, e: &Counts, outcome: Outcome, bounced: usize, lost: usize) {
    let Counts {
        held,
        refused,
        delivered,
    } = *e;
    let outcome = outcome.as_str();
    info!(event = "hold.end", domain, outcome, held, delivered, bounced, lost, refused, "{domain}: hold ended ({outcome}): {held} stanza(s) held, {delivered} delivered, {bounced} bounced, {lost} could not be bounced, {refused} refused for want of room");
}

impl Router {
    /// Bounce what an ended hold still had, and log its end.
    pub fn end_hold(&self, d: &Domain, ended: Ended) {
        let (bounced, lost) = self.bounce_all(d, ended.left, ended.outcome.bounce());
        log_end(&d.name, &ended.counts, ended.outcome, bounced, lost);
    }
}

/// The expiry timer of hold `gen` (spawned on the daemon's task tracker):
/// at the deadline the held stanzas are bounced and, if no connection is
/// left, the link closes. Ends early when the hold does.
pub async fn expire(router: Arc<Router>, d: Arc<Domain>, gen: u64) {
    let hold = d.hold();
    while let Some(deadline) = hold.deadline(gen) {
        tokio::select! {
            _ = sleep_until(deadline) => {
                if d.expire_hold(gen, |d, ended| router.end_hold(d, ended)) {
                    return;
                }
            }
            _ = wait_until(&hold.changed, || hold.deadline(gen) != Some(deadline)) => {}
        }
    }
}

/// Hand hold `gen`'s queue to the domain's set (spawned on the daemon's task
/// tracker when a connection joins a held domain): once every old
/// connection's unwritten stanzas are back in front, each stanza in turn goes
/// to the member that owns it, waiting for room in that member's queue.
pub async fn drain(d: Arc<Domain>, gen: u64) {
    let hold = d.hold();
    let pick = |sessions: &super::domain::Sessions, env: &Envelope| {
        d.pick(sessions, env.head.name, &env.attrs, false).cloned()
    };
    loop {
        let step = {
            let sessions = d.sessions();
            hold.step(gen, |env| pick(&sessions, env))
        };
        let (to, cost) = match step {
            Step::Gone => return,
            Step::Done(ended) => {
                log_end(&d.name, &ended.counts, ended.outcome, 0, 0);
                return;
            }
            Step::Wait => {
                let owed = || hold.step_is_wait(gen);
                wait_until(&hold.changed, || !owed()).await;
                continue;
            }
            Step::To(None, _) => {
                // The set is changing under us: look again shortly.
                sleep(Duration::from_millis(5)).await;
                continue;
            }
            Step::To(Some(s), cost) => (s, cost),
        };
        let room = tokio::select! {
            r = to.outbox.reserve(cost) => r,
            _ = wait_until(&hold.changed, || !hold.is_gen(gen)) => return,
        };
        let Ok(room) = room else {
            continue; // that connection is ending: pick again
        };
        // As a delivery: within the gate, and for a balanced set under its
        // membership lock, so a member's leaving is never overtaken.
        let Some(_routing) = d.routing() else {
            return;
        };
        let balanced = d.sessions().is_balanced();
        let _members = balanced.then(|| d.members());
        let sessions = d.sessions();
        hold.hand(gen, to.id, room, |env| pick(&sessions, env));
    }
}

impl Hold {
    /// Is the drain of `gen` still waiting for old connections' stanzas?
    fn step_is_wait(&self, gen: u64) -> bool {
        let s = self.lock();
        s.gen == gen && s.phase == Phase::Draining && !s.owed.is_empty()
    }
}

//! One served component domain: its settings, its set of authenticated
//! sessions, the gate a reload's detach closes, and its upstream link.
//!
//! With `on_conflict = "replace"` or `"reject"` the set holds one session;
//! with `"balance"` up to `max_instances`. Routing reads it through
//! [`Domain::pick`], the one place that chooses a member: with one member, that
//! one; with several, the member that sent the `iq` request a response answers,
//! or else the owner of the stanza's bare `from` by rendezvous hashing
//! ([`balance`](super::balance)). A balanced set's membership changes under a
//! lock that deliveries to it take shared, so a leaving member's queue is
//! re-routed, in order, before anything newer reaches its successors.
//!
//! The upstream link belongs to the domain, not to a session: it is opened
//! when a session joins an empty set (and an upstream is configured) and
//! closed when the last session has left. A session that leaves first bounces
//! (or, from a balanced set with members left, re-routes) what it could not
//! write, then [`Domain::left`] decides about the link. A replace (or a new
//! session while the previous one is still leaving) renews the link once the
//! old session has left: the old link closes, and the new one connects once it
//! has closed, so the server never sees two links for the domain.
//!
//! With `hold_seconds`, a domain whose set becomes empty is held
//! ([`hold`](super::hold)): it keeps its link (no renewal either when a
//! connection comes back) and queues what is routed to it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::balance::{self, Requests};
use super::hold::{Ended, Hold, Outcome, Requeued};
use crate::config::{ComponentConfig, OnConflict};
use crate::metrics::DomainMetrics;
use crate::session::{Gate, Link, OutboxReceiver, QueueLimits, Routing, Session};
use crate::wire::out::Out;
use crate::wire::xml::{Attrs, Name};

/// The authenticated sessions of a domain.
#[derive(Default)]
pub struct Sessions {
    list: Vec<Arc<Session>>,
    /// Each member's rendezvous weight seed (same order).
    seeds: Vec<u64>,
    /// Several members, or the domain balances: deliveries take the
    /// membership lock, and a leaving member's queue is re-routed.
    balanced: bool,
}

impl Sessions {
    fn new(list: Vec<Arc<Session>>, balance: bool) -> Self {
        Sessions {
            seeds: list.iter().map(|s| balance::seed(s.id)).collect(),
            balanced: balance || list.len() > 1,
            list,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_balanced(&self) -> bool {
        self.balanced
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.list.iter()
    }

    fn contains(&self, id: u64) -> bool {
        self.list.iter().any(|s| s.id == id)
    }

    /// The members but `id`.
    fn without(&self, id: u64, balance: bool) -> Sessions {
        let rest = self.list.iter().filter(|s| s.id != id).cloned();
        Sessions::new(rest.collect(), balance)
    }
}

/// A link the domain has just opened: its handle, the receiving side of its
/// queue, and the link it must wait for (the domain's previous one).
pub struct NewLink {
    pub link: Arc<Link>,
    pub rx: OutboxReceiver,
    pub predecessor: Option<Arc<Link>>,
}

/// Outcome of [`Domain::attach`].
pub enum Attach {
    /// Attached. `replaced` must be sent `conflict`; `link` must be driven;
    /// `drain`: the domain was held, its queue must be handed to the set
    /// ([`drain`](super::hold::drain) of that generation).
    Attached {
        replaced: Vec<Arc<Session>>,
        link: Option<NewLink>,
        drain: Option<u64>,
    },
    /// `on_conflict = "reject"` and a session is live.
    Conflict,
    /// `on_conflict = "balance"` and the set already holds `max_instances`.
    Full(usize),
    /// A reload detached the domain meanwhile (it is no longer served).
    Detached,
    /// `accepted` returned false: the connection is gone.
    Gone,
}

/// Attach and link decisions (a small lock, never held across an await).
#[derive(Default)]
struct LinkSlot {
    /// Sessions attached and not yet [`Domain::left`] (in the set or leaving).
    holders: usize,
    /// The link must be renewed once only the sessions of the set hold it.
    renew: bool,
    /// The latest link: a new one waits for it to close.
    last: Option<Arc<Link>>,
}

pub struct Domain {
    pub name: Arc<str>,
    /// What its sessions and its upstream link count. A domain removed and
    /// re-added by reload while a connection of it is still open shares the
    /// old one, so its counters never go down.
    pub metrics: Arc<DomainMetrics>,
    settings: ArcSwap<ComponentConfig>,
    sessions: ArcSwap<Sessions>,
    /// Closed when a reload detaches the domain.
    gate: Gate,
    /// The open upstream link, if any (read per stanza, without a lock).
    link: ArcSwapOption<Link>,
    slot: Mutex<LinkSlot>,
    /// Taken shared by deliveries to a balanced set, exclusively while a
    /// member leaves (never across an await).
    members: RwLock<()>,
    /// The `iq` requests the members sent, for their responses.
    requests: Requests,
    /// Held while the set is empty (`hold_seconds`).
    hold: Hold,
}

/// What [`Domain::hand_over`] did with a leaving member's queue.
pub struct HandOver {
    /// Re-routed to the other members.
    pub moved: usize,
    /// To bounce (no member could take them).
    pub failed: Vec<Out>,
    /// The set became empty and the domain is held (the expiry timer's
    /// generation); then the queue went to the hold.
    pub held: Option<u64>,
}

impl Domain {
    /// `metrics`: `None` for fresh ones.
    pub fn new(cfg: &ComponentConfig, metrics: Option<Arc<DomainMetrics>>) -> Arc<Self> {
        Arc::new(Domain {
            name: Arc::from(cfg.domain.as_str()),
            metrics: metrics.unwrap_or_else(|| DomainMetrics::new(&cfg.domain)),
            settings: ArcSwap::from_pointee(cfg.clone()),
            sessions: ArcSwap::from_pointee(Sessions::default()),
            gate: Gate::default(),
            link: ArcSwapOption::empty(),
            slot: Mutex::default(),
            members: RwLock::default(),
            requests: Requests::default(),
            hold: Hold::new(cfg.hold),
        })
    }

    pub fn settings(&self) -> Arc<ComponentConfig> {
        self.settings.load_full()
    }

    /// A reload changed the component's settings (the next handshake uses
    /// them; a set switched away from `balance` keeps balancing while it has
    /// several members).
    pub fn set_settings(&self, cfg: &ComponentConfig) {
        let _slot = self.lock();
        self.settings.store(Arc::new(cfg.clone()));
        self.hold.set_hold(cfg.hold);
        let now = self.sessions.load_full();
        let balance = cfg.on_conflict == OnConflict::Balance;
        self.sessions
            .store(Arc::new(Sessions::new(now.list.clone(), balance)));
    }

    /// The member a stanza for the domain goes to (see the module doc);
    /// `take` forgets the request a response matched.
    pub fn pick<'s>(
        &self,
        sessions: &'s Sessions,
        name: Name,
        attrs: &Attrs,
        take: bool,
    ) -> Option<&'s Arc<Session>> {
        if sessions.list.len() <= 1 {
            return sessions.list.first();
        }
        if balance::is_response(name, attrs) {
            if let Some(id) = self.requests.requester(attrs, take) {
                if let Some(s) = sessions.list.iter().find(|s| s.id == id) {
                    return Some(s);
                }
            }
        }
        let i = balance::pick_index(&sessions.seeds, attrs.from.as_deref());
        sessions.list.get(i)
    }

    /// Member `session` of a balanced domain sends an `iq` request: its
    /// response comes back to it.
    pub fn note_request(&self, name: Name, attrs: &Attrs, session: u64) {
        if balance::is_request(name, attrs) && self.sessions.load().balanced {
            self.requests.note(attrs, session);
        }
    }

    /// Held while a stanza is delivered to a balanced set (`None` for a
    /// single session): a member's leaving waits for it.
    pub fn members(&self) -> RwLockReadGuard<'_, ()> {
        self.members.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sessions now (a guard: no reference-count traffic per stanza).
    pub fn sessions(&self) -> arc_swap::Guard<Arc<Sessions>> {
        self.sessions.load()
    }

    /// The domain's hold (docs/behaviour.md#hold).
    pub fn hold(&self) -> &Hold {
        &self.hold
    }

    /// The open upstream link (a guard).
    pub fn link(&self) -> arc_swap::Guard<Option<Arc<Link>>> {
        self.link.load()
    }

    /// Removed from the config by a reload: nothing is routed from or to it.
    pub fn is_detached(&self) -> bool {
        self.gate.is_closed()
    }

    /// `None` once detached. Held while a stanza from or to the domain is
    /// routed: a reload's detach waits for it, so nothing is routed from or to
    /// a detached domain once the reload is done.
    pub fn routing(&self) -> Option<Routing<'_>> {
        self.gate.enter()
    }

    fn lock(&self) -> MutexGuard<'_, LinkSlot> {
        // The slot's fields are valid whatever a panicking holder did.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Make `session` a session of the domain under its conflict policy.
    ///
    /// `accepted` runs under the domain's lock once the policy accepted the
    /// session and before it becomes routable (the caller queues `<handshake/>`
    /// there). If it returns false (the connection is gone), nothing changes.
    /// With `upstream` (the queue bounds of a link) an upstream is configured:
    /// the domain opens its link, or renews it once a replaced session left.
    pub fn attach(
        &self,
        session: Arc<Session>,
        upstream: Option<QueueLimits>,
        accepted: impl FnOnce() -> bool,
    ) -> Attach {
        let mut slot = self.lock();
        if self.is_detached() {
            return Attach::Detached;
        }
        let current = self.sessions.load_full();
        let settings = self.settings.load();
        let balance = settings.on_conflict == OnConflict::Balance;
        if !current.is_empty() && settings.on_conflict == OnConflict::Reject {
            return Attach::Conflict;
        }
        if balance && current.len() >= settings.max_instances {
            return Attach::Full(settings.max_instances);
        }
        if !accepted() {
            return Attach::Gone;
        }
        let (set, replaced) = if balance {
            let mut list = current.list.clone();
            list.push(session);
            (list, Vec::new())
        } else {
            (vec![session], current.list.clone())
        };
        self.sessions.store(Arc::new(Sessions::new(set, balance)));
        let held = self.hold.is_holding();
        let mut link = None;
        if let Some(limits) = upstream {
            if self.link.load().is_none() {
                link = Some(self.open_link(&mut slot, limits));
            } else if !held && slot.holders > 0 && (!balance || current.is_empty()) {
                // The link is the replaced (or a leaving) session's; a
                // balanced set's link stays the set's, a held domain's the
                // domain's.
                slot.renew = true;
            }
        }
        slot.holders += 1;
        let drain = if current.is_empty() {
            self.hold.resume(&self.name)
        } else {
            None
        };
        Attach::Attached {
            replaced,
            link,
            drain,
        }
    }

    fn open_link(&self, slot: &mut LinkSlot, limits: QueueLimits) -> NewLink {
        let (link, rx) = Link::new(self.name.clone(), limits);
        let predecessor = slot.last.replace(link.clone());
        self.link.store(Some(link.clone()));
        NewLink {
            link,
            rx,
            predecessor,
        }
    }

    /// Stop routing to `session_id` (its connection is ending). It still holds
    /// the link until [`Domain::left`]. When it was the last and the domain
    /// holds (`hold_seconds`), the hold begins, with a queue of `limits`: the
    /// generation for its expiry timer is returned.
    pub fn release(&self, session_id: u64, limits: QueueLimits) -> Option<u64> {
        let _slot = self.lock();
        let current = self.sessions.load();
        if !current.contains(session_id) {
            return None;
        }
        let balance = self.settings.load().on_conflict == OnConflict::Balance;
        let rest = current.without(session_id, balance);
        // Before the empty set is published (see the hold's module doc).
        let held = (rest.is_empty() && !self.is_detached())
            .then(|| self.hold.begin(&self.name, session_id, limits))
            .flatten();
        self.sessions.store(Arc::new(rest));
        held
    }

    /// A released session hands back what it did not write: kept in front
    /// of the held queue if the domain is held for it (see [`Requeued`]).
    pub fn requeue(&self, session_id: u64, unwritten: Vec<Out>) -> Requeued {
        self.hold.requeue(session_id, unwritten)
    }

    /// Will `session_id`, ending now, hand its queue to other members? (It
    /// is in a balanced set with others, and the domain is attached.)
    pub fn hands_over(&self, session_id: u64) -> bool {
        let s = self.sessions.load();
        s.balanced && s.len() > 1 && s.contains(session_id) && !self.is_detached()
    }

    /// Member `session_id` of a balanced set leaves: `unwritten` (what its
    /// writer took and did not write) and then everything still in its
    /// queue go, in order, to the members that now own them, before any
    /// newer stanza can reach those members; then it leaves the set and its
    /// queue closes. Returns how many were re-routed, and what could not be
    /// (no member left, or the new owner's queue is full), to bounce. Like [`Domain::release`],
    /// it still holds the link until [`Domain::left`].
    pub fn hand_over(
        &self,
        session_id: u64,
        unwritten: Vec<Out>,
        rx: &mut OutboxReceiver,
        limits: QueueLimits,
    ) -> HandOver {
        let _slot = self.lock();
        let _members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        let balance = self.settings.load().on_conflict == OnConflict::Balance;
        let rest = self.sessions.load().without(session_id, balance);
        let detached = self.is_detached();
        if rest.is_empty() && !detached {
            // The others left meanwhile: the last one out starts the hold.
            if let Some(gen) = self.hold.begin(&self.name, session_id, limits) {
                self.sessions.store(Arc::new(rest));
                rx.close();
                let mut items = unwritten;
                items.extend(rx.drain());
                let failed = match self.hold.requeue(session_id, items) {
                    Requeued::Kept { overflow } => overflow.into_iter().map(Out::Stanza).collect(),
                    Requeued::NotHeld(v) => v,
                };
                return HandOver {
                    moved: 0,
                    failed,
                    held: Some(gen),
                };
            }
        }
        let (mut moved, mut failed) = (0, Vec::new());
        let queued = rx.drain();
        for item in unwritten.into_iter().chain(queued) {
            let Out::Stanza(env) = item else {
                continue; // our header, `<handshake/>`, keepalives
            };
            // Nothing is routed to a detached domain's connections.
            let to = (!detached)
                .then(|| self.pick(&rest, env.head.name, &env.attrs, true))
                .flatten();
            let Some(s) = to else {
                failed.push(Out::Stanza(env));
                continue;
            };
            match s.outbox.try_push(Out::Stanza(env)) {
                Ok(()) => moved += 1,
                Err(r) => failed.push(r.item),
            }
        }
        self.sessions.store(Arc::new(rest));
        // Nobody picks it any more (deliveries wait for this lock): close it.
        rx.close();
        failed.extend(rx.drain());
        HandOver {
            moved,
            failed,
            held: None,
        }
    }

    /// A released session has bounced what it could not write: the link
    /// closes when no session holds it any more, or is renewed (a new link to
    /// drive is returned) when only the sessions of the set hold it.
    pub fn left(&self, upstream: Option<QueueLimits>) -> Option<NewLink> {
        let mut slot = self.lock();
        slot.holders = slot.holders.saturating_sub(1);
        let sessions = self.sessions.load();
        if sessions.is_empty() && slot.holders == 0 {
            slot.renew = false;
            // A held domain keeps its link until the hold ends.
            if !self.hold.is_holding() {
                self.close_link();
            }
            return None;
        }
        if slot.renew && slot.holders == sessions.len() && !self.is_detached() {
            slot.renew = false;
            self.close_link();
            return upstream.map(|limits| self.open_link(&mut slot, limits));
        }
        None
    }

    fn close_link(&self) {
        if let Some(link) = self.link.swap(None) {
            link.close();
        }
    }

    /// `[upstream]` was added by a reload: a domain with sessions opens its link.
    pub fn open_upstream(&self, limits: QueueLimits) -> Option<NewLink> {
        let mut slot = self.lock();
        if self.is_detached() || self.sessions.load().is_empty() || self.link.load().is_some() {
            return None;
        }
        slot.renew = false;
        Some(self.open_link(&mut slot, limits))
    }

    /// `[upstream]` was removed by a reload: the link closes.
    pub fn close_upstream(&self) {
        let mut slot = self.lock();
        slot.renew = false;
        self.close_link();
    }

    /// A reload removed the domain: wait for stanzas being routed from or to
    /// it, end its hold (`bounce` gets what was held, while the link is still
    /// open), close its link, and say how many sessions stay open, detached.
    pub fn detach(&self, bounce: impl FnOnce(&Domain, Ended)) -> usize {
        let mut slot = self.lock();
        self.gate.close();
        slot.renew = false;
        if let Some(ended) = self.hold.end(Outcome::Removed) {
            bounce(self, ended);
        }
        self.close_link();
        let sessions = self.sessions.load();
        for s in sessions.iter() {
            s.mark_detached();
        }
        sessions.len()
    }

    /// Hold `gen` reached its deadline: `bounce` gets what was held (the link
    /// is still open), then the link closes unless a session holds it.
    /// False if the hold had changed (nothing done).
    pub fn expire_hold(&self, gen: u64, bounce: impl FnOnce(&Domain, Ended)) -> bool {
        let slot = self.lock();
        let Some(ended) = self.hold.expire(gen) else {
            return false;
        };
        bounce(self, ended);
        if self.sessions.load().is_empty() && slot.holders == 0 {
            self.close_link();
        }
        true
    }

    /// Shutdown: no hold begins any more; `bounce` gets what a running one
    /// held (the link is closed afterwards, by [`Domain::close_upstream`]).
    pub fn shut(&self, bounce: impl FnOnce(&Domain, Ended)) {
        let _slot = self.lock();
        if let Some(ended) = self.hold.end(Outcome::Shutdown) {
            bounce(self, ended);
        }
    }
}

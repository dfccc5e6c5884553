//! One served component domain: its settings, its set of authenticated
//! sessions, the gate a reload's detach closes, and its upstream link.
//!
//! The set holds at most one session today (`on_conflict` is `replace` or
//! `reject`); routing reads it through [`Sessions::pick`], the one place that
//! chooses a member. The upstream link belongs to the domain, not to a session:
//! it is opened when a session joins an empty set (and an upstream is
//! configured) and closed when the last session has left. A session that leaves
//! first bounces what it could not write (over the link, for senders behind the
//! server), then [`Domain::left`] decides about the link. A replace (or a new
//! session while the previous one is still leaving) renews the link once the
//! old session has left: the old link closes, and the new one connects once it
//! has closed, so the server never sees two links for the domain.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::{ComponentConfig, OnConflict};
use crate::metrics::DomainMetrics;
use crate::session::{Gate, Link, OutboxReceiver, QueueLimits, Routing, Session};

/// The authenticated sessions of a domain.
#[derive(Default)]
pub struct Sessions(Vec<Arc<Session>>);

impl Sessions {
    /// The session a stanza for the domain goes to.
    pub fn pick(&self) -> Option<&Arc<Session>> {
        self.0.first()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.0.iter()
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
    /// Attached. `replaced` must be sent `conflict`; `link` must be driven.
    Attached {
        replaced: Vec<Arc<Session>>,
        link: Option<NewLink>,
    },
    /// `on_conflict = "reject"` and a session is live.
    Conflict,
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
        })
    }

    pub fn settings(&self) -> Arc<ComponentConfig> {
        self.settings.load_full()
    }

    /// A reload changed the component's settings (the next handshake uses them).
    pub fn set_settings(&self, cfg: &ComponentConfig) {
        self.settings.store(Arc::new(cfg.clone()));
    }

    /// The sessions now (a guard: no reference-count traffic per stanza).
    pub fn sessions(&self) -> arc_swap::Guard<Arc<Sessions>> {
        self.sessions.load()
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
        if !current.is_empty() && self.settings.load().on_conflict == OnConflict::Reject {
            return Attach::Conflict;
        }
        if !accepted() {
            return Attach::Gone;
        }
        self.sessions.store(Arc::new(Sessions(vec![session])));
        slot.holders += 1;
        let mut link = None;
        if let Some(limits) = upstream {
            if self.link.load().is_none() {
                link = Some(self.open_link(&mut slot, limits));
            } else {
                // The link is the replaced (or a leaving) session's.
                slot.renew = true;
            }
        }
        Attach::Attached {
            replaced: current.0.clone(),
            link,
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
    /// the link until [`Domain::left`].
    pub fn release(&self, session_id: u64) {
        let _slot = self.lock();
        let current = self.sessions.load();
        if current.iter().any(|s| s.id == session_id) {
            let rest = current.iter().filter(|s| s.id != session_id).cloned();
            self.sessions.store(Arc::new(Sessions(rest.collect())));
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
            self.close_link();
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
    /// it, close its link, and say how many sessions stay open, detached.
    pub fn detach(&self) -> usize {
        let mut slot = self.lock();
        self.gate.close();
        slot.renew = false;
        self.close_link();
        let sessions = self.sessions.load();
        for s in sessions.iter() {
            s.mark_detached();
        }
        sessions.len()
    }
}

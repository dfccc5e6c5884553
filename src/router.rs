//! The routing table and everything a stanza is delivered into.
//!
//! - [`Router`] holds the table from canonical domain to [`Registration`] as an
//!   `ArcSwap` snapshot: every stanza reads it without a lock; a reload builds a
//!   new table and swaps it in.
//! - A [`Registration`] is one served (attached) component domain: its current
//!   settings, its live [`Session`] if any, and whether a reload detached it.
//! - A [`Session`] is an authenticated connection as seen by others: its bounded
//!   [`Outbox`] and its [`Control`] (how to end it with a stream error).
//! - Every connection, authenticated or not, has a [`Control`] registered with
//!   the router so shutdown reaches all of them.
//!
//! Delivery never waits: a full outbox is reported to the sender, which bounces
//! `resource-constraint`, so one slow reader cannot stall anyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::{ComponentConfig, Config, OnConflict, UpstreamConfig};
use crate::session::{Control, Gate, Link, PushError, QueueLimits, Refused, Routing, Session};
use crate::wire::out::Out;
use crate::wire::stanza::StreamError;
use crate::wire::xml::Limits;

/// Settings that apply to connections as a whole (not per component).
#[derive(Clone, Debug)]
pub struct Settings {
    pub handshake_timeout: std::time::Duration,
    pub limits: Limits,
    pub queue: QueueLimits,
    pub upstream: Option<UpstreamConfig>,
    /// Component connections open at once; beyond it new ones are refused.
    pub max_connections: usize,
    /// Whitespace keepalive on a session after this long without writing.
    pub keepalive_interval: Option<std::time::Duration>,
    /// `TCP_USER_TIMEOUT` of every component socket.
    pub dead_peer_timeout: std::time::Duration,
}

impl Settings {
    /// Read at each accept: a reload applies to new connections (and
    /// `max_connections` to the next accept).
    pub fn from_config(c: &Config) -> Self {
        Settings {
            handshake_timeout: c.handshake_timeout,
            limits: Limits {
                max_stanza_size: c.max_stanza_size,
                max_depth: c.max_stanza_depth,
                max_attributes: c.max_attributes,
                ..Limits::new(c.max_stanza_size)
            },
            queue: QueueLimits {
                max_stanzas: c.max_queue_stanzas,
                max_bytes: c.max_queue_bytes,
            },
            upstream: c.upstream.clone(),
            max_connections: c.max_connections,
            keepalive_interval: c.keepalive_interval,
            dead_peer_timeout: c.dead_peer_timeout,
        }
    }
}

/// One served component domain.
pub struct Registration {
    pub domain: Arc<str>,
    settings: ArcSwap<ComponentConfig>,
    session: ArcSwapOption<Session>,
    /// Closed when a reload detaches the registration.
    gate: Gate,
    /// Serialises attach/detach decisions (never held across an await).
    attach_lock: Mutex<()>,
    /// The domain's latest upstream link: a new one waits for it to close.
    last_link: Mutex<Option<Arc<Link>>>,
}

impl Registration {
    fn new(cfg: &ComponentConfig) -> Arc<Self> {
        Arc::new(Registration {
            domain: Arc::from(cfg.domain.as_str()),
            settings: ArcSwap::from_pointee(cfg.clone()),
            session: ArcSwapOption::empty(),
            gate: Gate::default(),
            attach_lock: Mutex::new(()),
            last_link: Mutex::new(None),
        })
    }

    /// Record `link` as the domain's latest upstream link; returns the one
    /// before it, which `link` must let close before it connects.
    pub fn swap_link(&self, link: Arc<Link>) -> Option<Arc<Link>> {
        self.last_link.lock().ok().and_then(|mut l| l.replace(link))
    }

    pub fn settings(&self) -> Arc<ComponentConfig> {
        self.settings.load_full()
    }

    pub fn session(&self) -> Option<Arc<Session>> {
        self.session.load_full()
    }

    /// Removed from the config by a reload: nothing is routed from or to it.
    pub fn is_detached(&self) -> bool {
        self.gate.is_closed()
    }

    /// `None` once detached. Hold the guard while delivering a stanza from this
    /// registration's session: a reload's detach waits for it, so nothing is
    /// routed from a detached connection once the reload is done.
    pub fn routing(&self) -> Option<Routing<'_>> {
        self.gate.enter()
    }
}

/// Outcome of [`Router::attach`].
pub enum Attach {
    /// Attached; the replaced session (if any) must be sent `conflict`.
    Attached { replaced: Option<Arc<Session>> },
    /// `on_conflict = "reject"` and a session is live.
    Conflict,
    /// The registration was detached meanwhile (the domain is no longer served).
    Detached,
    /// `accepted` returned false: the connection is gone.
    Gone,
}

/// What [`Router::deliver`] did with a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the destination's live session.
    Delivered,
    /// The destination's queue is full (a slow reader).
    Full,
    /// An attached component with no live session.
    Offline,
    /// Not a domain the router serves (never was, removed, or detached
    /// meanwhile): route it like any unknown domain.
    Unknown,
}

/// What a reload changed, for the report.
#[derive(Debug, Default)]
pub struct ReloadReport {
    pub added: Vec<String>,
    /// Domain and number of connections left open but detached.
    pub removed: Vec<(String, usize)>,
    pub changed: Vec<String>,
    pub unchanged: usize,
}

type Table = HashMap<Arc<str>, Arc<Registration>>;

pub struct Router {
    /// This router itself, for tasks started from `&self` (upstream links on reload).
    me: Weak<Router>,
    table: ArcSwap<Table>,
    settings: ArcSwap<Settings>,
    next_id: AtomicU64,
    controls: Mutex<HashMap<u64, Arc<Control>>>,
    /// Stanzas read from detached sessions and discarded.
    pub discarded_from_detached: AtomicU64,
    /// Stanzas from the upstream server for detached sessions, discarded.
    pub discarded_for_detached: AtomicU64,
}

impl Router {
    pub fn new(config: &Config) -> Arc<Self> {
        let table: Table = config
            .enabled_components()
            .map(|c| (Arc::from(c.domain.as_str()), Registration::new(c)))
            .collect();
        Arc::new_cyclic(|me| Router {
            me: me.clone(),
            table: ArcSwap::from_pointee(table),
            settings: ArcSwap::from_pointee(Settings::from_config(config)),
            next_id: AtomicU64::new(1),
            controls: Mutex::new(HashMap::new()),
            discarded_from_detached: AtomicU64::new(0),
            discarded_for_detached: AtomicU64::new(0),
        })
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// A counted reference to this router (`None` only while it is being dropped).
    pub fn handle(&self) -> Option<Arc<Router>> {
        self.me.upgrade()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The registration of an attached domain (`key` in canonical form).
    pub fn registration(&self, key: &str) -> Option<Arc<Registration>> {
        self.table.load().get(key).cloned()
    }

    /// Deliver a stanza to the live session of the attached domain `key`
    /// (canonical form). The registration's gate is held from the lookup to the
    /// push, so a stanza can never reach a connection after a reload that
    /// detached it has returned.
    pub fn deliver(&self, key: &str, stanza: Out) -> Delivery {
        // Guards, not clones: no reference-count traffic per stanza.
        let table = self.table.load();
        let Some(reg) = table.get(key) else {
            return Delivery::Unknown;
        };
        let Some(_routing) = reg.routing() else {
            return Delivery::Unknown;
        };
        match &*reg.session.load() {
            None => Delivery::Offline,
            Some(s) => match s.outbox.try_push(stanza) {
                Ok(()) => Delivery::Delivered,
                Err(Refused {
                    why: PushError::Full,
                    ..
                }) => Delivery::Full,
                Err(Refused {
                    why: PushError::Closed,
                    ..
                }) => Delivery::Offline,
            },
        }
    }

    /// Make `session` the live session of `reg`, applying its conflict policy.
    ///
    /// `accepted` runs under the registration's lock once the policy accepted the
    /// session and before it becomes routable (the caller queues `<handshake/>`
    /// there). If it returns false (the connection is gone), nothing changes.
    pub fn attach(
        &self,
        reg: &Registration,
        session: Arc<Session>,
        accepted: impl FnOnce() -> bool,
    ) -> Attach {
        let Ok(_guard) = reg.attach_lock.lock() else {
            return Attach::Detached;
        };
        if reg.is_detached() {
            return Attach::Detached;
        }
        let current = reg.session.load_full();
        if current.is_some() && reg.settings.load().on_conflict == OnConflict::Reject {
            return Attach::Conflict;
        }
        if !accepted() {
            return Attach::Gone;
        }
        reg.session.store(Some(session));
        Attach::Attached { replaced: current }
    }

    /// Remove `session_id` as the live session of `reg`, if it still is.
    pub fn release(&self, reg: &Registration, session_id: u64) {
        if let Ok(_guard) = reg.attach_lock.lock() {
            if reg.session.load().as_ref().map(|s| s.id) == Some(session_id) {
                reg.session.store(None);
            }
        }
    }

    /// Register a connection's control so shutdown can reach it.
    pub fn register_control(&self, id: u64, c: Arc<Control>) {
        if let Ok(mut m) = self.controls.lock() {
            m.insert(id, c);
        }
    }

    pub fn unregister_control(&self, id: u64) {
        if let Ok(mut m) = self.controls.lock() {
            m.remove(&id);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.controls.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// End every connection with this stream error (shutdown).
    pub fn kill_all(&self, err: &StreamError) {
        let all: Vec<Arc<Control>> = match self.controls.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return,
        };
        for c in all {
            c.kill(err.clone());
        }
    }

    /// All live sessions of attached components.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.table
            .load()
            .values()
            .filter_map(|r| r.session.load_full())
            .collect()
    }

    /// Apply a validated new config (README, "Reloading"): attach added components, detach
    /// removed ones (their connections stay open but inert), update changed
    /// settings in place, and leave everything else untouched.
    pub fn apply(&self, old: &Config, new: &Config) -> ReloadReport {
        let d = crate::config::diff(old, new);
        let mut report = ReloadReport {
            unchanged: d.unchanged,
            ..Default::default()
        };
        let current = self.table.load_full();
        let mut table: Table = (*current).clone();
        for c in &d.added {
            table.insert(Arc::from(c.domain.as_str()), Registration::new(c));
            report.added.push(c.domain.clone());
        }
        for c in &d.changed {
            if let Some(reg) = table.get(c.domain.as_str()) {
                reg.settings.store(Arc::new(c.clone()));
            }
            report.changed.push(c.domain.clone());
        }
        let mut detached = Vec::new();
        for domain in &d.removed {
            if let Some(reg) = table.remove(domain.as_str()) {
                detached.push(reg);
            }
        }
        self.settings.store(Arc::new(Settings::from_config(new)));
        self.table.store(Arc::new(table));
        // Detach after the new table is visible: new lookups miss them, and
        // closing each gate waits for deliveries decided before the swap.
        for reg in detached {
            let live = {
                let _guard = reg.attach_lock.lock();
                // Waits for stanzas being routed from or to it right now.
                reg.gate.close();
                reg.session.load_full()
            };
            if let Some(s) = &live {
                s.close_upstream();
            }
            report
                .removed
                .push((reg.domain.to_string(), usize::from(live.is_some())));
        }
        report
    }
}

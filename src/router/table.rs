//! The routing table: canonical domain to [`Domain`], as an `ArcSwap`
//! snapshot that every stanza reads without a lock and a reload replaces
//! whole; the settings that apply to connections as a whole.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use arc_swap::ArcSwap;

use super::domain::Domain;
use crate::config::{ComponentConfig, Config, Diff, UpstreamConfig};
use crate::metrics::{DomainMetrics, Globals};
use crate::proto::StreamCondition;
use crate::session::{Control, QueueLimits};
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

pub(super) type Table = HashMap<Arc<str>, Arc<Domain>>;

/// The `<text/>` of the `reset` that closes a re-added domain's detached
/// connections.
pub const READDED_TEXT: &str = "Component re-added: reconnect";

pub struct Router {
    pub(super) table: ArcSwap<Table>,
    pub(super) settings: ArcSwap<Settings>,
    next_id: AtomicU64,
    controls: Mutex<HashMap<u64, Arc<Control>>>,
    /// Set by [`Router::kill_all`]: a connection registered afterwards is
    /// ended at once with the same error.
    final_error: Mutex<Option<StreamError>>,
    /// Domains a reload removed while they had open connections (which stay
    /// open, detached): closed with `reset` when the domain is added again,
    /// whose metrics the re-added domain takes over; `status` lists them.
    detached: Mutex<Vec<Weak<Domain>>>,
    /// Stanzas read from detached sessions and discarded.
    pub discarded_from_detached: AtomicU64,
    /// Stanzas from the upstream server for detached sessions, discarded.
    pub discarded_for_detached: AtomicU64,
    /// Process-wide counters (connections, refusals, handshakes, stream
    /// errors, reloads).
    pub globals: Arc<Globals>,
}

impl Router {
    pub fn new(config: &Config) -> Arc<Self> {
        let table: Table = config
            .enabled_components()
            .map(|c| (Arc::from(c.domain.as_str()), Domain::new(c, None)))
            .collect();
        Arc::new(Router {
            table: ArcSwap::from_pointee(table),
            settings: ArcSwap::from_pointee(Settings::from_config(config)),
            next_id: AtomicU64::new(1),
            controls: Mutex::new(HashMap::new()),
            final_error: Mutex::new(None),
            detached: Mutex::new(Vec::new()),
            discarded_from_detached: AtomicU64::new(0),
            discarded_for_detached: AtomicU64::new(0),
            globals: Globals::new(),
        })
    }

    /// Detached domains that still have an open session.
    pub fn detached_domains(&self) -> Vec<Arc<Domain>> {
        self.lock_detached()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|d| !d.sessions().is_empty())
            .collect()
    }

    fn lock_detached(&self) -> MutexGuard<'_, Vec<Weak<Domain>>> {
        self.detached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The metrics of a detached domain named `name` that is still alive.
    fn metrics_of_detached(&self, name: &str) -> Option<Arc<DomainMetrics>> {
        self.lock_detached()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|d| &*d.name == name)
            .map(|d| d.metrics.clone())
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The queue bounds of an upstream link when an upstream is configured.
    pub fn upstream_queue(&self) -> Option<QueueLimits> {
        let s = self.settings.load();
        s.upstream.as_ref().map(|_| s.queue)
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// An attached domain (`key` in canonical form).
    pub fn domain(&self, key: &str) -> Option<Arc<Domain>> {
        self.table.load().get(key).cloned()
    }

    /// Every attached domain.
    pub fn domains(&self) -> Vec<Arc<Domain>> {
        self.table.load().values().cloned().collect()
    }

    /// Register a connection's control so shutdown can reach it; after
    /// [`Router::kill_all`] the connection is ended at once.
    pub fn register_control(&self, id: u64, c: Arc<Control>) {
        let mut controls = self.lock_controls();
        let last = self
            .final_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match last {
            Some(err) => c.kill(err),
            None => {
                controls.insert(id, c);
            }
        }
    }

    pub fn unregister_control(&self, id: u64) {
        self.lock_controls().remove(&id);
    }

    fn lock_controls(&self) -> MutexGuard<'_, HashMap<u64, Arc<Control>>> {
        self.controls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// End every connection with this stream error (shutdown).
    pub fn kill_all(&self, err: &StreamError) {
        let all: Vec<Arc<Control>> = {
            let controls = self.lock_controls();
            *self
                .final_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(err.clone());
            controls.values().cloned().collect()
        };
        for c in all {
            c.kill(err.clone());
        }
    }

    /// Apply a reload's difference (docs/behaviour.md#reload): attach added
    /// components, update changed settings in place, detach removed ones
    /// (their connections stay open but inert, their links close), and leave
    /// everything else untouched. Returns each detached domain with the
    /// number of its connections left open.
    pub fn apply(&self, d: &Diff, settings: Settings) -> Vec<(String, usize)> {
        let mut table: Table = (**self.table.load()).clone();
        for c in &d.added {
            let metrics = self.metrics_of_detached(&c.domain);
            table.insert(Arc::from(c.domain.as_str()), Domain::new(c, metrics));
        }
        for c in &d.changed {
            if let Some(dom) = table.get(c.domain.as_str()) {
                dom.set_settings(c);
            }
        }
        let detached: Vec<Arc<Domain>> = d
            .removed
            .iter()
            .filter_map(|name| table.remove(name.as_str()))
            .collect();
        self.settings.store(Arc::new(settings));
        self.table.store(Arc::new(table));
        // Detach after the new table is visible: new lookups miss them, and
        // closing each gate waits for deliveries decided before the swap.
        let removed: Vec<(String, usize)> = detached
            .iter()
            .map(|dom| {
                let open = dom.detach(|d, ended| self.end_hold(d, ended));
                (dom.name.to_string(), open)
            })
            .collect();
        let mut kept = self.lock_detached();
        kept.retain(|w| w.strong_count() > 0);
        kept.extend(detached.iter().map(Arc::downgrade));
        removed
    }

    /// Close, with the stream error `reset` ("Component re-added: reconnect"),
    /// the detached connections of every domain a reload has just added
    /// again: they would otherwise stay inert for ever while their components
    /// believe they are connected; `reset` makes them reconnect. Returns each
    /// such domain with the number of connections closed.
    pub fn reset_readded(&self, added: &[ComponentConfig]) -> Vec<(String, usize)> {
        let mut kept = self.lock_detached();
        let mut reset = Vec::new();
        kept.retain(|w| {
            let Some(old) = w.upgrade() else {
                return false;
            };
            if !added.iter().any(|c| *c.domain == *old.name) {
                return true;
            }
            let sessions = old.sessions();
            for s in sessions.iter() {
                s.control
                    .kill(StreamError::with_text(StreamCondition::Reset, READDED_TEXT));
            }
            reset.push((old.name.to_string(), sessions.len()));
            false
        });
        reset
    }
}

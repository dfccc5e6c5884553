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
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, Notify};

use crate::config::{ComponentConfig, Config, OnConflict, UpstreamConfig};
use crate::upstream::Link;
use crate::wire::out::Out;
use crate::wire::stanza::StreamError;
use crate::wire::writer::Queue;
use crate::wire::xml::Limits;

/// Bounds of one outgoing queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    pub max_stanzas: usize,
    pub max_bytes: usize,
}

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

/// Why a push into an outbox failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue is at its stanza or byte bound (a slow reader).
    Full,
    /// The connection is gone.
    Closed,
}

/// A push that failed, with the item it could not queue.
#[derive(Debug)]
pub struct Refused {
    pub why: PushError,
    pub item: Out,
}

/// The sending side of a connection's bounded outgoing queue.
///
/// One rule bounds it on every path: at most `max_stanzas` items and
/// `max_bytes` of their cost ([`Out::cost`]: their bytes, and decoded
/// attribute values) that the writer has not completely written yet (or a
/// single item, when one alone costs more). [`Outbox::try_push`] fails when
/// either bound is reached; [`Outbox::push`] and [`Outbox::reserve`] wait
/// until both have room.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Out>,
    bytes: Arc<QueueBytes>,
    max_bytes: usize,
}

/// Bytes queued and not yet written, shared by an outbox and its writer.
#[derive(Default)]
struct QueueBytes {
    queued: AtomicUsize,
    /// Pushes waiting for bytes (so releasing wakes nobody when none wait).
    waiting: AtomicUsize,
    /// Woken when bytes are released while someone waits.
    room: Notify,
}

impl QueueBytes {
    fn release(&self, n: usize) {
        // SeqCst with the waiter's `waiting` increment and its check of
        // `queued`: either it sees these bytes gone, or this sees it waiting.
        let before = self.queued.fetch_sub(n, Ordering::SeqCst);
        debug_assert!(before >= n, "released {n} of {before} queued bytes");
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }
}

/// The writer's side of an [`Outbox`].
pub struct OutboxReceiver {
    rx: mpsc::Receiver<Out>,
    bytes: Arc<QueueBytes>,
}

impl OutboxReceiver {
    /// Bytes queued or taken and not yet released.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.queued.load(Ordering::Acquire)
    }

    /// Refuse further pushes; what is queued can still be taken.
    pub fn close(&mut self) {
        self.rx.close();
    }

    /// Take everything queued now; it no longer counts against the bound.
    pub fn drain(&mut self) -> Vec<Out> {
        let mut v = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            self.bytes.release(item.cost());
            v.push(item);
        }
        v
    }

    /// Wait for the next item (for tests and owners that drain one by one).
    pub async fn recv(&mut self) -> Option<Out> {
        self.rx.recv().await
    }
}

impl Queue for OutboxReceiver {
    fn recv_many(
        &mut self,
        batch: &mut Vec<Out>,
        limit: usize,
    ) -> impl std::future::Future<Output = usize> + Send {
        self.rx.recv_many(batch, limit)
    }

    fn try_recv(&mut self) -> Option<Out> {
        self.rx.try_recv().ok()
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.bytes.release(n);
        }
    }
}

pub fn outbox(limits: QueueLimits) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(limits.max_stanzas.max(1));
    let bytes = Arc::new(QueueBytes::default());
    (
        Outbox {
            tx,
            bytes: bytes.clone(),
            max_bytes: limits.max_bytes,
        },
        OutboxReceiver { rx, bytes },
    )
}

/// Counts one waiting push while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Room for one item in an [`Outbox`]: a slot and its cost, held until
/// [`Reservation::send`] (or given back when dropped).
pub struct Reservation<'a> {
    permit: Option<mpsc::Permit<'a, Out>>,
    bytes: &'a QueueBytes,
    cost: usize,
}

impl Reservation<'_> {
    /// Queue the item the room was reserved for (`item.cost()` must be that cost).
    pub fn send(mut self, item: Out) {
        debug_assert_eq!(item.cost(), self.cost);
        if let Some(p) = self.permit.take() {
            p.send(item);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.bytes.release(self.cost);
        }
    }
}

impl Outbox {
    /// Count `cost` more in if the byte bound allows it.
    fn take_bytes(&self, cost: usize) -> bool {
        let max = self.max_bytes;
        self.bytes
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q == 0 || q.saturating_add(cost) <= max).then_some(q + cost)
            })
            .is_ok()
    }

    /// Queue without waiting; fails when the queue is full or closed, and
    /// gives the item back.
    // The item is handed back by value: boxing it would allocate on every refusal.
    #[allow(clippy::result_large_err)]
    pub fn try_push(&self, item: Out) -> Result<(), Refused> {
        let cost = item.cost();
        if !self.take_bytes(cost) {
            let why = if self.tx.is_closed() {
                PushError::Closed
            } else {
                PushError::Full
            };
            return Err(Refused { why, item });
        }
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.bytes.release(cost);
                Err(match e {
                    mpsc::error::TrySendError::Full(item) => Refused {
                        why: PushError::Full,
                        item,
                    },
                    mpsc::error::TrySendError::Closed(item) => Refused {
                        why: PushError::Closed,
                        item,
                    },
                })
            }
        }
    }

    /// Wait for room for an item of this cost: a slot, then the bytes.
    /// Fails only when the connection is gone. Cancel-safe: dropping the
    /// future (or the reservation) gives back what was taken.
    pub async fn reserve(&self, cost: usize) -> Result<Reservation<'_>, PushError> {
        let permit = self.tx.reserve().await.map_err(|_| PushError::Closed)?;
        if self.take_bytes(cost) {
            return Ok(Reservation {
                permit: Some(permit),
                bytes: &self.bytes,
                cost,
            });
        }
        let _waiting = Waiting::new(&self.bytes.waiting);
        loop {
            let room = self.bytes.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.take_bytes(cost) {
                return Ok(Reservation {
                    permit: Some(permit),
                    bytes: &self.bytes,
                    cost,
                });
            }
            tokio::select! {
                _ = &mut room => {}
                _ = self.tx.closed() => return Err(PushError::Closed),
            }
        }
    }

    /// Queue, waiting for room (slots and bytes). Only the connection's own
    /// reader and its upstream link wait on an outbox, so this back-pressures
    /// only them: the peer that is not reading, or the link feeding it.
    pub async fn push(&self, item: Out) -> Result<(), PushError> {
        self.reserve(item.cost()).await?.send(item);
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// How to end one connection from elsewhere (conflict, shutdown).
#[derive(Default)]
pub struct Control {
    notify: Notify,
    reason: Mutex<Option<StreamError>>,
}

impl Control {
    /// Ask the connection to end with this stream error (the first request wins).
    pub fn kill(&self, err: StreamError) {
        if let Ok(mut r) = self.reason.lock() {
            if r.is_none() {
                *r = Some(err);
            }
        }
        self.notify.notify_one();
    }

    /// The stream error [`Control::kill`] asked for, if it was called.
    pub fn reason(&self) -> Option<StreamError> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Resolves when [`Control::kill`] was called; returns its stream error.
    pub async fn killed(&self) -> StreamError {
        loop {
            if let Some(e) = self.reason.lock().ok().and_then(|r| r.clone()) {
                return e;
            }
            self.notify.notified().await;
        }
    }
}

/// An authenticated connection, as the rest of the router sees it.
pub struct Session {
    pub id: u64,
    pub domain: Arc<str>,
    pub peer: SocketAddr,
    pub outbox: Outbox,
    pub control: Arc<Control>,
    /// The session's link to the upstream server, when one is configured.
    pub upstream: ArcSwapOption<Link>,
}

impl Session {
    /// Close the upstream link, if any (session ended or detached).
    pub fn close_upstream(&self) {
        if let Some(link) = self.upstream.swap(None) {
            link.close();
        }
    }
}

/// Lets stanza routing and a reload's detach exclude each other without ever
/// making routing wait: routing enters (a counter) and then checks the closed
/// flag; detaching sets the flag and then waits until nobody is inside. So once
/// [`Gate::close`] returns, every delivery decided while the registration was
/// attached has been made, and every later attempt sees it detached. Entering
/// never blocks, so a guard may be held while entering another gate (or the
/// same one: a component sending to itself).
#[derive(Default)]
struct Gate {
    closed: AtomicBool,
    inside: AtomicUsize,
}

/// Proof that a registration was attached when routing started; a detach waits
/// until it is dropped. Not `Send`: it must not be held across an `.await`.
pub struct Routing<'a> {
    gate: &'a Gate,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        self.gate.inside.fetch_sub(1, Ordering::Release);
    }
}

impl Gate {
    fn enter(&self) -> Option<Routing<'_>> {
        // SeqCst on both sides (store flag / load counter in `close`, add to
        // counter / load flag here): at least one side sees the other.
        self.inside.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.inside.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(Routing {
            gate: self,
            _not_send: PhantomData,
        })
    }

    /// Close for good and wait for everyone inside (each holds it only for a
    /// non-blocking push, so this is short).
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.inside.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
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
        let old_upstream = self.settings.load().upstream.clone();
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
        crate::upstream::apply_reload(self, old_upstream.as_ref(), new.upstream.as_ref());
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn b(n: usize) -> Out {
        Out::Raw(bytes::Bytes::from(vec![b'x'; n]))
    }

    /// `try_push` without the refused item.
    fn try_push(out: &Outbox, item: Out) -> Result<(), PushError> {
        out.try_push(item).map_err(|r| r.why)
    }

    #[test]
    fn try_push_honours_both_bounds() {
        let (out, rx) = outbox(QueueLimits {
            max_stanzas: 3,
            max_bytes: 100,
        });
        // One stanza alone may exceed the byte bound; nothing joins it.
        assert_eq!(try_push(&out, b(150)), Ok(()));
        assert_eq!(try_push(&out, b(1)), Err(PushError::Full));
        let mut rx = rx;
        let got = rx.try_recv().unwrap();
        rx.release(got.cost());
        assert_eq!(try_push(&out, b(60)), Ok(()));
        assert_eq!(try_push(&out, b(40)), Ok(()));
        assert_eq!(try_push(&out, b(1)), Err(PushError::Full));
        assert_eq!(rx.queued_bytes(), 100);
        drop(rx);
        assert_eq!(try_push(&out, b(1)), Err(PushError::Closed));
    }

    /// The waiting push waits for bytes as well as for slots, and a dropped
    /// wait gives its reservation back.
    #[tokio::test]
    async fn push_waits_for_bytes_and_slots() {
        let (out, mut rx) = outbox(QueueLimits {
            max_stanzas: 100,
            max_bytes: 100,
        });
        out.push(b(80)).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), out.push(b(30))).await;
        assert!(blocked.is_err(), "pushed past the byte bound");
        assert_eq!(rx.queued_bytes(), 80, "the cancelled wait kept its bytes");
        let waiter = {
            let out = out.clone();
            tokio::spawn(async move { out.push(b(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let first = rx.recv().await.unwrap();
        rx.release(first.cost());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the push did not resume once bytes were released")
            .unwrap()
            .unwrap();
        assert_eq!(rx.queued_bytes(), 30);

        let (out, mut rx) = outbox(QueueLimits {
            max_stanzas: 1,
            max_bytes: 1000,
        });
        out.push(b(1)).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), out.push(b(1))).await;
        assert!(blocked.is_err(), "pushed past the stanza bound");
        let r = out.clone();
        let waiter = tokio::spawn(async move { r.push(b(1)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx.recv().await);
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the push did not end");
        // Waiting for bytes ends when the connection goes.
        let (out, rx) = outbox(QueueLimits {
            max_stanzas: 10,
            max_bytes: 10,
        });
        out.push(b(10)).await.unwrap();
        let o = out.clone();
        let waiter = tokio::spawn(async move { o.push(b(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the push did not end when the receiver went")
            .unwrap();
        assert_eq!(r, Err(PushError::Closed));
    }
}

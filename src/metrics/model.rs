//! The data the daemon fills: counters updated where events happen, and the
//! snapshot it produces when scraped.
//!
//! Three kinds of state, each kept where it is cheapest to keep:
//! - Per-stanza counters live in a [`SessionMetrics`] that one authenticated
//!   connection owns. Its reader counts `in`, its writer counts `out`, each on its
//!   own cache line, with a relaxed load and store (each direction has one
//!   writer): no lock, no locked instruction, no sharing with other
//!   connections. When the connection ends, its totals are folded into its
//!   domain's [`DomainMetrics`] under the same lock a scrape reads them with, so a
//!   counter never goes down.
//! - Rare global events (accept, handshake, stream error, reload) are counted in
//!   [`Globals`]; an open connection holds a [`ConnectionMetrics`] guard that keeps
//!   the `connections{state}` gauge right whatever way the connection ends.
//! - Current state that the daemon already knows (whether a domain is held, its
//!   queue depth, its upstream link) is not mirrored here: at scrape time the
//!   daemon's [`Source`] reports it in one [`DomainRow`] per domain.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::labels::{
    ConnectionState, DomainState, Outcome, RefusedReason, StanzaErrorCondition,
    StreamErrorCondition,
};

/// Stanzas and bytes of one direction, alone on its cache line so that a
/// connection's reader and writer never contend.
///
/// Each direction has exactly one writer (the connection's reader task counts
/// `in`, its writer task `out`), so an update is a relaxed load and store,
/// plain moves on every common CPU, instead of a locked read-modify-write on
/// every stanza. Readers (a scrape) see a value at most one stanza old.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Flow {
    stanzas: AtomicU64,
    bytes: AtomicU64,
}

impl Flow {
    #[inline]
    fn add(&self, bytes: usize) {
        let n = self.stanzas.load(Relaxed);
        self.stanzas.store(n.wrapping_add(1), Relaxed);
        let b = self.bytes.load(Relaxed);
        self.bytes.store(b.wrapping_add(bytes as u64), Relaxed);
    }
}

/// The hot-path counters of one connection (or of a domain, for events outside
/// any connection). All updates are relaxed atomic adds.
#[derive(Debug)]
pub struct SessionCounters {
    inbound: Flow,
    outbound: Flow,
    bounces: [AtomicU64; StanzaErrorCondition::COUNT],
}

impl Default for SessionCounters {
    fn default() -> Self {
        SessionCounters {
            inbound: Flow::default(),
            outbound: Flow::default(),
            bounces: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SessionCounters {
    /// A stanza of `bytes` bytes was read from the connection (the stanza's own
    /// bytes: not the stream header, the handshake or whitespace keepalives).
    /// One task only may count `in` on these counters (and one `out`): two
    /// would lose updates.
    #[inline]
    pub fn stanza_in(&self, bytes: usize) {
        self.inbound.add(bytes);
    }

    /// A stanza of `bytes` bytes was written to the connection.
    #[inline]
    pub fn stanza_out(&self, bytes: usize) {
        self.outbound.add(bytes);
    }

    /// The router generated a stanza error with `condition` for a stanza this
    /// connection (or domain) sent. Any number of tasks may count bounces.
    #[inline]
    pub fn bounce(&self, condition: StanzaErrorCondition) {
        self.bounces[condition.index()].fetch_add(1, Relaxed);
    }

    fn add_to(&self, t: &mut Totals) {
        t.stanzas_in += self.inbound.stanzas.load(Relaxed);
        t.bytes_in += self.inbound.bytes.load(Relaxed);
        t.stanzas_out += self.outbound.stanzas.load(Relaxed);
        t.bytes_out += self.outbound.bytes.load(Relaxed);
        for (sum, b) in t.bounces.iter_mut().zip(&self.bounces) {
            *sum += b.load(Relaxed);
        }
    }
}

/// Counter values of a domain (or a connection) at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Indexed by [`StanzaErrorCondition::index`].
    pub bounces: [u64; StanzaErrorCondition::COUNT],
}

impl Totals {
    /// Bounces of every condition.
    pub fn bounces_total(&self) -> u64 {
        self.bounces.iter().sum()
    }

    /// Bounces with `condition`.
    pub fn bounces_of(&self, condition: StanzaErrorCondition) -> u64 {
        self.bounces[condition.index()]
    }

    fn merge(&mut self, o: &Totals) {
        self.stanzas_in += o.stanzas_in;
        self.stanzas_out += o.stanzas_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        for (a, b) in self.bounces.iter_mut().zip(&o.bounces) {
            *a += b;
        }
    }
}

/// One authenticated connection as `status` shows it (never a metric label).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// When it authenticated.
    pub since: SystemTime,
}

#[derive(Debug)]
struct LiveSession {
    counters: Arc<SessionCounters>,
    peer: Peer,
}

#[derive(Debug, Default)]
struct Sessions {
    live: Vec<Arc<LiveSession>>,
    /// What connections that have ended counted.
    retired: Totals,
}

/// The metrics of one component domain: what its connections counted (live and
/// ended) and its upstream link's attempts. The daemon keeps one per domain for
/// as long as the domain is served or a connection of it is open (each
/// [`SessionMetrics`] holds its domain's).
#[derive(Debug)]
pub struct DomainMetrics {
    name: Arc<str>,
    sessions: Mutex<Sessions>,
    /// Events that belong to the domain but to none of its connections.
    shared: SessionCounters,
    upstream_attempts: AtomicU64,
}

impl DomainMetrics {
    /// `name` is the canonical (lower-case) configured domain.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(DomainMetrics {
            name: Arc::from(name),
            sessions: Mutex::default(),
            shared: SessionCounters::default(),
            upstream_attempts: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// A connection of this domain authenticated: the counters it owns from now
    /// until it is dropped (when the connection has left the domain).
    pub fn open_session(self: &Arc<Self>, addr: SocketAddr, since: SystemTime) -> SessionMetrics {
        self.adopt_session(Arc::default(), addr, since)
    }

    /// [`DomainMetrics::open_session`] with counters the connection created
    /// earlier (at accept), so that its writer task, which starts before the
    /// connection authenticates, holds them from the start. What they counted
    /// before is counted for this domain too.
    pub fn adopt_session(
        self: &Arc<Self>,
        counters: Arc<SessionCounters>,
        addr: SocketAddr,
        since: SystemTime,
    ) -> SessionMetrics {
        let live = Arc::new(LiveSession {
            counters,
            peer: Peer { addr, since },
        });
        self.lock().live.push(live.clone());
        SessionMetrics {
            live,
            domain: self.clone(),
        }
    }

    /// Counters for events of this domain outside any connection (e.g. a bounce
    /// the upstream link generates while the domain has no connection). Shared by
    /// every task that uses them: for bounces (never for a per-stanza path of
    /// a live session; `stanza_in`/`stanza_out` need a single writer).
    pub fn counters(&self) -> &SessionCounters {
        &self.shared
    }

    /// The upstream link of this domain starts a (re)connect attempt.
    pub fn upstream_attempt(&self) {
        self.upstream_attempts.fetch_add(1, Relaxed);
    }

    pub fn upstream_attempts(&self) -> u64 {
        self.upstream_attempts.load(Relaxed)
    }

    /// Sums of every connection (ended or live) and the live connections' peers.
    pub fn read(&self) -> (Totals, Vec<Peer>) {
        let s = self.lock();
        let mut t = s.retired.clone();
        self.shared.add_to(&mut t);
        let mut peers = Vec::with_capacity(s.live.len());
        for l in &s.live {
            l.counters.add_to(&mut t);
            peers.push(l.peer.clone());
        }
        (t, peers)
    }

    /// Authenticated connections now.
    pub fn connections(&self) -> usize {
        self.lock().live.len()
    }

    /// Counting must go on even if a thread panicked while holding the lock (the
    /// data is plain sums, valid at every point).
    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn retire(&self, live: &Arc<LiveSession>) {
        let mut s = self.lock();
        if let Some(i) = s.live.iter().position(|l| Arc::ptr_eq(l, live)) {
            s.live.remove(i);
        }
        live.counters.add_to(&mut s.retired);
    }
}

/// The counters one authenticated connection owns (dereferences to
/// [`SessionCounters`]). Dropping it folds them into the domain's totals.
#[derive(Debug)]
pub struct SessionMetrics {
    live: Arc<LiveSession>,
    domain: Arc<DomainMetrics>,
}

impl SessionMetrics {
    /// The domain these counters add up to.
    pub fn domain(&self) -> &Arc<DomainMetrics> {
        &self.domain
    }

    pub fn peer(&self) -> &Peer {
        &self.live.peer
    }
}

impl Deref for SessionMetrics {
    type Target = SessionCounters;
    #[inline]
    fn deref(&self) -> &SessionCounters {
        &self.live.counters
    }
}

impl Drop for SessionMetrics {
    fn drop(&mut self) {
        self.domain.retire(&self.live);
    }
}

/// Process-wide counters: connections by state, refusals, handshakes, stream
/// errors, reloads.
#[derive(Debug)]
pub struct Globals {
    connections: [AtomicI64; ConnectionState::COUNT],
    refused: [AtomicU64; RefusedReason::COUNT],
    handshakes: [AtomicU64; Outcome::COUNT],
    stream_errors: [AtomicU64; StreamErrorCondition::COUNT],
    reloads: [AtomicU64; Outcome::COUNT],
    /// Milliseconds since the Unix epoch; 0: never.
    last_reload_success_ms: AtomicU64,
}

/// What [`Globals`] held at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalTotals {
    /// Indexed by [`ConnectionState::index`].
    pub connections: [u64; ConnectionState::COUNT],
    /// Indexed by [`RefusedReason::index`].
    pub refused: [u64; RefusedReason::COUNT],
    /// Indexed by [`Outcome::index`].
    pub handshakes: [u64; Outcome::COUNT],
    /// Indexed by [`StreamErrorCondition::index`].
    pub stream_errors: [u64; StreamErrorCondition::COUNT],
    /// Indexed by [`Outcome::index`].
    pub reloads: [u64; Outcome::COUNT],
    /// When the config was last loaded successfully (at start or by a reload).
    pub last_reload_success: Option<SystemTime>,
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

fn load<const N: usize>(a: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| a[i].load(Relaxed))
}

impl Globals {
    pub fn new() -> Arc<Self> {
        Arc::new(Globals {
            connections: std::array::from_fn(|_| AtomicI64::new(0)),
            refused: zeros(),
            handshakes: zeros(),
            stream_errors: zeros(),
            reloads: zeros(),
            last_reload_success_ms: AtomicU64::new(0),
        })
    }

    /// A component connection was accepted: it counts as `unauthenticated` until
    /// [`ConnectionMetrics::set_state`] moves it, and stops counting when dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionMetrics {
        self.connections[ConnectionState::Unauthenticated.index()].fetch_add(1, Relaxed);
        ConnectionMetrics {
            globals: self.clone(),
            state: ConnectionState::Unauthenticated,
        }
    }

    /// A connection was closed before authenticating, for `reason`.
    pub fn refused(&self, reason: RefusedReason) {
        self.refused[reason.index()].fetch_add(1, Relaxed);
    }

    /// A `<handshake/>` was checked.
    pub fn handshake(&self, outcome: Outcome) {
        self.handshakes[outcome.index()].fetch_add(1, Relaxed);
    }

    /// The router sent a stream error with `condition` (on any connection).
    pub fn stream_error(&self, condition: StreamErrorCondition) {
        self.stream_errors[condition.index()].fetch_add(1, Relaxed);
    }

    /// A reload (SIGHUP) finished with `outcome`, at `at`.
    pub fn reload(&self, outcome: Outcome, at: SystemTime) {
        self.reloads[outcome.index()].fetch_add(1, Relaxed);
        if outcome == Outcome::Ok {
            self.config_loaded(at);
        }
    }

    /// The config was loaded at start: sets the last-success time without
    /// counting a reload.
    pub fn config_loaded(&self, at: SystemTime) {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_reload_success_ms.store(ms.max(1), Relaxed);
    }

    pub fn read(&self) -> GlobalTotals {
        let ms = self.last_reload_success_ms.load(Relaxed);
        GlobalTotals {
            connections: std::array::from_fn(|i| self.connections[i].load(Relaxed).max(0) as u64),
            refused: load(&self.refused),
            handshakes: load(&self.handshakes),
            stream_errors: load(&self.stream_errors),
            reloads: load(&self.reloads),
            last_reload_success: (ms != 0)
                .then(|| UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        }
    }
}

/// Held by one open component connection: counts it in `connections{state}`
/// from accept until it is dropped.
#[derive(Debug)]
pub struct ConnectionMetrics {
    globals: Arc<Globals>,
    state: ConnectionState,
}

impl ConnectionMetrics {
    /// The connection authenticated, or a reload detached its domain.
    pub fn set_state(&mut self, state: ConnectionState) {
        if state == self.state {
            return;
        }
        self.globals.connections[state.index()].fetch_add(1, Relaxed);
        self.globals.connections[self.state.index()].fetch_sub(1, Relaxed);
        self.state = state;
    }

    pub fn state(&self) -> ConnectionState {
        self.state
    }
}

impl Drop for ConnectionMetrics {
    fn drop(&mut self) {
        self.globals.connections[self.state.index()].fetch_sub(1, Relaxed);
    }
}

/// A domain's upstream link as a scrape sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRow {
    /// The link is authenticated.
    pub up: bool,
    /// Connect attempts so far ([`DomainMetrics::upstream_attempts`]).
    pub reconnects: u64,
    /// While down: when the next attempt starts (`None`: one is under way).
    pub next_retry: Option<Instant>,
}

/// One domain in a scrape: one attached component, or one detached domain that
/// still has an open connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRow {
    pub domain: Arc<str>,
    pub state: DomainState,
    /// Its authenticated connections.
    pub peers: Vec<Peer>,
    pub totals: Totals,
    /// Stanzas and bytes queued for its connections, not yet written.
    pub queue_stanzas: u64,
    pub queue_bytes: u64,
    /// Stanzas kept while the domain is held.
    pub held_stanzas: u64,
    /// `None` when no upstream server is configured.
    pub upstream: Option<UpstreamRow>,
    /// The [`DomainMetrics`] read (its address), to count it once when the
    /// source lists it in several rows.
    origin: usize,
}

impl DomainRow {
    /// The row of `m` in `state`, with its counters and peers read; queues empty
    /// and no upstream link until the caller sets them.
    pub fn new(m: &DomainMetrics, state: DomainState) -> Self {
        let (totals, peers) = m.read();
        DomainRow {
            domain: m.name.clone(),
            state,
            peers,
            totals,
            queue_stanzas: 0,
            queue_bytes: 0,
            held_stanzas: 0,
            upstream: None,
            origin: m as *const DomainMetrics as usize,
        }
    }

    /// Sets the upstream link's state; the attempt count comes from `m`.
    pub fn with_upstream(
        mut self,
        m: &DomainMetrics,
        up: bool,
        next_retry: Option<Instant>,
    ) -> Self {
        self.upstream = Some(UpstreamRow {
            up,
            reconnects: m.upstream_attempts(),
            next_retry: if up { None } else { next_retry },
        });
        self
    }

    /// Authenticated connections now.
    pub fn connections(&self) -> usize {
        self.peers.len()
    }

    /// Folds `o` (a row of the same domain) into this one: counters and peers
    /// add up unless its [`DomainMetrics`] was `counted` already; queues add
    /// up; the state and upstream link of the first row win.
    fn absorb(&mut self, o: DomainRow, counted: bool) {
        if !counted {
            self.peers.extend(o.peers);
            self.totals.merge(&o.totals);
        }
        self.queue_stanzas += o.queue_stanzas;
        self.queue_bytes += o.queue_bytes;
        self.held_stanzas += o.held_stanzas;
        if self.upstream.is_none() {
            self.upstream = o.upstream;
        }
    }
}

/// What the daemon reports at scrape time. Implemented by the daemon over its
/// routing table; called on a blocking thread (never on a runtime worker) once
/// per scrape or status request, one at a time unless the listener's
/// `max_concurrent_renders` says otherwise. It must not block on the runtime.
pub trait Source: Send + Sync + 'static {
    /// Push one row per attached component and per detached domain with an open
    /// connection. Rows of the same domain are merged (see
    /// [`Snapshot::normalize`]); one [`DomainMetrics`] listed in several rows
    /// (e.g. once per detached connection) is counted once.
    fn domains(&self, out: &mut Vec<DomainRow>);
}

/// One scrape's view: every domain once, sorted by name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub domains: Vec<DomainRow>,
    pub globals: Option<GlobalTotals>,
    /// When it was taken (the base of `next_retry` durations).
    pub taken: Option<Instant>,
}

impl Snapshot {
    /// Reads `source` and `globals` now.
    pub fn take(source: &dyn Source, globals: &Globals) -> Snapshot {
        let mut domains = Vec::new();
        source.domains(&mut domains);
        let mut s = Snapshot {
            domains,
            globals: Some(globals.read()),
            taken: Some(Instant::now()),
        };
        s.normalize();
        s
    }

    /// Sorts the rows by domain and merges rows of one domain (a domain removed
    /// and re-added by reload while its old connection is still open shows up
    /// twice: once attached, once detached), so every label set is unique. The
    /// attached row's state wins. Rows that read the same [`DomainMetrics`]
    /// contribute its counters and peers once.
    pub fn normalize(&mut self) {
        self.domains
            .sort_by(|a, b| a.domain.cmp(&b.domain).then(a.state.cmp(&b.state)));
        let rows = std::mem::take(&mut self.domains);
        // The `DomainMetrics` read by the rows merged into the last one.
        let mut seen: Vec<usize> = Vec::new();
        for row in rows {
            match self.domains.last_mut() {
                Some(last) if last.domain == row.domain => {
                    let counted = seen.contains(&row.origin);
                    if !counted {
                        seen.push(row.origin);
                    }
                    last.absorb(row, counted);
                }
                _ => {
                    seen.clear();
                    seen.push(row.origin);
                    self.domains.push(row);
                }
            }
        }
    }

    /// Seconds until `row`'s next upstream attempt (0 when up or under way).
    pub fn next_retry_seconds(&self, row: &UpstreamRow) -> f64 {
        match (row.next_retry, self.taken) {
            (Some(at), Some(now)) => at.saturating_duration_since(now).as_secs_f64(),
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn session_totals_survive_the_session() {
        let d = DomainMetrics::new("a.example");
        let s1 = d.open_session(addr(1), SystemTime::now());
        let s2 = d.open_session(addr(2), SystemTime::now());
        s1.stanza_in(100);
        s1.stanza_out(10);
        s2.stanza_in(5);
        s2.bounce(StanzaErrorCondition::ServiceUnavailable);
        d.counters()
            .bounce(StanzaErrorCondition::ServiceUnavailable);
        let (t, peers) = d.read();
        assert_eq!(peers.len(), 2);
        assert_eq!(
            (t.stanzas_in, t.bytes_in, t.stanzas_out, t.bytes_out),
            (2, 105, 1, 10)
        );
        assert_eq!(t.bounces_of(StanzaErrorCondition::ServiceUnavailable), 2);
        drop(s1);
        let (after, peers) = d.read();
        assert_eq!(after, t, "an ended connection's counts stay");
        assert_eq!(
            peers,
            vec![Peer {
                addr: addr(2),
                since: peers[0].since
            }]
        );
        drop(s2);
        assert_eq!(d.connections(), 0);
        assert_eq!(d.read().0, t);
    }

    #[test]
    fn counts_never_go_down_while_sessions_end_during_reads() {
        let d = DomainMetrics::new("a.example");
        let writer = {
            let d = d.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    let s = d.open_session(addr(1), SystemTime::now());
                    s.stanza_in(1);
                }
            })
        };
        let mut last = 0;
        while !writer.is_finished() {
            let now = d.read().0.stanzas_in;
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
        writer.join().unwrap();
        assert_eq!(d.read().0.stanzas_in, 2_000);
    }

    #[test]
    fn connection_guard_tracks_state_until_dropped() {
        let g = Globals::new();
        let mut a = g.connection_opened();
        let b = g.connection_opened();
        assert_eq!(g.read().connections, [2, 0, 0]);
        a.set_state(ConnectionState::Authenticated);
        a.set_state(ConnectionState::Authenticated);
        assert_eq!(g.read().connections, [1, 1, 0]);
        a.set_state(ConnectionState::Detached);
        assert_eq!(g.read().connections, [1, 0, 1]);
        drop(a);
        drop(b);
        assert_eq!(g.read().connections, [0, 0, 0]);
    }

    #[test]
    fn reload_outcomes_and_success_time() {
        let g = Globals::new();
        assert_eq!(g.read().last_reload_success, None);
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        g.config_loaded(t);
        g.reload(Outcome::Failed, t + std::time::Duration::from_secs(5));
        let r = g.read();
        assert_eq!(r.reloads, [0, 1]);
        assert_eq!(r.last_reload_success, Some(t));
        g.reload(Outcome::Ok, t + std::time::Duration::from_secs(9));
        let r = g.read();
        assert_eq!(r.reloads, [1, 1]);
        assert_eq!(
            r.last_reload_success,
            Some(t + std::time::Duration::from_secs(9))
        );
    }

    struct Rows(Vec<DomainRow>);
    impl Source for Rows {
        fn domains(&self, out: &mut Vec<DomainRow>) {
            out.extend(self.0.iter().cloned());
        }
    }

    #[test]
    fn snapshot_sorts_and_merges_a_domain_listed_twice() {
        let old = DomainMetrics::new("b.example");
        let _old_session = old.open_session(addr(7), SystemTime::now());
        old.counters().stanza_in(3);
        let new = DomainMetrics::new("b.example");
        new.counters().stanza_in(4);
        let a = DomainMetrics::new("a.example");
        let mut second_old_row = DomainRow::new(&old, DomainState::Detached);
        second_old_row.queue_stanzas = 5;
        let rows = Rows(vec![
            DomainRow::new(&old, DomainState::Detached),
            DomainRow::new(&new, DomainState::Offline).with_upstream(&new, false, None),
            DomainRow::new(&a, DomainState::Offline),
            second_old_row,
        ]);
        let s = Snapshot::take(&rows, &Globals::new());
        let names: Vec<&str> = s.domains.iter().map(|r| &*r.domain).collect();
        assert_eq!(names, ["a.example", "b.example"]);
        let b = &s.domains[1];
        assert_eq!(b.state, DomainState::Offline);
        assert_eq!(b.totals.stanzas_in, 2, "the old metrics are counted once");
        assert_eq!(b.totals.bytes_in, 7);
        assert_eq!(b.connections(), 1);
        assert_eq!(b.queue_stanzas, 5);
        assert!(b.upstream.is_some());
    }
}

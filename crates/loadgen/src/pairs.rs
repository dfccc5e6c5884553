//! `throughput` and `latency` modes: sender → receiver component pairs on
//! blocking sockets, one OS thread per socket role.

use crate::json::{round, Obj};
use crate::proto::{self, io_err, is_timeout, Event, Scanner, StanzaBuilder};
use crate::stats::{ms, now_ns, set_timer_slack_1ns, CpuWindow, Hist};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One sender → receiver pair.
#[derive(Debug, Clone)]
pub struct PairSpec {
    pub sender_domain: String,
    pub sender_secret: String,
    pub receiver_domain: String,
    pub receiver_secret: String,
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Load {
    /// Each sender sends `n` stanzas as fast as possible, `batch` per write,
    /// with at most `window` unresolved stanzas in flight (0 = unbounded).
    Throughput { n: u64, batch: usize, window: u64 },
    /// One write per stanza at `rate`/s for `duration`; the first `warmup`
    /// is not recorded. Sleep until `spin` before the due time, then spin.
    Latency {
        rate: f64,
        duration: Duration,
        warmup: Duration,
        spin: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct PairCfg {
    pub load: Load,
    pub addr: String,
    pub recv_addr: String,
    pub addrs: Vec<SocketAddr>,
    pub recv_addrs: Vec<SocketAddr>,
    pub pairs: Vec<PairSpec>,
    pub stanza_bytes: usize,
    pub body_size: usize,
    pub timeout: Duration,
    /// After the senders finish, how long a receiver waits without any new
    /// data before declaring the rest lost.
    pub drain: Duration,
    pub server_pid: Option<u32>,
    /// Raw mode: no XMPP; receivers are accepted on this address.
    pub raw_listen: Option<Vec<SocketAddr>>,
}

/// State shared by the threads of one pair.
struct Shared {
    /// Stanzas written so far.
    sent: AtomicU64,
    /// Stanzas delivered to the receiver (unique) or bounced back.
    resolved: AtomicU64,
    sender_done: AtomicBool,
    /// Tells the sender-side reader to stop.
    stop: AtomicBool,
    /// Latency is recorded for stanzas sent at or after this time.
    record_from_ns: AtomicU64,
    window: u64,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Shared {
    fn notify(&self) {
        if self.window > 0 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cv.notify_all();
        }
    }
}

/// Per-sender sequence bookkeeping: duplicates, reordering, uniques.
#[derive(Default)]
struct SeqState {
    seen: Vec<u64>,
    max: Option<u64>,
}

const MAX_SEQ: u64 = 1 << 34;
const MAX_SENDERS: u64 = 4096;

enum SeqClass {
    New { reordered: bool },
    Dup,
    Bogus,
}

#[derive(Default)]
struct SeqTracker {
    senders: Vec<SeqState>,
}

impl SeqTracker {
    fn with_expected(sender: u64, n: u64) -> Self {
        let mut t = SeqTracker::default();
        if sender < MAX_SENDERS {
            t.senders
                .resize_with(sender as usize + 1, SeqState::default);
            t.senders[sender as usize].seen = vec![0; (n.min(MAX_SEQ) as usize).div_ceil(64)];
        }
        t
    }

    fn record(&mut self, sender: u64, seq: u64) -> SeqClass {
        if sender >= MAX_SENDERS || seq >= MAX_SEQ {
            return SeqClass::Bogus;
        }
        if self.senders.len() <= sender as usize {
            self.senders
                .resize_with(sender as usize + 1, SeqState::default);
        }
        let st = &mut self.senders[sender as usize];
        let word = (seq / 64) as usize;
        if st.seen.len() <= word {
            st.seen.resize((word + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (seq % 64);
        if st.seen[word] & bit != 0 {
            return SeqClass::Dup;
        }
        st.seen[word] |= bit;
        let reordered = st.max.is_some_and(|m| seq < m);
        if !reordered {
            st.max = Some(seq);
        }
        SeqClass::New { reordered }
    }
}

#[derive(Default)]
struct RecvOut {
    /// Non-error messages received (including duplicates).
    received: u64,
    unique: u64,
    dup: u64,
    reordered: u64,
    bounces: u64,
    /// Messages without a parsable marker.
    malformed: u64,
    /// Messages from another pair's sender.
    misrouted: u64,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    hist: Hist,
    timed_out: bool,
    errors: Vec<String>,
    bounce_samples: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn receiver(
    mut s: TcpStream,
    leftover: Vec<u8>,
    pair: u64,
    expected_n: u64,
    sh: Arc<Shared>,
    deadline: Instant,
    drain: Duration,
) -> RecvOut {
    let mut out = RecvOut {
        hist: Hist::new(),
        ..Default::default()
    };
    let mut seqs = SeqTracker::with_expected(pair, expected_n);
    let mut sc = Scanner::new(&leftover, 256 * 1024);
    let mut t_read = now_ns();
    let mut last_activity = Instant::now();
    let mut sender_done_seen: Option<Instant> = None;
    let mut unique_own = 0u64;
    loop {
        let before_unique = out.unique;
        let before_bounces = out.bounces;
        let record_from = sh.record_from_ns.load(Ordering::Relaxed);
        sc.process(|ev| match ev {
            Event::Message(m) => {
                let info = proto::analyze(m);
                if info.is_error {
                    out.bounces += 1;
                    if out.bounce_samples.len() < 2 {
                        out.bounce_samples.push(format!(
                            "receiver {pair} got a bounce: {}",
                            proto::snippet(m)
                        ));
                    }
                    return;
                }
                out.received += 1;
                let Some(mk) = info.marker else {
                    out.malformed += 1;
                    return;
                };
                if mk.sender != pair {
                    out.misrouted += 1;
                }
                match seqs.record(mk.sender, mk.seq) {
                    SeqClass::New { reordered } => {
                        out.unique += 1;
                        if mk.sender == pair {
                            unique_own += 1;
                        }
                        if reordered {
                            out.reordered += 1;
                        }
                    }
                    SeqClass::Dup => out.dup += 1,
                    SeqClass::Bogus => out.malformed += 1,
                }
                if mk.ns >= record_from {
                    out.hist.record(t_read.saturating_sub(mk.ns));
                }
            }
            Event::StreamError(e) => out.errors.push(format!("receiver {pair}: {e}")),
            Event::StreamEnd => out
                .errors
                .push(format!("receiver {pair}: server closed the stream")),
        });
        if out.unique != before_unique || out.bounces != before_bounces {
            out.first_ns.get_or_insert(t_read);
            out.last_ns = Some(t_read);
            last_activity = Instant::now();
            sh.resolved.fetch_add(
                (out.unique - before_unique) + (out.bounces - before_bounces),
                Ordering::Relaxed,
            );
            sh.notify();
        }
        if sc.closed {
            break;
        }
        if sh.sender_done.load(Ordering::Acquire) {
            if unique_own >= sh.sent.load(Ordering::Acquire) {
                break;
            }
            let done_at = *sender_done_seen.get_or_insert_with(Instant::now);
            if last_activity.max(done_at).elapsed() >= drain {
                break;
            }
        }
        if Instant::now() >= deadline {
            out.timed_out = true;
            break;
        }
        match s.read(sc.spare()) {
            Ok(0) => {
                out.errors.push(format!(
                    "receiver {pair}: connection closed by server{}",
                    if sc.pending().is_empty() {
                        String::new()
                    } else {
                        format!(" (pending: {})", proto::snippet(sc.pending()))
                    }
                ));
                break;
            }
            Ok(n) => {
                t_read = now_ns();
                sc.commit(n);
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                out.errors
                    .push(io_err(&format!("receiver {pair}: read failed"), &e));
                break;
            }
        }
    }
    out
}

#[derive(Default)]
struct SideOut {
    bounces: u64,
    unexpected: u64,
    errors: Vec<String>,
    bounce_samples: Vec<String>,
}

/// Reads the sender's own socket: bounces (`type='error'`) come back here.
fn sender_reader(mut s: TcpStream, leftover: Vec<u8>, pair: u64, sh: Arc<Shared>) -> SideOut {
    let mut out = SideOut::default();
    let mut sc = Scanner::new(&leftover, 64 * 1024);
    loop {
        let before = out.bounces;
        sc.process(|ev| match ev {
            Event::Message(m) => {
                if proto::analyze(m).is_error {
                    out.bounces += 1;
                    if out.bounce_samples.len() < 2 {
                        out.bounce_samples
                            .push(format!("sender {pair} got a bounce: {}", proto::snippet(m)));
                    }
                } else {
                    out.unexpected += 1;
                }
            }
            Event::StreamError(e) => out.errors.push(format!("sender {pair}: {e}")),
            Event::StreamEnd => out
                .errors
                .push(format!("sender {pair}: server closed the stream")),
        });
        if out.bounces != before {
            sh.resolved
                .fetch_add(out.bounces - before, Ordering::Relaxed);
            sh.notify();
        }
        if sc.closed || sh.stop.load(Ordering::Acquire) {
            break;
        }
        match s.read(sc.spare()) {
            Ok(0) => {
                if !sh.stop.load(Ordering::Acquire) {
                    out.errors
                        .push(format!("sender {pair}: connection closed by server"));
                }
                break;
            }
            Ok(n) => sc.commit(n),
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                out.errors
                    .push(io_err(&format!("sender {pair}: read failed"), &e));
                break;
            }
        }
    }
    out
}

#[derive(Default)]
struct SendOut {
    sent: u64,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    /// Stanzas sent after the warm-up (latency mode).
    measured: u64,
    measured_first_ns: Option<u64>,
    timed_out: bool,
    error: Option<String>,
    /// Latency mode: how late each write started relative to its schedule.
    lag: Option<Hist>,
}

fn throughput_sender(
    mut s: TcpStream,
    b: StanzaBuilder,
    n: u64,
    batch: usize,
    sh: Arc<Shared>,
    deadline: Instant,
) -> SendOut {
    let mut out = SendOut::default();
    let w = sh.window;
    let batch = if w > 0 {
        (batch as u64).min(w).max(1)
    } else {
        batch.max(1) as u64
    };
    let mut buf = Vec::with_capacity(batch as usize * (b.len_for(n, u64::MAX / 2) + 16));
    let mut seq = 0u64;
    while seq < n {
        if Instant::now() >= deadline {
            out.timed_out = true;
            break;
        }
        let k = batch.min(n - seq);
        if w > 0 {
            let mut g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            while seq + k > sh.resolved.load(Ordering::Relaxed) + w {
                if Instant::now() >= deadline {
                    out.timed_out = true;
                    break;
                }
                g = match sh.cv.wait_timeout(g, Duration::from_millis(20)) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
            drop(g);
            if out.timed_out {
                break;
            }
        }
        let ns = now_ns();
        buf.clear();
        for i in 0..k {
            b.push(&mut buf, seq + i, ns);
        }
        out.first_ns.get_or_insert(ns);
        if let Err(e) = proto::write_all_deadline(&mut s, &buf, deadline) {
            if e.starts_with("timed out") {
                out.timed_out = true;
            } else {
                out.error = Some(e);
            }
            // A partial batch may have gone out; count it as sent so that
            // it shows up as lost rather than disappearing.
            seq += k;
            sh.sent.store(seq, Ordering::Release);
            break;
        }
        seq += k;
        sh.sent.store(seq, Ordering::Release);
        out.last_ns = Some(now_ns());
    }
    out.sent = seq;
    sh.sender_done.store(true, Ordering::Release);
    sh.notify();
    out
}

/// Sleeps until `spin` before `target` (monotonic ns), then spins.
#[inline]
fn pace_until(target: u64, spin: u64) {
    loop {
        let now = now_ns();
        if now >= target {
            return;
        }
        let left = target - now;
        if left > spin {
            thread::sleep(Duration::from_nanos(left - spin));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn paced_sender(
    mut s: TcpStream,
    b: StanzaBuilder,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    spin: Duration,
    sh: Arc<Shared>,
    deadline: Instant,
) -> SendOut {
    let mut out = SendOut::default();
    set_timer_slack_1ns();
    let interval = 1e9 / rate;
    let t0 = now_ns() + 1_000_000;
    let warm_end = t0 + warmup.as_nanos() as u64;
    let end = t0 + duration.as_nanos() as u64;
    sh.record_from_ns.store(warm_end, Ordering::Release);
    let spin = spin.as_nanos() as u64;
    let mut buf = Vec::with_capacity(b.len_for(u64::MAX / 2, u64::MAX / 2) + 16);
    let mut k = 0u64;
    let mut lag = Hist::new();
    loop {
        let target = t0 + (k as f64 * interval) as u64;
        if target >= end {
            break;
        }
        if Instant::now() >= deadline {
            out.timed_out = true;
            break;
        }
        pace_until(target, spin);
        let ns = now_ns();
        lag.record(ns - target);
        buf.clear();
        b.push(&mut buf, k, ns);
        if let Err(e) = proto::write_all_deadline(&mut s, &buf, deadline) {
            if e.starts_with("timed out") {
                out.timed_out = true;
            } else {
                out.error = Some(e);
            }
            k += 1;
            sh.sent.store(k, Ordering::Release);
            break;
        }
        k += 1;
        sh.sent.store(k, Ordering::Release);
        out.first_ns.get_or_insert(ns);
        out.last_ns = Some(ns);
        if ns >= warm_end {
            out.measured += 1;
            out.measured_first_ns.get_or_insert(ns);
        }
    }
    out.sent = k;
    out.lag = Some(lag);
    sh.sender_done.store(true, Ordering::Release);
    out
}

fn close_stream(s: &mut TcpStream) {
    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = s.write_all(b"</stream:stream>");
}

type Conn = (TcpStream, Vec<u8>);

/// Raw mode (no XMPP): the receivers are the sockets accepted on
/// `--raw-listen`; each sender connects to `--addr` (the listener itself for
/// the "direct" baseline, or a byte relay in front of it), one pair at a time
/// so accept order matches pair order.
fn raw_setup(
    cfg: &PairCfg,
    listen: &[SocketAddr],
    receivers: &mut Vec<Conn>,
    senders: &mut Vec<Conn>,
    deadline: Instant,
) -> Result<(), String> {
    let l = std::net::TcpListener::bind(listen)
        .map_err(|e| io_err(&format!("bind --raw-listen {listen:?}"), &e))?;
    l.set_nonblocking(true)
        .map_err(|e| io_err("set_nonblocking", &e))?;
    let setup = |s: &TcpStream| -> std::io::Result<()> {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(proto::POLL))?;
        s.set_write_timeout(Some(proto::POLL))
    };
    for i in 0..cfg.pairs.len() {
        let mut last = String::from("no address");
        let mut sender = None;
        for a in &cfg.addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(a, left.max(Duration::from_millis(1))) {
                Ok(s) => {
                    sender = Some(s);
                    break;
                }
                Err(e) => last = io_err(&format!("raw sender {i}: connect to {a} failed"), &e),
            }
        }
        let sender = sender.ok_or(last)?;
        setup(&sender).map_err(|e| io_err("socket setup", &e))?;
        let receiver = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if is_timeout(&e) => {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "raw receiver {i}: nothing connected to --raw-listen before the timeout"
                        ));
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(io_err("accept failed", &e)),
            }
        };
        setup(&receiver).map_err(|e| io_err("socket setup", &e))?;
        senders.push((sender, Vec::new()));
        receivers.push((receiver, Vec::new()));
    }
    Ok(())
}

/// Runs `throughput` or `latency`. Returns the JSON report and exit code
/// (0 when the measurement ran, 1 when setup failed).
pub fn run(cfg: &PairCfg) -> (Obj, i32) {
    let mut o = Obj::new();
    let latency = matches!(cfg.load, Load::Latency { .. });
    o.set("mode", if latency { "latency" } else { "throughput" })
        .set("addr", cfg.addr.as_str())
        .set("recv_addr", cfg.recv_addr.as_str())
        .set("pairs", cfg.pairs.len())
        .set("stanza_bytes", cfg.stanza_bytes)
        .set("body_size", cfg.body_size)
        .set("raw", cfg.raw_listen.is_some());
    match cfg.load {
        Load::Throughput { n, batch, window } => {
            o.set("n_per_sender", n)
                .set("batch", batch)
                .set("window", window);
        }
        Load::Latency {
            rate,
            duration,
            warmup,
            spin,
        } => {
            o.set("rate_target", rate)
                .set("duration_s", duration.as_secs_f64())
                .set("warmup_s", warmup.as_secs_f64())
                .set("spin_us", spin.as_secs_f64() * 1e6);
        }
    }
    let deadline = Instant::now() + cfg.timeout;

    // Connect receivers first, so the server can route to them from the
    // first stanza on; then the senders.
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let setup = (|| -> Result<(), String> {
        if let Some(listen) = &cfg.raw_listen {
            return raw_setup(cfg, listen, &mut receivers, &mut senders, deadline);
        }
        for p in &cfg.pairs {
            receivers.push(proto::connect_component(
                &cfg.recv_addrs,
                &p.receiver_domain,
                &p.receiver_secret,
                deadline,
            )?);
        }
        for p in &cfg.pairs {
            senders.push(proto::connect_component(
                &cfg.addrs,
                &p.sender_domain,
                &p.sender_secret,
                deadline,
            )?);
        }
        Ok(())
    })();
    if let Err(e) = setup {
        eprintln!("loadgen: setup failed: {e}");
        o.set("ok", false).set("error", e);
        return (o, 1);
    }
    eprintln!(
        "loadgen: {} pair(s) connected{}",
        cfg.pairs.len(),
        if cfg.raw_listen.is_some() {
            " (raw, no XMPP)"
        } else {
            " and authenticated"
        }
    );

    let mut cpu = CpuWindow::start(cfg.server_pid);
    let t_start = Instant::now();
    let mut shared = Vec::new();
    let mut recv_handles = Vec::new();
    let mut side_handles = Vec::new();
    let mut send_handles = Vec::new();
    let mut keep = Vec::new();
    let (n, window) = match cfg.load {
        Load::Throughput { n, window, .. } => (n, window),
        Load::Latency { rate, duration, .. } => ((rate * duration.as_secs_f64()) as u64 + 1, 0),
    };
    for (i, ((rs, rl), (ss, sl))) in receivers.into_iter().zip(senders).enumerate() {
        let p = &cfg.pairs[i];
        let sh = Arc::new(Shared {
            sent: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
            sender_done: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            record_from_ns: AtomicU64::new(0),
            window,
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        shared.push(sh.clone());
        let clones = (|| -> std::io::Result<(TcpStream, TcpStream, TcpStream, TcpStream)> {
            Ok((
                rs.try_clone()?,
                ss.try_clone()?,
                ss.try_clone()?,
                rs.try_clone()?,
            ))
        })();
        let (rs2, ss_read, ss_write, rs_keep) = match clones {
            Ok(c) => c,
            Err(e) => {
                let e = io_err("socket clone failed", &e);
                o.set("ok", false).set("error", e);
                return (o, 1);
            }
        };
        keep.push(rs_keep);
        keep.push(ss);
        let pair = i as u64;
        let drain = cfg.drain;
        let shr = sh.clone();
        recv_handles.push(thread::spawn(move || {
            receiver(rs2, rl, pair, n, shr, deadline, drain)
        }));
        let shs = sh.clone();
        side_handles.push(thread::spawn(move || sender_reader(ss_read, sl, pair, shs)));
        let b = StanzaBuilder::new(
            &format!("s{i}@{}", p.sender_domain),
            &format!("r{i}@{}", p.receiver_domain),
            pair,
            cfg.stanza_bytes,
        );
        let shs = sh.clone();
        let load = cfg.load.clone();
        send_handles.push(thread::spawn(move || match load {
            Load::Throughput { n, batch, .. } => {
                throughput_sender(ss_write, b, n, batch, shs, deadline)
            }
            Load::Latency {
                rate,
                duration,
                warmup,
                spin,
            } => paced_sender(ss_write, b, rate, duration, warmup, spin, shs, deadline),
        }));
    }
    eprintln!("loadgen: sending");

    let mut errors: Vec<String> = Vec::new();
    let mut sends = Vec::new();
    for (i, h) in send_handles.into_iter().enumerate() {
        match h.join() {
            Ok(s) => sends.push(s),
            Err(_) => {
                errors.push(format!("sender {i} thread panicked"));
                shared[i].sender_done.store(true, Ordering::Release);
                sends.push(SendOut::default());
            }
        }
    }
    let mut recvs = Vec::new();
    for (i, h) in recv_handles.into_iter().enumerate() {
        match h.join() {
            Ok(r) => recvs.push(r),
            Err(_) => {
                errors.push(format!("receiver {i} thread panicked"));
                recvs.push(RecvOut::default());
            }
        }
    }
    let (server_cpu, self_cpu) = cpu.stop();
    let t_end = Instant::now();
    for sh in &shared {
        sh.stop.store(true, Ordering::Release);
    }
    let mut sides = Vec::new();
    for (i, h) in side_handles.into_iter().enumerate() {
        match h.join() {
            Ok(s) => sides.push(s),
            Err(_) => errors.push(format!("sender reader {i} thread panicked")),
        }
    }
    for s in &mut keep {
        close_stream(s);
    }

    // Aggregate.
    let sent: u64 = sends.iter().map(|s| s.sent).sum();
    let received: u64 = recvs.iter().map(|r| r.received).sum();
    let unique: u64 = recvs.iter().map(|r| r.unique).sum();
    let dup: u64 = recvs.iter().map(|r| r.dup).sum();
    let reordered: u64 = recvs.iter().map(|r| r.reordered).sum();
    let malformed: u64 = recvs.iter().map(|r| r.malformed).sum();
    let misrouted: u64 = recvs.iter().map(|r| r.misrouted).sum();
    let bounces: u64 =
        recvs.iter().map(|r| r.bounces).sum::<u64>() + sides.iter().map(|s| s.bounces).sum::<u64>();
    let unexpected: u64 = sides.iter().map(|s| s.unexpected).sum();
    let timed_out = sends.iter().any(|s| s.timed_out) || recvs.iter().any(|r| r.timed_out);
    for s in &sends {
        errors.extend(s.error.clone());
    }
    for r in &mut recvs {
        errors.append(&mut r.errors);
    }
    for s in &mut sides {
        errors.append(&mut s.errors);
    }
    let stream_errors = errors.len() as u64;
    let mut bounce_samples: Vec<String> = Vec::new();
    for r in &mut recvs {
        bounce_samples.append(&mut r.bounce_samples);
    }
    for s in &mut sides {
        bounce_samples.append(&mut s.bounce_samples);
    }
    bounce_samples.truncate(4);
    let mut hist = Hist::new();
    for r in &recvs {
        hist.merge(&r.hist);
    }
    let lost = sent.saturating_sub(unique);
    let first_send = sends.iter().filter_map(|s| s.first_ns).min();
    let last_send = sends.iter().filter_map(|s| s.last_ns).max();
    let last_recv = recvs.iter().filter_map(|r| r.last_ns).max();
    let secs = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1e9),
        _ => None,
    };
    let recv_s = secs(first_send, last_recv);
    let send_s = secs(first_send, last_send);
    let window_s = (t_end - t_start).as_secs_f64();
    let total_errors = bounces + stream_errors + malformed + unexpected;

    o.set("sent", sent)
        .set("received", received)
        .set("unique", unique)
        .set("lost", lost)
        .set("duplicated", dup)
        .set("reordered", reordered)
        .set("errors", total_errors)
        .set("bounces", bounces)
        .set("stream_errors", stream_errors)
        .set("malformed", malformed)
        .set("misrouted", misrouted)
        .set("unexpected_to_sender", unexpected)
        .set("timed_out", timed_out)
        .set("elapsed_s", round(window_s, 6))
        .set("send_s", send_s.map(|v| round(v, 6)))
        .set("recv_s", recv_s.map(|v| round(v, 6)));
    match cfg.load {
        Load::Throughput { .. } => {
            let rate = recv_s.map(|s| received as f64 / s);
            let send_rate = send_s.map(|s| sent as f64 / s);
            o.set("rate", rate.map(|v| round(v, 1)))
                .set("send_rate", send_rate.map(|v| round(v, 1)))
                .set(
                    "mb_per_s",
                    rate.map(|r| round(r * cfg.stanza_bytes as f64 / 1e6, 2)),
                )
                .set("loaded_p50_ms", ms(hist.quantile(0.5)))
                .set("loaded_p99_ms", ms(hist.quantile(0.99)))
                .set("loaded_max_ms", ms((hist.n > 0).then_some(hist.max)));
        }
        Load::Latency { rate, .. } => {
            let s0 = &sends[0];
            let achieved = match (s0.first_ns, s0.last_ns) {
                (Some(a), Some(b)) if b > a && s0.sent > 1 => {
                    Some((s0.sent - 1) as f64 * 1e9 / (b - a) as f64)
                }
                _ => None,
            };
            let achieved_measured = match (s0.measured_first_ns, s0.last_ns) {
                (Some(a), Some(b)) if b > a && s0.measured > 1 => {
                    Some((s0.measured - 1) as f64 * 1e9 / (b - a) as f64)
                }
                _ => None,
            };
            o.set("achieved_rate", achieved.map(|v| round(v, 1)))
                .set(
                    "achieved_rate_measured",
                    achieved_measured.map(|v| round(v, 1)),
                )
                .set(
                    "rate_ok",
                    achieved_measured.is_some_and(|a| a >= rate * 0.99),
                )
                .set(
                    "send_lag_p50_us",
                    s0.lag
                        .as_ref()
                        .and_then(|h| h.quantile(0.5))
                        .map(|v| round(v as f64 / 1e3, 3)),
                )
                .set(
                    "send_lag_p99_us",
                    s0.lag
                        .as_ref()
                        .and_then(|h| h.quantile(0.99))
                        .map(|v| round(v as f64 / 1e3, 3)),
                )
                .set("recorded", hist.n)
                .set("min_ms", ms((hist.n > 0).then_some(hist.min)))
                .set("mean_ms", hist.mean().map(|m| round(m / 1e6, 6)))
                .set("p50_ms", ms(hist.quantile(0.5)))
                .set("p90_ms", ms(hist.quantile(0.9)))
                .set("p99_ms", ms(hist.quantile(0.99)))
                .set("p999_ms", ms(hist.quantile(0.999)))
                .set("max_ms", ms((hist.n > 0).then_some(hist.max)));
        }
    }
    o.set("server_pid", cfg.server_pid)
        .set("server_cpu_s", server_cpu.map(|v| round(v, 3)))
        .set(
            "server_cpu_us_per_stanza",
            server_cpu.and_then(|c| (received > 0).then(|| round(c * 1e6 / received as f64, 4))),
        )
        .set(
            "server_cpu_cores",
            server_cpu.map(|c| round(c / window_s.max(1e-9), 3)),
        )
        .set("loadgen_cpu_s", self_cpu.map(|v| round(v, 3)))
        .set("cpu_error", cpu.error.clone());
    let ok = lost == 0 && dup == 0 && reordered == 0 && total_errors == 0 && !timed_out && sent > 0;
    errors.truncate(20);
    o.set("error_messages", errors)
        .set("bounce_samples", bounce_samples)
        .set("ok", ok);
    (o, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_classifies() {
        let mut t = SeqTracker::with_expected(0, 10);
        assert!(matches!(t.record(0, 0), SeqClass::New { reordered: false }));
        assert!(matches!(t.record(0, 2), SeqClass::New { reordered: false }));
        assert!(matches!(t.record(0, 1), SeqClass::New { reordered: true }));
        assert!(matches!(t.record(0, 2), SeqClass::Dup));
        assert!(matches!(
            t.record(0, 1000),
            SeqClass::New { reordered: false }
        ));
        assert!(matches!(t.record(3, 5), SeqClass::New { reordered: false }));
        assert!(matches!(t.record(0, MAX_SEQ), SeqClass::Bogus));
        assert!(matches!(t.record(MAX_SENDERS, 0), SeqClass::Bogus));
    }
}

//! Black-box abuse tests (docs/behaviour.md#limits): what peers send cannot crash the
//! daemon, grow it without bound or slow down healthy sessions.
//!
//! Each test starts its own daemon with small limits so it runs fast, bounds
//! every wait, and prints the daemon's resident memory (VmRSS) where memory is
//! the point (`cargo test --test abuse -- --nocapture` shows the figures). The
//! heavy variants are `#[ignore]`d: `scripts/abuse-heavy.sh` runs them in
//! release mode (1 GB of maximum-size stanzas).
//!
//! Also here: liveness (whitespace keepalive on idle sessions) and
//! `max_connections`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::comp::{Comp, CompRx, Got};
use test_support::daemon::{mib, Daemon, RssPeak};
use test_support::events::event;
use test_support::inspect::{attr, stanza_error_condition};
use test_support::stanza::{header, message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

/// `a`, `b`, `c`: components that connect; `off`: attached, never connected.
const COMPONENTS: &str = r#"
[components."a.example"]
secret = "sa"

[components."b.example"]
secret = "sb"

[components."c.example"]
secret = "sc"

[components."off.example"]
secret = "so"
"#;

fn start(top: &str) -> Daemon {
    Daemon::start(&format!("{top}\n{COMPONENTS}"))
}

/// Raise this process's open-files soft limit (the daemon inherits it).
fn raise_nofile(want: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
        }
    }
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Log in and split the connection, for tests that must send and receive at
/// the same time.
async fn login_split(d: &Daemon, domain: &str, secret: &str) -> (CompRx, OwnedWriteHalf) {
    Comp::login(d.addr(), domain, secret).await.into_split()
}

/// Write `chunks()` until it returns `None` or the router closes the connection.
async fn write_until_closed(
    mut wr: OwnedWriteHalf,
    mut chunks: impl FnMut() -> Option<Vec<u8>> + Send,
) -> usize {
    let mut sent = 0;
    while let Some(c) = chunks() {
        match timeout(Duration::from_secs(20), wr.write_all(&c)).await {
            Ok(Ok(())) => sent += c.len(),
            _ => break,
        }
    }
    sent
}

/// Read everything until EOF (or `t`); returns the bytes and whether EOF came.
async fn read_to_close(s: &mut TcpStream, t: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut tmp = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + t;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut tmp)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
        }
    }
}

// ===========================================================================
// Unauthenticated connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_idle_unauthenticated_connections_time_out_with_bounded_memory() {
    const N: usize = 1000;
    raise_nofile(4 * N as u64 + 256);
    let d = start("handshake_timeout = 2");
    let before = d.rss_kib();
    let peak = RssPeak::start(d.pid());
    // Half send nothing at all, half a valid stream header and then nothing.
    let mut conns = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = TcpStream::connect(d.addr()).await.expect("connect");
        if i % 2 == 1 {
            s.write_all(header("a.example").as_bytes()).await.unwrap();
        }
        conns.push((Instant::now(), s));
    }
    let opened = Instant::now();
    // All open; let the daemon settle, then measure.
    sleep(Duration::from_millis(800)).await;
    let during = d.rss_kib();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (t0, mut s)) in conns.into_iter().enumerate() {
        tasks.spawn(async move {
            let (bytes, eof) = read_to_close(&mut s, Duration::from_secs(8)).await;
            (i, t0.elapsed(), bytes, eof)
        });
    }
    let mut lifetimes = Vec::with_capacity(N);
    while let Some(r) = tasks.join_next().await {
        let (i, life, bytes, eof) = r.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(eof, "connection {i} still open after {life:?}");
        assert!(
            text.contains("<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
            "connection {i}: {text}"
        );
        assert!(text.ends_with("</stream:stream>"), "connection {i}: {text}");
        lifetimes.push(life);
    }
    let all_closed = opened.elapsed();
    sleep(Duration::from_millis(500)).await;
    let after = d.rss_kib();
    let peak = peak.finish();
    lifetimes.sort();
    eprintln!(
        "{N} idle unauthenticated connections: VmRSS before {:.1} MiB, while open {:.1} MiB (peak {:.1} MiB, {:.1} KiB per connection), after they timed out {:.1} MiB; lifetimes {:?}..{:?}",
        mib(before),
        mib(during),
        mib(peak),
        (during.saturating_sub(before)) as f64 / N as f64,
        mib(after),
        lifetimes[0],
        lifetimes[N - 1],
    );
    // Closed by the 2 s timeout: not before it, and not long after.
    assert!(lifetimes[0] >= Duration::from_millis(1900), "{lifetimes:?}");
    assert!(lifetimes[N - 1] <= Duration::from_secs(5), "{lifetimes:?}");
    assert!(all_closed < Duration::from_secs(8));
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "RSS grew by {:.1} MiB",
        mib(peak - before)
    );
    // Everything was released (within allocator slack).
    assert!(
        after.saturating_sub(before) < 32 * 1024,
        "RSS after {:.1} MiB",
        mib(after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_cannot_outlive_the_handshake_timeout() {
    let d = start("handshake_timeout = 3");
    // Three ways to trickle one byte per second: the header itself, a handshake
    // after a complete header, and whitespace after a complete header.
    let trickles: [(&str, String); 3] = [
        ("header", header("a.example")),
        (
            "handshake",
            format!(
                "{}<handshake>{}</handshake>",
                header("a.example"),
                "0".repeat(40)
            ),
        ),
        (
            "whitespace",
            format!("{}{}", header("a.example"), " ".repeat(100)),
        ),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (name, bytes) in trickles {
        let addr = d.addr();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let (mut rd, mut wr) = s.into_split();
            let quick = if name == "header" {
                0
            } else {
                header("a.example").len()
            };
            let writer = tokio::spawn(async move {
                let b = bytes.as_bytes();
                if wr.write_all(&b[..quick]).await.is_err() {
                    return 0;
                }
                let mut sent = 0;
                for &byte in &b[quick..] {
                    if wr.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    sent += 1;
                    sleep(Duration::from_secs(1)).await;
                }
                sent
            });
            let mut got = Vec::new();
            let mut tmp = [0u8; 1024];
            let closed = loop {
                match timeout(Duration::from_secs(10), rd.read(&mut tmp)).await {
                    Err(_) => break false,
                    Ok(Ok(0)) | Ok(Err(_)) => break true,
                    Ok(Ok(n)) => got.extend_from_slice(&tmp[..n]),
                }
            };
            let life = t0.elapsed();
            writer.abort();
            (
                name,
                closed,
                life,
                String::from_utf8_lossy(&got).to_string(),
            )
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (name, closed, life, got) = r.unwrap();
        eprintln!("slowloris {name}: closed after {life:?}");
        assert!(closed, "{name}: still open after {life:?}");
        assert!(
            got.contains("<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
            "{name}: {got}"
        );
        assert!(
            life >= Duration::from_millis(2900) && life < Duration::from_millis(4500),
            "{name}: closed after {life:?}"
        );
    }
}

/// Before authentication the stream header and `<handshake/>` are limited to
/// 4 KiB and reads stay small, so a peer without a secret holds a few KiB:
/// first 1,000 connections each hold a header just under the limit, then 300
/// more each send an unterminated 500 KB header (125 attributes of 4000 bytes:
/// under `max_stanza_size`, `max_attributes` and the token limit) and wait: each gets `policy-violation` once 4 KiB have arrived, instead of
/// holding the 500 KB until `handshake_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_peers_with_huge_headers_cost_a_few_kib_each() {
    const HOLD: usize = 1000;
    const HUGE: usize = 300;
    const HUGE_HEADER: usize = 500_000;
    raise_nofile(4 * (HOLD + HUGE) as u64 + 256);
    let d = start("handshake_timeout = 60");
    let before = d.rss_kib();
    let peak = RssPeak::start(d.pid());
    let open = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='a.example' x='";
    let almost = format!("{open}{}", "p".repeat(4000 - open.len()));
    let mut held = Vec::with_capacity(HOLD);
    for _ in 0..HOLD {
        let mut s = TcpStream::connect(d.addr()).await.expect("connect");
        s.write_all(almost.as_bytes()).await.unwrap();
        held.push(s);
    }
    sleep(Duration::from_millis(1000)).await;
    let holding = d.rss_kib();
    let per_conn = holding.saturating_sub(before) as f64 / HOLD as f64;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..HUGE {
        let addr = d.addr();
        let open = open.to_string();
        tasks.spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let (mut rd, mut wr) = s.split();
            let write = async {
                // Attributes of 4000 bytes: each within the 8 KiB token
                // limit, and fewer than max_attributes.
                let mut header = open.into_bytes();
                header.extend_from_slice(b"x'");
                let mut i = 0;
                while header.len() < HUGE_HEADER {
                    header.extend_from_slice(format!(" a{i}='{}'", "h".repeat(4000)).as_bytes());
                    i += 1;
                }
                // The router may close before it has all of it.
                let _ = wr.write_all(&header).await;
            };
            let read = async {
                let mut got = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    match timeout(Duration::from_secs(5), rd.read(&mut tmp)).await {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                        Ok(Ok(n)) => got.extend_from_slice(&tmp[..n]),
                    }
                }
                String::from_utf8_lossy(&got).into_owned()
            };
            let ((), got) = tokio::join!(write, read);
            got
        });
    }
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        let got = r.unwrap();
        if got.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") {
            refused += 1;
        }
    }
    let peak = peak.finish();
    eprintln!(
        "{HOLD} unauthenticated connections holding a 4000-byte unterminated header: VmRSS before {:.1} MiB, while held {:.1} MiB ({per_conn:.1} KiB per connection); then {HUGE} unterminated {HUGE_HEADER}-byte headers: {refused} refused with policy-violation; peak {:.1} MiB (+{:.1} MiB)",
        mib(before),
        mib(holding),
        mib(peak),
        mib(peak.saturating_sub(before))
    );
    assert_eq!(refused, HUGE, "huge headers not refused");
    // What an idle connection costs (its tasks, queue and socket state), not
    // the header's size.
    assert!(per_conn < 24.0, "{per_conn:.1} KiB per connection");
    assert!(
        peak.saturating_sub(before) < 48 * 1024,
        "RSS grew by {:.1} MiB",
        mib(peak - before)
    );
    drop(held);
}

// ===========================================================================
// Garbage next to a healthy pair.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_bytes_on_200_connections_do_not_disturb_a_healthy_pair() {
    const GARBAGE_CONNS: usize = 200;
    const STANZAS: usize = 10_000;
    raise_nofile(4096);
    let d = start("handshake_timeout = 2");
    let stop = Arc::new(AtomicBool::new(false));
    let garbage_conns = Arc::new(AtomicU64::new(0));
    let garbage_bytes = Arc::new(AtomicU64::new(0));
    let mut garbage = tokio::task::JoinSet::new();
    for g in 0..GARBAGE_CONNS {
        let (addr, stop) = (d.addr(), stop.clone());
        let (conns, total) = (garbage_conns.clone(), garbage_bytes.clone());
        garbage.spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (g as u64 + 1));
            while !stop.load(Ordering::Relaxed) {
                let Ok(s) = TcpStream::connect(addr).await else {
                    sleep(Duration::from_millis(20)).await;
                    continue;
                };
                conns.fetch_add(1, Ordering::Relaxed);
                let (mut rd, mut wr) = s.into_split();
                // Drain whatever the router answers, so it never waits on us.
                let drain = tokio::spawn(async move {
                    let mut tmp = [0u8; 4096];
                    while let Ok(Ok(n)) = timeout(Duration::from_secs(5), rd.read(&mut tmp)).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
                // Some start with a valid header, so the garbage reaches the
                // header-and-handshake phase too; at most 64 KiB per connection.
                if rng.below(3) == 0 {
                    let _ = wr.write_all(header("a.example").as_bytes()).await;
                }
                let mut budget = 64 * 1024;
                while budget > 0 && !stop.load(Ordering::Relaxed) {
                    let n = (1 + rng.below(2048) as usize).min(budget);
                    let mut chunk = rng.bytes(n);
                    // Sprinkle markup so the parser gets past the first byte.
                    for b in chunk.iter_mut() {
                        match rng.below(16) {
                            0 => *b = b'<',
                            1 => *b = b'>',
                            2 => *b = b'\'',
                            3 => *b = b'=',
                            _ => {}
                        }
                    }
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                    total.fetch_add(n as u64, Ordering::Relaxed);
                    budget -= n;
                    sleep(Duration::from_millis(rng.below(20))).await;
                }
                drop(wr);
                let _ = drain.await;
            }
        });
    }
    sleep(Duration::from_millis(300)).await;

    let (mut a_rx, mut a_wr) = login_split(&d, "a.example", "sa").await;
    let (mut b_rx, _b_wr) = login_split(&d, "b.example", "sb").await;
    let t0 = Instant::now();
    // At most 1000 stanzas unreceived: however slowly this busy test process
    // reads, b's queue (4096) cannot fill, so any loss or bounce is the router's.
    let window = Arc::new(tokio::sync::Semaphore::new(1000));
    let credit = window.clone();
    let sender = tokio::spawn(async move {
        let mut batch = String::new();
        for i in 0..STANZAS {
            credit.acquire().await.unwrap().forget();
            batch.push_str(&message("x@a.example", "y@b.example", i, "payload"));
            if i % 50 == 49 {
                a_wr.write_all(batch.as_bytes()).await.unwrap();
                batch.clear();
            }
        }
        a_wr.write_all(batch.as_bytes()).await.unwrap();
        a_wr
    });
    let mut next = 0;
    while next < STANZAS {
        match b_rx.recv_timeout(Duration::from_secs(30)).await {
            Got::Stanza(s) => {
                assert_eq!(s, message("x@a.example", "y@b.example", next, "payload"));
                window.add_permits(1);
                next += 1;
            }
            other => panic!("b got {other:?} after {next} stanzas"),
        }
    }
    let elapsed = t0.elapsed();
    let _a_wr = sender.await.unwrap();
    // Nothing bounced back to the sender.
    match a_rx.recv_timeout(Duration::from_millis(300)).await {
        Got::Timeout => {}
        other => panic!("the sender got {other:?}"),
    }
    stop.store(true, Ordering::Relaxed);
    while garbage.join_next().await.is_some() {}
    eprintln!(
        "{STANZAS} stanzas routed in {elapsed:?} next to {} garbage connections ({:.1} MiB of random bytes)",
        garbage_conns.load(Ordering::Relaxed),
        garbage_bytes.load(Ordering::Relaxed) as f64 / 1048576.0
    );
    assert!(garbage_conns.load(Ordering::Relaxed) >= GARBAGE_CONNS as u64);
    assert!(elapsed < Duration::from_secs(30));
    // The daemon is still alive and serving.
    let (_c_rx, _) = login_split(&d, "c.example", "sc").await;
}

// ===========================================================================
// Slow readers and floods.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_component_that_never_reads_gets_its_queue_bounded() {
    // The byte bound is the one that bites (9 KB stanzas, 256 KiB).
    let d = start("max_queue_bytes = 262144\nmax_queue_stanzas = 100000");
    let (mut a_rx, mut a_wr) = login_split(&d, "a.example", "sa").await;
    // b authenticates, then never reads again.
    let (_b_rx, _b_wr) = login_split(&d, "b.example", "sb").await;
    let (mut c_rx, _c_wr) = login_split(&d, "c.example", "sc").await;
    let before = d.rss_kib();
    let peak = RssPeak::start(d.pid());

    const TO_B: usize = 3000; // 27 MB: far beyond socket buffers plus the queue
    let filler = "f".repeat(9000);
    let sender = tokio::spawn(async move {
        let mut to_c = 0;
        for i in 0..TO_B {
            let mut w = message("x@a.example", "y@b.example", i, &filler);
            if i % 10 == 0 {
                w.push_str(&message("x@a.example", "z@c.example", to_c, "healthy"));
                to_c += 1;
            }
            if timeout(Duration::from_secs(20), a_wr.write_all(w.as_bytes()))
                .await
                .is_err()
            {
                panic!("the router stopped reading the sender after {i} stanzas");
            }
        }
        (a_wr, to_c)
    });
    // The sender reads its bounces while c reads its stanzas.
    let bounces = tokio::spawn(async move {
        let mut n = 0;
        loop {
            match a_rx.recv_timeout(Duration::from_secs(3)).await {
                Got::Stanza(s) => {
                    assert_eq!(attr(&s, "from").as_deref(), Some("y@b.example"), "{s}");
                    assert_eq!(
                        stanza_error_condition(&s).as_deref(),
                        Some("resource-constraint"),
                        "{s}"
                    );
                    n += 1;
                }
                Got::Timeout => return n,
                other => panic!("sender got {other:?}"),
            }
        }
    });
    let mut got_c = 0;
    let (a_wr, to_c) = loop {
        match c_rx.recv_timeout(Duration::from_millis(100)).await {
            Got::Stanza(s) => {
                assert_eq!(s, message("x@a.example", "z@c.example", got_c, "healthy"));
                got_c += 1;
            }
            Got::Timeout if sender.is_finished() => break sender.await.unwrap(),
            Got::Timeout => {}
            other => panic!("c got {other:?}"),
        }
    };
    while got_c < to_c {
        match c_rx.recv_timeout(Duration::from_secs(10)).await {
            Got::Stanza(_) => got_c += 1,
            other => panic!("c got {other:?} after {got_c} of {to_c}"),
        }
    }
    let bounced = bounces.await.unwrap();
    let peak = peak.finish();
    eprintln!(
        "never-reading component: {TO_B} stanzas of 9 KB sent to it, {bounced} bounced resource-constraint; c got all {to_c}; VmRSS before {:.1} MiB, peak {:.1} MiB",
        mib(before),
        mib(peak)
    );
    assert!(bounced > TO_B / 2, "only {bounced} bounces");
    // 27 MB went to b; the daemon holds at most the 256 KiB queue of it (plus
    // read buffers and allocator slack).
    assert!(
        peak.saturating_sub(before) < 24 * 1024,
        "RSS grew by {:.1} MiB",
        mib(peak - before)
    );
    drop(a_wr);
}

/// Send `n` stanzas to the offline component and read their `n` bounces.
async fn flood_offline(rx: &mut CompRx, wr: &mut OwnedWriteHalf, first_id: usize, n: usize) {
    let write = async {
        let mut batch = String::new();
        for i in first_id..first_id + n {
            batch.push_str(&format!(
                "<message from='x@a.example' to='y@off.example' id='{i}'/>"
            ));
            if batch.len() > 8192 {
                wr.write_all(batch.as_bytes()).await.unwrap();
                batch.clear();
            }
        }
        wr.write_all(batch.as_bytes()).await.unwrap();
    };
    let read = async {
        for next in first_id..first_id + n {
            match rx.recv_timeout(Duration::from_secs(20)).await {
                Got::Stanza(s) => {
                    assert_eq!(attr(&s, "id"), Some(next.to_string()), "{s}");
                    assert_eq!(
                        stanza_error_condition(&s).as_deref(),
                        Some("remote-server-timeout")
                    );
                }
                other => panic!("sender got {other:?} at bounce {next}"),
            }
        }
    };
    tokio::join!(write, read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_to_an_offline_component_bounces_without_growing() {
    const N: usize = 100_000;
    const ROUNDS: usize = 4;
    let d = start("");
    let (mut a_rx, mut a_wr) = login_split(&d, "a.example", "sa").await;
    let before = d.rss_kib();
    let peak = RssPeak::start(d.pid());
    let t0 = Instant::now();
    let mut series = Vec::new();
    for r in 0..ROUNDS {
        flood_offline(&mut a_rx, &mut a_wr, r * N / ROUNDS, N / ROUNDS).await;
        series.push(format!("{:.1}", mib(d.rss_kib())));
    }
    let elapsed = t0.elapsed();
    let peak = peak.finish();
    eprintln!(
        "{N} stanzas to an offline component: {N} bounces in {elapsed:?}; VmRSS before {:.1} MiB, after each {}k: {} MiB, peak {:.1} MiB",
        mib(before),
        N / ROUNDS / 1000,
        series.join(", "),
        mib(peak)
    );
    // What the flood can hold is the sender's own queue of bounces (4096
    // stanzas) and read buffers, whatever N is; more stanzas do not add.
    assert!(
        peak.saturating_sub(before) < 16 * 1024,
        "RSS grew by {:.1} MiB",
        mib(peak - before)
    );
}

/// A component that never reads sends stanzas whose `to` and `id` are full of
/// apostrophes, written raw inside double quotes (one byte each; re-escaped
/// as `&apos;` they would take six). Their bounces go to its own queue, which
/// holds at most `max_queue_bytes` (the waiting push waits for bytes as well
/// as for slots), so the router stops reading it (TCP back-pressure) instead
/// of holding bounces six times larger than what it read. Then it reads them
/// all: none lost, none much larger than the stanza it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounces_to_a_component_that_never_reads_are_bounded_by_max_queue_bytes() {
    const N: usize = 6000;
    let d = start(""); // max_queue_bytes 4 MiB, max_queue_stanzas 4096
    let (mut a_rx, mut a_wr) = login_split(&d, "a.example", "sa").await;
    let before = d.rss_kib();
    let peak = RssPeak::start(d.pid());
    // A valid resource of 1000 apostrophes; ids of 3000 (echoed) or, every
    // fourth stanza, 8000 (longer than any JID: left out of the bounce; the
    // 8 KiB token limit allows no more).
    let to = format!("y@off.example/{}", "'".repeat(1000));
    let stanza = |i: usize| {
        let id = format!("{i}-{}", "'".repeat(if i % 4 != 3 { 3000 } else { 8000 }));
        format!("<message from=\"x@a.example\" to=\"{to}\" id=\"{id}\" type=\"chat\"/>")
    };
    let sizes: Vec<usize> = (0..N).map(|i| stanza(i).len()).collect();
    let t0 = Instant::now();
    let mut sent = 0;
    let mut bytes_sent = 0;
    while sent < N {
        let s = stanza(sent);
        match timeout(Duration::from_secs(3), a_wr.write_all(s.as_bytes())).await {
            Ok(Ok(())) => {
                bytes_sent += s.len();
                sent += 1;
            }
            Ok(Err(e)) => panic!("write failed after {sent} stanzas: {e}"),
            // The router stopped reading us: back-pressure.
            Err(_) => break,
        }
    }
    let stalled = sent < N;
    sleep(Duration::from_millis(500)).await;
    let held = d.rss_kib();
    let peak = peak.finish();
    eprintln!(
        "never-reading sender: {sent} of {N} stanzas ({:.1} MB) written in {:?} before the router stopped reading (stalled: {stalled}); VmRSS before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB (+{:.1} MiB; bound: max_queue_bytes 4 MiB + buffers)",
        bytes_sent as f64 / 1e6,
        t0.elapsed(),
        mib(before),
        mib(held),
        mib(peak),
        mib(peak.saturating_sub(before))
    );
    assert!(
        peak.saturating_sub(before) < 16 * 1024,
        "RSS grew by {:.1} MiB",
        mib(peak - before)
    );
    // Now read every bounce: in order, each no larger than what it answers
    // (plus the error element), nothing lost.
    let mut worst = 0.0f64;
    for (i, &size) in sizes.iter().enumerate().take(sent) {
        let s = match a_rx.recv_timeout(Duration::from_secs(20)).await {
            Got::Stanza(s) => s,
            other => panic!("bounce {i} of {sent}: got {other:?}"),
        };
        assert_eq!(
            stanza_error_condition(&s).as_deref(),
            Some("remote-server-timeout"),
            "{s}"
        );
        let id = attr(&s, "id").map(|v| v.replace("&apos;", "'"));
        if i % 4 != 3 {
            let want = format!("{i}-{}", "'".repeat(3000));
            assert_eq!(id.as_deref(), Some(want.as_str()), "bounce {i}");
        } else {
            assert!(!s.contains(" id="), "an id longer than a JID was echoed");
        }
        assert!(
            s.len() <= size + 300,
            "bounce {i} is {} bytes for a stanza of {size}",
            s.len()
        );
        worst = worst.max(s.len() as f64 / size as f64);
    }
    eprintln!("all {sent} bounces read; largest bounce / stanza ratio {worst:.2}");
    assert!(
        stalled,
        "the router read all {N} stanzas ({:.1} MB) without reading a single bounce back: nothing bounded the bounces",
        bytes_sent as f64 / 1e6
    );
}

// ===========================================================================
// Oversized and pathological stanzas.

/// Send what `chunks` produces on a fresh session of `a.example`; expect the
/// stream error `policy-violation`; return the peak RSS growth in KiB.
async fn policy_violation_with_bounded_memory(
    d: &Daemon,
    what: &str,
    chunks: impl FnMut() -> Option<Vec<u8>> + Send + 'static,
) -> u64 {
    let (mut rx, wr) = login_split(d, "a.example", "sa").await;
    let before = d.rss_kib();
    let peak = RssPeak::start(d.pid());
    let writer = tokio::spawn(write_until_closed(wr, chunks));
    let cond = rx.stream_error_within(Duration::from_secs(20)).await;
    let sent = writer.await.unwrap();
    let peak = peak.finish();
    let grew = peak.saturating_sub(before);
    eprintln!(
        "{what}: {cond} after {:.1} MiB sent; VmRSS before {:.1} MiB, peak {:.1} MiB",
        sent as f64 / 1048576.0,
        mib(before),
        mib(peak)
    );
    assert_eq!(cond, "policy-violation", "{what}");
    grew
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pathological_stanzas_get_policy_violation_with_bounded_memory() {
    // The default limits: 512 KiB stanzas, depth 64, 256 attributes.
    let d = start("");
    let open = "<message from='x@a.example' to='y@b.example' id='evil'>";

    // Deep nesting: a million open elements (3 MB).
    let mut left = 1_000_000usize;
    let mut first = true;
    let grew = policy_violation_with_bounded_memory(&d, "1,000,000 nested elements", move || {
        if left == 0 {
            return None;
        }
        let n = left.min(20_000);
        left -= n;
        let mut v = if std::mem::take(&mut first) {
            open.as_bytes().to_vec()
        } else {
            Vec::new()
        };
        v.extend_from_slice("<a>".repeat(n).as_bytes());
        Some(v)
    })
    .await;
    assert!(grew < 16 * 1024, "grew {:.1} MiB", mib(grew));

    // One attribute value of 10 MB.
    let mut left = 10_000_000usize;
    let mut first = true;
    let grew = policy_violation_with_bounded_memory(&d, "a 10 MB attribute value", move || {
        if left == 0 {
            return None;
        }
        let n = left.min(64 * 1024);
        left -= n;
        let mut v = if std::mem::take(&mut first) {
            b"<message from='x@a.example' to='y@b.example' id='".to_vec()
        } else {
            Vec::new()
        };
        v.extend(std::iter::repeat_n(b'v', n));
        Some(v)
    })
    .await;
    assert!(grew < 16 * 1024, "grew {:.1} MiB", mib(grew));

    // 100,000 attributes on one element (about 1.4 MB of start tag).
    let mut i = 0usize;
    let grew = policy_violation_with_bounded_memory(&d, "100,000 attributes", move || {
        if i >= 100_000 {
            return None;
        }
        let mut s = if i == 0 {
            "<message from='x@a.example' to='y@b.example'".to_string()
        } else {
            String::new()
        };
        for _ in 0..5000 {
            s.push_str(&format!(" a{i}='x'"));
            i += 1;
        }
        Some(s.into_bytes())
    })
    .await;
    assert!(grew < 16 * 1024, "grew {:.1} MiB", mib(grew));

    // A stanza that never ends (stopped at 200 MB if the router never objects).
    let mut left = 200usize << 20;
    let mut first = true;
    let grew = policy_violation_with_bounded_memory(&d, "a stanza without end", move || {
        if left == 0 {
            return None;
        }
        left -= 64 * 1024;
        let mut v = if std::mem::take(&mut first) {
            format!("{open}<body>").into_bytes()
        } else {
            Vec::new()
        };
        v.extend(std::iter::repeat_n(b'z', 64 * 1024));
        Some(v)
    })
    .await;
    assert!(grew < 16 * 1024, "grew {:.1} MiB", mib(grew));

    // Still serving.
    let (mut b_rx, _b) = login_split(&d, "b.example", "sb").await;
    let (_c_rx, mut c_wr) = login_split(&d, "c.example", "sc").await;
    let m = message("z@c.example", "y@b.example", 1, "ok");
    c_wr.write_all(m.as_bytes()).await.unwrap();
    match b_rx.recv_timeout(Duration::from_secs(5)).await {
        Got::Stanza(s) => assert_eq!(s, m),
        other => panic!("b got {other:?}"),
    }
}

/// Route `total` bytes of stanzas each just under `max_stanza_size` (512 KiB,
/// the default) from a to b; b reads as fast as it can. The sender keeps at
/// most `WINDOW` stanzas unreceived (XEP-0114 has no flow control: a sender
/// faster than its receiver gets `resource-constraint` once the 4 MiB queue,
/// 8 such stanzas, is full), so every stanza must arrive, in order, and nothing
/// bounce. The daemon's RSS stays bounded by the limits, not by `total`.
async fn route_max_size_stanzas(total: usize) {
    const WINDOW: usize = 4;
    let d = start("");
    let (mut a_rx, mut a_wr) = login_split(&d, "a.example", "sa").await;
    let (mut b_rx, _b_wr) = login_split(&d, "b.example", "sb").await;
    let limit = 524_288;
    let head = "<message from='x@a.example' to='y@b.example' type='chat' id='";
    let stanza = move |i: usize| {
        let open = format!("{head}{i:08}'><body>");
        let close = "</body></message>";
        let mut s = String::with_capacity(limit);
        s.push_str(&open);
        s.extend(std::iter::repeat_n(
            'm',
            limit - 1 - open.len() - close.len(),
        ));
        s.push_str(close);
        s
    };
    assert_eq!(stanza(0).len(), limit - 1);
    let n = total.div_ceil(limit - 1);
    let before = d.rss_kib();
    let peak = RssPeak::start(d.pid());
    let t0 = Instant::now();
    let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
    let credit = window.clone();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            credit.acquire().await.unwrap().forget();
            a_wr.write_all(stanza(i).as_bytes()).await.unwrap();
        }
        a_wr
    });
    for i in 0..n {
        match b_rx.recv_timeout(Duration::from_secs(60)).await {
            Got::Stanza(s) => {
                window.add_permits(1);
                assert_eq!(s.len(), limit - 1);
                assert_eq!(
                    &s[head.len()..head.len() + 8],
                    format!("{i:08}"),
                    "out of order"
                );
            }
            other => panic!("b got {other:?} after {i} of {n}"),
        }
    }
    let elapsed = t0.elapsed();
    let _a_wr = sender.await.unwrap();
    let peak = peak.finish();
    match a_rx.recv_timeout(Duration::from_millis(200)).await {
        Got::Timeout => {}
        other => panic!("the sender got {other:?}"),
    }
    eprintln!(
        "{n} stanzas of {} bytes ({:.0} MB) routed in {elapsed:?} ({:.1} MB/s); VmRSS before {:.1} MiB, peak {:.1} MiB",
        limit - 1,
        (n * (limit - 1)) as f64 / 1e6,
        (n * (limit - 1)) as f64 / 1e6 / elapsed.as_secs_f64(),
        mib(before),
        mib(peak)
    );
    // Read buffer and one stanza in flight per side, the 4 MiB queue, the
    // writer's batch: bounded by the limits, whatever `total` is.
    assert!(
        peak.saturating_sub(before) < 48 * 1024,
        "RSS grew by {:.1} MiB",
        mib(peak - before)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_mb_of_max_size_stanzas_route_with_bounded_memory() {
    route_max_size_stanzas(64 << 20).await;
}

/// `scripts/abuse-heavy.sh` runs this in release mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "1 GB: run with scripts/abuse-heavy.sh (release mode)"]
async fn one_gb_of_max_size_stanzas_route_with_bounded_memory() {
    route_max_size_stanzas(1 << 30).await;
}

// ===========================================================================
// Deadlines and kills while the peer keeps sending.

/// Write whitespace (a legal keepalive) as fast as possible until `stop`, an
/// error or [`FLOOD_FOR`]; returns the bytes written.
async fn flood_whitespace(mut wr: OwnedWriteHalf, stop: Arc<AtomicBool>) -> usize {
    let chunk = vec![b' '; 256 * 1024];
    let mut sent = 0;
    let until = Instant::now() + FLOOD_FOR;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        match timeout(Duration::from_secs(1), wr.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => break,
            Err(_) => continue,
        }
    }
    sent
}

/// The flood runs at most this long; a deadline that only fires once the
/// flood stops shows up as a late stream error.
const FLOOD_FOR: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshake_timeout_fires_on_time_while_the_peer_floods() {
    let d = start("handshake_timeout = 1");
    let s = TcpStream::connect(d.addr()).await.unwrap();
    let (rd, mut wr) = s.into_split();
    wr.write_all(header("a.example").as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn(flood_whitespace(wr, stop.clone()));
    let mut rd = rd;
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    let closed_after = loop {
        match timeout(Duration::from_secs(15), rd.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break t0.elapsed(),
            Ok(Ok(n)) => {
                got.extend_from_slice(&tmp[..n]);
                if String::from_utf8_lossy(&got).ends_with("</stream:stream>") {
                    break t0.elapsed();
                }
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    let sent = flood.await.unwrap();
    let text = String::from_utf8_lossy(&got);
    eprintln!(
        "flooding unauthenticated peer: connection-timeout after {closed_after:?} (handshake_timeout 1 s) while it sent {:.0} MB of whitespace",
        sent as f64 / 1e6
    );
    assert!(
        text.contains("<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{text}"
    );
    assert!(
        closed_after < Duration::from_millis(2500),
        "connection-timeout came {closed_after:?} after the header (handshake_timeout 1 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflict_and_shutdown_take_effect_while_the_session_floods() {
    let mut d = start("");
    // Conflict: a floods; a second connection for a.example authenticates.
    let (mut old_rx, old_wr) = login_split(&d, "a.example", "sa").await;
    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn(flood_whitespace(old_wr, stop.clone()));
    sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let (_new_rx, _new_wr) = login_split(&d, "a.example", "sa").await;
    let cond = old_rx.stream_error_within(Duration::from_secs(15)).await;
    let kicked = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = flood.await.unwrap();
    eprintln!(
        "flooding session replaced: {cond} {kicked:?} after the new connection logged in ({:.0} MB of whitespace sent)",
        sent as f64 / 1e6
    );
    assert_eq!(cond, "conflict");
    assert!(
        kicked < Duration::from_millis(1500),
        "conflict after {kicked:?}"
    );

    // Shutdown: b floods; SIGTERM.
    let (mut b_rx, b_wr) = login_split(&d, "b.example", "sb").await;
    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn(flood_whitespace(b_wr, stop.clone()));
    sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let cond = b_rx.stream_error_within(Duration::from_secs(15)).await;
    let told = t0.elapsed();
    let status = d.wait(Duration::from_secs(10));
    let exited = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = flood.await;
    eprintln!("flooding session at shutdown: {cond} after {told:?}, daemon exited after {exited:?} ({status:?})");
    assert_eq!(cond, "system-shutdown");
    assert!(
        told < Duration::from_millis(1500),
        "system-shutdown after {told:?}"
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(exited < Duration::from_secs(5), "exited after {exited:?}");
}

// ===========================================================================
// max_connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_refused_until_others_close() {
    let d = start("max_connections = 5\nhandshake_timeout = 30");
    let mut open = Vec::new();
    for _ in 0..5 {
        let mut c = Comp::connect(d.addr()).await;
        match c.open("a.example").await {
            Got::Stanza(h) if h.starts_with("HEADER") && c.stream_id.is_some() => {}
            other => panic!("header refused: {other:?}"),
        }
        open.push(c);
    }
    // Number six: our header, resource-constraint, close; nothing read.
    for _ in 0..3 {
        let mut s = TcpStream::connect(d.addr()).await.unwrap();
        let (bytes, eof) = read_to_close(&mut s, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&bytes);
        assert!(eof, "not closed: {text}");
        assert!(
            text.starts_with("<?xml version='1.0'?><stream:stream "),
            "{text}"
        );
        assert!(
            text.contains("<stream:error><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Too many connections</text></stream:error></stream:stream>"),
            "{text}"
        );
    }
    assert!(d.wait_for_log(event("connection.refused"), Duration::from_secs(5)));
    // Rate-limited: three refusals, one line.
    sleep(Duration::from_millis(200)).await;
    assert_eq!(d.count_log(event("connection.refused")), 1, "{}", d.logs());
    // The refused ones did not disturb the open ones: one authenticates.
    let mut first = open.remove(0);
    match first.handshake("sa").await {
        Got::Stanza(s) if s == "<handshake/>" => {}
        other => panic!("{other:?}"),
    }
    // Two close; two new ones are accepted.
    drop(first);
    drop(open.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut accepted = 0;
    while accepted < 2 && Instant::now() < deadline {
        let mut c = Comp::connect(d.addr()).await;
        match c.open("b.example").await {
            // Accepted: our reply header has a stream id (a refusal's has none).
            Got::Stanza(h) if h.starts_with("HEADER") && c.stream_id.is_some() => {
                accepted += 1;
                open.push(c);
            }
            // The closes may not have been noticed yet.
            _ => sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        accepted, 2,
        "new connections not accepted after others closed"
    );
    // And the limit holds again.
    let mut s = TcpStream::connect(d.addr()).await.unwrap();
    let (bytes, eof) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        String::from_utf8_lossy(&bytes).contains("resource-constraint"),
        "eof {eof}: {:?}\n{}",
        String::from_utf8_lossy(&bytes),
        d.logs()
    );
}

// ===========================================================================
// Liveness.

/// Raw bytes the router sends within `t`.
async fn raw_for(s: &mut TcpStream, t: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut tmp = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + t;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut tmp)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&tmp[..n]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_get_a_whitespace_keepalive() {
    let d = start("keepalive_interval = 1");
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    let got = raw_for(&mut a.stream, Duration::from_millis(3500)).await;
    assert!(
        got.iter().all(|&b| b == b' '),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        (2..=4).contains(&got.len()),
        "{} keepalives in 3.5 s",
        got.len()
    );
    // Traffic resets the timer and keepalives do not disturb stanzas.
    let mut b = Comp::login(d.addr(), "b.example", "sb").await;
    for i in 0..6 {
        let m = message("x@a.example", "y@b.example", i, "k");
        a.send(&m).await;
        match b.recv().await {
            Got::Stanza(s) => assert_eq!(s, m),
            other => panic!("{other:?}"),
        }
        sleep(Duration::from_millis(400)).await;
    }

    // Off: silence.
    let d = start("keepalive_interval = 0");
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    let got = raw_for(&mut a.stream, Duration::from_millis(2500)).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

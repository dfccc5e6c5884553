//! Micro-benchmark of metrics: what counting costs per stanza, and what a scrape
//! costs with many domains: `cargo bench --bench metrics`.
//!
//! - `per_stanza`: 10,000 stanzas (198 bytes) counted on a connection's own
//!   `SessionMetrics` (`stanza_in`, as the reader does), next to the same loop
//!   without counting, and next to framing the same 10,000 stanzas with and
//!   without counting each one: the per-stanza work counting adds to.
//! - `contention`: the same counting from 1 and 2 threads, each on its own
//!   connection's counters (the design) or all on one shared set (what one
//!   counter per domain or per process would cost).
//! - `scrape_10000_domains`: 10,000 domains, each with a live connection, an
//!   upstream link and bounces: the snapshot alone, then `/metrics` in both
//!   formats and the `/status` document (snapshot plus encoding, what one request
//!   costs the blocking thread it runs on); bytes/s is of the output.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use test_support::xcr::metrics::{
    exposition, DomainMetrics, DomainRow, DomainState, Exporter, Format, Globals, SessionCounters,
    SessionMetrics, Source, StanzaErrorCondition,
};
use test_support::xcr::xml::{Frame, Framer, Limits};

const STANZAS: usize = 10_000;
const STANZA_BYTES: usize = 198;
const DOMAINS: usize = 10_000;

fn main() {
    divan::main();
}

fn session() -> SessionMetrics {
    DomainMetrics::new("a.bench.local")
        .open_session(SocketAddr::from(([127, 0, 0, 1], 1)), SystemTime::now())
}

mod per_stanza {
    use super::*;

    /// The loop alone (the baseline the counting adds to).
    #[divan::bench(sample_count = 200)]
    fn no_counting(bencher: Bencher) {
        bencher.counter(ItemsCount::new(STANZAS)).bench(|| {
            for _ in 0..STANZAS {
                black_box(STANZA_BYTES);
            }
        });
    }

    /// `stanza_in` on the connection's own counters.
    #[divan::bench(sample_count = 200)]
    fn session_counters(bencher: Bencher) {
        let s = session();
        bencher.counter(ItemsCount::new(STANZAS)).bench(|| {
            for _ in 0..STANZAS {
                s.stanza_in(black_box(STANZA_BYTES));
            }
        });
    }

    fn corpus() -> Vec<u8> {
        let mut c = String::from(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' to='a.bench.local'>",
        );
        for i in 0..STANZAS {
            let head = format!("<message from='s@a.bench.local' to='r@b.bench.local' type='chat' id='{i:08}'><body>");
            let tail = "</body></message>";
            c.push_str(&head);
            c.extend(std::iter::repeat_n(
                'x',
                STANZA_BYTES - head.len() - tail.len(),
            ));
            c.push_str(tail);
        }
        c.into_bytes()
    }

    fn frame(corpus: &[u8], count: Option<&SessionCounters>) -> usize {
        let mut framer = Framer::new(Limits::new(524_288));
        let mut n = 0;
        for piece in corpus.chunks(65_536) {
            framer.buf_mut().extend_from_slice(piece);
            while let Ok(Some(frame)) = framer.next_frame() {
                if let Frame::Stanza(s) = frame {
                    n += 1;
                    if let Some(c) = count {
                        c.stanza_in(STANZA_BYTES);
                    }
                    black_box(&s);
                }
            }
        }
        n
    }

    /// Framing 10,000 stanzas (64 KiB reads), no counting.
    #[divan::bench(sample_count = 40)]
    fn framing(bencher: Bencher) {
        let c = corpus();
        assert_eq!(frame(&c, None), STANZAS);
        bencher
            .counter(ItemsCount::new(STANZAS))
            .bench(|| frame(black_box(&c), None));
    }

    /// The same, counting every stanza on the connection's counters.
    #[divan::bench(sample_count = 40)]
    fn framing_and_counting(bencher: Bencher) {
        let c = corpus();
        let s = session();
        assert_eq!(frame(&c, Some(&s)), STANZAS);
        bencher
            .counter(ItemsCount::new(STANZAS))
            .bench(|| frame(black_box(&c), Some(&s)));
    }
}

mod contention {
    use super::*;

    thread_local! {
        static OWN: SessionMetrics = session();
    }

    fn shared() -> &'static SessionCounters {
        static SHARED: OnceLock<SessionCounters> = OnceLock::new();
        SHARED.get_or_init(SessionCounters::default)
    }

    /// Each thread counts on its own connection's counters.
    #[divan::bench(threads = [1, 2], sample_count = 100)]
    fn own_counters(bencher: Bencher) {
        bencher.counter(ItemsCount::new(STANZAS)).bench(|| {
            OWN.with(|s| {
                for _ in 0..STANZAS {
                    s.stanza_in(black_box(STANZA_BYTES));
                }
            })
        });
    }

    /// Every thread counts on one shared set of counters.
    #[divan::bench(threads = [1, 2], sample_count = 100)]
    fn one_shared_set(bencher: Bencher) {
        let s = shared();
        bencher.counter(ItemsCount::new(STANZAS)).bench(|| {
            for _ in 0..STANZAS {
                s.stanza_in(black_box(STANZA_BYTES));
            }
        });
    }
}

mod scrape_10000_domains {
    use super::*;

    /// What a daemon's source would hold: one `DomainMetrics` per domain, each
    /// with a live connection that counted traffic and bounces.
    struct Bench {
        domains: Vec<Arc<DomainMetrics>>,
        _sessions: Vec<SessionMetrics>,
    }

    impl Source for Bench {
        fn domains(&self, out: &mut Vec<DomainRow>) {
            let now = Instant::now();
            out.reserve(self.domains.len());
            for (i, d) in self.domains.iter().enumerate() {
                let mut r = DomainRow::new(d, DomainState::Connected).with_upstream(
                    d,
                    i % 10 != 0,
                    Some(now),
                );
                r.queue_stanzas = (i % 7) as u64;
                r.queue_bytes = (i % 7) as u64 * 198;
                out.push(r);
            }
        }
    }

    fn exporter() -> Arc<Exporter> {
        let mut domains = Vec::with_capacity(DOMAINS);
        let mut sessions = Vec::with_capacity(DOMAINS);
        for i in 0..DOMAINS {
            let d = DomainMetrics::new(&format!("component-{i:05}.example.org"));
            let s = d.open_session(
                SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 40_000)),
                SystemTime::now(),
            );
            s.stanza_in(198 * i);
            s.stanza_out(198);
            s.bounce(StanzaErrorCondition::ServiceUnavailable);
            d.upstream_attempt();
            domains.push(d);
            sessions.push(s);
        }
        let source = Arc::new(Bench {
            domains,
            _sessions: sessions,
        });
        Exporter::new(source, Globals::new())
    }

    #[divan::bench(sample_count = 20, sample_size = 1)]
    fn snapshot(bencher: Bencher) {
        let e = exporter();
        bencher
            .counter(ItemsCount::new(DOMAINS))
            .bench(|| e.snapshot().domains.len());
    }

    fn render(bencher: Bencher, f: impl Fn(&Exporter) -> String + Sync) {
        let e = exporter();
        let size = f(&e).len();
        bencher
            .counter(BytesCount::new(size))
            .counter(ItemsCount::new(DOMAINS))
            .bench(|| f(&e).len());
    }

    #[divan::bench(sample_count = 20, sample_size = 1)]
    fn prometheus_text(bencher: Bencher) {
        render(bencher, |e| {
            e.metrics(Format::Prometheus).unwrap_or_default()
        });
    }

    #[divan::bench(sample_count = 20, sample_size = 1)]
    fn openmetrics(bencher: Bencher) {
        render(bencher, |e| {
            e.metrics(Format::OpenMetrics).unwrap_or_default()
        });
    }

    /// Encoding alone, from a snapshot taken beforehand.
    #[divan::bench(sample_count = 20, sample_size = 1)]
    fn encode_only(bencher: Bencher) {
        let e = exporter();
        let snap = e.snapshot();
        bencher
            .counter(ItemsCount::new(DOMAINS))
            .with_inputs(|| snap.clone())
            .bench_values(|s| exposition::render(s, Format::Prometheus).map(|t| t.len()));
    }

    #[divan::bench(sample_count = 20, sample_size = 1)]
    fn status_json(bencher: Bencher) {
        render(bencher, |e| {
            serde_json::to_string(&e.status()).unwrap_or_default()
        });
    }
}

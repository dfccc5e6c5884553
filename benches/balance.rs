//! What choosing the connection costs per stanza for a balanced domain of k
//! connections, beside a domain with one connection: `cargo bench --bench
//! balance`.
//!
//! - `pick`: 10,000 stanzas from 300 bare JIDs (full JIDs of ~30 bytes, as a
//!   bridge's users), each routed to a member of a set of k connections:
//!   k = 1 takes the one member without hashing; k > 1 hashes the bare
//!   `from` once and weighs it against each member (rendezvous hashing).
//! - `frame`: framing the same 10,000 stanzas (198 bytes each, what the
//!   router does to every stanza anyway), for scale.
//!
//! Figures are per 10,000 stanzas; divide by 10,000 for the cost of one.

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use xmpp_component_router::balance::{pick_index, seed};
use xmpp_component_router::xml::{Frame, Framer, Limits};

const STANZAS: usize = 10_000;
const JIDS: usize = 300;

fn main() {
    divan::main();
}

fn froms() -> Vec<String> {
    (0..STANZAS)
        .map(|i| format!("user{}@irc.example.org/laptop", i % JIDS))
        .collect()
}

#[divan::bench(args = [1, 2, 3, 8, 16])]
fn pick(bencher: Bencher, k: u64) {
    let seeds: Vec<u64> = (1..=k).map(seed).collect();
    let froms = froms();
    bencher.counter(ItemsCount::new(STANZAS)).bench_local(|| {
        let mut sum = 0usize;
        for f in &froms {
            sum += pick_index(black_box(&seeds), Some(f.as_str()));
        }
        black_box(sum)
    });
}

#[divan::bench]
fn frame(bencher: Bencher) {
    let mut input = Vec::new();
    input.extend_from_slice(b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='b.bench.local'>");
    for i in 0..STANZAS {
        let s = format!(
            "<message from='user{}@irc.example.org/laptop' to='r0@b.bench.local' type='chat' id='{i:06}'><body>{}</body></message>",
            i % JIDS,
            "x".repeat(60)
        );
        input.extend_from_slice(s.as_bytes());
    }
    bencher.counter(ItemsCount::new(STANZAS)).bench_local(|| {
        let mut f = Framer::new(Limits::new(1 << 20));
        f.buf_mut().extend_from_slice(&input);
        let mut n = 0;
        while let Ok(Some(fr)) = f.next_frame() {
            if let Frame::Stanza(_) = fr {
                n += 1;
            }
        }
        black_box(n)
    });
}

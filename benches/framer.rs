//! Micro-benchmark of the stream framer (`xml::Framer`) on a fixed corpus, so that
//! regressions in the parsing hot path show as numbers: `cargo bench --bench framer`.
//!
//! Corpora (built in memory, identical on every run):
//! - `messages`: a component stream header, then 10,000 `<message/>` stanzas of the
//!   load generator's anchor shape (198 bytes each, 100-byte body with the
//!   `~t:<sender>:<seq>:<ns>;` marker), fed in chunks of 64 KiB (a full read), 4 KiB
//!   and 198 bytes (one stanza per read, as under paced load).
//! - `mixed`: the header, then 10,000 stanzas cycling through the anchor message, a
//!   presence with children, an iq with a nested pubsub payload, a message whose body
//!   is CDATA, a message with multibyte UTF-8 text, and one with entity references
//!   and an extension namespace; fed in 64 KiB chunks.
//!
//! Each iteration frames the whole corpus with a fresh `Framer` (as one connection
//! would) and checks the stanza count; divan reports items/s (stanzas) and bytes/s.

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use test_support::xcr::xml::{Frame, Framer, Limits};

const STANZAS: usize = 10_000;
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
xmlns:stream='http://etherx.jabber.org/streams' to='a.bench.local'>";

fn main() {
    divan::main();
}

/// One message of the anchor shape, exactly 198 bytes (100-byte body).
fn anchor_message(seq: usize) -> String {
    let head = format!(
        "<message from='s0@a.bench.local' to='r0@b.bench.local' type='chat' id='{seq}'><body>"
    );
    let tail = "</body></message>";
    let mut body = format!("~t:0:{seq}:{};", 1_000_000_000u64 + seq as u64 * 5_000);
    let pad = 198 - head.len() - tail.len() - body.len();
    body.extend(std::iter::repeat_n('x', pad));
    let s = format!("{head}{body}{tail}");
    debug_assert_eq!(s.len(), 198);
    s
}

fn mixed_stanza(i: usize) -> String {
    match i % 6 {
        0 => anchor_message(i),
        1 => format!(
            "<presence from='user{i}@a.bench.local/res' to='room@b.bench.local/nick'>\
             <show>away</show><status>Out for lunch, back at 14:00</status><priority>5</priority>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' \
             ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>"
        ),
        2 => format!(
            "<iq type='set' id='pub{i}' from='svc.a.bench.local' to='pubsub.b.bench.local'>\
             <pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:microblog:0'>\
             <item id='item-{i}'><entry xmlns='http://www.w3.org/2005/Atom'><title type='text'>Entry {i}</title>\
             <author><name>Bench</name><uri>xmpp:bench@a.bench.local</uri></author>\
             <published>2026-11-25T12:00:00Z</published><content type='text'>Nested payload \
             number {i}, a few levels deep.</content></entry></item></publish></pubsub></iq>"
        ),
        3 => format!(
            "<message from='bot@a.bench.local' to='user@b.bench.local' type='chat' id='cd{i}'>\
             <body><![CDATA[if (a < b && c > d) {{ return \"<tag>\"; }} // {i}]]></body></message>"
        ),
        4 => format!(
            "<message from='gw@a.bench.local' to='user@b.bench.local' type='chat' id='mb{i}' xml:lang='de'>\
             <body>Grüße aus Köln! Привет, мир. 你好，世界。こんにちは 🎉🚀 — №{i}</body></message>"
        ),
        _ => format!(
            "<message from='a@a.bench.local' to='b@b.bench.local' type='groupchat' id='en{i}'>\
             <body>Tom &amp; Jerry &lt;3 &quot;quotes&quot; &#x263A; &#9731;</body>\
             <x xmlns='jabber:x:oob'><url>https://example.org/f?a=1&amp;b=2</url></x>\
             <request xmlns='urn:xmpp:receipts'/></message>"
        ),
    }
}

fn corpus(f: impl Fn(usize) -> String) -> Vec<u8> {
    let mut c = String::from(HEADER);
    for i in 0..STANZAS {
        c.push_str(&f(i));
    }
    c.into_bytes()
}

/// Frames `corpus` fed in `chunk`-byte reads; returns the number of stanzas.
fn frame_all(corpus: &[u8], chunk: usize) -> usize {
    let mut framer = Framer::new(Limits::new(524_288));
    let mut stanzas = 0;
    for piece in corpus.chunks(chunk) {
        framer.buf_mut().extend_from_slice(piece);
        while let Some(frame) = framer.next_frame().expect("corpus is valid") {
            if let Frame::Stanza(s) = frame {
                stanzas += 1;
                black_box(&s);
            }
        }
    }
    stanzas
}

fn run(bencher: Bencher, corpus: Vec<u8>, chunk: usize) {
    assert_eq!(frame_all(&corpus, chunk), STANZAS, "framer lost stanzas");
    bencher
        .counter(BytesCount::new(corpus.len()))
        .counter(ItemsCount::new(STANZAS))
        .bench(|| frame_all(black_box(&corpus), chunk));
}

/// 10,000 anchor-shape messages (198 bytes each); argument: bytes per read.
#[divan::bench(args = [65536, 4096, 198], sample_count = 40)]
fn messages(bencher: Bencher, chunk: usize) {
    run(bencher, corpus(anchor_message), chunk);
}

/// 10,000 stanzas of six kinds (presence, nested iq, CDATA, multibyte, entities), 64 KiB reads.
#[divan::bench(sample_count = 40)]
fn mixed(bencher: Bencher) {
    run(bencher, corpus(mixed_stanza), 65536);
}

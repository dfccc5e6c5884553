//! The framer's cost on crafted worst-case inputs beside ordinary stanzas:
//! CPU per KB, in one process, side by side. `cargo bench --bench worst_case`
//! (`-- --rounds N` for more rounds, default 9; `-- --quick` for 3 rounds on
//! smaller inputs; `-- --only NAME` for one input beside `ordinary`).
//!
//! Each input is a component stream (header, then stanzas, all within the
//! default limits: `max_stanza_size` 512 KiB, 256 attributes, depth 64, 8 KiB
//! tokens) of about 4 MB, framed by a fresh `Framer` in 64 KiB reads, as a
//! connection's reads arrive; the CPU time of the framing thread
//! (`CLOCK_THREAD_CPUTIME_ID`) is taken per run. Rounds interleave the inputs,
//! and the figures are medians over rounds. The ratio is each input's median
//! over the median of `ordinary`; the worst ratio must stay under 10
//! (the process exits 1 otherwise).
//!
//! Inputs:
//! - `ordinary`: 198-byte `<message/>` stanzas (the load generator's shape).
//! - `namespaces`: stanzas declaring 254 prefixes bound to 1 KB URIs (each
//!   with a reference), then child tags each using all 254 prefixes.
//! - `namespaces-short`: the same with short URIs (more prefixed attributes
//!   per byte).
//! - `attributes`: child tags with 256 attributes each (`max_attributes`).
//! - `references`: text and attribute values made of references.
//! - `long-names`: element and attribute names of 8,000 bytes.
//! - `long-values`: attribute values of 8,000 bytes.
//! - `deep`: elements nested 64 deep, over and over.
//! - `handshake`: the namespace attack before authentication: a stream header
//!   and a 300 KB `<handshake>` carrying 255 prefix declarations and children
//!   using them all, a fresh framer (connection) each time.
//! - `dribbled`, `dribbled-namespaces`: `ordinary` and `namespaces-short`
//!   fed one byte per read.

use std::hint::black_box;
use xmpp_component_router::xml::{Frame, Framer, Limits};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
xmlns:stream='http://etherx.jabber.org/streams' to='a.bench.local'>";
const READ: usize = 64 * 1024;
const FROM_TO: &str = "from='s0@a.bench.local' to='r0@b.bench.local'";

/// One message of the anchor shape, exactly 198 bytes.
fn ordinary_stanza(seq: usize) -> String {
    let head = format!("<message {FROM_TO} type='chat' id='{seq}'><body>");
    let tail = "</body></message>";
    let mut body = format!("~t:0:{seq}:{};", 1_000_000_000u64 + seq as u64 * 5_000);
    let pad = 198 - head.len() - tail.len() - body.len();
    body.extend(std::iter::repeat_n('x', pad));
    format!("{head}{body}{tail}")
}

/// Stanzas made by `stanza(i)` after the header, to about `size` bytes.
fn stream(size: usize, stanza: impl Fn(usize) -> String) -> Vec<u8> {
    let mut s = String::from(HEADER);
    let mut i = 0;
    while s.len() < size {
        s.push_str(&stanza(i));
        i += 1;
    }
    s.into_bytes()
}

/// A stanza of about `size` bytes: `open`, then `child` repeated, then `close`.
fn filled(open: &str, child: &str, close: &str, size: usize) -> String {
    let n = (size.saturating_sub(open.len() + close.len()) / child.len()).max(1);
    format!("{open}{}{close}", child.repeat(n))
}

fn prefixes(n: usize, uri: impl Fn(usize) -> String) -> (String, String) {
    let decls: String = (0..n).map(|i| format!(" xmlns:p{i}='{}'", uri(i))).collect();
    let uses: String = (0..n).map(|i| format!(" p{i}:a='1'")).collect();
    (decls, format!("<c{uses}/>"))
}

fn long_uri(i: usize) -> String {
    format!("urn:{}&amp;{i}", "u".repeat(1000))
}

fn namespaces(uri: impl Fn(usize) -> String) -> String {
    let (decls, child) = prefixes(254, uri);
    filled(
        &format!("<message {FROM_TO}{decls}>"),
        &child,
        "</message>",
        500_000,
    )
}

/// The inputs: name, the bytes of one connection, how many connections.
fn inputs(size: usize) -> Vec<(&'static str, Vec<u8>, usize)> {
    let ns_long = namespaces(long_uri);
    let ns_short = namespaces(|i| format!("urn:{i}"));
    let attrs: String = (0..256).map(|i| format!(" a{i}='1'")).collect();
    let attrs = filled(&format!("<message {FROM_TO}>"), &format!("<c{attrs}/>"), "</message>", 500_000);
    let refs = "&amp;&lt;&#x41;&#65;&apos;&quot;&gt;&#x1F600;";
    let refs = filled(
        &format!("<message {FROM_TO}><body>"),
        &format!("{}<v a='{refs}'/>", refs.repeat(20)),
        "</body></message>",
        100_000,
    );
    let n8 = "n".repeat(8000);
    let long_names = filled(&format!("<message {FROM_TO}>"), &format!("<{n8} {n8}='1'/>"), "</message>", 500_000);
    let v8 = "v".repeat(8000);
    let long_values = filled(&format!("<message {FROM_TO}>"), &format!("<c a='{v8}' b='{v8}'/>"), "</message>", 500_000);
    let deep = format!("{}{}", "<a>".repeat(63), "</a>".repeat(63));
    let deep = filled(&format!("<message {FROM_TO}>"), &deep, "</message>", 500_000);
    let (decls, child) = prefixes(255, long_uri);
    let handshake = format!("{HEADER}{}", filled(&format!("<handshake{decls}>"), &child, "</handshake>", 300_000));
    let dribble = size / 16;
    vec![
        ("ordinary", stream(size, ordinary_stanza), 1),
        ("namespaces", stream(size, |_| ns_long.clone()), 1),
        ("namespaces-short", stream(size, |_| ns_short.clone()), 1),
        ("attributes", stream(size, |_| attrs.clone()), 1),
        ("references", stream(size, |_| refs.clone()), 1),
        ("long-names", stream(size, |_| long_names.clone()), 1),
        ("long-values", stream(size, |_| long_values.clone()), 1),
        ("deep", stream(size, |_| deep.clone()), 1),
        ("handshake", handshake.clone().into_bytes(), (size / handshake.len()).max(1)),
        ("dribbled", stream(dribble, ordinary_stanza), 1),
        ("dribbled-namespaces", stream(dribble, |_| ns_short.clone()), 1),
    ]
}

/// Frame one connection's bytes in reads of `read` bytes; the frames seen.
fn frame(data: &[u8], read: usize) -> usize {
    let mut f = Framer::new(Limits::new(512 * 1024));
    let mut frames = 0;
    for piece in data.chunks(read) {
        f.buf_mut().extend_from_slice(piece);
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => {
                    frames += 1;
                    black_box(&fr);
                    if matches!(fr, Frame::End) {
                        return frames;
                    }
                }
                Ok(None) => break,
                Err(e) => panic!("crafted input refused: {e}"),
            }
        }
    }
    frames
}

fn thread_cpu_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let rounds: usize = args
        .windows(2)
        .find(|w| w[0] == "--rounds")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(if quick { 3 } else { 9 });
    let size = if quick { 1 << 20 } else { 4 << 20 };
    let only: Option<&String> = args.windows(2).find(|w| w[0] == "--only").map(|w| &w[1]);
    let mut inputs = inputs(size);
    if let Some(only) = only {
        // `ordinary` stays first: the ratios are to it.
        let mut k = 0;
        inputs.retain(|(name, _, _)| {
            k += 1;
            k == 1 || name == only
        });
    }
    // Every input is valid: one warm-up pass checks it frames without error.
    for (name, data, _) in &inputs {
        let read = if name.starts_with("dribbled") { 1 } else { READ };
        assert!(frame(data, read) > 1, "{name}");
    }
    let mut per_kb: Vec<Vec<f64>> = vec![Vec::new(); inputs.len()];
    for _ in 0..rounds {
        for (k, (name, data, conns)) in inputs.iter().enumerate() {
            let read = if name.starts_with("dribbled") { 1 } else { READ };
            let t0 = thread_cpu_ns();
            for _ in 0..*conns {
                black_box(frame(black_box(data), read));
            }
            let ns = (thread_cpu_ns() - t0) as f64;
            per_kb[k].push(ns / ((data.len() * conns) as f64 / 1024.0));
        }
    }
    let medians: Vec<f64> = per_kb.iter_mut().map(|v| median(v)).collect();
    let base = medians[0];
    println!(
        "framer CPU per KB, median of {rounds} rounds ({} MB inputs, 64 KiB reads unless dribbled)",
        size >> 20
    );
    println!("{:<22} {:>10} {:>12} {:>8}", "input", "KB", "ns/KB", "ratio");
    let mut worst = ("", 0.0f64);
    for ((name, data, conns), m) in inputs.iter().zip(&medians) {
        let ratio = m / base;
        if ratio > worst.1 {
            worst = (name, ratio);
        }
        let kb = data.len() * conns / 1024;
        println!("{name:<22} {kb:>10} {m:>12.0} {ratio:>8.2}");
    }
    println!("worst ratio: {:.2} ({}); bound 10", worst.1, worst.0);
    if worst.1 >= 10.0 {
        std::process::exit(1);
    }
}

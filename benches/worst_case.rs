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
//! Inputs (`crates/loadgen/src/crafted.rs`, shared with `loadgen worst-case`,
//! which sends them to the real router):
//! - `ordinary`: 198-byte `<message/>` stanzas (the load generator's shape).
//! - `namespaces`: stanzas declaring 252 prefixes bound to 1 KB URIs (each
//!   with a reference), then child tags each using all 252 prefixes.
//! - `namespaces-short`: the same with short URIs (more prefixed attributes
//!   per byte).
//! - `attributes`: child tags with 256 attributes each (`max_attributes`).
//! - `references`: text and attribute values made of references.
//! - `long-names`: element and attribute names of 8,000 bytes.
//! - `long-values`: attribute values of 8,000 bytes.
//! - `deep`: elements nested 63 deep inside the stanza, over and over.
//! - `handshake`: the namespace attack before authentication: a stream header
//!   and a 300 KB `<handshake>` carrying 255 prefix declarations and children
//!   using them all, a fresh framer (connection) each time.
//! - `dribbled`, `dribbled-namespaces`: `ordinary` and `namespaces-short`
//!   fed one byte per read.

use std::hint::black_box;
use test_support::xcr::xml::{Frame, Framer, Limits};

#[path = "../crates/loadgen/src/crafted.rs"]
mod crafted;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
xmlns:stream='http://etherx.jabber.org/streams' to='a.bench.local'>";
const READ: usize = 64 * 1024;
const FROM: &str = "s0@a.bench.local";
const TO: &str = "r0@b.bench.local";

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

/// The inputs: name, the bytes of one connection, how many connections,
/// and the read size.
fn inputs(size: usize) -> Vec<(String, Vec<u8>, usize, usize)> {
    let mut v: Vec<(String, Vec<u8>, usize, usize)> = crafted::CASES
        .iter()
        .map(|&case| {
            let one = crafted::stanza(case, FROM, TO, 0);
            let data = if case == "ordinary" {
                stream(size, |i| crafted::ordinary(FROM, TO, i))
            } else {
                stream(size, |_| one.clone())
            };
            (case.to_string(), data, 1, READ)
        })
        .collect();
    let handshake = format!("{HEADER}{}", crafted::handshake(300_000));
    let conns = (size / handshake.len()).max(1);
    v.push(("handshake".into(), handshake.into_bytes(), conns, READ));
    let dribble = size / 16;
    v.push((
        "dribbled".into(),
        stream(dribble, |i| crafted::ordinary(FROM, TO, i)),
        1,
        1,
    ));
    let short = crafted::stanza("namespaces-short", FROM, TO, 0);
    v.push((
        "dribbled-namespaces".into(),
        stream(dribble, |_| short.clone()),
        1,
        1,
    ));
    v
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
        inputs.retain(|(name, ..)| {
            k += 1;
            k == 1 || name == only
        });
    }
    // Every input is valid: one warm-up pass checks it frames without error.
    for (name, data, _, read) in &inputs {
        assert!(frame(data, *read) > 1, "{name}");
    }
    let mut per_kb: Vec<Vec<f64>> = vec![Vec::new(); inputs.len()];
    for _ in 0..rounds {
        for (k, (_, data, conns, read)) in inputs.iter().enumerate() {
            let read = *read;
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
    println!(
        "{:<22} {:>10} {:>12} {:>8}",
        "input", "KB", "ns/KB", "ratio"
    );
    let mut worst = ("", 0.0f64);
    for ((name, data, conns, _), m) in inputs.iter().zip(&medians) {
        let ratio = m / base;
        if ratio > worst.1 {
            worst = (name.as_str(), ratio);
        }
        let kb = data.len() * conns / 1024;
        println!("{name:<22} {kb:>10} {m:>12.0} {ratio:>8.2}");
    }
    println!("worst ratio: {:.2} ({}); bound 10", worst.1, worst.0);
    for (name, ..) in &inputs {
        let what = match name.as_str() {
            "dribbled" => "ordinary, fed one byte per read",
            "dribbled-namespaces" => "namespaces-short, fed one byte per read",
            n => crafted::describe(n),
        };
        println!("  {name}: {what}");
    }
    if worst.1 >= 10.0 {
        std::process::exit(1);
    }
}

//! `worst-case` mode: the router's CPU per KB on crafted worst-case inputs
//! (`crafted.rs`) beside ordinary 198-byte stanzas, measured on the real
//! binary from `/proc/PID/stat` (`--server-pid`).
//!
//! A sender and a receiver component connect. For each input, in
//! `--rounds` interleaved rounds, the sender writes about `--bytes` of its
//! stanzas to the receiver (64 KiB writes, at most 2 MiB not yet received, so
//! the receiver's queue never fills), and the router's CPU time from the
//! first write until the receiver has every byte is taken. The figures are
//! medians over rounds, per KB sent, and ratios to `ordinary`.
//!
//! - `handshake`: before authentication. `--handshake-conns` connections each
//!   send a stream header and the crafted 300 KB `<handshake>` (with a wrong
//!   digest) and read until the router closes; CPU per KB written (a router
//!   that stops reading early, on a limit, is charged only what it accepted).
//! - `dribbled`: `--dribble-bytes` of ordinary stanzas written one byte per
//!   `write()`, `--dribble-gap-us` apart, so that each byte arrives in its own
//!   segment and the router reads it on its own: CPU per write (about one
//!   read each; the router's threads' voluntary context switches are
//!   reported beside, as a count of wake-ups).

use crate::crafted;
use crate::json::{round, Obj, J};
use crate::proto::{self, io_err, is_timeout, write_all_deadline};
use crate::stats::{clk_tck, proc_cpu_ticks};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct WorstCfg {
    pub addrs: Vec<SocketAddr>,
    pub sender_domain: String,
    pub sender_secret: String,
    pub receiver_domain: String,
    pub receiver_secret: String,
    pub server_pid: u32,
    pub bytes: usize,
    pub rounds: usize,
    pub cases: Vec<String>,
    pub handshake_conns: usize,
    pub dribble_bytes: usize,
    pub dribble_gap: Duration,
    pub timeout: Duration,
}

/// Most bytes written but not yet received.
const WINDOW: u64 = 2 << 20;
const WRITE: usize = 64 * 1024;

/// The receiver: counts what arrives until told to stop.
struct Sink {
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Result<(), String>>,
}

fn sink(mut s: TcpStream, pending: Vec<u8>) -> Sink {
    let received = Arc::new(AtomicU64::new(pending.len() as u64));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, st) = (received.clone(), stop.clone());
    let handle = thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        while !st.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => return Err("the router closed the receiver's stream".into()),
                Ok(n) => {
                    r.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(io_err("receiver read", &e)),
            }
        }
        Ok(())
    });
    Sink {
        received,
        stop,
        handle,
    }
}

/// CPU ticks of the router, and the voluntary context switches of its threads.
fn server_cpu(pid: u32) -> Result<u64, String> {
    proc_cpu_ticks(pid)
}

fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Send `payload` from `tx` and wait until `sink` has it all; the router's
/// CPU seconds meanwhile.
fn routed(cfg: &WorstCfg, tx: &mut TcpStream, sink: &Sink, payload: &[u8]) -> Result<f64, String> {
    let deadline = Instant::now() + cfg.timeout;
    let start = sink.received.load(Ordering::Relaxed);
    let t0 = server_cpu(cfg.server_pid)?;
    let mut sent = 0u64;
    for chunk in payload.chunks(WRITE) {
        while sent - (sink.received.load(Ordering::Relaxed) - start) > WINDOW {
            if Instant::now() > deadline {
                return Err("timed out: the receiver is not getting the stanzas".into());
            }
            thread::sleep(Duration::from_micros(200));
        }
        write_all_deadline(tx, chunk, deadline)?;
        sent += chunk.len() as u64;
    }
    while sink.received.load(Ordering::Relaxed) - start < sent {
        if Instant::now() > deadline {
            return Err(format!(
                "timed out: {} of {sent} bytes received",
                sink.received.load(Ordering::Relaxed) - start
            ));
        }
        thread::sleep(Duration::from_micros(200));
    }
    let t1 = server_cpu(cfg.server_pid)?;
    Ok((t1 - t0) as f64 / clk_tck() as f64)
}

/// One unauthenticated connection sending `hs` (header first); bytes written
/// and what the router answered.
fn handshake_conn(cfg: &WorstCfg, hs: &[u8]) -> Result<(u64, String), String> {
    let deadline = Instant::now() + cfg.timeout;
    let mut s = TcpStream::connect(&cfg.addrs[..]).map_err(|e| io_err("connect", &e))?;
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(proto::POLL));
    let _ = s.set_write_timeout(Some(proto::POLL));
    write_all_deadline(
        &mut s,
        proto::stream_header(&cfg.receiver_domain).as_bytes(),
        deadline,
    )?;
    let mut written = 0u64;
    for chunk in hs.chunks(WRITE) {
        match s.write(chunk) {
            Ok(n) => written += n as u64,
            Err(e) if is_timeout(&e) => {}
            Err(_) => break, // the router stopped reading (a limit): it is charged what it took
        }
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) if Instant::now() > deadline => break,
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    let answer = match proto::find_sub(&got, b"<stream:error") {
        Some(at) => proto::describe_stream_error(&got[at..]),
        None => format!("no stream error: {}", proto::snippet(&got)),
    };
    Ok((written, answer))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The payload of one input: its stanzas, to about `bytes`.
fn payload(case: &str, from: &str, to: &str, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 600_000);
    let one = crafted::stanza(case, from, to, 0);
    let mut i = 0;
    while out.len() < bytes {
        if case == "ordinary" {
            out.extend_from_slice(crafted::ordinary(from, to, i).as_bytes());
        } else {
            out.extend_from_slice(one.as_bytes());
        }
        i += 1;
    }
    out
}

struct Measured {
    case: String,
    kb: f64,
    cpu_s: Vec<f64>,
    note: Option<String>,
}

pub fn run(cfg: &WorstCfg) -> (Obj, i32) {
    let mut o = Obj::new();
    o.set("mode", "worst-case")
        .set("server_pid", cfg.server_pid);
    match measure(cfg, &mut o) {
        Ok(()) => {
            o.set("ok", true);
            (o, 0)
        }
        Err(e) => {
            o.set("ok", false).set("error", e);
            (o, 1)
        }
    }
}

fn measure(cfg: &WorstCfg, o: &mut Obj) -> Result<(), String> {
    let deadline = Instant::now() + cfg.timeout;
    let from = format!("s0@{}", cfg.sender_domain);
    let to = format!("r0@{}", cfg.receiver_domain);
    let (rx, pending) = proto::connect_component(
        &cfg.addrs,
        &cfg.receiver_domain,
        &cfg.receiver_secret,
        deadline,
    )?;
    let sink = sink(rx, pending);
    let (mut tx, _) =
        proto::connect_component(&cfg.addrs, &cfg.sender_domain, &cfg.sender_secret, deadline)?;
    let stanza_cases: Vec<&String> = cfg
        .cases
        .iter()
        .filter(|c| crafted::CASES.contains(&c.as_str()))
        .collect();
    let payloads: Vec<Vec<u8>> = stanza_cases
        .iter()
        .map(|c| payload(c, &from, &to, cfg.bytes))
        .collect();
    let hs = crafted::handshake(300_000).into_bytes();
    let mut results: Vec<Measured> = stanza_cases
        .iter()
        .zip(&payloads)
        .map(|(c, p)| Measured {
            case: c.to_string(),
            kb: p.len() as f64 / 1024.0,
            cpu_s: Vec::new(),
            note: None,
        })
        .collect();
    let handshake = cfg.cases.iter().any(|c| c == "handshake");
    let mut hs_m = Measured {
        case: "handshake".into(),
        kb: 0.0,
        cpu_s: Vec::new(),
        note: None,
    };
    for _ in 0..cfg.rounds {
        for (m, p) in results.iter_mut().zip(&payloads) {
            m.cpu_s.push(routed(cfg, &mut tx, &sink, p)?);
        }
        if handshake {
            let t0 = server_cpu(cfg.server_pid)?;
            let mut written = 0;
            for _ in 0..cfg.handshake_conns {
                let (w, answer) = handshake_conn(cfg, &hs)?;
                written += w;
                hs_m.note = Some(answer);
            }
            let t1 = server_cpu(cfg.server_pid)?;
            hs_m.kb = written as f64 / 1024.0;
            hs_m.cpu_s.push((t1 - t0) as f64 / clk_tck() as f64);
        }
    }
    if handshake {
        results.push(hs_m);
    }
    report(o, &mut results);
    if cfg.cases.iter().any(|c| c == "dribbled") {
        dribble(cfg, o, &mut tx, &sink, &from, &to)?;
    }
    sink.stop.store(true, Ordering::Relaxed);
    let _ = sink.handle.join();
    Ok(())
}

fn report(o: &mut Obj, results: &mut [Measured]) {
    let per_kb: Vec<f64> = results
        .iter_mut()
        .map(|m| median(&mut m.cpu_s.clone()) * 1e6 / m.kb)
        .collect();
    let base = results
        .iter()
        .position(|m| m.case == "ordinary")
        .map(|i| per_kb[i]);
    let mut worst = ("", 0.0f64);
    let mut rows = Vec::new();
    for (m, us) in results.iter().zip(&per_kb) {
        let ratio = base.map(|b| us / b);
        if let Some(r) = ratio {
            if r > worst.1 {
                worst = (m.case.as_str(), r);
            }
        }
        let mut row = Obj::new();
        row.set("case", m.case.as_str())
            .set("what", crafted::describe(&m.case))
            .set("kb", round(m.kb, 0))
            .set(
                "cpu_s",
                J::A(m.cpu_s.iter().map(|v| J::F(round(*v, 3))).collect()),
            )
            .set("us_per_kb", round(*us, 2))
            .set("ratio", ratio.map_or(J::Null, |r| J::F(round(r, 2))));
        if let Some(n) = &m.note {
            row.set("router_answer", n.as_str());
        }
        rows.push(J::O(row));
    }
    o.set("cases", J::A(rows))
        .set("worst_case", worst.0)
        .set("worst_ratio", round(worst.1, 2));
}

/// Ordinary stanzas, one byte per write: CPU per write.
fn dribble(
    cfg: &WorstCfg,
    o: &mut Obj,
    tx: &mut TcpStream,
    sink: &Sink,
    from: &str,
    to: &str,
) -> Result<(), String> {
    let data = payload("ordinary", from, to, cfg.dribble_bytes);
    let deadline = Instant::now() + cfg.timeout;
    let start = sink.received.load(Ordering::Relaxed);
    let (t0, c0) = (
        server_cpu(cfg.server_pid)?,
        context_switches(cfg.server_pid),
    );
    let began = Instant::now();
    for b in data.chunks(1) {
        write_all_deadline(tx, b, deadline)?;
        let until = Instant::now() + cfg.dribble_gap;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    while sink.received.load(Ordering::Relaxed) - start < data.len() as u64 {
        if Instant::now() > deadline {
            return Err("dribble: timed out waiting for the receiver".into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    let (t1, c1) = (
        server_cpu(cfg.server_pid)?,
        context_switches(cfg.server_pid),
    );
    let cpu = (t1 - t0) as f64 / clk_tck() as f64;
    let n = data.len() as f64;
    let mut d = Obj::new();
    d.set("bytes", data.len())
        .set("writes", data.len())
        .set("gap_us", cfg.dribble_gap.as_micros() as u64)
        .set("elapsed_s", round(began.elapsed().as_secs_f64(), 2))
        .set("server_cpu_s", round(cpu, 3))
        .set("us_per_write", round(cpu * 1e6 / n, 3))
        .set("us_per_kb", round(cpu * 1e6 / (n / 1024.0), 1))
        .set("server_wakeups", c1.saturating_sub(c0));
    o.set("dribbled", J::O(d));
    Ok(())
}

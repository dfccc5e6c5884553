//! `many` mode: connect many components (bounded concurrency), measure
//! handshakes/s and the server's memory when idle, then a ring ping.

use crate::args::expand;
use crate::json::{round, Obj};
use crate::proto::{self, io_err, Event, Scanner};
use crate::stats::{ms, now_ns, proc_mem_kb, raise_nofile, CpuWindow, Hist};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{timeout_at, Instant};

#[derive(Debug, Clone)]
pub struct ManyCfg {
    pub addr: String,
    pub addrs: Vec<SocketAddr>,
    pub count: usize,
    pub concurrency: usize,
    pub domain_pattern: String,
    pub secret_pattern: String,
    pub idle: Duration,
    pub server_pid: Option<u32>,
    pub baseline_rss_kb: Option<u64>,
    pub timeout: Duration,
    pub ring_timeout: Duration,
}

/// Connects and performs the XEP-0114 handshake (async twin of
/// [`proto::connect_component`]).
pub async fn connect_component(
    addrs: &[SocketAddr],
    domain: &str,
    secret: &str,
    deadline: Instant,
) -> Result<(TcpStream, Vec<u8>), String> {
    let mut last_err = String::from("no address");
    let mut stream = None;
    for a in addrs {
        match timeout_at(deadline, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_err = io_err(&format!("connect to {a} failed"), &e),
            Err(_) => return Err("timed out connecting".into()),
        }
    }
    let mut s = stream.ok_or(last_err)?;
    s.set_nodelay(true).map_err(|e| io_err("set_nodelay", &e))?;
    let mut buf = Vec::with_capacity(1024);
    let step = async {
        s.write_all(proto::stream_header(domain).as_bytes())
            .await
            .map_err(|e| io_err("write failed", &e))?;
        let mut tmp = [0u8; 2048];
        let (id, used) = loop {
            if let Some(r) = proto::parse_server_header(&buf)? {
                break r;
            }
            match s.read(&mut tmp).await {
                Ok(0) => {
                    return Err(format!(
                        "connection closed during handshake (received: {})",
                        proto::snippet(&buf)
                    ))
                }
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(io_err("read failed during handshake", &e)),
            }
        };
        buf.drain(..used);
        s.write_all(proto::handshake_element(&id, secret).as_bytes())
            .await
            .map_err(|e| io_err("write failed", &e))?;
        let used = loop {
            if let Some(r) = proto::parse_handshake_reply(&buf)? {
                break r;
            }
            match s.read(&mut tmp).await {
                Ok(0) => {
                    return Err(format!(
                        "connection closed during handshake (received: {})",
                        proto::snippet(&buf)
                    ))
                }
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(io_err("read failed during handshake", &e)),
            }
        };
        buf.drain(..used);
        Ok::<(), String>(())
    };
    match timeout_at(deadline, step).await {
        Ok(Ok(())) => Ok((s, buf)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out during handshake".into()),
    }
}

fn failure_kind(e: &str) -> &'static str {
    if e.contains("EMFILE") {
        "emfile"
    } else if e.contains("refused") {
        "refused"
    } else if e.contains("timed out") {
        "timeout"
    } else if e.contains("stream error") {
        "stream_error"
    } else if e.contains("closed") || e.contains("reset") {
        "closed"
    } else {
        "other"
    }
}

enum RingResult {
    Got { from: u64, at_ns: u64 },
    Bounce,
    Timeout,
    Failed(String),
}

async fn ring_reader(
    mut r: OwnedReadHalf,
    leftover: Vec<u8>,
    deadline: Instant,
) -> (OwnedReadHalf, RingResult) {
    let mut sc = Scanner::new(&leftover, 4096);
    loop {
        let mut res = None;
        sc.process(|ev| {
            if res.is_some() {
                return;
            }
            res = Some(match ev {
                Event::Message(m) => {
                    let info = proto::analyze(m);
                    match (info.is_error, info.marker) {
                        (true, _) => RingResult::Bounce,
                        (false, Some(mk)) => RingResult::Got {
                            from: mk.sender,
                            at_ns: now_ns(),
                        },
                        (false, None) => RingResult::Failed(format!(
                            "message without marker: {}",
                            proto::snippet(m)
                        )),
                    }
                }
                Event::StreamError(e) => RingResult::Failed(e),
                Event::StreamEnd => RingResult::Failed("server closed the stream".into()),
            });
        });
        if let Some(res) = res {
            return (r, res);
        }
        match timeout_at(deadline, r.read(sc.spare())).await {
            Ok(Ok(0)) => return (r, RingResult::Failed("connection closed by server".into())),
            Ok(Ok(n)) => sc.commit(n),
            Ok(Err(e)) => return (r, RingResult::Failed(io_err("read failed", &e))),
            Err(_) => return (r, RingResult::Timeout),
        }
    }
}

/// Runs `many`, prints the JSON report (while every socket is still open)
/// and returns the exit code.
pub fn run(cfg: &ManyCfg) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let mut o = Obj::new();
            o.set("mode", "many")
                .set("ok", false)
                .set("error", format!("tokio runtime: {e}"));
            println!("{o}");
            return 1;
        }
    };
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: &ManyCfg) -> i32 {
    let mut o = Obj::new();
    let nofile = raise_nofile();
    o.set("mode", "many")
        .set("addr", cfg.addr.as_str())
        .set("count", cfg.count)
        .set("concurrency", cfg.concurrency)
        .set("domain_pattern", cfg.domain_pattern.as_str())
        .set("nofile_limit", nofile);
    if let Some(n) = nofile {
        if (n as usize) < cfg.count + 64 {
            eprintln!(
                "loadgen: warning: open-files limit {n} is below --count {}; run `ulimit -n 65536` first",
                cfg.count
            );
        }
    }
    let deadline = Instant::now() + cfg.timeout;
    let addrs = Arc::new(cfg.addrs.clone());
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut cpu = CpuWindow::start(cfg.server_pid);
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(cfg.count);
    let mut domains = Vec::with_capacity(cfg.count);
    for i in 0..cfg.count {
        let domain = expand(&cfg.domain_pattern, i, None);
        let secret = expand(&cfg.secret_pattern, i, Some(&domain));
        domains.push(domain.clone());
        let sem = sem.clone();
        let addrs = addrs.clone();
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let t = Instant::now();
            let r = connect_component(&addrs, &domain, &secret, deadline).await;
            let done = Instant::now();
            (r.map_err(|e| format!("{domain}: {e}")), done - t, done)
        }));
    }
    let mut conns: Vec<Option<(TcpStream, Vec<u8>)>> = Vec::with_capacity(cfg.count);
    let mut hs_hist = Hist::new();
    let mut failures = 0u64;
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut samples: Vec<String> = Vec::new();
    let mut last_ok: Option<Instant> = None;
    for h in handles {
        match h.await {
            Ok((Ok(c), dur, at)) => {
                hs_hist.record(dur.as_nanos() as u64);
                last_ok = Some(last_ok.map_or(at, |l| l.max(at)));
                conns.push(Some(c));
            }
            Ok((Err(e), _, _)) => {
                failures += 1;
                *kinds.entry(failure_kind(&e)).or_default() += 1;
                if samples.len() < 5 {
                    samples.push(e);
                }
                conns.push(None);
            }
            Err(e) => {
                failures += 1;
                *kinds.entry("other").or_default() += 1;
                if samples.len() < 5 {
                    samples.push(format!("task failed: {e}"));
                }
                conns.push(None);
            }
        }
    }
    let (hs_cpu, _) = cpu.stop();
    let connected = conns.iter().filter(|c| c.is_some()).count();
    let hs_s = last_ok.map(|l| (l - t0).as_secs_f64());
    let hs_rate = hs_s.and_then(|s| (s > 0.0).then(|| connected as f64 / s));
    eprintln!(
        "loadgen: {connected}/{} components connected, {failures} failed{}",
        cfg.count,
        hs_rate.map_or(String::new(), |r| format!(", {r:.0} handshakes/s"))
    );
    if let Some(s) = samples.first() {
        eprintln!("loadgen: first failure: {s}");
    }
    let mut kinds_o = Obj::new();
    for (k, v) in &kinds {
        kinds_o.set(k, *v);
    }
    o.set("connected", connected)
        .set("failures", failures)
        .set("failure_kinds", kinds_o)
        .set("failure_samples", samples)
        .set("handshake_s", hs_s.map(|v| round(v, 6)))
        .set("handshakes_per_s", hs_rate.map(|v| round(v, 1)))
        .set("handshake_p50_ms", ms(hs_hist.quantile(0.5)))
        .set("handshake_p99_ms", ms(hs_hist.quantile(0.99)))
        .set(
            "handshake_max_ms",
            ms((hs_hist.n > 0).then_some(hs_hist.max)),
        )
        .set("server_cpu_s_handshakes", hs_cpu.map(|v| round(v, 3)))
        .set(
            "server_cpu_us_per_handshake",
            hs_cpu.and_then(|c| (connected > 0).then(|| round(c * 1e6 / connected as f64, 2))),
        );

    // Idle, then memory.
    let idle_end = (Instant::now() + cfg.idle).min(deadline);
    tokio::time::sleep_until(idle_end).await;
    o.set("idle_s", cfg.idle.as_secs_f64());
    let mut mem_error = None;
    if let Some(pid) = cfg.server_pid {
        match proc_mem_kb(pid) {
            Ok((rss, hwm)) => {
                o.set("rss_kb", rss).set("hwm_kb", hwm);
                if let Some(b) = cfg.baseline_rss_kb {
                    o.set("baseline_rss_kb", b);
                    if connected > 0 {
                        o.set(
                            "rss_per_conn_kib",
                            round((rss as f64 - b as f64) / connected as f64, 3),
                        );
                    }
                }
            }
            Err(e) => mem_error = Some(e),
        }
    }
    o.set("mem_error", mem_error);

    // Ring ping: the k-th connected component sends to the (k+1)-th.
    let live: Vec<usize> = (0..conns.len()).filter(|&i| conns[i].is_some()).collect();
    let m = live.len();
    let ring_deadline = (Instant::now() + cfg.ring_timeout).min(deadline);
    let mut writers: Vec<OwnedWriteHalf> = Vec::with_capacity(m);
    let mut readers = Vec::with_capacity(m);
    for &i in &live {
        if let Some((s, leftover)) = conns[i].take() {
            let (r, w) = s.into_split();
            writers.push(w);
            readers.push(tokio::spawn(ring_reader(r, leftover, ring_deadline)));
        }
    }
    let ring_start = now_ns();
    let mut ring_sent = 0u64;
    let mut ring_errors: Vec<String> = Vec::new();
    for (k, w) in writers.iter_mut().enumerate() {
        let (i, j) = (live[k], live[(k + 1) % m]);
        let stanza = format!(
            "<message from='ping@{}' to='ping@{}' type='chat' id='ring{i}'><body>~t:{i}:0:{};</body></message>",
            domains[i],
            domains[j],
            now_ns()
        );
        match timeout_at(ring_deadline, w.write_all(stanza.as_bytes())).await {
            Ok(Ok(())) => ring_sent += 1,
            Ok(Err(e)) => ring_errors.push(io_err(&format!("{}: ring write", domains[i]), &e)),
            Err(_) => ring_errors.push(format!("{}: ring write timed out", domains[i])),
        }
    }
    let mut delivered = 0u64;
    let mut misdelivered = 0u64;
    let mut bounces = 0u64;
    let mut timeouts = 0u64;
    let mut last_at = None;
    let mut read_halves = Vec::with_capacity(m);
    for (k, h) in readers.into_iter().enumerate() {
        let expect_from = live[(k + m - 1) % m] as u64;
        match h.await {
            Ok((r, res)) => {
                read_halves.push(r);
                match res {
                    RingResult::Got { from, at_ns } => {
                        if from == expect_from {
                            delivered += 1;
                        } else {
                            misdelivered += 1;
                        }
                        last_at = Some(last_at.map_or(at_ns, |l: u64| l.max(at_ns)));
                    }
                    RingResult::Bounce => bounces += 1,
                    RingResult::Timeout => timeouts += 1,
                    RingResult::Failed(e) => ring_errors.push(format!("{}: {e}", domains[live[k]])),
                }
            }
            Err(e) => ring_errors.push(format!("ring reader task failed: {e}")),
        }
    }
    let ring_err_count = ring_errors.len() as u64;
    ring_errors.truncate(5);
    o.set("ring_sent", ring_sent)
        .set("ring_delivered", delivered)
        .set("ring_misdelivered", misdelivered)
        .set("ring_bounces", bounces)
        .set("ring_timeouts", timeouts)
        .set("ring_errors", ring_err_count)
        .set("ring_error_samples", ring_errors)
        .set(
            "ring_s",
            last_at.map(|l| round(l.saturating_sub(ring_start) as f64 / 1e9, 6)),
        );
    let ok = failures == 0 && connected == cfg.count && delivered == m as u64;
    o.set("ok", ok);
    eprintln!("loadgen: ring ping delivered {delivered}/{m}");
    // Print while every socket is still open.
    println!("{o}");
    drop(read_halves);
    drop(writers);
    0
}

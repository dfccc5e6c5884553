//! `loadgen` — load generator for XEP-0114 (Jabber Component Protocol)
//! routers, reproducing the method of `shared/research/bench-anchors.md`.
//!
//! It connects as components (`jabber:component:accept`, SHA-1 handshake),
//! sends `<message>` stanzas whose body carries a marker
//! `~t:<sender>:<seq>:<ns>;` (ns = monotonic time since the process's epoch,
//! shared by all threads) padded so each stanza is `98 + --body-size` bytes
//! (198 bytes for the default 100-byte body, as in the anchors):
//!
//! ```text
//! <message from='s0@a.bench.local' to='r0@b.bench.local' type='chat' id='N'><body>~t:0:N:NS;xxxx…</body></message>
//! ```
//!
//! Receivers frame the stream cheaply (no XML parser): they count
//! `</message>` end tags, read the marker, and treat `type='error'` messages
//! as bounces. Only loopback addresses are accepted (exit 2 otherwise).
//! The report is ONE JSON object on ONE line on stdout; progress and errors go
//! to stderr. Exit codes: 0 the run completed (check `ok` and the counters),
//! 1 setup failed (connect/handshake; the JSON has `ok:false` and `error`),
//! 2 usage error.
//!
//! # Modes
//!
//! ## `throughput`
//! K sender/receiver pairs (`--pairs K`, default 1). Receivers connect first,
//! then senders. Each sender writes `--n` stanzas (default 200000) in
//! `--batch` stanzas per `write()` (default 64) to its receiver; `--window W`
//! (default 0 = unbounded, TCP back-pressure only) caps stanzas sent but not
//! yet received/bounced per pair. One OS thread per socket role, blocking
//! sockets. When the senders are done, receivers wait for the rest until
//! `--drain` seconds (default 2) pass without new data; `--timeout` (default
//! 60) bounds the whole run and partial results are reported.
//!
//! JSON: `mode addr recv_addr pairs stanza_bytes body_size n_per_sender batch
//! window sent received unique lost duplicated reordered errors bounces
//! stream_errors malformed misrouted unexpected_to_sender timed_out elapsed_s
//! send_s recv_s rate send_rate mb_per_s loaded_p50_ms loaded_p99_ms
//! loaded_max_ms server_pid server_cpu_s server_cpu_us_per_stanza
//! server_cpu_cores loadgen_cpu_s cpu_error error_messages bounce_samples ok`, where
//! `rate = received / recv_s` and `recv_s` = last receive − first send;
//! `errors = bounces + stream_errors + malformed + unexpected_to_sender`;
//! `lost = sent − unique`; `reordered` counts stanzas whose sequence number is
//! below the highest already seen from that sender; server CPU is utime+stime
//! from `/proc/PID/stat` (`--server-pid`) over the measurement window (first
//! send → receivers done); `loaded_*` latencies are one-way latencies under
//! full load (mostly socket-buffer queueing: use `latency` for real numbers).
//!
//! ## `latency`
//! One pair, paced open loop: one `write()` per stanza at `--rate R`/s
//! (default 1000) for `--duration` s (default 10); stanzas sent during the
//! first `--warmup` s (default 1) are not recorded. The sender thread sets
//! 1 ns timer slack, sleeps until `--spin-us` (default 50) before each due
//! time and then spins. Latency = time of the receiver's `read()` that
//! completed the stanza − embedded send timestamp.
//!
//! `--spin-us 0` sleeps only (less loadgen CPU, coarser pacing).
//!
//! JSON: the counters of `throughput` plus `rate_target duration_s warmup_s
//! spin_us achieved_rate achieved_rate_measured rate_ok send_lag_p50_us
//! send_lag_p99_us recorded min_ms mean_ms p50_ms p90_ms p99_ms p999_ms
//! max_ms` (`rate_ok`: achieved ≥ 99 % of target after warm-up;
//! `send_lag_*`: how late writes started against the schedule — the
//! timestamp is taken at the actual write, so lag does not inflate latency).
//!
//! ## Raw mode (`--raw-listen ADDR`, throughput and latency)
//! No XMPP at all, for the "direct" and "plain relay" anchors: receivers are
//! the connections accepted on `--raw-listen`, senders connect to `--addr`
//! (default: the raw-listen address itself = direct, load generator to
//! itself), one pair at a time. For the relay anchor:
//! `loadgen relay --listen 127.0.0.1:6000 --to 127.0.0.1:6001 &` then
//! `loadgen throughput --raw-listen 127.0.0.1:6001 --addr 127.0.0.1:6000
//! --server-pid $RELAY_PID`. JSON field `raw` says which kind of run it was.
//!
//! ## `many`
//! Connects `--count C` components (default 10000) with `--concurrency`
//! handshakes in flight (default 100); domains from `--domain-pattern`
//! (default `c{i}.bench.local`), secrets from `--secret-pattern` (default
//! `secret-{i}`; `{domain}` also expands). Then stays idle `--idle` s
//! (default 3), reads VmRSS/VmHWM of `--server-pid`, then a ring ping
//! (component k sends one message to component k+1 mod C, waiting up to
//! `--ring-timeout` s, default 10). All sockets stay open until the report is
//! printed. The soft open-files limit is raised to the hard limit (via a
//! direct `setrlimit` declaration, no libc crate); beyond the hard limit run
//! `ulimit -n 65536` first. EMFILE failures are reported as such
//! (`failure_kinds.emfile`, with a hint in `failure_samples`).
//!
//! JSON: `mode addr count concurrency domain_pattern nofile_limit connected
//! failures failure_kinds failure_samples handshake_s handshakes_per_s
//! handshake_p50_ms handshake_p99_ms handshake_max_ms server_cpu_s_handshakes
//! server_cpu_us_per_handshake idle_s rss_kb hwm_kb baseline_rss_kb
//! rss_per_conn_kib mem_error ring_sent ring_delivered ring_misdelivered
//! ring_bounces ring_timeouts ring_errors ring_error_samples ring_s ok`, where
//! `handshakes_per_s = connected / handshake_s` (start → last `<handshake/>`)
//! and `rss_per_conn_kib = (rss_kb − --baseline-rss-kb) / connected`.
//!
//! ## `worst-case`
//! The router's CPU per KB on crafted worst-case inputs beside ordinary
//! stanzas (see `worst.rs` and `crafted.rs`; `bench/worst_case.sh` runs it):
//! `--server-pid PID` (required), `--bytes 33554432` per input and round,
//! `--rounds 3`, `--cases ordinary,namespaces,...,handshake,dribbled`
//! (default all), `--handshake-conns 20`, `--dribble-bytes 100000`,
//! `--dribble-gap-us 30`, and the pair flags (`--addr`, `--sender-domain`,
//! ...). JSON: `mode server_pid cases[{case kb cpu_s us_per_kb ratio
//! router_answer}] worst_case worst_ratio dribbled{bytes writes gap_us
//! elapsed_s server_cpu_s us_per_write us_per_kb server_wakeups} ok`.
//!
//! ## `relay`
//! `relay --listen ADDR --to ADDR`: the "plain relay" anchor, a one-thread
//! tokio byte relay (`copy_bidirectional`, 64 KiB buffers, TCP_NODELAY).
//! Logs `listening on ADDR` to stderr, runs until SIGTERM/SIGINT, then prints
//! `{mode, listen, to, connections, active_at_stop, bytes_up_closed,
//! bytes_down_closed, errors, ok}`.
//!
//! # Common flags
//! `--addr 127.0.0.1:5347` (senders; receivers too unless `--recv-addr`),
//! `--sender-domain a.bench.local --sender-secret secret-a
//! --receiver-domain b.bench.local --receiver-secret secret-b` (one pair);
//! with `--pairs K > 1`: `--sender-domain-pattern s{i}.bench.local`,
//! `--receiver-domain-pattern r{i}.bench.local`, `--pair-secret-pattern
//! secret-{domain}`. `--body-size 100`, `--stanza-size` (overrides
//! 98 + body size), `--server-pid PID`, `--timeout 60`, `--drain 2`.

mod args;
mod crafted;
mod json;
mod many;
mod pairs;
mod proto;
mod relay;
mod stats;
mod worst;

use args::{expand, loopback_addrs, Args};
use std::time::Duration;

const USAGE: &str = "\
usage: loadgen MODE [--flag value]...

modes:
  throughput  [--pairs 1] [--n 200000] [--batch 64] [--window 0]
  latency     [--rate 1000] [--duration 10] [--warmup 1] [--spin-us 50]
  (throughput/latency: --raw-listen ADDR = no XMPP; receivers accept there, senders
   connect to --addr, default the same address = direct)
  many        [--count 10000] [--concurrency 100] [--domain-pattern c{i}.bench.local]
              [--secret-pattern secret-{i}] [--idle 3] [--baseline-rss-kb KB] [--ring-timeout 10]
  relay       --listen ADDR --to ADDR
  worst-case  --server-pid PID [--bytes 33554432] [--rounds 3] [--cases a,b,...]
              [--handshake-conns 20] [--dribble-bytes 100000] [--dribble-gap-us 30]
              (and --addr, --sender-domain/secret, --receiver-domain/secret, --timeout)

common (throughput/latency):
  --addr 127.0.0.1:5347  --recv-addr ADDR
  --sender-domain a.bench.local --sender-secret secret-a
  --receiver-domain b.bench.local --receiver-secret secret-b
  --sender-domain-pattern s{i}.bench.local --receiver-domain-pattern r{i}.bench.local
  --pair-secret-pattern secret-{domain}            (used when --pairs > 1)
  --body-size 100 --stanza-size 198 --drain 2
all measuring modes: --server-pid PID --timeout 60

Output: one JSON object on one line on stdout. Loopback addresses only.
Exit: 0 run completed, 1 setup failed, 2 usage error.";

const PAIR_FLAGS: &[&str] = &[
    "addr",
    "recv-addr",
    "sender-domain",
    "sender-secret",
    "receiver-domain",
    "receiver-secret",
    "sender-domain-pattern",
    "receiver-domain-pattern",
    "pair-secret-pattern",
    "body-size",
    "stanza-size",
    "timeout",
    "drain",
    "server-pid",
    "raw-listen",
];

fn known_flags(mode: &str) -> &'static [&'static str] {
    static TPUT: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    static LAT: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    match mode {
        "throughput" => TPUT.get_or_init(|| {
            let mut v = PAIR_FLAGS.to_vec();
            v.extend(["pairs", "n", "batch", "window"]);
            v
        }),
        "latency" => LAT.get_or_init(|| {
            let mut v = PAIR_FLAGS.to_vec();
            v.extend(["rate", "duration", "warmup", "spin-us"]);
            v
        }),
        "many" => &[
            "addr",
            "count",
            "concurrency",
            "domain-pattern",
            "secret-pattern",
            "idle",
            "server-pid",
            "baseline-rss-kb",
            "timeout",
            "ring-timeout",
        ],
        "relay" => &["listen", "to"],
        "worst-case" => &[
            "addr",
            "sender-domain",
            "sender-secret",
            "receiver-domain",
            "receiver-secret",
            "server-pid",
            "bytes",
            "rounds",
            "cases",
            "handshake-conns",
            "dribble-bytes",
            "dribble-gap-us",
            "timeout",
        ],
        _ => &[],
    }
}

fn secs(a: &Args, key: &str, default: f64) -> Result<Duration, String> {
    let v: f64 = a.get(key, default)?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("--{key} must be a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

enum Plan {
    Pairs(pairs::PairCfg),
    Many(many::ManyCfg),
    Relay(std::net::SocketAddr, Vec<std::net::SocketAddr>),
    Worst(worst::WorstCfg),
}

fn plan(a: &Args) -> Result<Plan, String> {
    match a.mode.as_str() {
        "throughput" | "latency" => {
            let raw_listen = match a.opt_str("raw-listen") {
                Some(r) => Some((loopback_addrs("raw-listen", &r)?, r)),
                None => None,
            };
            let default_addr = raw_listen
                .as_ref()
                .map_or("127.0.0.1:5347".to_string(), |(_, r)| r.clone());
            let addr = a.str("addr", &default_addr);
            let recv_addr = a.str("recv-addr", &addr);
            let addrs = loopback_addrs("addr", &addr)?;
            let recv_addrs = loopback_addrs("recv-addr", &recv_addr)?;
            let k: usize = if a.mode == "throughput" {
                a.get("pairs", 1)?
            } else {
                1
            };
            if k == 0 || k > 1024 {
                return Err("--pairs must be between 1 and 1024".into());
            }
            let pairs = if k == 1 {
                vec![pairs::PairSpec {
                    sender_domain: a.str("sender-domain", "a.bench.local"),
                    sender_secret: a.str("sender-secret", "secret-a"),
                    receiver_domain: a.str("receiver-domain", "b.bench.local"),
                    receiver_secret: a.str("receiver-secret", "secret-b"),
                }]
            } else {
                for f in [
                    "sender-domain",
                    "sender-secret",
                    "receiver-domain",
                    "receiver-secret",
                ] {
                    if a.has(f) {
                        return Err(format!(
                            "--{f} applies to one pair; with --pairs > 1 use the *-pattern flags"
                        ));
                    }
                }
                let sp = a.str("sender-domain-pattern", "s{i}.bench.local");
                let rp = a.str("receiver-domain-pattern", "r{i}.bench.local");
                let secp = a.str("pair-secret-pattern", "secret-{domain}");
                (0..k)
                    .map(|i| {
                        let sd = expand(&sp, i, None);
                        let rd = expand(&rp, i, None);
                        pairs::PairSpec {
                            sender_secret: expand(&secp, i, Some(&sd)),
                            receiver_secret: expand(&secp, i, Some(&rd)),
                            sender_domain: sd,
                            receiver_domain: rd,
                        }
                    })
                    .collect()
            };
            let body_size: usize = a.get("body-size", 100)?;
            let stanza_bytes: usize = a.get(
                "stanza-size",
                proto::StanzaBuilder::total_for_body(body_size),
            )?;
            let load = if a.mode == "throughput" {
                let n: u64 = a.get("n", 200_000)?;
                let batch: usize = a.get("batch", 64)?;
                if batch == 0 {
                    return Err("--batch must be at least 1".into());
                }
                pairs::Load::Throughput {
                    n,
                    batch,
                    window: a.get("window", 0)?,
                }
            } else {
                let rate: f64 = a.get("rate", 1000.0)?;
                if !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0) {
                    return Err("--rate must be in (0, 1e7]".into());
                }
                let duration = secs(a, "duration", 10.0)?;
                let warmup = secs(a, "warmup", 1.0)?;
                if warmup >= duration {
                    return Err("--warmup must be shorter than --duration".into());
                }
                let spin_us: f64 = a.get("spin-us", 50.0)?;
                if !(spin_us.is_finite() && spin_us >= 0.0) {
                    return Err("--spin-us must be >= 0".into());
                }
                pairs::Load::Latency {
                    rate,
                    duration,
                    warmup,
                    spin: Duration::from_nanos((spin_us * 1000.0) as u64),
                }
            };
            let default_timeout = match &load {
                pairs::Load::Latency { duration, .. } => (duration.as_secs_f64() + 30.0).max(60.0),
                _ => 60.0,
            };
            Ok(Plan::Pairs(pairs::PairCfg {
                load,
                addr,
                recv_addr,
                addrs,
                recv_addrs,
                pairs,
                stanza_bytes,
                body_size,
                timeout: secs(a, "timeout", default_timeout)?,
                drain: secs(a, "drain", 2.0)?,
                server_pid: a.opt("server-pid")?,
                raw_listen: raw_listen.map(|(v, _)| v),
            }))
        }
        "many" => {
            let addr = a.str("addr", "127.0.0.1:5347");
            let addrs = loopback_addrs("addr", &addr)?;
            let concurrency: usize = a.get("concurrency", 100)?;
            if concurrency == 0 {
                return Err("--concurrency must be at least 1".into());
            }
            Ok(Plan::Many(many::ManyCfg {
                addr,
                addrs,
                count: a.get("count", 10_000)?,
                concurrency,
                domain_pattern: a.str("domain-pattern", "c{i}.bench.local"),
                secret_pattern: a.str("secret-pattern", "secret-{i}"),
                idle: secs(a, "idle", 3.0)?,
                server_pid: a.opt("server-pid")?,
                baseline_rss_kb: a.opt("baseline-rss-kb")?,
                timeout: secs(a, "timeout", 60.0)?,
                ring_timeout: secs(a, "ring-timeout", 10.0)?,
            }))
        }
        "relay" => {
            let listen = a.opt_str("listen").ok_or("relay needs --listen ADDR")?;
            let to = a.opt_str("to").ok_or("relay needs --to ADDR")?;
            let listen = loopback_addrs("listen", &listen)?[0];
            let to = loopback_addrs("to", &to)?;
            Ok(Plan::Relay(listen, to))
        }
        "worst-case" => plan_worst(a).map(Plan::Worst),
        m => Err(format!("unknown mode `{m}`")),
    }
}

fn plan_worst(a: &Args) -> Result<worst::WorstCfg, String> {
    let addr = a.str("addr", "127.0.0.1:5347");
    let all: Vec<String> = crafted::CASES
        .iter()
        .map(|c| c.to_string())
        .chain(["handshake".to_string(), "dribbled".to_string()])
        .collect();
    let cases: Vec<String> = match a.opt_str("cases") {
        Some(list) => list.split(',').map(|c| c.trim().to_string()).collect(),
        None => all.clone(),
    };
    if let Some(bad) = cases.iter().find(|c| !all.contains(c)) {
        return Err(format!("unknown case `{bad}` (known: {})", all.join(",")));
    }
    let rounds: usize = a.get("rounds", 3)?;
    if rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    Ok(worst::WorstCfg {
        addrs: loopback_addrs("addr", &addr)?,
        sender_domain: a.str("sender-domain", "a.bench.local"),
        sender_secret: a.str("sender-secret", "secret-a"),
        receiver_domain: a.str("receiver-domain", "b.bench.local"),
        receiver_secret: a.str("receiver-secret", "secret-b"),
        server_pid: a
            .opt("server-pid")?
            .ok_or("worst-case needs --server-pid PID")?,
        bytes: a.get("bytes", 32 << 20)?,
        rounds,
        cases,
        handshake_conns: a.get("handshake-conns", 20)?,
        dribble_bytes: a.get("dribble-bytes", 100_000)?,
        dribble_gap: Duration::from_micros(a.get("dribble-gap-us", 30)?),
        timeout: secs(a, "timeout", 600.0)?,
    })
}

fn main() {
    stats::init_clock();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty()
        || argv
            .iter()
            .any(|a| a == "-h" || a == "--help" || a == "help")
    {
        println!("{USAGE}");
        std::process::exit(if argv.is_empty() { 2 } else { 0 });
    }
    let plan = Args::parse(&argv, known_flags).and_then(|a| plan(&a));
    let code = match plan {
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{USAGE}");
            2
        }
        Ok(Plan::Pairs(cfg)) => {
            let (o, code) = pairs::run(&cfg);
            println!("{o}");
            code
        }
        Ok(Plan::Many(cfg)) => many::run(&cfg),
        Ok(Plan::Relay(listen, to)) => relay::run(listen, to),
        Ok(Plan::Worst(cfg)) => {
            let (o, code) = worst::run(&cfg);
            println!("{o}");
            code
        }
    };
    std::process::exit(code);
}

//! Clock, latency histogram, /proc readers and the few libc calls we need
//! (declared directly: std already links the C library, so no crate).

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds since the process's shared epoch. Sender and
/// receiver threads use the same epoch, so embedded timestamps compare.
#[inline]
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Fixes the epoch (call early in `main`).
pub fn init_clock() {
    let _ = now_ns();
}

/// Log-linear histogram of nanosecond values with 1024 sub-buckets per
/// power of two (relative error < 0.1 %).
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Vec<u64>,
    pub n: u64,
    pub min: u64,
    pub max: u64,
    sum: u128,
}

const SUB_BITS: u32 = 10;
const SUB: usize = 1 << SUB_BITS; // exact below this
const HALF: usize = SUB / 2;

fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = e - (SUB_BITS - 1);
    SUB + (e - SUB_BITS) as usize * HALF + ((v >> shift) as usize - HALF)
}

fn bucket_value(idx: usize) -> u64 {
    if idx < SUB {
        return idx as u64;
    }
    let k = idx - SUB;
    let e = (k / HALF) as u32 + SUB_BITS;
    let m = (k % HALF + HALF) as u64;
    let shift = e - (SUB_BITS - 1);
    (m << shift) + ((1u64 << shift) >> 1)
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Hist {
            counts: vec![0; SUB + (64 - SUB_BITS as usize) * HALF],
            n: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v as u128;
    }

    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
    }

    /// Value at quantile `q` (0..=1), or None when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                return Some(bucket_value(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum as f64 / self.n as f64)
    }
}

/// Nanoseconds to milliseconds, rounded to 1 ns.
pub fn ms(ns: Option<u64>) -> Option<f64> {
    ns.map(|v| crate::json::round(v as f64 / 1e6, 6))
}

// ---------------------------------------------------------------------------
// /proc

/// utime+stime of a process in clock ticks, from /proc/PID/stat.
pub fn proc_cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name (which may contain spaces and parens).
    let after = s
        .rfind(')')
        .map(|p| &s[p + 1..])
        .ok_or_else(|| format!("{path}: malformed"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // f[0] is field 3 (state); utime is field 14, stime field 15.
    let get = |i: usize| -> Result<u64, String> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{path}: malformed"))
    };
    Ok(get(11)? + get(12)?)
}

/// CPU seconds (user+system) of a process.
pub fn proc_cpu_s(pid: u32) -> Result<f64, String> {
    Ok(proc_cpu_ticks(pid)? as f64 / clk_tck() as f64)
}

/// VmRSS and VmHWM in kB from /proc/PID/status.
pub fn proc_mem_kb(pid: u32) -> Result<(u64, u64), String> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("{path}: no {name}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU seconds of a server between two readings, if a pid was given.
pub struct CpuWindow {
    pid: Option<u32>,
    start: Option<f64>,
    self_start: Option<f64>,
    pub error: Option<String>,
}

impl CpuWindow {
    pub fn start(pid: Option<u32>) -> Self {
        let mut error = None;
        let start = pid.and_then(|p| match proc_cpu_s(p) {
            Ok(v) => Some(v),
            Err(e) => {
                error = Some(e);
                None
            }
        });
        CpuWindow {
            pid,
            start,
            self_start: proc_cpu_s(std::process::id()).ok(),
            error,
        }
    }

    /// (server CPU seconds, loadgen CPU seconds) since `start`.
    pub fn stop(&mut self) -> (Option<f64>, Option<f64>) {
        let server = match (self.pid, self.start) {
            (Some(p), Some(s)) => match proc_cpu_s(p) {
                Ok(v) => Some(v - s),
                Err(e) => {
                    self.error = Some(e);
                    None
                }
            },
            _ => None,
        };
        let me = self
            .self_start
            .and_then(|s| proc_cpu_s(std::process::id()).ok().map(|v| v - s));
        (server, me)
    }
}

// ---------------------------------------------------------------------------
// libc calls (no libc crate: plain declarations against the C library std
// already links).

#[cfg(target_os = "linux")]
mod ffi {
    use std::os::raw::{c_int, c_long};

    /// `struct rlimit` on 64-bit Linux (rlim_t = unsigned long = u64).
    #[repr(C)]
    pub struct Rlimit {
        pub cur: u64,
        pub max: u64,
    }

    extern "C" {
        pub fn sysconf(name: c_int) -> c_long;
        pub fn prctl(option: c_int, ...) -> c_int;
        pub fn getrlimit(resource: c_int, rlim: *mut Rlimit) -> c_int;
        pub fn setrlimit(resource: c_int, rlim: *const Rlimit) -> c_int;
    }
    pub const SC_CLK_TCK: c_int = 2;
    pub const PR_SET_TIMERSLACK: c_int = 29;
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    pub const RLIMIT_NOFILE: c_int = 7;
}

/// Clock ticks per second for /proc/PID/stat (sysconf(_SC_CLK_TCK), 100 if
/// unavailable).
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: sysconf has no memory-safety preconditions.
            let v = unsafe { ffi::sysconf(ffi::SC_CLK_TCK) };
            if v > 0 {
                return v as u64;
            }
        }
        100
    })
}

/// Sets this thread's timer slack to 1 ns so `nanosleep` wakes on time
/// (best effort; Linux only).
pub fn set_timer_slack_1ns() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_TIMERSLACK takes integer arguments only.
        unsafe { ffi::prctl(ffi::PR_SET_TIMERSLACK, 1 as std::os::raw::c_ulong) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (best effort). Returns
/// the soft limit now in force, if known. Beyond the hard limit the caller
/// must raise it (`ulimit -n 65536` as root, or in the service manager).
pub fn raise_nofile() -> Option<u64> {
    #[cfg(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        )
    ))]
    {
        let mut r = ffi::Rlimit { cur: 0, max: 0 };
        // SAFETY: r is a valid, writable rlimit struct.
        if unsafe { ffi::getrlimit(ffi::RLIMIT_NOFILE, &mut r) } != 0 {
            return None;
        }
        if r.cur < r.max {
            let want = ffi::Rlimit {
                cur: r.max,
                max: r.max,
            };
            // SAFETY: want is a valid rlimit struct.
            if unsafe { ffi::setrlimit(ffi::RLIMIT_NOFILE, &want) } == 0 {
                return Some(want.cur);
            }
        }
        Some(r.cur)
    }
    #[cfg(not(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        )
    )))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_roundtrip() {
        for v in [
            0u64,
            1,
            1023,
            1024,
            1025,
            2047,
            2048,
            123_456,
            1 << 40,
            u64::MAX / 2,
        ] {
            let b = bucket(v);
            let back = bucket_value(b);
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.002, "v={v} back={back}");
        }
        // monotone
        let mut last = 0;
        for v in (0..1_000_000u64).step_by(997) {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
        }
        let _ = bucket(u64::MAX);
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Hist::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        assert!((p50 - 5_000_000.0).abs() / 5e6 < 0.002, "{p50}");
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p99 - 9_900_000.0).abs() / 9.9e6 < 0.002, "{p99}");
        assert_eq!(h.quantile(1.0), Some(10_000_000));
        assert_eq!(h.quantile(0.0), Some(1000));
        let mut g = Hist::new();
        g.merge(&h);
        assert_eq!(g.n, 10_000);
        assert!(Hist::new().quantile(0.5).is_none());
    }

    #[test]
    fn reads_own_proc() {
        let me = std::process::id();
        assert!(proc_cpu_ticks(me).is_ok());
        let (rss, hwm) = proc_mem_kb(me).unwrap();
        assert!(rss > 0 && hwm >= rss);
        assert!(clk_tck() >= 100);
        assert!(proc_cpu_ticks(u32::MAX).is_err());
    }
}

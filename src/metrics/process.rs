//! The standard process metrics (`process_*`, as the Prometheus client libraries
//! of other languages export them), read from `/proc/self` at scrape time.

use std::fs;
use std::io;

/// One reading of this process's resource use.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    pub open_fds: u64,
    /// The soft open-files limit (`None`: unlimited).
    pub max_fds: Option<u64>,
}

/// Reads `/proc/self/stat`, `/proc/stat` (boot time) and `/proc/self/fd`.
pub fn read() -> io::Result<ProcessStats> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    let boot = boot_time(&fs::read_to_string("/proc/stat")?)?;
    let open_fds = fs::read_dir("/proc/self/fd")?.count() as u64;
    from_stat(&stat, boot, clock_ticks(), page_size(), open_fds, max_fds())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {what}"))
}

/// `btime` of `/proc/stat`: boot time, seconds since the Unix epoch.
fn boot_time(proc_stat: &str) -> io::Result<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| invalid("/proc/stat (no btime)"))
}

/// Parses `/proc/self/stat` (proc(5)). The command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its last `)`.
fn from_stat(
    stat: &str,
    boot_time: u64,
    ticks: f64,
    page_size: u64,
    open_fds: u64,
    max_fds: Option<u64>,
) -> io::Result<ProcessStats> {
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| invalid("/proc/self/stat"))?;
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| invalid("/proc/self/stat field"))
    };
    let (utime, stime, start) = (field(14)?, field(15)?, field(22)?);
    Ok(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_memory_bytes: field(24)? * page_size,
        virtual_memory_bytes: field(23)?,
        start_time_seconds: boot_time as f64 + start as f64 / ticks,
        open_fds,
        max_fds,
    })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        // 52 fields; the name holds spaces and a ')'.
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 12345 104857600 2560 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let s = from_stat(stat, 1_700_000_000, 100.0, 4096, 9, Some(1024)).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.resident_memory_bytes, 2560 * 4096);
        assert_eq!(s.virtual_memory_bytes, 104_857_600);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 123.45);
        assert!(from_stat("garbage", 0, 100.0, 4096, 0, None).is_err());
        assert!(from_stat("1 (x) S 1 2", 0, 100.0, 4096, 0, None).is_err());
    }

    #[test]
    fn reads_this_process() {
        let s = read().unwrap();
        assert!(s.resident_memory_bytes > 1 << 20, "{s:?}");
        assert!(s.open_fds >= 3, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0);
        assert_eq!(boot_time("cpu 1 2\nbtime 17\n").unwrap(), 17);
        assert!(boot_time("cpu 1 2\n").is_err());
    }
}

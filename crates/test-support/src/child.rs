//! What the harnesses of real peers (Prosody, ejabberd, the slixmpp component)
//! share: a child process that dies with the test and is stopped by its PID,
//! free loopback ports for it, and the waits that tell when it serves.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::stanza::c2s_header;

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A child process with PR_SET_PDEATHSIG=SIGKILL, spawned from a thread that
/// lives as long as this handle: the signal fires when the spawning *thread*
/// exits, so the child dies with the test process even if Drop never runs
/// (SIGKILL, abort), but not when some worker thread ends. Dropping it kills
/// the child (SIGKILL) and reaps it.
pub struct Kept {
    child: Child,
    /// Dropped after `child` is reaped (fields drop after `Drop::drop`).
    _keepalive: mpsc::Sender<()>,
}

impl Kept {
    /// Spawn `cmd` (its stdio already set); `name` names the spawning thread.
    pub fn spawn(mut cmd: Command, name: &str) -> io::Result<Kept> {
        // SAFETY: only an async-signal-safe syscall (prctl) runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)
            });
        }
        let (result_tx, result_rx) = mpsc::channel::<io::Result<Child>>();
        let (keep_tx, keep_rx) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name(format!("{name}-spawner"))
            .spawn(move || {
                let spawned = cmd.spawn();
                let ok = spawned.is_ok();
                let _ = result_tx.send(spawned);
                if ok {
                    // Blocks until the handle drops the sender.
                    let _ = keep_rx.recv();
                }
            })?;
        let child = result_rx
            .recv()
            .map_err(|_| io::Error::other(format!("{name} spawner thread died")))??;
        Ok(Kept {
            child,
            _keepalive: keep_tx,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The standard streams the command was given as pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Its exit status once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reaps it.
    pub fn stop(mut self, grace: Duration) {
        if self.exited().is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Drop sends SIGKILL if it is still there, and reaps it.
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What `path` holds from byte `offset` on (empty if it cannot be read).
pub fn read_from(path: &Path, offset: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    s
}

/// The last `n` lines of `text` under a `--- title ---` line.
pub fn tail(title: &str, text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut out = format!("--- {title} (last {} lines) ---\n", lines.len() - from);
    for l in &lines[from..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A server's log and console for a failing test's message: the last 60
/// lines of `log`, then the last 20 of `console` (what the process printed)
/// under `console_title` if it printed anything.
pub fn log_and_console_tail(log: &Path, console: &Path, console_title: &str) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut out = tail(&log.display().to_string(), &text, 60);
    let printed = fs::read_to_string(console).unwrap_or_default();
    if !printed.trim().is_empty() {
        out.push_str(&tail(console_title, &printed, 20));
    }
    out
}

/// Each line `from` gives, appended to `into`; also printed on stderr as
/// `[tag] line` when `ROUTER_TEST_LOG` is set. Runs until `from` ends (call
/// it on a thread of its own).
pub fn collect_lines(from: impl Read, into: Arc<Mutex<String>>, tag: &str) {
    for line in BufReader::new(from).lines().map_while(Result::ok) {
        if std::env::var_os("ROUTER_TEST_LOG").is_some() {
            eprintln!("[{tag}] {line}");
        }
        if let Ok(mut l) = into.lock() {
            l.push_str(&line);
            l.push('\n');
        }
    }
}

/// Something accepts TCP connections on the loopback `port`.
pub fn probe_tcp(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((LOOPBACK, port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Open a client stream and wait for the server's stream header: proves the
/// server's event loop is running (not only that the socket is listening).
pub fn probe_c2s(port: u16, to: &str) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from((LOOPBACK, port)),
        Duration::from_millis(500),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(c2s_header(to).as_bytes())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).contains("stream:stream") {
            let _ = s.write_all(b"</stream:stream>");
            return Ok(());
        }
    }
    Err(io::Error::other("no stream header from the server"))
}

/// Ports handed out by this process, never handed out twice.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn ephemeral_range() -> Option<(u16, u16)> {
    let s = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<u16>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A free loopback port. Verified free by binding it and releasing it.
/// Prefers ports below the kernel's ephemeral range: a port given by binding
/// port 0 comes from that range, and while Prosody restarts on the same port
/// an outgoing connection (or another test binding port 0) could grab it.
/// Falls back to binding port 0. A process-wide registry makes sure parallel
/// tests in one test binary never get the same port.
pub fn pick_port() -> io::Result<u16> {
    let mut used = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((lo, _)) = ephemeral_range() {
        const BASE: u16 = 10000;
        if lo > BASE + 1000 {
            for _ in 0..200 {
                let port = BASE + (random_u64() % u64::from(lo - BASE)) as u16;
                if used.contains(&port) {
                    continue;
                }
                if TcpListener::bind((LOOPBACK, port)).is_ok() {
                    used.insert(port);
                    return Ok(port);
                }
            }
        }
    }
    for _ in 0..100 {
        let l = TcpListener::bind((LOOPBACK, 0))?;
        let port = l.local_addr()?.port();
        if used.insert(port) {
            return Ok(port);
        }
    }
    Err(io::Error::other("could not find a free loopback port"))
}

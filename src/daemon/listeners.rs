//! Listeners and their accept loops, and admission.
//!
//! Admission: at most `max_connections` component connections are open at once
//! (counted from accept to close, over all listeners). One more is accepted,
//! sent our stream header and the stream error `resource-constraint` ("Too many
//! connections") without reading anything, and closed; a warning says so at
//! most every [`REFUSAL_LOG_EVERY`] with the number refused meanwhile. Every
//! accepted socket gets its socket options (TCP keepalive, `TCP_USER_TIMEOUT`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::accept::Env;
use crate::metrics::RefusedReason;
use crate::proto::StreamCondition;
use crate::wire::socket::SocketOptions;
use crate::wire::stanza::{error_header, StreamError};

/// At most one warning per this period about refused connections (and about
/// failing accepts), each with the count since the previous one.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why the daemon cannot start (or a reload cannot bind an address).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::ListenError),
}

/// The running accept loops, by address.
pub struct Listeners {
    env: Env,
    admission: Arc<Admission>,
    tasks: HashMap<SocketAddr, JoinHandle<()>>,
}

impl Listeners {
    pub fn new(env: Env) -> Self {
        Listeners {
            env,
            admission: Arc::new(Admission::default()),
            tasks: HashMap::new(),
        }
    }

    /// Bind one address and start accepting on it.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), ServerError> {
        let listener = bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        info!(%local, "listening for components");
        let env = self.env.clone();
        let admission = self.admission.clone();
        self.tasks
            .insert(addr, tokio::spawn(accept_loop(listener, env, admission)));
        Ok(())
    }

    /// Bind what is new, stop what was removed; keep the rest (and all sessions).
    /// A bind failure is logged and does not stop the rest of the reload.
    /// A removed address is closed when this returns (new connections to it
    /// are refused), not merely scheduled to close.
    pub async fn reconcile(&mut self, wanted: &[SocketAddr]) -> Vec<ServerError> {
        let mut errors = Vec::new();
        let gone: Vec<SocketAddr> = self
            .tasks
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for a in gone {
            if let Some(t) = self.tasks.remove(&a) {
                t.abort();
                // `abort` only schedules the cancellation; the listening socket
                // closes when the task's future is dropped, which this awaits.
                let _ = t.await;
                info!(addr = %a, "stopped listening");
            }
        }
        for a in wanted {
            if !self.tasks.contains_key(a) {
                if let Err(e) = self.bind(*a) {
                    error!(event = "listen.failed", "{e}");
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// Stop every accept loop; returns once every listening socket is closed.
    pub async fn stop_all(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
            let _ = t.await;
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Open component connections, and the rate limit of the warnings about
/// refusing more (shared by all listeners).
#[derive(Default)]
pub struct Admission {
    open: AtomicUsize,
    refusals: RateLimitedLog,
    accept_errors: RateLimitedLog,
}

/// Counts one open connection until dropped.
struct Admitted(Arc<Admission>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// Count a new connection in, unless `max` are open.
    fn admit(self: &Arc<Self>, max: usize) -> Option<Admitted> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Admitted(self.clone()))
    }

    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Counts events and says whether to log now: the first one at once, then at
/// most once per [`REFUSAL_LOG_EVERY`], with how many happened since.
#[derive(Default)]
struct RateLimitedLog {
    since_last: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl RateLimitedLog {
    /// `Some(n)`: log now, `n` events (this one included) since the last line.
    fn hit(&self) -> Option<u64> {
        self.since_last.fetch_add(1, Ordering::AcqRel);
        let mut last = self.last.lock().ok()?;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY) {
            return None;
        }
        *last = Some(now);
        Some(self.since_last.swap(0, Ordering::AcqRel))
    }
}

async fn accept_loop(listener: TcpListener, env: Env, admission: Arc<Admission>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let settings = env.router.settings();
                let Some(admitted) = admission.admit(settings.max_connections) else {
                    refuse(&stream);
                    let globals = &env.router.globals;
                    globals.refused(RefusedReason::Limit);
                    globals.stream_error(StreamCondition::ResourceConstraint.into());
                    if let Some(n) = admission.refusals.hit() {
                        warn!(
                            event = "connection.refused",
                            %peer,
                            "connection limit reached (max_connections = {}): refused {n} connection(s) with resource-constraint since the last message",
                            settings.max_connections
                        );
                    }
                    continue;
                };
                let options = SocketOptions::component(
                    settings.keepalive_interval,
                    settings.dead_peer_timeout,
                );
                if let Err(e) = options.apply(socket2::SockRef::from(&stream)) {
                    debug!(%peer, "cannot set socket options: {e}");
                }
                let env = env.clone();
                let tasks = env.tasks.clone();
                tasks.spawn(async move {
                    let _admitted = admitted;
                    crate::accept::serve(stream, peer, env).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                if let Some(n) = admission.accept_errors.hit() {
                    warn!("accept failed ({n} time(s) since the last message): {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Over `max_connections`: our header and `resource-constraint`, written
/// without waiting (a fresh socket's send buffer is empty), then close. Nothing
/// is read, so this costs no task and no buffer.
fn refuse(stream: &TcpStream) {
    let mut out = error_header(None).to_vec();
    out.extend_from_slice(
        &StreamError::with_text(StreamCondition::ResourceConstraint, "Too many connections")
            .to_bytes(),
    );
    let _ = socket2::SockRef::from(stream).send(&out);
}

/// The soft limit on open files, from /proc/self/limits (Linux).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Warn when `max_connections` cannot be reached because of the open-files limit.
pub fn check_open_files_limit(max_connections: usize) {
    if let Some(limit) = open_files_limit() {
        // Each connection takes one descriptor (two with an upstream link).
        if (max_connections as u64).saturating_add(64) > limit {
            warn!(
                "max_connections = {max_connections} but the open-files limit is {limit}: accepts will fail before the limit; raise it (ulimit -n, or LimitNOFILE= under systemd)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_and_releases() {
        let a = Arc::new(Admission::default());
        let one = a.admit(2).unwrap();
        let two = a.admit(2).unwrap();
        assert!(a.admit(2).is_none());
        assert_eq!(a.open(), 2);
        drop(one);
        let three = a.admit(2).unwrap();
        assert!(a.admit(2).is_none());
        drop((two, three));
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn refusal_log_is_rate_limited_and_counts() {
        let l = RateLimitedLog::default();
        assert_eq!(l.hit(), Some(1));
        for _ in 0..5 {
            assert_eq!(l.hit(), None);
        }
        // Pretend the period has passed.
        *l.last.lock().unwrap() = Some(Instant::now() - REFUSAL_LOG_EVERY);
        assert_eq!(l.hit(), Some(6));
    }
}

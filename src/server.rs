//! The daemon's life: listeners and accept loops, signals, reload and shutdown.
//!
//! Signal handlers are installed before anything tells systemd we are ready
//! (SIGHUP's default action would kill the process). SIGHUP reloads
//! ([`crate::reload`]); SIGTERM and SIGINT shut down: stop accepting, send
//! `system-shutdown` to every connection, close upstream links, exit 0 within
//! five seconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::router::Router;
use crate::stanza::{StreamCondition, StreamError};
use crate::systemd;

/// How long shutdown waits for connections to flush and close.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(4000);

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
}

/// The running accept loops, by address.
pub struct Listeners {
    router: Arc<Router>,
    tasks: HashMap<SocketAddr, JoinHandle<()>>,
}

impl Listeners {
    pub fn new(router: Arc<Router>) -> Self {
        Listeners {
            router,
            tasks: HashMap::new(),
        }
    }

    /// Bind one address and start accepting on it.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), ServerError> {
        let listener = bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        info!(%local, "listening for components");
        let router = self.router.clone();
        self.tasks
            .insert(addr, tokio::spawn(accept_loop(listener, router)));
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
                    error!("{e}");
                    errors.push(e);
                }
            }
        }
        errors
    }

    pub fn stop_all(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
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

async fn accept_loop(listener: TcpListener, router: Arc<Router>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(crate::component::serve(stream, peer, router.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// TCP keepalive on every component socket, so a dead peer is eventually noticed
/// even when nothing is sent.
pub fn set_keepalive(stream: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&ka);
}

/// Run the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let mut hup = signal(SignalKind::hangup()).map_err(ServerError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;

    let router = Router::new(&config);
    let mut listeners = Listeners::new(router.clone());
    for addr in &config.listen {
        listeners.bind(*addr)?;
    }
    for w in &config.warnings {
        warn!("{w}");
    }
    let served = config.enabled_components().count();
    info!(
        components = served,
        upstream = config
            .upstream
            .as_ref()
            .map(|u| u.address.as_str())
            .unwrap_or("none"),
        "xmpp-component-router {} ready",
        env!("CARGO_PKG_VERSION")
    );
    systemd::ready(&format!("serving {served} components"));

    let mut current = config;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                current = crate::reload::reload(current, &router, &mut listeners).await;
            }
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }

    systemd::stopping();
    listeners.stop_all();
    router.kill_all(&StreamError::new(StreamCondition::SystemShutdown));
    for s in router.sessions() {
        s.close_upstream();
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while router.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let writers flush the last stream errors.
    tokio::time::sleep(Duration::from_millis(50)).await;
    info!("shutdown complete");
    Ok(())
}

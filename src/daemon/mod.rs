//! The daemon: what runs the protocol sides, and nothing of the protocol itself.
//!
//! - [`listeners`]: the listening sockets, their accept loops and admission
//!   (`max_connections`).
//! - [`reload`]: SIGHUP; the only place that changes the running daemon: it
//!   computes the difference and applies it to the router, the upstream links
//!   and the listeners.
//! - this file: start, the signal loop, and shutdown.
//!
//! Signal handlers are installed before anything tells systemd we are ready
//! (SIGHUP's default action would kill the process). SIGTERM and SIGINT shut
//! down: stop accepting, bounce what held domains hold, end every connection
//! with `system-shutdown`, close
//! the upstream links (each flushes what it holds and ends its stream), then
//! wait for every connection and link task, at most [`SHUTDOWN_GRACE`].
//! Every task that serves a peer is spawned on one [`TaskTracker`], so the
//! wait is a join, not a poll.

mod listeners;
mod reload;
mod scrape;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::accept::Env;
use crate::config::Config;
use crate::proto::StreamCondition;
use crate::router::Router;
use crate::systemd;
use crate::wire::stanza::StreamError;

pub use listeners::{check_open_files_limit, Listeners, ServerError, REFUSAL_LOG_EVERY};

/// How long shutdown waits for connections and links to flush and close
/// (the process exits within five seconds of SIGTERM).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(4000);

/// Run the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let mut hup = signal(SignalKind::hangup()).map_err(ServerError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;

    let tasks = TaskTracker::new();
    let router = Router::new(&config);
    let env = Env {
        router: router.clone(),
        links: Arc::new(crate::upstream::Links::new(tasks.clone())),
        tasks: tasks.clone(),
    };
    let mut listeners = Listeners::new(env.clone());
    for addr in &config.listen {
        listeners.bind(*addr)?;
    }
    let mut metrics = scrape::Metrics::start(&router, config.metrics.as_ref().map(|m| m.listen))?;
    router.globals.config_loaded(SystemTime::now());
    announce(&config);

    let mut current = config;
    loop {
        tokio::select! {
            _ = hup.recv() => current = reload::reload(current, &env, &mut listeners, &mut metrics).await,
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }
    // `/health` says so at once; the metrics listener is closed last.
    metrics.begin_shutdown();
    shutdown(&router, listeners, &tasks).await;
    metrics.stop().await;
    Ok(())
}

/// Log the config's warnings and the ready line, and tell systemd.
fn announce(config: &Config) {
    for w in &config.warnings {
        warn!("{w}");
    }
    check_open_files_limit(config.max_connections);
    let served = config.enabled_components().count();
    info!(
        event = "ready",
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
}

/// Stop accepting, end every connection and link, and wait for their tasks.
async fn shutdown(router: &Router, mut listeners: Listeners, tasks: &TaskTracker) {
    systemd::stopping();
    listeners.stop_all().await;
    // Held stanzas are bounced first, while the links are open; no hold
    // begins once the connections are ended below.
    for d in router.domains() {
        d.shut(|d, ended| router.end_hold(d, ended));
    }
    router.kill_all(&StreamError::with_text(
        StreamCondition::SystemShutdown,
        "The component router is shutting down",
    ));
    for d in router.domains() {
        d.close_upstream();
    }
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            left = tasks.len(),
            "shutdown: tasks still running after {SHUTDOWN_GRACE:?}, exiting anyway"
        );
    }
    info!("shutdown complete");
}

//! The metrics listener's view of the running daemon (README, "Monitoring"):
//! the rows it reads at scrape time, and the listener itself across reloads.
//!
//! Per-stanza counters are kept by the connections themselves (see
//! `crate::metrics::model`); what is read here is state the daemon holds
//! anyway: each domain's sessions and their queues, and its upstream link.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::{error, info};

use crate::metrics::{
    DomainRow, DomainState, Exporter, HttpLimits, ListenError, MetricsServer, Source,
};
use crate::router::{Domain, Router};

/// The routing table as the metrics see it.
pub struct RouterSource(pub Arc<Router>);

impl Source for RouterSource {
    fn domains(&self, out: &mut Vec<DomainRow>) {
        let router = &self.0;
        let upstream = router.settings().upstream.is_some();
        for d in router.domains() {
            let state = if !d.sessions().is_empty() {
                DomainState::Connected
            } else if d.hold().is_holding() {
                DomainState::Held
            } else {
                DomainState::Offline
            };
            out.push(row(&d, state, upstream));
        }
        for d in router.detached_domains() {
            out.push(row(&d, DomainState::Detached, upstream));
        }
    }
}

/// One domain's row: its counters, its sessions' queues, its upstream link.
fn row(d: &Domain, state: DomainState, upstream: bool) -> DomainRow {
    let mut r = DomainRow::new(&d.metrics, state);
    r.held_stanzas = d.hold().queued() as u64;
    for s in d.sessions().iter() {
        let (items, bytes) = s.outbox.depth();
        r.queue_stanzas += items as u64;
        r.queue_bytes += bytes as u64;
    }
    if upstream {
        // No link while the domain has no session and is not held (or once
        // it is detached).
        let status = d.link().as_ref().map(|l| l.status());
        let (up, next) = status.map_or((false, None), |s| (s.up, s.next_retry));
        r = r.with_upstream(&d.metrics, up, next);
    }
    r
}

/// The metrics listener, if `[metrics] listen` is set, and what it serves.
pub struct Metrics {
    pub exporter: Arc<Exporter>,
    server: Option<MetricsServer>,
}

impl Metrics {
    /// Serve the router's metrics on `listen` (none: no listener).
    pub fn start(router: &Arc<Router>, listen: Option<SocketAddr>) -> Result<Self, ListenError> {
        let source = Arc::new(RouterSource(router.clone()));
        let exporter = Exporter::new(source, router.globals.clone());
        let server = match listen {
            Some(addr) => Some(MetricsServer::bind(
                addr,
                exporter.clone(),
                HttpLimits::default(),
            )?),
            None => None,
        };
        Ok(Metrics { exporter, server })
    }

    /// A reload changed `[metrics]`: move, open or close the listener. A new
    /// address that cannot be bound is logged and the old one keeps serving.
    pub async fn reconcile(&mut self, listen: Option<SocketAddr>) {
        match (&mut self.server, listen) {
            // Nothing happens when the address is the same and still served.
            (Some(s), Some(addr)) => {
                let old = s.local_addr();
                match s.rebind(addr).await {
                    Ok(()) if s.local_addr() != old => {
                        info!(event = "metrics.moved", old = %old, new = %s.local_addr(), "reload: metrics listener moved");
                    }
                    Ok(()) => {}
                    Err(e) => error!("reload: {e}; the metrics listener stays where it was"),
                }
            }
            (Some(s), None) => {
                s.stop().await;
                self.server = None;
                info!("reload: [metrics] removed, metrics listener closed");
            }
            (None, Some(addr)) => {
                match MetricsServer::bind(addr, self.exporter.clone(), HttpLimits::default()) {
                    Ok(s) => self.server = Some(s),
                    Err(e) => error!("reload: {e}"),
                }
            }
            (None, None) => {}
        }
    }

    /// Shutdown began: `/health` answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.exporter.begin_shutdown();
    }

    /// The last step of shutdown: close the listener.
    pub async fn stop(&mut self) {
        if let Some(s) = &mut self.server {
            s.stop().await;
        }
    }
}

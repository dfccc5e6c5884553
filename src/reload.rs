//! SIGHUP: re-read the config and apply the difference (SPEC §6).
//!
//! The new file is validated completely before anything changes; an invalid file
//! is logged with file, line and reason and the old config keeps serving. A valid
//! one is applied by [`Router::apply`] (components) and [`Listeners::reconcile`]
//! (listen addresses), and the outcome is logged: one line per added, removed and
//! changed component, then a summary line.

use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::router::Router;
use crate::server::Listeners;
use crate::systemd;

/// Reload from `current.path`; returns the config now in force.
pub fn reload(current: Config, router: &Router, listeners: &mut Listeners) -> Config {
    systemd::reloading();
    info!(file = %current.path.display(), "SIGHUP: reloading config");
    let new = match config::load(&current.path) {
        Ok(c) => c,
        Err(e) => {
            error!("reload failed, keeping the running config: {e}");
            systemd::ready("reload failed; serving the previous config");
            return current;
        }
    };
    for w in &new.warnings {
        warn!("{w}");
    }
    let report = router.apply(&current, &new);
    for d in &report.added {
        info!(domain = %d, "reload: component added, awaiting authentication");
    }
    for (d, n) in &report.removed {
        info!(domain = %d, connections_detached = n, "reload: component removed ({n} connection{} detached)", if *n == 1 { "" } else { "s" });
    }
    for d in &report.changed {
        info!(domain = %d, "reload: component changed; the next handshake uses the new settings");
    }
    let detached: usize = report.removed.iter().map(|(_, n)| n).sum();
    let bind_errors = listeners.reconcile(&new.listen);
    let summary = format!(
        "reload: {} added, {} removed ({} connection{} detached), {} changed, {} unchanged{}",
        report.added.len(),
        report.removed.len(),
        detached,
        if detached == 1 { "" } else { "s" },
        report.changed.len(),
        report.unchanged,
        if bind_errors.is_empty() {
            String::new()
        } else {
            format!(", {} listen address(es) failed", bind_errors.len())
        }
    );
    info!("{summary}");
    if current.log_level != new.log_level {
        warn!("log_level changes take effect at the next restart");
    }
    systemd::ready(&summary);
    new
}

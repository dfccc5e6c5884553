//! SIGHUP: re-read the config and apply the difference (docs/behaviour.md#reload).
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
pub async fn reload(current: Config, router: &Router, listeners: &mut Listeners) -> Config {
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
    if let (Some(before), Some(after)) = (&current.prosody, &new.prosody) {
        // mod_reload_components' example 2: Prosody's own reload loads new
        // components but not new VirtualHosts; say so instead of letting
        // "bad things happen" silently.
        for w in crate::prosody_config::reload_warnings(before, after) {
            warn!("{w}");
        }
    }
    let report = router.apply(&current, &new);
    crate::upstream::apply_reload(router, current.upstream.as_ref(), new.upstream.as_ref());
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
    let bind_errors = listeners.reconcile(&new.listen).await;
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::config;
    use crate::router::{Delivery, Router};
    use crate::wire::out::Out;

    fn cfg(text: &str) -> config::Config {
        config::parse(text, Path::new("/tmp/reload-test.toml")).unwrap()
    }

    /// The race the black-box tests cannot pin down: a stanza from (or to) a
    /// component is being routed while a reload detaches it. The detach waits
    /// for that delivery, so none happens after the reload returns.
    #[test]
    fn detach_waits_for_routing_in_progress() {
        let old = cfg("[components.a]\nsecret = \"a\"\n[components.b]\nsecret = \"b\"\n");
        let new = cfg("[components.a]\nsecret = \"a\"\n");
        let router = Router::new(&old);
        let b = router.registration("b").unwrap();
        let routing = b.routing().expect("attached");
        // Entering again while inside (a component sending to itself) never blocks.
        assert!(b.routing().is_some());

        std::thread::scope(|s| {
            let (done_tx, done_rx) = mpsc::channel();
            let r = &router;
            let (old, new) = (&old, &new);
            s.spawn(move || {
                let report = r.apply(old, new);
                done_tx.send(report).unwrap();
            });
            // The table swap is visible at once: new lookups miss b.
            let t0 = std::time::Instant::now();
            while router.registration("b").is_some() {
                assert!(t0.elapsed() < Duration::from_secs(5));
                std::thread::yield_now();
            }
            assert_eq!(
                router.deliver("b", Out::Raw(Bytes::new())),
                Delivery::Unknown
            );
            // But the reload is not done while a routing decision is in flight.
            assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
            drop(routing);
            let report = done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(report.removed, vec![("b".to_string(), 0)]);
        });
        assert!(b.is_detached());
        assert!(b.routing().is_none());
        assert_eq!(
            router.deliver("a", Out::Raw(Bytes::new())),
            Delivery::Offline
        );
    }
}

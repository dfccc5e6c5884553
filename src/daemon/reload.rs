//! SIGHUP: re-read the config and apply the difference (docs/behaviour.md#reload).
//!
//! The new file is validated completely before anything changes; an invalid file
//! is logged with file, line and reason and the old config keeps serving. A valid
//! one is applied by [`Router::apply`] (components) and [`Listeners::reconcile`]
//! (listen addresses), and the outcome is logged: one line per added, removed and
//! changed component, then a summary line.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::config::UpstreamConfig;

use std::time::SystemTime;

use super::listeners::Listeners;
use super::scrape::Metrics;
use crate::accept::Env;
use crate::config::{self, Config, Diff};
use crate::metrics::Outcome;
use crate::router::{Settings, READDED_TEXT};
use crate::systemd;

/// Reload from `current.path`; returns the config now in force.
pub async fn reload(
    current: Config,
    env: &Env,
    listeners: &mut Listeners,
    metrics: &mut Metrics,
) -> Config {
    let router = &env.router;
    systemd::reloading();
    info!(event = "reload.start", file = %current.path.display(), "SIGHUP: reloading config");
    let Some(new) = read(&current).await else {
        router.globals.reload(Outcome::Failed, SystemTime::now());
        systemd::ready("reload failed; serving the previous config");
        return current;
    };
    let diff = config::diff(&current, &new);
    let removed = router.apply(&diff, Settings::from_config(&new));
    let reset = router.reset_readded(&diff.added);
    apply_upstream(env, current.upstream.as_ref(), new.upstream.as_ref());
    retry_down_links(env);
    log_components(&diff, &removed, &reset);
    let bind_errors = listeners.reconcile(&new.listen).await;
    metrics
        .reconcile(new.metrics.as_ref().map(|m| m.listen))
        .await;
    let summary = summarize(&diff, &removed, bind_errors.len());
    if current.log_level != new.log_level {
        warn!("log_level changes take effect at the next restart");
    }
    router.globals.reload(Outcome::Ok, SystemTime::now());
    systemd::ready(&summary);
    new
}

/// Read and validate the new config off the runtime (includes and globs
/// read files too), with its warnings logged; `None` (logged) if it is invalid.
async fn read(current: &Config) -> Option<Config> {
    let path = current.path.clone();
    let new = match tokio::task::spawn_blocking(move || config::load(&path)).await {
        Ok(Ok(c)) => c,
        Err(e) => {
            error!(
                event = "reload.failed",
                "reload failed, keeping the running config: the config reader failed: {e}"
            );
            return None;
        }
        Ok(Err(e)) => {
            error!(
                event = "reload.failed",
                "reload failed, keeping the running config: {e}"
            );
            return None;
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
    Some(new)
}

/// One line per component the reload added, re-added over detached
/// connections, removed or changed.
fn log_components(diff: &Diff, removed: &[(String, usize)], reset: &[(String, usize)]) {
    let s = |n: usize| if n == 1 { "" } else { "s" };
    for c in &diff.added {
        info!(event = "reload.added", domain = %c.domain, "reload: component added, awaiting authentication");
    }
    for (d, n) in reset {
        info!(event = "reload.reset", domain = %d, connections_reset = n, "reload: component {d} re-added: its {n} detached connection{} closed with reset (\"{READDED_TEXT}\"), so the component reconnects", s(*n));
    }
    for (d, n) in removed {
        info!(event = "reload.removed", domain = %d, connections_detached = n, "reload: component removed ({n} connection{} detached)", s(*n));
    }
    for c in &diff.changed {
        info!(event = "reload.changed", domain = %c.domain, "reload: component changed; the next handshake uses the new settings");
    }
}

/// The summary line (also systemd's `STATUS=`), logged; returned for systemd.
fn summarize(diff: &Diff, removed: &[(String, usize)], bind_errors: usize) -> String {
    let detached: usize = removed.iter().map(|(_, n)| n).sum();
    let summary = format!(
        "reload: {} added, {} removed ({} connection{} detached), {} changed, {} unchanged{}",
        diff.added.len(),
        removed.len(),
        detached,
        if detached == 1 { "" } else { "s" },
        diff.changed.len(),
        diff.unchanged,
        if bind_errors == 0 {
            String::new()
        } else {
            format!(", {bind_errors} listen address(es) failed")
        }
    );
    info!(
        event = "reload.done",
        added = diff.added.len(),
        removed = removed.len(),
        changed = diff.changed.len(),
        unchanged = diff.unchanged,
        "{summary}"
    );
    summary
}

/// An operator's "try now": every link that is down and waiting for its next
/// attempt tries at once, whatever its backoff.
fn retry_down_links(env: &Env) {
    let waiting: Vec<Arc<str>> = env
        .router
        .domains()
        .into_iter()
        .filter(|d| d.link().as_ref().is_some_and(|l| l.retry_now()))
        .map(|d| d.name.clone())
        .collect();
    if !waiting.is_empty() {
        info!(
            event = "reload.retry_links",
            links = waiting.len(),
            "reload: retrying now the upstream link(s) that were down: {}",
            waiting.join(", ")
        );
    }
}

/// Apply a change of `[upstream]` from a reload: when it appears, every domain
/// with a session opens its link; when it disappears, every link is closed;
/// when the address changes, every link reconnects to the new one now.
fn apply_upstream(env: &Env, old: Option<&UpstreamConfig>, new: Option<&UpstreamConfig>) {
    let router = &env.router;
    let domains = router.domains();
    match (old, new) {
        (Some(_), None) => {
            info!("reload: [upstream] removed, closing the upstream links");
            for d in domains {
                d.close_upstream();
            }
        }
        (None, Some(u)) => {
            info!(address = %u.address, "reload: [upstream] added, starting the upstream links");
            let Some(limits) = router.upstream_queue() else {
                return;
            };
            for d in domains {
                if let Some(new) = d.open_upstream(limits) {
                    env.links.drive(router, &d, new);
                }
            }
        }
        // A changed `max_stanza_size` applies at the next (re)connect.
        (Some(a), Some(b)) if a.address != b.address => {
            info!(old = %a.address, new = %b.address, "reload: upstream address changed, reconnecting the upstream links");
            for d in domains {
                if let Some(link) = d.link().as_ref() {
                    link.reconfigure();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::config;
    use crate::router::{Routed, Router, Settings, Source};
    use crate::wire::out::Envelope;
    use crate::wire::stanza::Bounce;
    use crate::wire::xml::{Attrs, Head, Name, Ns};

    fn cfg(text: &str) -> config::Config {
        config::parse(text, Path::new("/tmp/reload-test.toml")).unwrap()
    }

    fn message_to(to: &'static str) -> Envelope {
        Envelope {
            head: Head {
                name: Name::Message,
                ns: Ns::Component,
            },
            attrs: Attrs {
                to: Some(to.into()),
                ..Attrs::default()
            },
            bytes: Bytes::from(format!("<message to='{to}'/>")),
            xmlns_value: None,
            prefixed: false,
        }
    }

    /// The bounce a stanza to `to` from domain `from` gets (`None`: delivered).
    fn route(router: &Router, from: &str, to: &'static str) -> Option<Bounce> {
        let from = router.domain(from).unwrap();
        match router.route(Source::Bounce(&from), message_to(to)) {
            Routed::Bounce(b, _) => Some(b),
            other => panic!("{other:?}"),
        }
    }

    /// The race the black-box tests cannot pin down: a stanza from (or to) a
    /// component is being routed while a reload detaches it. The detach waits
    /// for that delivery, so none happens after the reload returns.
    #[test]
    fn detach_waits_for_routing_in_progress() {
        let old = cfg("[components.a]\nsecret = \"a\"\n[components.b]\nsecret = \"b\"\n");
        let new = cfg("[components.a]\nsecret = \"a\"\n");
        let router = Router::new(&old);
        let b = router.domain("b").unwrap();
        let routing = b.routing().expect("attached");
        // Entering again while inside (a component sending to itself) never blocks.
        assert!(b.routing().is_some());

        std::thread::scope(|s| {
            let (done_tx, done_rx) = mpsc::channel();
            let r = &router;
            let (old, new) = (&old, &new);
            s.spawn(move || {
                let removed = r.apply(&config::diff(old, new), Settings::from_config(new));
                done_tx.send(removed).unwrap();
            });
            // The table swap is visible at once: new lookups miss b.
            let t0 = std::time::Instant::now();
            while router.domain("b").is_some() {
                assert!(t0.elapsed() < Duration::from_secs(5));
                std::thread::yield_now();
            }
            assert_eq!(route(&router, "a", "b"), Some(Bounce::NOT_FOUND));
            // But the reload is not done while a routing decision is in flight.
            assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
            drop(routing);
            let removed = done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(removed, vec![("b".to_string(), 0)]);
        });
        assert!(b.is_detached());
        assert!(b.routing().is_none());
        assert_eq!(
            route(&router, "a", "a"),
            Some(Bounce::COMPONENT_UNAVAILABLE)
        );
    }
}

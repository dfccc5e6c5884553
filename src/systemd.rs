//! The systemd notify protocol (`Type=notify-reload`): READY=1 once listening,
//! RELOADING=1 with MONOTONIC_USEC at SIGHUP then READY=1, STOPPING=1 at
//! shutdown, STATUS= with a one-line summary. All are no-ops without NOTIFY_SOCKET.
//! What is sent when: docs/behaviour.md#observability.

use sd_notify::NotifyState;
use tracing::debug;

fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        debug!("sd_notify failed: {e}");
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

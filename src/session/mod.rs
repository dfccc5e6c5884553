//! Sessions and their handles: what the rest of the router holds of a
//! connection or an upstream link, and may do with it.
//!
//! - [`outbox`]: the bounded queue of one connection (or link), slots and bytes.
//! - [`control`]: how to end a connection from elsewhere (a conflict).
//! - [`gate`]: the gate that makes a reload's detach exclusive with routing.
//! - [`link`]: the handle of an upstream link.
//! - [`Session`]: an authenticated component connection as others see it.

pub mod control;
pub mod gate;
pub mod link;
pub mod outbox;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::metrics::{ConnectionMetrics, ConnectionState, SessionMetrics};

pub use control::Control;
pub use gate::{Gate, Routing};
pub use link::Link;
pub use outbox::{outbox, Outbox, OutboxReceiver, PushError, QueueLimits, Refused, Reservation};

/// An authenticated connection, as the rest of the router sees it.
pub struct Session {
    pub id: u64,
    pub domain: Arc<str>,
    pub peer: SocketAddr,
    /// When it authenticated.
    pub since: SystemTime,
    /// Its bounded outgoing queue.
    pub outbox: Outbox,
    /// How to end it from elsewhere (a conflict).
    pub control: Arc<Control>,
    /// Its counters: the connection's reader and writer count its stanzas,
    /// routing its bounces; the domain's metrics sum them at scrape time.
    pub metrics: SessionMetrics,
    /// Its place in the `connections{state}` gauge (authenticated, or
    /// detached once a reload removed its domain).
    pub state: Mutex<ConnectionMetrics>,
}

impl Session {
    /// A reload detached the session's domain.
    pub fn mark_detached(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_state(ConnectionState::Detached);
    }
}

/// Resolves once `cond` holds; whoever makes it hold calls
/// `notify.notify_waiters()` afterwards.
pub async fn wait_until(notify: &Notify, cond: impl Fn() -> bool) {
    loop {
        let n = notify.notified();
        tokio::pin!(n);
        // Registered before the check, so a notification in between is not lost.
        n.as_mut().enable();
        if cond() {
            return;
        }
        n.await;
    }
}

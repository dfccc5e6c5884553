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
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio::sync::Notify;

pub use control::Control;
pub use gate::{Gate, Routing};
pub use link::{Link, LinkSendError};
pub use outbox::{outbox, Outbox, OutboxReceiver, PushError, QueueLimits, Refused};

/// An authenticated connection, as the rest of the router sees it.
pub struct Session {
    pub id: u64,
    pub domain: Arc<str>,
    pub peer: SocketAddr,
    pub outbox: Outbox,
    pub control: Arc<Control>,
    /// The session's link to the upstream server, when one is configured.
    pub upstream: ArcSwapOption<Link>,
}

impl Session {
    /// Close the upstream link, if any (session ended or detached).
    pub fn close_upstream(&self) {
        if let Some(link) = self.upstream.swap(None) {
            link.close();
        }
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

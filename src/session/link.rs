//! The handle of one upstream link: what routing and the rest of the router
//! may do with it (queue a stanza, close it, make it reconnect), while the task
//! in `crate::upstream` drives the connection behind it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::outbox::{outbox, Outbox, OutboxReceiver, PushError, QueueLimits, Refused};
use super::wait_until;
use crate::wire::out::Out;

/// A request from outside the link task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Close,
    Reconfigure,
}

/// One component's link to the upstream server.
pub struct Link {
    domain: Arc<str>,
    /// Authenticated and serving: [`Link::try_send`] queues.
    up: AtomicBool,
    closing: AtomicBool,
    reconfig: AtomicBool,
    wake: Notify,
    queue: Outbox,
    /// The link's task has ended: its connection (if any) is closed.
    done: AtomicBool,
    done_notify: Notify,
}

impl Link {
    /// A link for `domain` whose queue has these bounds, and the queue's
    /// receiving side for the task that drives it.
    pub fn new(domain: Arc<str>, limits: QueueLimits) -> (Arc<Link>, OutboxReceiver) {
        let (queue, rx) = outbox(limits);
        let link = Arc::new(Link {
            domain,
            up: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            reconfig: AtomicBool::new(false),
            wake: Notify::new(),
            queue,
            done: AtomicBool::new(false),
            done_notify: Notify::new(),
        });
        (link, rx)
    }

    pub fn domain(&self) -> &Arc<str> {
        &self.domain
    }

    /// The link's own queue (the task queues bounces to the server there).
    pub fn queue(&self) -> &Outbox {
        &self.queue
    }

    /// The task: the link is authenticated and serving (or not any more).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    /// [`Link::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The task: a reconfiguration is being applied (by the next attempt).
    pub fn clear_reconfigure(&self) {
        self.reconfig.store(false, Ordering::Release);
    }

    /// Queue a stanza for the server, without waiting. Refused (and handed
    /// back) when the link is not authenticated right now (`Closed`) or its
    /// queue is full.
    // The item is handed back by value: boxing it would allocate on every refusal.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, item: Out) -> Result<(), Refused> {
        if !self.up.load(Ordering::Acquire) {
            return Err(Refused {
                why: PushError::Closed,
                item,
            });
        }
        self.queue.try_push(item)
    }

    /// Close the link with `</stream:stream>` (after flushing what is queued)
    /// and stop retrying: the component's session ended, was replaced or
    /// detached, or `[upstream]` was removed.
    pub fn close(&self) {
        self.up.store(false, Ordering::Release);
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// The upstream address changed: close the current connection (if any)
    /// and connect to the new address now.
    pub fn reconfigure(&self) {
        self.reconfig.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Resolves once the link's task has ended (its connection closed).
    pub async fn finished(&self) {
        wait_until(&self.done_notify, || self.done.load(Ordering::Acquire)).await
    }

    /// The task has ended.
    pub fn set_finished(&self) {
        self.done.store(true, Ordering::Release);
        self.done_notify.notify_waiters();
    }

    /// Resolves when [`Link::close`] or [`Link::reconfigure`] was called
    /// (close wins). The reconfigure flag is cleared by the next attempt.
    pub async fn event(&self) -> Event {
        loop {
            if self.closing.load(Ordering::Acquire) {
                return Event::Close;
            }
            if self.reconfig.load(Ordering::Acquire) {
                return Event::Reconfigure;
            }
            // `notify_one` leaves a permit when nobody waits, so a request made
            // between the checks above and this await is not missed.
            self.wake.notified().await;
        }
    }
}

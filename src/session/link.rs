//! The handle of one upstream link: what routing and the rest of the router
//! may do with it (queue a stanza, close it, make it reconnect), while the task
//! in `crate::upstream` drives the connection behind it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::outbox::{outbox, Outbox, OutboxReceiver, PushError, QueueLimits, Refused};
use super::wait_until;
use crate::wire::out::Out;

/// Resolves once `flag` is set (by whoever then calls `notify_one`).
async fn wait_until_flag(notify: &Notify, flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        notify.notified().await;
    }
}

/// A request from outside the link task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Close,
    Reconfigure,
}

/// The "open" bit of [`Link::gate`].
const OPEN: usize = 1;
/// One caller inside [`Link::try_send`], in [`Link::gate`].
const IN_SEND: usize = 2;

/// One domain's link to the upstream server.
pub struct Link {
    domain: Arc<str>,
    /// Whether [`Link::try_send`] queues, and how many calls are inside it:
    /// bit 0 is "open" (the link is up, or its first attempt is still under
    /// way), the rest counts callers in units of [`IN_SEND`]. Closing the
    /// gate ([`Link::close_gate`]) waits for that count to reach zero, so
    /// once it returns every stanza admitted before is in the queue, where
    /// the task finds (and bounces) it; none can slip in after the drain.
    gate: AtomicUsize,
    closing: AtomicBool,
    reconfig: AtomicBool,
    /// [`Link::retry_now`] was called while a retry was scheduled.
    retry: AtomicBool,
    retry_wake: Notify,
    wake: Notify,
    queue: Outbox,
    /// The link's task has ended: its connection (if any) is closed.
    done: AtomicBool,
    done_notify: Notify,
    /// What the task last said about the connection, for metrics and
    /// `status` (read at scrape time; written only by the task).
    state: LinkState,
}

/// The state of a link as a scrape sees it: authenticated or not, and while
/// not, when the next attempt starts.
struct LinkState {
    /// The origin of `retry_at`.
    born: Instant,
    up: AtomicBool,
    /// Milliseconds after `born` of the next attempt, plus one; 0: none
    /// scheduled (an attempt is under way, or the link is up).
    retry_at: AtomicU64,
}

/// What [`Link::status`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    /// While down and waiting: when the next attempt starts.
    pub next_retry: Option<Instant>,
}

impl Link {
    /// A link for `domain` whose queue has these bounds, and the queue's
    /// receiving side for the task that drives it.
    pub fn new(domain: Arc<str>, limits: QueueLimits) -> (Arc<Link>, OutboxReceiver) {
        let (queue, rx) = outbox(limits);
        let link = Arc::new(Link {
            domain,
            // Open from the start: what the component sends while the first
            // attempt is under way waits in the queue (the task bounds the wait).
            gate: AtomicUsize::new(OPEN),
            closing: AtomicBool::new(false),
            reconfig: AtomicBool::new(false),
            retry: AtomicBool::new(false),
            retry_wake: Notify::new(),
            wake: Notify::new(),
            queue,
            done: AtomicBool::new(false),
            done_notify: Notify::new(),
            state: LinkState {
                born: Instant::now(),
                up: AtomicBool::new(false),
                retry_at: AtomicU64::new(0),
            },
        });
        (link, rx)
    }

    /// The task: the link is authenticated (`true`), or an attempt starts or
    /// the connection ended (`false`); no retry is scheduled (and a request
    /// to retry now is used up).
    pub fn set_up(&self, up: bool) {
        self.retry.store(false, Ordering::Release);
        self.state.retry_at.store(0, Ordering::Relaxed);
        self.state.up.store(up, Ordering::Relaxed);
    }

    /// The task: the link is down and its next attempt starts after `delay`.
    pub fn set_retry_in(&self, delay: Duration) {
        let at = self.state.born.elapsed().saturating_add(delay);
        let ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX - 1);
        self.state.up.store(false, Ordering::Relaxed);
        self.state.retry_at.store(ms + 1, Ordering::Relaxed);
    }

    /// Up or down, and the next attempt (for metrics and `status`).
    pub fn status(&self) -> LinkStatus {
        let ms = self.state.retry_at.load(Ordering::Relaxed);
        LinkStatus {
            up: self.state.up.load(Ordering::Relaxed),
            next_retry: ms
                .checked_sub(1)
                .map(|ms| self.state.born + Duration::from_millis(ms)),
        }
    }

    pub fn domain(&self) -> &Arc<str> {
        &self.domain
    }

    /// The link's own queue (the task queues bounces to the server there).
    pub fn queue(&self) -> &Outbox {
        &self.queue
    }

    /// The task: the link is authenticated and serving; stanzas queue.
    pub fn open_gate(&self) {
        self.gate.fetch_or(OPEN, Ordering::SeqCst);
    }

    /// The task: refuse stanzas from now on, and return once no caller of
    /// [`Link::try_send`] is still pushing one it admitted (a matter of
    /// nanoseconds: pushes never wait).
    pub async fn close_gate(&self) {
        self.gate.fetch_and(!OPEN, Ordering::SeqCst);
        while self.gate.load(Ordering::SeqCst) >= IN_SEND {
            tokio::task::yield_now().await;
        }
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
    /// back) when the link is down (`Closed`: not authenticated, and its
    /// first attempt is over) or its queue is full.
    // The item is handed back by value: boxing it would allocate on every refusal.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, item: Out) -> Result<(), Refused> {
        // SeqCst pairs with `close_gate`: either this sees the gate closed, or
        // `close_gate` sees this caller inside and waits for its push.
        let before = self.gate.fetch_add(IN_SEND, Ordering::SeqCst);
        let r = if before & OPEN == 0 {
            Err(Refused {
                why: PushError::Closed,
                item,
            })
        } else {
            self.queue.try_push(item)
        };
        self.gate.fetch_sub(IN_SEND, Ordering::SeqCst);
        r
    }

    /// Close the link with `</stream:stream>` (after flushing what is queued)
    /// and stop retrying: the component's session ended, was replaced or
    /// detached, or `[upstream]` was removed.
    pub fn close(&self) {
        self.gate.fetch_and(!OPEN, Ordering::SeqCst);
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// The upstream address changed: close the current connection (if any)
    /// and connect to the new address now.
    pub fn reconfigure(&self) {
        self.reconfig.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// A SIGHUP: if the link is down and waiting for its next attempt, make
    /// that attempt now. Returns whether it was waiting.
    pub fn retry_now(&self) -> bool {
        let scheduled = self.state.retry_at.load(Ordering::Relaxed) != 0;
        if !scheduled || self.is_closing() {
            return false;
        }
        self.retry.store(true, Ordering::Release);
        self.retry_wake.notify_one();
        true
    }

    /// Resolves when [`Link::retry_now`] was called during the backoff.
    pub async fn retry_requested(&self) {
        wait_until_flag(&self.retry_wake, &self.retry).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn status_reports_up_and_the_next_retry() {
        let limits = QueueLimits {
            max_stanzas: 1,
            max_bytes: 1,
        };
        let (link, _rx) = Link::new(Arc::from("a.example"), limits);
        let none = LinkStatus {
            up: false,
            next_retry: None,
        };
        assert_eq!(link.status(), none);
        let before = Instant::now();
        link.set_retry_in(Duration::from_secs(24));
        let st = link.status();
        assert!(!st.up);
        let at = st.next_retry.expect("a retry is scheduled");
        assert!(at >= before + Duration::from_millis(23_999), "{at:?}");
        assert!(at <= Instant::now() + Duration::from_secs(24));
        // An attempt starts: nothing scheduled; it succeeds: up.
        link.set_up(false);
        assert_eq!(link.status(), none);
        link.set_up(true);
        assert_eq!(
            link.status(),
            LinkStatus {
                up: true,
                next_retry: None
            }
        );
    }

    /// Every stanza offered while the gate closes is either refused to its
    /// sender or already in the queue when `close_gate` returns: the drain
    /// that follows finds it, none arrives later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_slips_into_the_queue_after_the_gate_closed() {
        for _ in 0..200 {
            let (link, mut rx) = Link::new(
                Arc::from("a.example"),
                QueueLimits {
                    max_stanzas: 100_000,
                    max_bytes: usize::MAX,
                },
            );
            let (queued, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let senders: Vec<_> = (0..2)
                .map(|_| {
                    let (link, queued, refused) = (link.clone(), queued.clone(), refused.clone());
                    std::thread::spawn(move || loop {
                        match link.try_send(Out::Raw(bytes::Bytes::from_static(b"x"))) {
                            Ok(()) => queued.fetch_add(1, Ordering::SeqCst),
                            Err(_) => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        };
                    })
                })
                .collect();
            tokio::task::yield_now().await;
            link.close_gate().await;
            let drained = rx.drain().len();
            for s in senders {
                s.join().unwrap();
            }
            assert_eq!(refused.load(Ordering::SeqCst), 2);
            assert_eq!(
                drained,
                queued.load(Ordering::SeqCst),
                "a stanza entered after the drain"
            );
            assert!(rx.drain().is_empty());
        }
    }
}

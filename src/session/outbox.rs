//! The bounded outgoing queue of one connection (or one upstream link).
//!
//! One rule bounds it on every path that fills it: at most `max_stanzas` items
//! and `max_bytes` of their cost that the writer has not completely written yet.
//! [`Outbox::try_push`] never waits (a stanza routed from someone else: the
//! sender is told, and bounces `resource-constraint`); [`Outbox::push`] and
//! [`Outbox::reserve`] wait for room in both (bounces to the connection's own
//! peer, stanzas from its upstream link), which holds back only whoever feeds
//! this queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::wire::out::Out;
use crate::wire::writer::Queue;

/// Bounds of one outgoing queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    pub max_stanzas: usize,
    pub max_bytes: usize,
}

/// Why a push into an outbox failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue is at its stanza or byte bound (a slow reader).
    Full,
    /// The connection is gone.
    Closed,
}

/// A push that failed, with the item it could not queue.
#[derive(Debug)]
pub struct Refused {
    pub why: PushError,
    pub item: Out,
}

/// The sending side of a connection's bounded outgoing queue.
///
/// One rule bounds it on every path: at most `max_stanzas` items and
/// `max_bytes` of their cost ([`Out::cost`]: their bytes, and decoded
/// attribute values) that the writer has not completely written yet (or a
/// single item, when one alone costs more). [`Outbox::try_push`] fails when
/// either bound is reached; [`Outbox::push`] and [`Outbox::reserve`] wait
/// until both have room.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Out>,
    bytes: Arc<QueueBytes>,
    max_bytes: usize,
}

/// Bytes queued and not yet written, shared by an outbox and its writer.
#[derive(Default)]
struct QueueBytes {
    queued: AtomicUsize,
    /// Pushes waiting for bytes (so releasing wakes nobody when none wait).
    waiting: AtomicUsize,
    /// Woken when bytes are released while someone waits.
    room: Notify,
}

impl QueueBytes {
    fn release(&self, n: usize) {
        // SeqCst with the waiter's `waiting` increment and its check of
        // `queued`: either it sees these bytes gone, or this sees it waiting.
        let before = self.queued.fetch_sub(n, Ordering::SeqCst);
        debug_assert!(before >= n, "released {n} of {before} queued bytes");
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }
}

/// The writer's side of an [`Outbox`].
pub struct OutboxReceiver {
    rx: mpsc::Receiver<Out>,
    bytes: Arc<QueueBytes>,
}

impl OutboxReceiver {
    /// Bytes queued or taken and not yet released.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.queued.load(Ordering::Acquire)
    }

    /// Refuse further pushes; what is queued can still be taken.
    pub fn close(&mut self) {
        self.rx.close();
    }

    /// Take everything queued now; it no longer counts against the bound.
    pub fn drain(&mut self) -> Vec<Out> {
        let mut v = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            self.bytes.release(item.cost());
            v.push(item);
        }
        v
    }

    /// Wait for the next item (for tests and owners that drain one by one).
    pub async fn recv(&mut self) -> Option<Out> {
        self.rx.recv().await
    }
}

impl Queue for OutboxReceiver {
    fn recv_many(
        &mut self,
        batch: &mut Vec<Out>,
        limit: usize,
    ) -> impl std::future::Future<Output = usize> + Send {
        self.rx.recv_many(batch, limit)
    }

    fn try_recv(&mut self) -> Option<Out> {
        self.rx.try_recv().ok()
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.bytes.release(n);
        }
    }
}

pub fn outbox(limits: QueueLimits) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(limits.max_stanzas.max(1));
    let bytes = Arc::new(QueueBytes::default());
    (
        Outbox {
            tx,
            bytes: bytes.clone(),
            max_bytes: limits.max_bytes,
        },
        OutboxReceiver { rx, bytes },
    )
}

/// Counts one waiting push while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Room for one item in an [`Outbox`]: a slot and its cost, held until
/// [`Reservation::send`] (or given back when dropped).
pub struct Reservation<'a> {
    permit: Option<mpsc::Permit<'a, Out>>,
    bytes: &'a QueueBytes,
    cost: usize,
}

impl Reservation<'_> {
    /// Queue the item the room was reserved for (`item.cost()` must be that cost).
    pub fn send(mut self, item: Out) {
        debug_assert_eq!(item.cost(), self.cost);
        if let Some(p) = self.permit.take() {
            p.send(item);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.bytes.release(self.cost);
        }
    }
}

impl Outbox {
    /// Items and bytes queued and not yet written (items taken by the writer
    /// count in bytes until written): for metrics, read at scrape time.
    pub fn depth(&self) -> (usize, usize) {
        let items = self.tx.max_capacity() - self.tx.capacity();
        (items, self.bytes.queued.load(Ordering::Relaxed))
    }

    /// Count `cost` more in if the byte bound allows it.
    fn take_bytes(&self, cost: usize) -> bool {
        let max = self.max_bytes;
        self.bytes
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q == 0 || q.saturating_add(cost) <= max).then_some(q + cost)
            })
            .is_ok()
    }

    /// Queue without waiting; fails when the queue is full or closed, and
    /// gives the item back.
    // The item is handed back by value: boxing it would allocate on every refusal.
    #[allow(clippy::result_large_err)]
    pub fn try_push(&self, item: Out) -> Result<(), Refused> {
        let cost = item.cost();
        if !self.take_bytes(cost) {
            let why = if self.tx.is_closed() {
                PushError::Closed
            } else {
                PushError::Full
            };
            return Err(Refused { why, item });
        }
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.bytes.release(cost);
                Err(match e {
                    mpsc::error::TrySendError::Full(item) => Refused {
                        why: PushError::Full,
                        item,
                    },
                    mpsc::error::TrySendError::Closed(item) => Refused {
                        why: PushError::Closed,
                        item,
                    },
                })
            }
        }
    }

    /// Wait for room for an item of this cost: a slot, then the bytes.
    /// Fails only when the connection is gone. Cancel-safe: dropping the
    /// future (or the reservation) gives back what was taken.
    pub async fn reserve(&self, cost: usize) -> Result<Reservation<'_>, PushError> {
        let permit = self.tx.reserve().await.map_err(|_| PushError::Closed)?;
        if self.take_bytes(cost) {
            return Ok(Reservation {
                permit: Some(permit),
                bytes: &self.bytes,
                cost,
            });
        }
        let _waiting = Waiting::new(&self.bytes.waiting);
        loop {
            let room = self.bytes.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.take_bytes(cost) {
                return Ok(Reservation {
                    permit: Some(permit),
                    bytes: &self.bytes,
                    cost,
                });
            }
            tokio::select! {
                _ = &mut room => {}
                _ = self.tx.closed() => return Err(PushError::Closed),
            }
        }
    }

    /// Queue, waiting for room (slots and bytes). Only the connection's own
    /// reader and its upstream link wait on an outbox, so this back-pressures
    /// only them: the peer that is not reading, or the link feeding it.
    pub async fn push(&self, item: Out) -> Result<(), PushError> {
        self.reserve(item.cost()).await?.send(item);
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn b(n: usize) -> Out {
        Out::Raw(bytes::Bytes::from(vec![b'x'; n]))
    }

    /// `try_push` without the refused item.
    fn try_push(out: &Outbox, item: Out) -> Result<(), PushError> {
        out.try_push(item).map_err(|r| r.why)
    }

    #[test]
    fn try_push_honours_both_bounds() {
        let (out, rx) = outbox(QueueLimits {
            max_stanzas: 3,
            max_bytes: 100,
        });
        // One stanza alone may exceed the byte bound; nothing joins it.
        assert_eq!(try_push(&out, b(150)), Ok(()));
        assert_eq!(try_push(&out, b(1)), Err(PushError::Full));
        let mut rx = rx;
        let got = rx.try_recv().unwrap();
        rx.release(got.cost());
        assert_eq!(try_push(&out, b(60)), Ok(()));
        assert_eq!(try_push(&out, b(40)), Ok(()));
        assert_eq!(try_push(&out, b(1)), Err(PushError::Full));
        assert_eq!(rx.queued_bytes(), 100);
        drop(rx);
        assert_eq!(try_push(&out, b(1)), Err(PushError::Closed));
    }

    /// The waiting push waits for bytes as well as for slots, and a dropped
    /// wait gives its reservation back.
    #[tokio::test]
    async fn push_waits_for_bytes_and_slots() {
        let (out, mut rx) = outbox(QueueLimits {
            max_stanzas: 100,
            max_bytes: 100,
        });
        out.push(b(80)).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), out.push(b(30))).await;
        assert!(blocked.is_err(), "pushed past the byte bound");
        assert_eq!(rx.queued_bytes(), 80, "the cancelled wait kept its bytes");
        let waiter = {
            let out = out.clone();
            tokio::spawn(async move { out.push(b(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let first = rx.recv().await.unwrap();
        rx.release(first.cost());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the push did not resume once bytes were released")
            .unwrap()
            .unwrap();
        assert_eq!(rx.queued_bytes(), 30);

        let (out, mut rx) = outbox(QueueLimits {
            max_stanzas: 1,
            max_bytes: 1000,
        });
        out.push(b(1)).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), out.push(b(1))).await;
        assert!(blocked.is_err(), "pushed past the stanza bound");
        let r = out.clone();
        let waiter = tokio::spawn(async move { r.push(b(1)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx.recv().await);
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the push did not end");
        // Waiting for bytes ends when the connection goes.
        let (out, rx) = outbox(QueueLimits {
            max_stanzas: 10,
            max_bytes: 10,
        });
        out.push(b(10)).await.unwrap();
        let o = out.clone();
        let waiter = tokio::spawn(async move { o.push(b(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the push did not end when the receiver went")
            .unwrap();
        assert_eq!(r, Err(PushError::Closed));
    }
}

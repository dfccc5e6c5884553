//! One writer for both sockets: it drains a bounded queue into batched
//! `writev`s, sends a whitespace keepalive after a while without writing,
//! bounds how long a write may make no progress, closes gracefully, and hands
//! the stanzas it did not write back to its owner (to bounce them).
//!
//! The writer owns the write half and what it has taken from the queue and not
//! yet completely written ([`Pending`]). Every write is cancel-safe: how far it
//! got is recorded as each `writev` completes, so [`Writer::run`] can be raced
//! against a close request at any point, and [`Writer::close`] then knows
//! exactly what is left. Queue items count against the queue's byte bound until
//! they are written or handed back ([`Queue::release`]).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::debug;

use crate::metrics::SessionCounters;
use crate::wire::out::Out;

/// Most items one `writev` takes.
pub const WRITE_BATCH: usize = 64;
/// How long a closing writer may take to write its last bytes.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The receiving side of a bounded outgoing queue, as a writer drains it.
pub trait Queue {
    /// Wait for items and move up to `limit` of them into `batch`; 0 once the
    /// queue is closed and empty. Cancel-safe.
    fn recv_many(
        &mut self,
        batch: &mut Vec<Out>,
        limit: usize,
    ) -> impl Future<Output = usize> + Send;
    /// An item if one is queued, without waiting.
    fn try_recv(&mut self) -> Option<Out>;
    /// Items costing `cost` that were taken are written or handed back: they
    /// no longer count against the queue's bound.
    fn release(&self, cost: usize);
}

/// Why writing stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
    /// A write made no progress for this long: the peer reads nothing.
    #[error("no write progress for {0:?}")]
    Stalled(Duration),
}

/// How [`Writer::close`] ends the stream.
#[derive(Debug)]
pub enum Closing {
    /// Write everything taken and still queued, then these bytes (a stream
    /// error, `</stream:stream>`), then shut the socket down.
    Flush(Bytes),
    /// Finish only the item being written (so the peer can parse what
    /// follows), then these bytes; the rest is handed back.
    Abandon(Bytes),
    /// Write nothing more (the socket failed).
    Drop,
}

/// Items being written: `items[idx..]`, of which `offset` bytes of the first
/// are written. They are either a batch taken from the queue (`counted`: their
/// cost is released as they complete) or one item of the writer's own (a
/// keepalive, a control item), never both.
#[derive(Default)]
struct Pending {
    items: Vec<Out>,
    idx: usize,
    offset: usize,
    counted: bool,
    /// Where completely written stanzas are counted (`out`), if anywhere.
    metrics: Option<Arc<SessionCounters>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.idx == self.items.len()
    }

    /// An item of the writer's own, not from the queue (only when empty).
    fn push_own(&mut self, b: Bytes) {
        debug_assert!(self.is_empty());
        self.counted = false;
        self.items.push(Out::Raw(b));
    }

    /// Take up to a batch from the queue without waiting (only when empty).
    fn refill<Q: Queue>(&mut self, q: &mut Q) {
        self.counted = true;
        while self.items.len() < WRITE_BATCH {
            match q.try_recv() {
                Some(item) => self.items.push(item),
                None => break,
            }
        }
    }

    /// One `writev` of up to [`WRITE_BATCH`] items; returns the cost of the
    /// items it completed. Cancel-safe: nothing is recorded unless it completes.
    async fn write_some(&mut self, w: &mut OwnedWriteHalf) -> io::Result<usize> {
        let n = {
            let mut iov = [io::IoSlice::new(&[]); WRITE_BATCH];
            let mut k = 0;
            for (i, item) in self.items[self.idx..].iter().take(WRITE_BATCH).enumerate() {
                let b = item.bytes();
                iov[k] = io::IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
                k += 1;
            }
            w.write_vectored(&iov[..k]).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(self.advance(n))
    }

    /// `n` more bytes were written; returns the cost of the items completed.
    fn advance(&mut self, mut n: usize) -> usize {
        let mut done = 0;
        while n > 0 && self.idx < self.items.len() {
            let item = &self.items[self.idx];
            let rest = item.bytes().len() - self.offset;
            if n >= rest {
                n -= rest;
                if self.counted {
                    done += item.cost();
                    if let (Some(m), Out::Stanza(e)) = (&self.metrics, item) {
                        m.stanza_out(e.bytes.len());
                    }
                }
                self.idx += 1;
                self.offset = 0;
            } else {
                self.offset += n;
                n = 0;
            }
        }
        if self.is_empty() {
            self.items.clear();
            self.idx = 0;
        }
        done
    }

    /// Complete the item being written, if one is partly written.
    async fn finish_current(&mut self, w: &mut OwnedWriteHalf) -> io::Result<usize> {
        let mut done = 0;
        if self.offset > 0 {
            let item = self.idx;
            while self.idx == item && !self.is_empty() {
                done += self.write_some(w).await?;
            }
        }
        Ok(done)
    }

    /// What is left, a partly written item included, and its cost.
    fn take_unwritten(&mut self) -> (Vec<Out>, usize) {
        let left: Vec<Out> = self.items.drain(self.idx..).collect();
        self.items.clear();
        self.idx = 0;
        self.offset = 0;
        let cost = if self.counted {
            left.iter().map(Out::cost).sum()
        } else {
            0
        };
        (left, cost)
    }
}

/// The write half of a connection and what it is writing.
pub struct Writer {
    w: OwnedWriteHalf,
    pending: Pending,
    /// A single space after this long without writing.
    keepalive: Option<Duration>,
    /// A write that makes no progress for this long fails.
    stall: Option<Duration>,
    /// When something was last written (`None`: nothing yet, so no keepalive).
    last_write: Option<Instant>,
}

impl Writer {
    pub fn new(w: OwnedWriteHalf, keepalive: Option<Duration>, stall: Option<Duration>) -> Self {
        Writer {
            w,
            pending: Pending::default(),
            keepalive,
            stall,
            last_write: None,
        }
    }

    /// Count every stanza from the queue once it is completely written
    /// (a relaxed atomic add on counters only this writer updates).
    pub fn counting(mut self, metrics: Arc<SessionCounters>) -> Self {
        self.pending.metrics = Some(metrics);
        self
    }

    /// Something was written already (e.g. a handshake, directly): the
    /// keepalive timer runs from now.
    pub fn written_now(&mut self) {
        self.last_write = Some(Instant::now());
    }

    /// Write what `q` holds (and what arrives on `ctl`, ahead of the queue)
    /// until `stop` resolves (`Ok(Some(_))`), the queue is closed and empty
    /// (`Ok(None)`), or writing fails.
    pub async fn run<Q: Queue, T>(
        &mut self,
        q: &mut Q,
        mut ctl: Option<&mut mpsc::Receiver<Bytes>>,
        stop: impl Future<Output = T>,
    ) -> Result<Option<T>, WriteError> {
        tokio::pin!(stop);
        loop {
            if self.pending.is_empty() {
                let ka = self.keepalive.zip(self.last_write).map(|(k, t)| t + k);
                tokio::select! {
                    biased;
                    t = &mut stop => return Ok(Some(t)),
                    Some(b) = recv_ctl(&mut ctl) => self.pending.push_own(b),
                    n = q.recv_many(&mut self.pending.items, WRITE_BATCH) => {
                        if n == 0 {
                            return Ok(None);
                        }
                        self.pending.counted = true;
                    }
                    _ = sleep_until(ka.unwrap_or_else(Instant::now)), if ka.is_some() => {
                        self.pending.push_own(Bytes::from_static(b" "));
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                t = &mut stop => return Ok(Some(t)),
                r = self.write_timed() => q.release(r?),
            }
        }
    }

    /// One `writev`, failing when it makes no progress within the stall bound.
    async fn write_timed(&mut self) -> Result<usize, WriteError> {
        let done = match self.stall {
            Some(d) => timeout(d, self.pending.write_some(&mut self.w))
                .await
                .map_err(|_| WriteError::Stalled(d))??,
            None => self.pending.write_some(&mut self.w).await?,
        };
        self.last_write = Some(Instant::now());
        Ok(done)
    }

    /// End the stream as `how` says, within [`CLOSE_GRACE`]. Returns the
    /// items taken from the queue and not completely written (a partly
    /// written one included); everything taken no longer counts against the
    /// queue. What is still in the queue stays there for the owner.
    pub async fn close<Q: Queue>(mut self, q: &mut Q, how: Closing) -> Vec<Out> {
        let last = match how {
            Closing::Flush(b) => Some((b, true)),
            Closing::Abandon(b) => Some((b, false)),
            Closing::Drop => None,
        };
        if let Some((last, flush)) = last {
            let written = timeout(CLOSE_GRACE, self.write_last(q, last, flush)).await;
            if !matches!(written, Ok(Ok(()))) {
                debug!("could not write the end of a stream in time");
            }
        }
        let (left, cost) = self.pending.take_unwritten();
        q.release(cost);
        left
    }

    async fn write_last<Q: Queue>(
        &mut self,
        q: &mut Q,
        last: Bytes,
        flush: bool,
    ) -> io::Result<()> {
        if flush {
            loop {
                while !self.pending.is_empty() {
                    let done = self.pending.write_some(&mut self.w).await?;
                    q.release(done);
                }
                self.pending.refill(q);
                if self.pending.is_empty() {
                    break;
                }
            }
        } else {
            let done = self.pending.finish_current(&mut self.w).await?;
            q.release(done);
        }
        self.w.write_all(&last).await?;
        self.w.shutdown().await
    }
}

/// The next control item, or never when there is no control channel.
async fn recv_ctl(ctl: &mut Option<&mut mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match ctl {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(b: &'static [u8]) -> Out {
        Out::Raw(Bytes::from_static(b))
    }

    #[test]
    fn pending_tracks_partial_writes() {
        let mut p = Pending {
            counted: true,
            ..Pending::default()
        };
        p.items.push(stanza(b"abc"));
        p.items.push(stanza(b" "));
        p.items.push(stanza(b"defg"));
        assert_eq!(p.advance(2), 0);
        assert_eq!(p.offset, 2);
        // "abc" and " " are done.
        assert_eq!(p.advance(2), 4);
        assert_eq!(p.idx, 2);
        assert_eq!(p.advance(1), 0);
        assert_eq!(p.offset, 1);
        // The partly written item is handed back whole.
        let (left, cost) = p.take_unwritten();
        assert_eq!(cost, 4);
        assert_eq!(left.len(), 1);
        assert_eq!(&left[0].bytes()[..], b"defg");
        assert!(p.is_empty());
    }

    /// What the writer writes of its own (keepalives, pings) never counts
    /// against the queue: only what it took from the queue is released.
    #[test]
    fn own_items_release_nothing() {
        let mut p = Pending::default();
        p.push_own(Bytes::from_static(b" "));
        assert_eq!(p.advance(1), 0);
        p.push_own(Bytes::from_static(b"<iq/>"));
        assert_eq!(p.advance(2), 0);
        assert_eq!(p.take_unwritten().1, 0);
    }
}

//! One framed reader for both sockets (as tokio's mini-redis `Connection`):
//! it owns the read half, the framer and the read sizing.
//!
//! - Reads grow while they come back full (up to [`Sizing::max`]) and fall back
//!   to [`Sizing::min`] when not, so a busy peer is read in large pieces and an
//!   idle one holds little.
//! - After a read that filled its buffer the reader yields before the next one:
//!   the peer is sending fast, and the tasks it just queued stanzas for (their
//!   writers, on this worker) must get a turn before it fills their bounded
//!   queues. One read is at most [`Sizing::max`] bytes of framing work.
//! - After [`IDLE_SHRINK`] without input, the framer drops its buffers.
//!
//! [`FramedReader::fill`] makes one read and is cancel-safe, so callers check
//! their deadlines and kills before every read and race it against them.

use std::io;
use std::time::Duration;

use tokio::net::tcp::OwnedReadHalf;

use crate::wire::xml::{Frame, FrameError, Framer, Limits};

/// After this long without input, an idle stream drops its buffers.
pub const IDLE_SHRINK: Duration = Duration::from_secs(2);

/// How much one read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    pub min: usize,
    pub max: usize,
}

impl Sizing {
    /// Authenticated streams: 4 KiB, growing to 64 KiB while reads come back full.
    pub const STREAM: Sizing = Sizing {
        min: 4096,
        max: 64 * 1024,
    };

    /// Reads that never grow.
    pub const fn fixed(n: usize) -> Sizing {
        Sizing { min: n, max: n }
    }
}

/// Why a stream produced no more frames.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the TCP connection (EOF).
    #[error("connection closed")]
    Closed,
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// What the peer sent is not acceptable XML: the stream error to send.
    #[error("{0}")]
    Xml(#[from] FrameError),
}

/// The read half of a connection with its framer.
pub struct FramedReader {
    rd: OwnedReadHalf,
    framer: Framer,
    sizing: Sizing,
    read_size: usize,
}

impl FramedReader {
    pub fn new(rd: OwnedReadHalf, limits: Limits, sizing: Sizing) -> Self {
        FramedReader {
            rd,
            framer: Framer::new(limits),
            sizing,
            read_size: sizing.min,
        }
    }

    /// New limits and read sizes from the next frame on (a component that
    /// authenticated).
    pub fn set_limits(&mut self, limits: Limits, sizing: Sizing) {
        self.framer.set_limits(limits);
        self.sizing = sizing;
        self.read_size = sizing.min;
    }

    /// The next frame from what has been read, without reading.
    pub fn frame(&mut self) -> Result<Option<Frame>, FrameError> {
        self.framer.next_frame()
    }

    /// One read into the framer (waiting until the socket is readable).
    /// Cancel-safe: dropped before the read, nothing is lost.
    pub async fn fill(&mut self) -> Result<(), ReadError> {
        if self.read_size > self.sizing.min {
            // The last read filled its buffer: let others run first.
            tokio::task::yield_now().await;
        }
        loop {
            let holds = !self.framer.is_idle() || self.framer.buf_mut().capacity() > 0;
            tokio::select! {
                biased;
                r = self.rd.readable() => {
                    r?;
                    break;
                }
                _ = tokio::time::sleep(IDLE_SHRINK), if holds => self.framer.shrink(),
            }
        }
        match self.try_fill() {
            Ok(_) => Ok(()),
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One read of what has already arrived, without waiting; `Ok(0)` only
    /// when nothing had (`WouldBlock` is an `Io` error).
    pub fn try_fill(&mut self) -> Result<usize, ReadError> {
        let want = self.read_size;
        let buf = self.framer.buf_mut();
        buf.reserve(want);
        let n = self.rd.try_read_buf(buf)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        // Grow reads while they come back full, shrink when not.
        self.read_size = if n >= want {
            (want * 2).min(self.sizing.max)
        } else {
            self.sizing.min
        };
        Ok(n)
    }

    /// The next frame, reading as needed.
    pub async fn read_frame(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(f) = self.frame()? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Drop the framer's buffers if nothing partial is held.
    pub fn shrink(&mut self) {
        self.framer.shrink();
    }
}

//! A raw XEP-0114 component client over TCP, for black-box tests, and the
//! expectations tests put on what it receives: stanzas routed byte for byte,
//! stream errors, clean closes, silence.
//!
//! It reads what the router writes with [`XmlReader`] (rxml, not the router's
//! own framer), so every byte the router writes is checked for well-formedness
//! by an independent parser, and gives each top-level element back as a
//! string. A [`Comp`] splits into a reader ([`CompRx`]) and a writer half for
//! tests that send and receive at once.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::el::{parse_el, El};
use crate::inspect::condition_of;
use crate::ns;
use crate::reader::{Item, XmlReader};
use crate::stanza;

/// How long one receive waits by default.
pub const T: Duration = Duration::from_secs(5);

/// A component connection: `S` is the TCP stream, or its read half after
/// [`Comp::into_split`].
pub struct Comp<S = TcpStream> {
    pub stream: S,
    reader: XmlReader,
    /// The `id` of the router's stream header, once it came.
    pub stream_id: Option<String>,
    /// The router's stream header (its start tag), once it came.
    pub header: Option<String>,
    /// The router closed the TCP connection.
    pub closed: bool,
}

/// The read half of a [`Comp`].
pub type CompRx = Comp<OwnedReadHalf>;

/// What the router sent and did.
#[derive(Debug)]
pub enum Got {
    /// A top-level element, exactly as sent; the stream header comes as
    /// `HEADER <everything up to its end>`.
    Stanza(String),
    /// `</stream:stream>` (the router closed its stream).
    End,
    /// TCP closed.
    Closed,
    Timeout,
    /// What the router sent is not well-formed (rxml's reason, and the bytes).
    Malformed(String),
}

impl Comp {
    pub async fn connect(addr: SocketAddr) -> Comp {
        let stream = timeout(T, TcpStream::connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        stream.set_nodelay(true).ok();
        Comp {
            stream,
            reader: XmlReader::new(),
            stream_id: None,
            header: None,
            closed: false,
        }
    }

    /// Connect, open and authenticate; panics if any step fails.
    pub async fn login(addr: SocketAddr, domain: &str, secret: &str) -> Comp {
        let mut c = Comp::connect(addr).await;
        c.open_ok(domain).await;
        match c.handshake(secret).await {
            Got::Stanza(s) if s == "<handshake/>" => {}
            other => panic!("{domain}: handshake refused: {other:?}"),
        }
        c
    }

    pub async fn send(&mut self, s: &str) {
        let _ = self.stream.write_all(s.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b).await
    }

    /// Send our stream header for `to`; returns the router's header (or the
    /// error element if it refused).
    pub async fn open(&mut self, to: &str) -> Got {
        self.send(&stanza::header(to)).await;
        self.recv().await
    }

    /// [`Comp::open`], and the router must answer with its header.
    pub async fn open_ok(&mut self, to: &str) {
        match self.open(to).await {
            Got::Stanza(h) if h.starts_with("HEADER") => {}
            other => panic!("{to}: header refused: {other:?}"),
        }
    }

    /// Send the handshake for `secret` without reading the answer.
    pub async fn send_handshake(&mut self, secret: &str) {
        let id = self.stream_id.clone().expect("no stream id");
        self.send(&stanza::handshake(&id, secret)).await;
    }

    /// Send the handshake for `secret`; returns the answer.
    pub async fn handshake(&mut self, secret: &str) -> Got {
        self.send_handshake(secret).await;
        self.recv().await
    }

    /// The peer ends its stream; the router must answer `</stream:stream>` and
    /// close.
    pub async fn close_cleanly(&mut self, what: &str) {
        self.send("</stream:stream>").await;
        self.expect_end_and_close(what).await;
    }

    /// A reader half (which keeps what was received and not yet read) and a
    /// writer half.
    pub fn into_split(self) -> (CompRx, OwnedWriteHalf) {
        let (rd, wr) = self.stream.into_split();
        let rx = Comp {
            stream: rd,
            reader: self.reader,
            stream_id: self.stream_id,
            header: self.header,
            closed: self.closed,
        };
        (rx, wr)
    }
}

impl<S: AsyncRead + Unpin> Comp<S> {
    pub async fn recv(&mut self) -> Got {
        self.recv_timeout(T).await
    }

    /// The next top-level element; the stream header comes back as
    /// `HEADER <raw bytes>` and sets `stream_id` and `header`.
    pub async fn recv_timeout(&mut self, t: Duration) -> Got {
        let deadline = Instant::now() + t;
        let mut tmp = vec![0u8; 65536];
        loop {
            match self.reader.next_item() {
                Ok(Some(Item::Header { raw, tag, id })) => {
                    self.stream_id = id;
                    self.header = Some(tag);
                    return Got::Stanza(format!("HEADER {raw}"));
                }
                Ok(Some(Item::Stanza(s))) => return Got::Stanza(s),
                Ok(Some(Item::End)) => return Got::End,
                Ok(None) => {}
                Err(e) => return Got::Malformed(e),
            }
            if self.closed {
                return Got::Closed;
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Err(_) => return Got::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => self.reader.push(&tmp[..n]),
            }
        }
    }

    /// Receive a stanza (skipping nothing); panics on anything else.
    pub async fn stanza(&mut self) -> String {
        match self.recv().await {
            Got::Stanza(s) => s,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    /// The next element after the router's header (skipped if it comes now).
    async fn after_header(&mut self, what: &str) -> String {
        loop {
            match self.recv().await {
                Got::Stanza(s) if s.starts_with("HEADER") => continue,
                Got::Stanza(s) => return s,
                other => panic!("expected {what}, got {other:?}"),
            }
        }
    }

    /// Expect a stream error: returns its condition, and checks that
    /// `</stream:stream>` follows and the TCP connection is closed.
    pub async fn expect_stream_error(&mut self) -> String {
        let s = self.after_header("a stream error").await;
        if !s.starts_with("<stream:error>") {
            panic!("expected a stream error, got {s:?}");
        }
        self.expect_end_and_close("after the stream error").await;
        condition_of(&s)
    }

    /// A stream error as docs/behaviour.md ("Stream") frames it, checked
    /// strictly: the router's header (sent before it if none was yet),
    /// `<stream:error>` with one condition in the streams-errors namespace and
    /// an optional `<text/>`, then `</stream:stream>`, then the TCP connection
    /// closes. Returns the condition and the text.
    pub async fn stream_error(&mut self) -> (String, Option<String>) {
        let s = self.after_header("a stream error").await;
        assert!(
            self.header.is_some(),
            "stream error without a stream header first: {s}"
        );
        let e = parse_el(&s);
        assert_eq!(
            (e.ns.as_str(), e.name.as_str()),
            (ns::STREAMS, "error"),
            "expected a stream error, got {s}"
        );
        let conds: Vec<&El> = e
            .children
            .iter()
            .filter(|c| c.name != "text" || c.ns != ns::STREAM_ERRORS)
            .collect();
        assert_eq!(conds.len(), 1, "one condition expected: {s}");
        assert_eq!(conds[0].ns, ns::STREAM_ERRORS, "condition namespace: {s}");
        let text = e.child(ns::STREAM_ERRORS, "text").map(|t| t.text.clone());
        self.expect_end_and_close(&format!("after {s}")).await;
        (conds[0].name.clone(), text)
    }

    /// `</stream:stream>` next, with nothing before it, then the TCP close.
    pub async fn expect_end_and_close(&mut self, what: &str) {
        match self.recv().await {
            Got::End => {}
            other => panic!("{what}: expected </stream:stream>, got {other:?}"),
        }
        match self.recv().await {
            Got::Closed => {}
            other => panic!("{what}: expected the TCP connection to close, got {other:?}"),
        }
    }

    /// Read until the router closes, within `t`: the stream error's condition
    /// (panics on a stanza, on a close without a stream error, or on a
    /// timeout). `</stream:stream>` may come or not.
    pub async fn stream_error_within(&mut self, t: Duration) -> String {
        let deadline = Instant::now() + t;
        let mut cond = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_timeout(left).await {
                Got::Stanza(s) if s.starts_with("<stream:error>") => cond = Some(condition_of(&s)),
                Got::Stanza(s) => panic!("unexpected stanza {s}"),
                Got::End => {}
                Got::Closed => return cond.expect("closed without a stream error"),
                Got::Timeout => panic!("no stream error and close within {t:?} (got {cond:?})"),
                Got::Malformed(e) => panic!("the router sent XML that is not well-formed: {e}"),
            }
        }
    }

    /// Expect nothing for `t`.
    pub async fn expect_silence(&mut self, t: Duration) {
        match self.recv_timeout(t).await {
            Got::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// The next stanza satisfying `pred` within `within`; others are skipped.
    /// Panics if the connection ends.
    pub async fn recv_until(
        &mut self,
        mut pred: impl FnMut(&str) -> bool,
        within: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_timeout(left).await {
                Got::Stanza(s) if pred(&s) => return Some(s),
                Got::Stanza(_) => continue,
                Got::Timeout => return None,
                other => panic!("the component's connection ended: {other:?}"),
            }
        }
    }

    /// [`Comp::recv_until`]; panics with `what` if none came.
    pub async fn expect_stanza(
        &mut self,
        pred: impl FnMut(&str) -> bool,
        within: Duration,
        what: &str,
    ) -> String {
        let got = self.recv_until(pred, within).await;
        got.unwrap_or_else(|| panic!("{what}"))
    }
}

/// A new connection for `domain` is refused at its stream header: the stream
/// error's condition.
pub async fn header_refused(addr: SocketAddr, domain: &str) -> String {
    let mut c = Comp::connect(addr).await;
    c.open(domain).await;
    c.expect_stream_error().await
}

/// `from` sends `m`; `to` must receive exactly those bytes.
pub async fn pass(from: &mut Comp, to: &mut Comp, m: &str) {
    from.send(m).await;
    match to.recv().await {
        Got::Stanza(s) => assert_eq!(s, m, "delivered bytes differ"),
        other => panic!("expected {m}, got {other:?}"),
    }
}

/// A message from `a` (serving `a_dom`) to `b` (serving `b_dom`) and one back,
/// each delivered byte for byte; `tag` names them in ids and bodies.
pub async fn round_trip(a: &mut Comp, a_dom: &str, b: &mut Comp, b_dom: &str, tag: &str) {
    let (ua, vb) = (format!("u@{a_dom}/r"), format!("v@{b_dom}"));
    pass(
        a,
        b,
        &stanza::message(&ua, &vb, format!("{tag}-there"), tag),
    )
    .await;
    pass(b, a, &stanza::message(&vb, &ua, format!("{tag}-back"), tag)).await;
}

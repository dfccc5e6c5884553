//! Minimal raw XMPP client (RFC 6120 c2s over plain TCP, SASL PLAIN, resource
//! binding) for tests, plus the generic pieces it is built from: an XML
//! stanza framer and a framed TCP stream. Every await has a timeout; nothing
//! here can hang a test.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use crate::inspect::{attr, element_name, escape, text_of};
use crate::ns;
use crate::stanza::c2s_header;

/// Timeout for each protocol step of `C2s::connect` and for writes.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// One top-level unit of an XMPP stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The `<stream:stream ...>` opening tag (without the XML declaration).
    StreamOpen(String),
    /// A complete top-level element (stanza, features, SASL element, stream error...).
    Stanza(String),
    /// `</stream:stream>`.
    StreamClose,
}

/// Splits a byte stream into `Frame`s by counting element depth. Handles
/// self-closing tags, quoted attribute values containing `>` or `/`, XML
/// declarations, comments, CDATA, and whitespace keepalives between stanzas.
/// Not a validating parser: it trusts the peer to send well-formed XML.
#[derive(Default, Debug)]
pub struct XmlFramer {
    buf: Vec<u8>,
}

enum Token {
    /// `<?...?>`, `<!--...-->`, `<![CDATA[...]]>`, `<!DOCTYPE ...>`.
    Other,
    Start {
        stream: bool,
    },
    Empty,
    End,
}

impl XmlFramer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forget any buffered bytes (e.g. at a stream restart).
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// The next complete frame, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            // Top-level text (whitespace keepalives) is dropped.
            match self.buf.iter().position(|&b| b == b'<') {
                Some(0) => {}
                Some(p) => {
                    self.buf.drain(..p);
                }
                None => {
                    self.buf.clear();
                    return None;
                }
            }
            let (end, token) = scan_token(&self.buf)?;
            match token {
                Token::Other => {
                    self.buf.drain(..end);
                    continue;
                }
                Token::End => {
                    self.buf.drain(..end);
                    return Some(Frame::StreamClose);
                }
                Token::Empty => {
                    let s = self.take(end);
                    return Some(Frame::Stanza(s));
                }
                Token::Start { stream: true } => {
                    let s = self.take(end);
                    return Some(Frame::StreamOpen(s));
                }
                Token::Start { stream: false } => {
                    let mut depth = 1usize;
                    let mut pos = end;
                    loop {
                        let lt = pos + self.buf[pos..].iter().position(|&b| b == b'<')?;
                        let (len, token) = scan_token(&self.buf[lt..])?;
                        pos = lt + len;
                        match token {
                            Token::Start { .. } => depth += 1,
                            Token::End => {
                                depth -= 1;
                                if depth == 0 {
                                    let s = self.take(pos);
                                    return Some(Frame::Stanza(s));
                                }
                            }
                            Token::Empty | Token::Other => {}
                        }
                    }
                }
            }
        }
    }

    fn take(&mut self, end: usize) -> String {
        let bytes: Vec<u8> = self.buf.drain(..end).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `buf` starts with `<`. Returns the token's length and kind, or `None` if
/// the token is incomplete.
fn scan_token(buf: &[u8]) -> Option<(usize, Token)> {
    for (open, close) in [
        (&b"<?"[..], &b"?>"[..]),
        (b"<!--", b"-->"),
        (b"<![CDATA[", b"]]>"),
    ] {
        if buf.len() < open.len() && open.starts_with(buf) {
            return None; // might become this construct
        }
        if buf.starts_with(open) {
            let p = find(&buf[open.len()..], close)?;
            return Some((open.len() + p + close.len(), Token::Other));
        }
    }
    if buf.len() < 2 {
        return None;
    }
    // Tag (or <!DOCTYPE>): scan to the closing '>' outside quotes.
    let mut quote: Option<u8> = None;
    let mut i = 1;
    while i < buf.len() {
        let b = buf[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => {
                let len = i + 1;
                if buf[1] == b'!' {
                    return Some((len, Token::Other));
                }
                if buf[1] == b'/' {
                    return Some((len, Token::End));
                }
                if buf[..i].trim_ascii_end().ends_with(b"/") {
                    return Some((len, Token::Empty));
                }
                let name_end = buf[1..i]
                    .iter()
                    .position(|b| b.is_ascii_whitespace() || *b == b'/')
                    .map_or(i, |p| p + 1);
                let name = &buf[1..name_end];
                let stream = name == b"stream:stream" || name == b"stream";
                return Some((len, Token::Start { stream }));
            }
            None => {}
        }
        i += 1;
    }
    None
}

/// A TCP connection carrying an XML stream, read frame by frame.
pub struct XmlStream {
    stream: TcpStream,
    framer: XmlFramer,
    /// Stanzas read ahead (e.g. during a barrier) and not yet returned.
    pending: VecDeque<String>,
    /// The peer closed the stream (`</stream:stream>` or EOF).
    pub closed: bool,
    /// The last stream header received from the peer.
    pub stream_header: Option<String>,
    /// Stanzas dropped by `recv_until` because they did not match (for
    /// diagnostics in assertion messages).
    pub discarded: Vec<String>,
}

impl XmlStream {
    pub async fn connect(addr: SocketAddr) -> io::Result<XmlStream> {
        let stream = timeout(STEP_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr}")))??;
        stream.set_nodelay(true)?;
        Ok(XmlStream {
            stream,
            framer: XmlFramer::new(),
            pending: VecDeque::new(),
            closed: false,
            stream_header: None,
            discarded: Vec::new(),
        })
    }

    pub async fn try_send(&mut self, xml: &str) -> io::Result<()> {
        timeout(STEP_TIMEOUT, self.stream.write_all(xml.as_bytes()))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }

    /// Send raw XML; panics (failing the test) if the write fails.
    pub async fn send(&mut self, xml: &str) {
        if let Err(e) = self.try_send(xml).await {
            panic!("failed to send {xml:?}: {e}");
        }
    }

    /// Next frame, or `None` on timeout. EOF is reported as `StreamClose`.
    pub async fn recv_frame(&mut self, wait: Duration) -> Option<Frame> {
        self.recv_frame_until(Instant::now() + wait).await
    }

    async fn recv_frame_until(&mut self, deadline: Instant) -> Option<Frame> {
        if let Some(s) = self.pending.pop_front() {
            return Some(Frame::Stanza(s));
        }
        let mut buf = [0u8; 8192];
        loop {
            if let Some(frame) = self.framer.next_frame() {
                match &frame {
                    Frame::StreamOpen(h) => self.stream_header = Some(h.clone()),
                    Frame::StreamClose => self.closed = true,
                    Frame::Stanza(_) => {}
                }
                return Some(frame);
            }
            if self.closed {
                return Some(Frame::StreamClose);
            }
            match timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.closed = true;
                    return Some(Frame::StreamClose);
                }
                Ok(Ok(n)) => self.framer.push(&buf[..n]),
            }
        }
    }

    /// The next top-level stanza; `None` on timeout or when the stream is
    /// closed. Stream headers are recorded in `stream_header` and skipped.
    pub async fn recv_stanza(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            match self.recv_frame_until(deadline).await? {
                Frame::Stanza(s) => return Some(s),
                Frame::StreamOpen(_) => continue,
                Frame::StreamClose => return None,
            }
        }
    }

    /// The first stanza satisfying `pred` within `wait`; stanzas that don't
    /// match are dropped (and recorded in `discarded`).
    pub async fn recv_until<F: FnMut(&str) -> bool>(
        &mut self,
        mut pred: F,
        wait: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let s = self
                .recv_stanza(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if pred(&s) {
                return Some(s);
            }
            self.discarded.push(s);
        }
    }

    /// Wait for the stream header from the peer.
    pub async fn recv_stream_header(&mut self, wait: Duration) -> io::Result<String> {
        match self.recv_frame(wait).await {
            Some(Frame::StreamOpen(h)) => Ok(h),
            Some(Frame::Stanza(s)) => Err(io::Error::other(format!(
                "expected a stream header, got stanza {s}"
            ))),
            Some(Frame::StreamClose) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream closed before the stream header",
            )),
            None => Err(io::Error::new(io::ErrorKind::TimedOut, "no stream header")),
        }
    }

    /// Read until the peer ends the stream or closes the connection; returns
    /// the stanzas received meanwhile (e.g. a `<stream:error>`), or `None` if
    /// the stream is still open after `wait`.
    pub async fn wait_closed(&mut self, wait: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        loop {
            match self.recv_frame_until(deadline).await? {
                Frame::Stanza(s) => got.push(s),
                Frame::StreamOpen(_) => {}
                Frame::StreamClose => return Some(got),
            }
        }
    }

    /// Send `</stream:stream>` and wait (bounded) for the peer to close too.
    pub async fn close(&mut self) {
        if !self.closed {
            let _ = self.try_send("</stream:stream>").await;
            let _ = self.wait_closed(Duration::from_secs(5)).await;
        }
        let _ = timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }

    /// Drop the TCP connection without closing the stream.
    pub fn abort(self) {
        drop(self);
    }

    fn push_pending(&mut self, s: String) {
        self.pending.push_back(s);
    }
}

/// A logged-in c2s session.
pub struct C2s {
    pub conn: XmlStream,
    /// Full JID assigned by resource binding, e.g. `alice@localhost/harness`.
    pub jid: String,
    /// `user@host`.
    pub bare: String,
    next_id: u64,
}

impl C2s {
    /// Connect to 127.0.0.1:`port`, authenticate with SASL PLAIN, bind the
    /// resource `harness`, send initial presence and wait for a ping
    /// round-trip (so presence has been processed when this returns).
    pub async fn connect(port: u16, user: &str, host: &str, password: &str) -> io::Result<C2s> {
        Self::connect_with_resource(port, user, host, password, "harness").await
    }

    pub async fn connect_with_resource(
        port: u16,
        user: &str,
        host: &str,
        password: &str,
        resource: &str,
    ) -> io::Result<C2s> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut conn = XmlStream::connect(addr).await?;
        let header = c2s_header(host);

        // Stream, features, SASL PLAIN.
        conn.try_send(&header).await?;
        conn.recv_stream_header(STEP_TIMEOUT).await?;
        let features = expect_stanza(&mut conn, "stream features").await?;
        if !features.contains(">PLAIN<") {
            return Err(io::Error::other(format!(
                "server does not offer SASL PLAIN: {features}"
            )));
        }
        let mut creds = Vec::new();
        creds.push(0u8);
        creds.extend_from_slice(user.as_bytes());
        creds.push(0u8);
        creds.extend_from_slice(password.as_bytes());
        conn.try_send(&format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{}</auth>",
            ns::SASL,
            base64_encode(&creds)
        ))
        .await?;
        let outcome = expect_stanza(&mut conn, "SASL outcome").await?;
        if element_name(&outcome) != "success" {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("SASL PLAIN for {user}@{host} failed: {outcome}"),
            ));
        }

        // Stream restart, bind.
        conn.framer.reset();
        conn.try_send(&header).await?;
        conn.recv_stream_header(STEP_TIMEOUT).await?;
        let features = expect_stanza(&mut conn, "post-auth stream features").await?;
        if !features.contains(ns::BIND) {
            return Err(io::Error::other(format!(
                "server does not offer resource binding: {features}"
            )));
        }
        conn.try_send(&format!(
            "<iq type='set' id='bind-1'><bind xmlns='{}'><resource>{}</resource></bind></iq>",
            ns::BIND,
            escape(resource)
        ))
        .await?;
        let bound = expect_stanza(&mut conn, "bind result").await?;
        if attr(&bound, "type").as_deref() != Some("result") {
            return Err(io::Error::other(format!(
                "resource binding failed: {bound}"
            )));
        }
        let jid = text_of(&bound, "jid")
            .ok_or_else(|| io::Error::other(format!("no <jid> in bind result: {bound}")))?;
        let bare = jid.split('/').next().unwrap_or(&jid).to_string();

        let mut c2s = C2s {
            conn,
            jid,
            bare,
            next_id: 0,
        };
        c2s.conn.try_send("<presence/>").await?;
        // Barrier: everything before it (presence) has been processed by the
        // server once the pong arrives. Stanzas seen meanwhile are kept.
        let id = c2s.next_id();
        c2s.conn
            .try_send(&format!(
                "<iq type='get' id='{id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                escape(host)
            ))
            .await?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut early = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match c2s.conn.recv_stanza(left).await {
                Some(s) if attr(&s, "id").as_deref() == Some(id.as_str()) => break,
                Some(s) => early.push(s),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no reply to the post-login ping",
                    ))
                }
            }
        }
        for s in early {
            c2s.conn.push_pending(s);
        }
        Ok(c2s)
    }

    /// A fresh stanza id, unique within this session.
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("c2s-{}", self.next_id)
    }

    /// Send raw XML; panics (failing the test) if the write fails.
    pub async fn send(&mut self, xml: &str) {
        self.conn.send(xml).await
    }

    pub async fn try_send(&mut self, xml: &str) -> io::Result<()> {
        self.conn.try_send(xml).await
    }

    /// Next top-level stanza, or `None` on timeout / closed stream.
    pub async fn recv_stanza(&mut self, wait: Duration) -> Option<String> {
        self.conn.recv_stanza(wait).await
    }

    /// First stanza matching `pred` within `wait` (others are dropped).
    pub async fn recv_until<F: FnMut(&str) -> bool>(
        &mut self,
        pred: F,
        wait: Duration,
    ) -> Option<String> {
        self.conn.recv_until(pred, wait).await
    }

    /// [`C2s::recv_until`]; panics with `what` if none came.
    pub async fn expect_stanza(
        &mut self,
        pred: impl FnMut(&str) -> bool,
        wait: Duration,
        what: &str,
    ) -> String {
        let got = self.recv_until(pred, wait).await;
        got.unwrap_or_else(|| panic!("{what}"))
    }

    /// Send an `<iq>` (which must carry an `id` attribute) and wait for the
    /// result or error with the same id.
    pub async fn iq(&mut self, xml: &str, wait: Duration) -> Option<String> {
        let id = attr(xml, "id").expect("iq() needs a stanza with an id attribute");
        self.send(xml).await;
        self.recv_until(
            |s| element_name(s) == "iq" && attr(s, "id").as_deref() == Some(id.as_str()),
            wait,
        )
        .await
    }

    /// End the stream politely.
    pub async fn close(mut self) {
        self.conn.close().await
    }
}

async fn expect_stanza(conn: &mut XmlStream, what: &str) -> io::Result<String> {
    match conn.recv_frame(STEP_TIMEOUT).await {
        Some(Frame::Stanza(s)) => Ok(s),
        Some(other) => Err(io::Error::other(format!(
            "waiting for {what}, got {other:?}"
        ))),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out waiting for {what}"),
        )),
    }
}

/// Standard base64 with padding (RFC 4648).
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

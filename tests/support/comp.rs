//! A raw XEP-0114 component client over TCP, for black-box tests.
//!
//! It frames what the router sends with the crate's own framer (so every byte
//! the router writes is also checked for well-formedness) and gives each
//! top-level element back as a string.

use std::net::SocketAddr;
use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use xmpp_component_router::xml::{Frame, Framer, Limits};

pub const T: Duration = Duration::from_secs(5);

pub struct Comp {
    pub stream: TcpStream,
    framer: Framer,
    pub stream_id: Option<String>,
    pub header: Option<String>,
    raw: Vec<u8>,
    pub closed: bool,
}

/// What the router sent and did.
#[derive(Debug)]
pub enum Got {
    Stanza(String),
    /// `</stream:stream>` (the router closed its stream).
    End,
    /// TCP closed.
    Closed,
    Timeout,
    /// What the router sent is not well-formed.
    Malformed(String),
}

pub fn handshake_token(id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(id.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
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
            framer: Framer::new(Limits {
                max_stanza_size: 64 << 20,
                max_depth: 1000,
                max_attributes: 100_000,
                max_token: 64 << 20,
                ..Limits::new(64 << 20)
            }),
            stream_id: None,
            header: None,
            raw: Vec::new(),
            closed: false,
        }
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
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>"
        ))
        .await;
        self.recv_header().await
    }

    /// Read the router's stream header.
    pub async fn recv_header(&mut self) -> Got {
        let got = self.recv_timeout(T).await;
        if let Got::Stanza(ref h) = got {
            if h.starts_with("HEADER") {
                return got;
            }
        }
        got
    }

    pub async fn handshake(&mut self, secret: &str) -> Got {
        let id = self.stream_id.clone().expect("no stream id");
        let tok = handshake_token(&id, secret);
        self.send(&format!("<handshake>{tok}</handshake>")).await;
        self.recv().await
    }

    /// Connect, open and authenticate; panics if any step fails.
    pub async fn login(addr: SocketAddr, domain: &str, secret: &str) -> Comp {
        let mut c = Comp::connect(addr).await;
        match c.open(domain).await {
            Got::Stanza(h) if h.starts_with("HEADER") => {}
            other => panic!("{domain}: header refused: {other:?}"),
        }
        match c.handshake(secret).await {
            Got::Stanza(s) if s == "<handshake/>" => {}
            other => panic!("{domain}: handshake refused: {other:?}"),
        }
        c
    }

    pub async fn recv(&mut self) -> Got {
        self.recv_timeout(T).await
    }

    /// The next top-level element; the stream header comes back as
    /// `HEADER <raw bytes>` and sets `stream_id`.
    pub async fn recv_timeout(&mut self, t: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + t;
        loop {
            match self.framer.next_frame() {
                Ok(Some(Frame::Header(_))) => {
                    let raw = String::from_utf8_lossy(&self.raw).to_string();
                    let tag = raw.find("<stream:stream").map(|i| &raw[i..]).unwrap_or("");
                    self.stream_id = attr(tag, "id");
                    self.header = Some(tag.to_string());
                    return Got::Stanza(format!("HEADER {raw}"));
                }
                Ok(Some(Frame::Stanza(s))) => {
                    return Got::Stanza(String::from_utf8_lossy(&s.bytes).to_string())
                }
                Ok(Some(Frame::Start(_) | Frame::Skipped(_))) => continue,
                Ok(Some(Frame::End)) => return Got::End,
                Ok(None) => {}
                Err(e) => {
                    return Got::Malformed(format!("{e}: {}", String::from_utf8_lossy(&self.raw)))
                }
            }
            if self.closed {
                return Got::Closed;
            }
            let mut tmp = vec![0u8; 65536];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Err(_) => return Got::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.closed = true;
                }
                Ok(Ok(n)) => {
                    if self.header.is_none() {
                        self.raw.extend_from_slice(&tmp[..n]);
                    }
                    self.framer.buf_mut().extend_from_slice(&tmp[..n]);
                }
            }
        }
    }

    /// Expect a stream error: returns its condition, and checks that
    /// `</stream:stream>` follows and the TCP connection is closed.
    pub async fn expect_stream_error(&mut self) -> String {
        let cond = loop {
            match self.recv().await {
                Got::Stanza(s) if s.starts_with("HEADER") => continue,
                Got::Stanza(s) if s.starts_with("<stream:error>") => break condition_of(&s),
                other => panic!("expected a stream error, got {other:?}"),
            }
        };
        match self.recv().await {
            Got::End => {}
            other => panic!("expected </stream:stream> after the stream error, got {other:?}"),
        }
        match self.recv().await {
            Got::Closed => {}
            other => panic!("expected the TCP connection to close, got {other:?}"),
        }
        cond
    }

    /// Expect nothing for `t`.
    pub async fn expect_silence(&mut self, t: Duration) {
        match self.recv_timeout(t).await {
            Got::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Receive a stanza (skipping nothing); panics on anything else.
    pub async fn stanza(&mut self) -> String {
        match self.recv().await {
            Got::Stanza(s) => s,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }
}

/// The element name of the first child of `<stream:error>`.
pub fn condition_of(s: &str) -> String {
    let inner = s.trim_start_matches("<stream:error>");
    inner
        .trim_start_matches('<')
        .split(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .next()
        .unwrap_or("")
        .to_string()
}

/// Value of attribute `name` in the first start tag of `s` (either quote).
pub fn attr(s: &str, name: &str) -> Option<String> {
    let tag_end = s.find('>').unwrap_or(s.len());
    let tag = &s[..tag_end];
    for q in ['\'', '"'] {
        let pat = format!(" {name}={q}");
        if let Some(i) = tag.find(&pat) {
            let rest = &tag[i + pat.len()..];
            return rest.find(q).map(|j| rest[..j].to_string());
        }
    }
    None
}

/// The stanza-error condition inside an error stanza.
pub fn stanza_error_condition(s: &str) -> Option<String> {
    let i = s.find("<error")?;
    let rest = &s[i..];
    let j = rest.find('>')?;
    let after = &rest[j + 1..];
    let after = after.strip_prefix('<')?;
    Some(
        after
            .split(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .next()?
            .to_string(),
    )
}

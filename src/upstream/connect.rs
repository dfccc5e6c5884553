//! Connecting a link: TCP (with a timeout), our header `to=DOMAIN`, the
//! server's header read with the router's own framer, then
//! `<handshake>hex(SHA-1(id + upstream_secret))</handshake>` and the server's
//! `<handshake/>` (XEP-0114 §3 from the component's side).

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::error::{LinkError, ServerError};
use super::timing::Liveness;
use crate::config::UpstreamConfig;
use crate::proto::handshake_digest;
use crate::wire::reader::{FramedReader, ReadError, Sizing};
use crate::wire::socket::SocketOptions;
use crate::wire::stanza::connect_header;
use crate::wire::xml::{Excess, Frame, Limits, Name, Ns, Stanza};

/// TCP connect to the upstream address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From TCP connect to the server's `<handshake/>`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Attributes on one element of a stanza from the server (each costs the
/// framer a few dozen bytes of scratch while its tag is read).
const LINK_MAX_ATTRIBUTES: usize = 4096;

/// A connection that completed the handshake; the framer may already hold
/// what the server sent right after `<handshake/>`.
pub struct Conn {
    pub reader: FramedReader,
    pub wr: OwnedWriteHalf,
    pub limits: Limits,
    pub live: Liveness,
}

/// The limits of a link's framer. What the server relays comes from anyone on
/// the network, re-escaped (an apostrophe becomes six bytes), so they are the
/// link's own: `[upstream] max_stanza_size`, and no depth or token limit but
/// the size (each level takes at least three bytes of it). A stanza beyond
/// them is skipped, not buffered, and bounced; only XML that is not
/// well-formed ends the link.
pub fn link_limits(u: &UpstreamConfig) -> Limits {
    Limits {
        max_stanza_size: u.max_stanza_size,
        max_depth: u.max_stanza_size,
        max_attributes: LINK_MAX_ATTRIBUTES,
        max_token: u.max_stanza_size,
        excess: Excess::Skip,
    }
}

/// Connect to `[upstream] address` and authenticate as `domain`.
pub async fn connect(u: &UpstreamConfig, domain: &str, secret: &str) -> Result<Conn, LinkError> {
    let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(&u.address)).await {
        Err(_) => return Err(LinkError::ConnectTimeout(CONNECT_TIMEOUT)),
        Ok(Err(e)) => return Err(LinkError::Connect(e.to_string())),
        Ok(Ok(s)) => s,
    };
    let live = Liveness::from_idle(u.keepalive_interval);
    let _ = SocketOptions::link(live.write_stall).apply(socket2::SockRef::from(&stream));
    let limits = link_limits(u);
    let (rd, mut wr) = stream.into_split();
    let mut reader = FramedReader::new(rd, limits, Sizing::STREAM);
    match timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut reader, &mut wr, domain, secret),
    )
    .await
    {
        Err(_) => Err(LinkError::HandshakeTimeout(HANDSHAKE_TIMEOUT)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(Conn {
            reader,
            wr,
            limits,
            live,
        }),
    }
}

/// XEP-0114 §3 from the component's side.
async fn handshake(
    reader: &mut FramedReader,
    wr: &mut OwnedWriteHalf,
    domain: &str,
    secret: &str,
) -> Result<(), LinkError> {
    let write_failed = |e: std::io::Error| LinkError::Write(e.to_string());
    wr.write_all(&connect_header(domain))
        .await
        .map_err(write_failed)?;
    let mut sent = false;
    loop {
        let frame = match reader.read_frame().await {
            Ok(f) => f,
            Err(ReadError::Xml(e)) => return Err(LinkError::InvalidXml(e)),
            Err(ReadError::Closed) if sent => return Err(LinkError::ClosedInHandshake),
            Err(ReadError::Closed) => return Err(LinkError::ClosedBeforeHeader),
            Err(ReadError::Io(e)) => return Err(LinkError::Read(e.to_string())),
        };
        match frame {
            Frame::Header(h) => {
                let Some(id) = h.id else {
                    return Err(LinkError::NoStreamId);
                };
                // Prosody's header before a stream error has `id=''`: wait for the error.
                if !id.is_empty() {
                    let token = handshake_digest(&id, secret);
                    wr.write_all(format!("<handshake>{token}</handshake>").as_bytes())
                        .await
                        .map_err(write_failed)?;
                    sent = true;
                }
            }
            Frame::Start(_) | Frame::Skipped(_) => {}
            Frame::Stanza(st) => {
                if is_stream_error(&st) {
                    return Err(LinkError::Refused(server_error(&st)));
                }
                if st.head.name == Name::Handshake && sent {
                    return Ok(());
                }
                return Err(LinkError::Unexpected(st.head.name.as_str()));
            }
            Frame::End => return Err(LinkError::StreamClosed),
        }
    }
}

pub fn is_stream_error(st: &Stanza) -> bool {
    st.head.name == Name::Error && st.head.ns == Ns::Streams
}

/// The condition and `<text/>` of a `<stream:error/>` (the text sanitised for
/// a log line: control characters as spaces, at most 200 characters).
pub fn server_error(st: &Stanza) -> ServerError {
    let text = st.error_text.as_deref().and_then(|t| {
        let clean: String = t
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        let clean = clean.trim();
        (!clean.is_empty()).then(|| clean.to_string())
    });
    ServerError {
        condition: st
            .first_child
            .as_deref()
            .unwrap_or("undefined-condition")
            .to_string(),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame one element from a server (after its stream header).
    fn from_server(el: &str) -> Stanza {
        let mut f = crate::wire::xml::Framer::new(Limits::new(100_000));
        f.buf_mut().extend_from_slice(
            b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>",
        );
        f.buf_mut().extend_from_slice(el.as_bytes());
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Stanza(s))) => return s,
                Ok(Some(_)) => continue,
                other => panic!("{el}: {other:?}"),
            }
        }
    }

    #[test]
    fn stream_error_text_is_extracted() {
        let text = |el: &str| server_error(&from_server(el)).text;
        let st = from_server("<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>c.example does not match &lt;x&gt;</text></stream:error>");
        assert_eq!(
            server_error(&st).text.as_deref(),
            Some("c.example does not match <x>")
        );
        assert_eq!(
            server_error(&st).to_string(),
            "host-unknown (c.example does not match <x>)"
        );
        assert_eq!(
            text("<stream:error><conflict xmlns='x'/></stream:error>"),
            None
        );
        assert_eq!(text("<stream:error><textual/><text/></stream:error>"), None);
        assert_eq!(
            text("<stream:error><c/><text>a&#xA;b&#x9;</text></stream:error>").as_deref(),
            Some("a b")
        );
    }
}

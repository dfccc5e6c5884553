//! Why a link's connection failed, typed: the log line says it, and the
//! once-per-state-change logging compares it.

use std::fmt;
use std::time::Duration;

use crate::wire::xml::FrameError;

/// A stream error the server sent: its condition and `<text/>`, sanitised for
/// a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub condition: String,
    pub text: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(t) => write!(f, "{} ({t})", self.condition),
            None => f.write_str(&self.condition),
        }
    }
}

/// Why a link is down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no TCP connection within {} s", .0.as_secs())]
    ConnectTimeout(Duration),
    /// The OS error, as it reads.
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no handshake reply within {} s", .0.as_secs())]
    HandshakeTimeout(Duration),
    #[error("the server's stream header has no id")]
    NoStreamId,
    /// A stream error in answer to our header or handshake (`host-unknown`,
    /// `not-authorized`, `conflict`).
    #[error("{0}")]
    Refused(ServerError),
    #[error("unexpected <{0}/> before the handshake reply")]
    Unexpected(&'static str),
    #[error("connection closed by the server before its stream header")]
    ClosedBeforeHeader,
    #[error("connection closed by the server during the handshake")]
    ClosedInHandshake,
    /// A stream error once the link was up.
    #[error("{0} from the server")]
    StreamError(ServerError),
    /// `</stream:stream>` from the server.
    #[error("the server closed the stream (</stream:stream>, no stream error: it is shutting down or was told to drop the link)")]
    StreamClosed,
    /// EOF on the TCP connection, with neither a stream error nor
    /// `</stream:stream>` before it.
    #[error("the server closed the TCP connection without a stream error or </stream:stream> (it crashed, was killed, or something between dropped the connection)")]
    Closed,
    #[error("invalid XML from the server: {0}")]
    InvalidXml(FrameError),
    #[error("read failed: {0}")]
    Read(String),
    #[error("write failed: {0}")]
    Write(String),
    #[error("nothing received for {:.1} s, not even the answer to a ping (dead link)", .0.as_secs_f64())]
    PingTimeout(Duration),
    #[error("the server read nothing for {:.1} s (dead link)", .0.as_secs_f64())]
    WriteStall(Duration),
}

impl LinkError {
    /// A short, stable name of the failure, for the log's `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            LinkError::ConnectTimeout(_) => "connect-timeout",
            LinkError::Connect(_) => "connect",
            LinkError::HandshakeTimeout(_) => "handshake-timeout",
            LinkError::NoStreamId => "no-stream-id",
            LinkError::Refused(_) => "refused",
            LinkError::Unexpected(_) => "unexpected",
            LinkError::ClosedBeforeHeader | LinkError::ClosedInHandshake => "closed-early",
            LinkError::StreamError(_) => "stream-error",
            LinkError::StreamClosed => "stream-closed",
            LinkError::Closed => "closed",
            LinkError::InvalidXml(_) => "invalid-xml",
            LinkError::Read(_) => "read",
            LinkError::Write(_) => "write",
            LinkError::PingTimeout(_) | LinkError::WriteStall(_) => "dead-link",
        }
    }

    /// The stream error condition the server sent, if it sent one.
    pub fn condition(&self) -> &str {
        match self {
            LinkError::Refused(e) | LinkError::StreamError(e) => &e.condition,
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log lines operators and tests look for.
    #[test]
    fn reasons_read_as_before() {
        let e = LinkError::Refused(ServerError {
            condition: "host-unknown".into(),
            text: Some("c.example does not match".into()),
        });
        assert_eq!(e.to_string(), "host-unknown (c.example does not match)");
        let e = LinkError::StreamError(ServerError {
            condition: "conflict".into(),
            text: None,
        });
        assert_eq!(e.to_string(), "conflict from the server");
        assert_eq!(
            LinkError::PingTimeout(Duration::from_millis(1500)).to_string(),
            "nothing received for 1.5 s, not even the answer to a ping (dead link)"
        );
        assert_eq!(
            LinkError::WriteStall(Duration::from_secs(45)).to_string(),
            "the server read nothing for 45.0 s (dead link)"
        );
        assert_eq!(
            LinkError::ConnectTimeout(Duration::from_secs(10)).to_string(),
            "no TCP connection within 10 s"
        );
        assert_ne!(
            LinkError::Connect("a".into()),
            LinkError::Connect("b".into())
        );
    }
}

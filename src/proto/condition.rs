//! Error conditions the router sends: stream errors (RFC 6120 §4.9.3) and
//! stanza errors with their types (RFC 6120 §8.3).

use std::fmt;

/// RFC 6120 §4.9.3 stream error conditions the router sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamCondition {
    BadFormat,
    /// RFC 6120 4.9.3.2: a namespace prefix that is not supported (a stream
    /// header whose streams namespace is not under the prefix `stream`).
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostUnknown,
    ImproperAddressing,
    InvalidFrom,
    InvalidNamespace,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    ResourceConstraint,
    /// RFC 6120 4.9.3.16: the stream must be reset; used when a reload adds a
    /// domain again whose old connection stayed open, detached (reconnect).
    Reset,
    RestrictedXml,
    SystemShutdown,
    /// RFC 6120 4.9.3.22: the stream is not UTF-8 (an XML declaration naming another encoding).
    UnsupportedEncoding,
    UnsupportedStanzaType,
}

impl StreamCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamCondition::BadFormat => "bad-format",
            StreamCondition::BadNamespacePrefix => "bad-namespace-prefix",
            StreamCondition::Conflict => "conflict",
            StreamCondition::ConnectionTimeout => "connection-timeout",
            StreamCondition::HostUnknown => "host-unknown",
            StreamCondition::ImproperAddressing => "improper-addressing",
            StreamCondition::InvalidFrom => "invalid-from",
            StreamCondition::InvalidNamespace => "invalid-namespace",
            StreamCondition::NotAuthorized => "not-authorized",
            StreamCondition::NotWellFormed => "not-well-formed",
            StreamCondition::PolicyViolation => "policy-violation",
            StreamCondition::ResourceConstraint => "resource-constraint",
            StreamCondition::Reset => "reset",
            StreamCondition::RestrictedXml => "restricted-xml",
            StreamCondition::SystemShutdown => "system-shutdown",
            StreamCondition::UnsupportedEncoding => "unsupported-encoding",
            StreamCondition::UnsupportedStanzaType => "unsupported-stanza-type",
        }
    }
}

impl fmt::Display for StreamCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 6120 §8.3.3 stanza error conditions the router sends in bounces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaCondition {
    BadRequest,
    JidMalformed,
    PolicyViolation,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
}

impl StanzaCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            StanzaCondition::BadRequest => "bad-request",
            StanzaCondition::JidMalformed => "jid-malformed",
            StanzaCondition::PolicyViolation => "policy-violation",
            StanzaCondition::RemoteServerNotFound => "remote-server-not-found",
            StanzaCondition::RemoteServerTimeout => "remote-server-timeout",
            StanzaCondition::ResourceConstraint => "resource-constraint",
        }
    }
}

impl fmt::Display for StanzaCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 6120 §8.3.2 error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Cancel,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

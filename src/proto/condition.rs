//! Error conditions the router sends: stream errors (RFC 6120 §4.9.3) and
//! stanza errors with their types (RFC 6120 §8.3).

use std::fmt;

use crate::metrics;

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

/// The `condition` label of the metrics for a stream error the router sends.
impl From<StreamCondition> for metrics::StreamErrorCondition {
    fn from(c: StreamCondition) -> Self {
        use metrics::StreamErrorCondition as M;
        match c {
            StreamCondition::BadFormat => M::BadFormat,
            StreamCondition::BadNamespacePrefix => M::BadNamespacePrefix,
            StreamCondition::Conflict => M::Conflict,
            StreamCondition::ConnectionTimeout => M::ConnectionTimeout,
            StreamCondition::HostUnknown => M::HostUnknown,
            StreamCondition::ImproperAddressing => M::ImproperAddressing,
            StreamCondition::InvalidFrom => M::InvalidFrom,
            StreamCondition::InvalidNamespace => M::InvalidNamespace,
            StreamCondition::NotAuthorized => M::NotAuthorized,
            StreamCondition::NotWellFormed => M::NotWellFormed,
            StreamCondition::PolicyViolation => M::PolicyViolation,
            StreamCondition::Reset => M::Reset,
            StreamCondition::ResourceConstraint => M::ResourceConstraint,
            StreamCondition::RestrictedXml => M::RestrictedXml,
            StreamCondition::SystemShutdown => M::SystemShutdown,
            StreamCondition::UnsupportedEncoding => M::UnsupportedEncoding,
            StreamCondition::UnsupportedStanzaType => M::UnsupportedStanzaType,
        }
    }
}

/// The `condition` label of `bounces_total` for a stanza error the router sends.
impl From<StanzaCondition> for metrics::StanzaErrorCondition {
    fn from(c: StanzaCondition) -> Self {
        use metrics::StanzaErrorCondition as M;
        match c {
            StanzaCondition::BadRequest => M::BadRequest,
            StanzaCondition::JidMalformed => M::JidMalformed,
            StanzaCondition::PolicyViolation => M::PolicyViolation,
            StanzaCondition::RemoteServerNotFound => M::RemoteServerNotFound,
            StanzaCondition::RemoteServerTimeout => M::RemoteServerTimeout,
            StanzaCondition::ResourceConstraint => M::ResourceConstraint,
        }
    }
}

#[cfg(test)]
mod metric_label_tests {
    use super::*;

    /// Each condition maps to the metrics label of the same RFC 6120 name.
    #[test]
    fn labels_carry_the_same_names() {
        use StreamCondition as S;
        for c in [
            S::BadFormat,
            S::BadNamespacePrefix,
            S::Conflict,
            S::ConnectionTimeout,
            S::HostUnknown,
            S::ImproperAddressing,
            S::InvalidFrom,
            S::InvalidNamespace,
            S::NotAuthorized,
            S::NotWellFormed,
            S::PolicyViolation,
            S::Reset,
            S::ResourceConstraint,
            S::RestrictedXml,
            S::SystemShutdown,
            S::UnsupportedEncoding,
            S::UnsupportedStanzaType,
        ] {
            assert_eq!(metrics::StreamErrorCondition::from(c).as_str(), c.as_str());
        }
        use StanzaCondition as T;
        for c in [
            T::BadRequest,
            T::JidMalformed,
            T::PolicyViolation,
            T::RemoteServerNotFound,
            T::RemoteServerTimeout,
            T::ResourceConstraint,
        ] {
            assert_eq!(metrics::StanzaErrorCondition::from(c).as_str(), c.as_str());
        }
    }
}

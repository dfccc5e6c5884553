//! The fixed label values of the metrics: every label except `domain` takes its
//! value from one of these enums, so no label value ever comes from a peer.
//!
//! The two condition enums list every condition RFC 6120 defines (not only the
//! ones the router sends today), so the daemon can map any condition it sends.
//! Each enum has a dense index (`as usize`) used to address counter arrays.

/// Declares a label enum: variants with their label text, `ALL`, `COUNT`,
/// `as_str`, `from_name` and `Display`.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant,)+ }

        impl $name {
            /// Every value, in index order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// How many values there are (the length of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// The label value (the RFC's element name for a condition).
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The value whose label text is `name`, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == name)
            }

            /// Dense index into a `[_; COUNT]` counter array.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// RFC 6120 section 4.9.3: the stream error conditions.
    StreamErrorCondition {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostGone => "host-gone",
        HostUnknown => "host-unknown",
        ImproperAddressing => "improper-addressing",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        InvalidXml => "invalid-xml",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        RemoteConnectionFailed => "remote-connection-failed",
        Reset => "reset",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        SeeOtherHost => "see-other-host",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
}

label_enum! {
    /// RFC 6120 section 8.3.3: the stanza error conditions (what a bounce carries).
    StanzaErrorCondition {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        Gone => "gone",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        Redirect => "redirect",
        RegistrationRequired => "registration-required",
        RemoteServerNotFound => "remote-server-not-found",
        RemoteServerTimeout => "remote-server-timeout",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        SubscriptionRequired => "subscription-required",
        UndefinedCondition => "undefined-condition",
        UnexpectedRequest => "unexpected-request",
    }
}

label_enum! {
    /// The `state` label of `connections`: where an open component connection is.
    ConnectionState {
        Unauthenticated => "unauthenticated",
        Authenticated => "authenticated",
        Detached => "detached",
    }
}

label_enum! {
    /// The state of a domain as `status` and `component_state` show it.
    DomainState {
        /// At least one authenticated connection serves it.
        Connected => "connected",
        /// Its last connection ended; stanzas to it are held for a while.
        Held => "held",
        /// Attached (configured) but without a connection.
        Offline => "offline",
        /// Removed by a reload while a connection of it is still open.
        Detached => "detached",
    }
}

label_enum! {
    /// The `result` label of `handshakes_total` and `reloads_total`.
    Outcome {
        Ok => "ok",
        Failed => "failed",
    }
}

label_enum! {
    /// The `direction` label of the per-domain stanza and byte counters.
    Direction {
        In => "in",
        Out => "out",
    }
}

/// The `reason` label of `refused_connections_total`: why a connection was
/// closed before it authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusedReason {
    /// Refused at accept: `max_connections` reached.
    Limit,
    /// Closed with this stream error before authenticating.
    Stream(StreamErrorCondition),
}

impl RefusedReason {
    /// How many values there are: `limit` and one per stream error condition.
    pub const COUNT: usize = 1 + StreamErrorCondition::COUNT;

    /// Dense index: 0 is `limit`, then the stream conditions in order.
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            RefusedReason::Limit => 0,
            RefusedReason::Stream(c) => 1 + c.index(),
        }
    }

    /// The value at `index` (the inverse of [`RefusedReason::index`]).
    pub fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(RefusedReason::Limit),
            i => StreamErrorCondition::ALL
                .get(i - 1)
                .map(|c| RefusedReason::Stream(*c)),
        }
    }

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RefusedReason::Limit => "limit",
            RefusedReason::Stream(c) => c.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6120_lists_are_complete_and_named_once() {
        assert_eq!(StreamErrorCondition::COUNT, 25);
        assert_eq!(StanzaErrorCondition::COUNT, 22);
        for (i, c) in StreamErrorCondition::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(StreamErrorCondition::from_name(c.as_str()), Some(*c));
        }
        for (i, c) in StanzaErrorCondition::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(StanzaErrorCondition::from_name(c.as_str()), Some(*c));
        }
        assert_eq!(StanzaErrorCondition::from_name("no-such-thing"), None);
    }

    #[test]
    fn refused_reason_index_round_trips() {
        for i in 0..RefusedReason::COUNT {
            let r = RefusedReason::from_index(i).unwrap();
            assert_eq!(r.index(), i);
        }
        assert_eq!(RefusedReason::from_index(RefusedReason::COUNT), None);
        assert_eq!(RefusedReason::Limit.as_str(), "limit");
        assert_eq!(
            RefusedReason::Stream(StreamErrorCondition::NotAuthorized).as_str(),
            "not-authorized"
        );
    }
}

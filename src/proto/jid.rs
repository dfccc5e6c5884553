//! Just enough JID handling for routing (RFC 7622 structure, without stringprep).
//!
//! The router reads `to` and `from` of every stanza, so this is on the hot path:
//! parsing borrows from the attribute value and allocates nothing. Validation is
//! structural (lengths, forbidden characters, label shape); it is meant to reject
//! what cannot be an address (`jid-malformed`), not to implement PRECIS.

use std::borrow::Cow;
use std::net::Ipv6Addr;

/// A JID split into its parts, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jid<'a> {
    pub local: Option<&'a str>,
    /// The domainpart, as written (use [`routing_key`] to compare).
    pub domain: &'a str,
    pub resource: Option<&'a str>,
}

const MAX_PART: usize = 1023;

/// Parse `[local@]domain[/resource]`. `None` if it is not a valid JID.
pub fn parse(s: &str) -> Option<Jid<'_>> {
    let j = split(s)?;
    let d = j.domain.strip_suffix('.').unwrap_or(j.domain);
    valid_domain(d).then_some(j)
}

/// Like [`parse`], but leaves the domainpart unchecked: for callers that compare
/// it with a domain known to be valid (the sender's own, or a configured one)
/// and check it themselves otherwise. Saves the label scan on the hot path.
pub fn split(s: &str) -> Option<Jid<'_>> {
    let (bare, resource) = match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (local, domain) = match bare.find('@') {
        Some(i) => (Some(&bare[..i]), &bare[i + 1..]),
        None => (None, bare),
    };
    if let Some(l) = local {
        if !valid_local(l) {
            return None;
        }
    }
    if let Some(r) = resource {
        if r.is_empty() || r.len() > MAX_PART || r.chars().any(char::is_control) {
            return None;
        }
    }
    if domain.is_empty() {
        return None;
    }
    Some(Jid {
        local,
        domain,
        resource,
    })
}

fn valid_local(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= MAX_PART
        && !l.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
        })
}

/// Is `d` a plausible domainpart (DNS-like labels, or an IP literal)?
/// A trailing dot must already be stripped.
pub fn valid_domain(d: &str) -> bool {
    if d.is_empty() || d.len() > MAX_PART {
        return false;
    }
    if let Some(inner) = d.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .map(|a| a.parse::<Ipv6Addr>().is_ok())
            .unwrap_or(false);
    }
    d.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && !label.chars().any(|c| {
                c.is_control()
                    || c.is_whitespace()
                    || matches!(
                        c,
                        '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@' | '[' | ']' | '\\' | ','
                    )
            })
    })
}

/// The form a domain is looked up by: ASCII lower case, without a trailing dot.
/// Borrows when the input is already canonical (the common case).
pub fn routing_key(domain: &str) -> Cow<'_, str> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(d.to_ascii_lowercase())
    } else {
        Cow::Borrowed(d)
    }
}

/// Do two domainparts name the same domain (ASCII case-insensitive, trailing dot ignored)?
pub fn same_domain(a: &str, b: &str) -> bool {
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let j = parse("user@Example.COM/res/with/slash").unwrap();
        assert_eq!(j.local, Some("user"));
        assert_eq!(j.domain, "Example.COM");
        assert_eq!(j.resource, Some("res/with/slash"));
        assert_eq!(routing_key(j.domain), "example.com");
        let j = parse("comp.example").unwrap();
        assert_eq!((j.local, j.resource), (None, None));
        assert!(parse("[::1]").is_some());
        assert!(parse("example.com.").is_some());
        assert!(parse("a@b@c").is_none());
        for bad in [
            "", "@x", "x@", "x/", "a b", "a..b", ".a", "[::1", "a<b", "a/\u{1}", "-a.b",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} accepted");
        }
        assert!(parse("user@bücher.example").is_some());
    }

    #[test]
    fn domain_compare() {
        assert!(same_domain("A.example.", "a.EXAMPLE"));
        assert!(!same_domain("a.example", "b.example"));
    }
}

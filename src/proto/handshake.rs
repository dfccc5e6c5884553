//! XEP-0114 §3: the handshake digest, hex(SHA-1(stream id + secret)), the shape
//! of a `<handshake/>` token, and the stream ids the router hands out.
//!
//! Both sides use it: the accept side checks a component's token in constant
//! time, the upstream links compute theirs for the server.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// hex(SHA-1(stream id + secret)), lower case.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// The digest in a `<handshake/>`'s text: the text with XML whitespace trimmed,
/// if that is exactly 40 hex digits (XEP-0114 §3).
pub fn handshake_token(text: &str) -> Option<&str> {
    let token = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    (token.len() == 40 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some(token)
}

/// XEP-0114 §3: hex(SHA-1(stream id + secret)), compared case-insensitively in constant time.
pub fn handshake_matches(stream_id: &str, secret: &str, token: &str) -> bool {
    let want = handshake_digest(stream_id, secret);
    let got = token.to_ascii_lowercase();
    got.as_bytes().ct_eq(want.as_bytes()).into()
}

/// A stream id of 128 bits from the OS CSPRNG, as hex.
pub fn new_stream_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // The OS RNG failing is not something a peer controls; fall back to
        // something unique rather than aborting the connection.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_vector() {
        // printf '3BF96D32secret' | sha1sum
        assert!(handshake_matches(
            "3BF96D32",
            "secret",
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        ));
        assert!(handshake_matches(
            "3BF96D32",
            "secret",
            "B09EA9B3B7F586BE8A08D0A3DD7466F110AEB136"
        ));
        assert!(!handshake_matches(
            "3BF96D32",
            "secreT",
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        ));
        assert_eq!(
            handshake_digest("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
    }

    #[test]
    fn handshake_token_shape() {
        let hex40 = "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136";
        assert_eq!(handshake_token(hex40), Some(hex40));
        assert_eq!(handshake_token(&format!(" \r\n\t{hex40}\n")), Some(hex40));
        assert_eq!(
            handshake_token(&hex40.to_uppercase()).map(str::len),
            Some(40)
        );
        assert_eq!(handshake_token(&hex40[1..]), None);
        assert_eq!(handshake_token(&format!("{hex40}0")), None);
        assert_eq!(handshake_token(&format!("{}g", &hex40[1..])), None);
        // Non-XML whitespace is not trimmed; multi-byte characters are not digits.
        assert_eq!(handshake_token(&format!("\u{a0}{hex40}")), None);
        assert_eq!(handshake_token(&format!("{}é", &hex40[2..])), None);
        assert_eq!(handshake_token(""), None);
    }

    #[test]
    fn stream_ids_are_unique_and_long() {
        let a = new_stream_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_stream_id());
    }
}

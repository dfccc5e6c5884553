//! The handshake check: `<handshake>TEXT</handshake>` with arbitrary TEXT through
//! the framer, the token validation (`handshake_token`) and the digest
//! comparison (`handshake_matches`) with an arbitrary stream id and secret.
//! Checked: no panic; a valid token is exactly 40 hex digits after trimming XML
//! whitespace; the right digest (either case) matches, and a token differing in
//! one digit does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use test_support::stanza::{handshake_token as hex_sha1, HEADER_A as HEADER};
use test_support::xcr::component::{handshake_matches, handshake_token};
use test_support::xcr::xml::{Frame, Framer, Limits, Name};

fuzz_target!(|input: &[u8]| {
    // id \0 secret \0 handshake text
    let mut parts = input.splitn(3, |&b| b == 0);
    let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let secret = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let text = parts.next().unwrap_or_default();

    // The text as it arrives: inside <handshake/>, through the framer.
    let mut f = Framer::new(Limits::new(10_000));
    f.buf_mut().extend_from_slice(HEADER.as_bytes());
    f.buf_mut().extend_from_slice(b"<handshake>");
    f.buf_mut().extend_from_slice(text);
    f.buf_mut().extend_from_slice(b"</handshake>");
    let mut handshake_text = None;
    loop {
        match f.next_frame() {
            Ok(Some(Frame::Stanza(s))) if s.head.name == Name::Handshake => {
                if !s.has_children {
                    handshake_text = Some(s.text);
                }
                break;
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break,
        }
    }
    let candidates = [
        handshake_text,
        Some(String::from_utf8_lossy(text).into_owned()),
    ];
    for t in candidates.iter().flatten() {
        if let Some(tok) = handshake_token(t) {
            assert_eq!(tok.len(), 40);
            assert!(tok.bytes().all(|b| b.is_ascii_hexdigit()));
            let _ = handshake_matches(&id, &secret, tok);
        }
    }

    let want = hex_sha1(&id, &secret);
    assert!(handshake_matches(&id, &secret, &want));
    assert!(handshake_matches(&id, &secret, &want.to_ascii_uppercase()));
    let mut wrong = want.clone().into_bytes();
    let i = input.len() % 40;
    wrong[i] = if wrong[i] == b'0' { b'1' } else { b'0' };
    assert!(!handshake_matches(
        &id,
        &secret,
        std::str::from_utf8(&wrong).unwrap()
    ));
    assert!(!handshake_matches(&id, &secret, &want[..39]));
});

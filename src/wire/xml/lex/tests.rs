//! The lexer's own tests.

use super::*;

#[test]
fn utf8_decoding_matches_std() {
    let samples: &[&[u8]] = &[
        "é".as_bytes(),
        "€".as_bytes(),
        "𝄞".as_bytes(),
        b"\xC0\x80",
        b"\xE0\x80\x80",
        b"\xED\xA0\x80",
        b"\xF4\x90\x80\x80",
        b"\xF0\x80\x80\x80",
        b"\xFF",
        b"\x80",
    ];
    for s in samples {
        let ours = decode_utf8(s).ok().flatten();
        let std = std::str::from_utf8(s)
            .ok()
            .and_then(|t| t.chars().next())
            .map(|c| (c as u32, c.len_utf8()));
        assert_eq!(ours, std, "{s:?}");
    }
    // Truncated but valid so far.
    assert!(matches!(decode_utf8(b"\xF0\x9D"), Ok(None)));
    assert!(decode_utf8(b"\xED\xA0").is_err());
}

/// A whole reference at the start of `b`.
fn reference(b: &[u8]) -> Result<Option<(usize, u32)>, FrameError> {
    let mut r = RefLex::default();
    r.step(b, usize::MAX).map(|(n, c)| c.map(|c| (n, c)))
}

#[test]
fn references() {
    assert_eq!(reference(b"&amp;x").unwrap(), Some((5, 0x26)));
    assert_eq!(reference(b"&#x41;").unwrap(), Some((6, 0x41)));
    assert_eq!(reference(b"&#65;").unwrap(), Some((5, 65)));
    assert_eq!(reference(b"&#0000000000065;").unwrap(), Some((16, 65)));
    assert_eq!(reference(b"&am").unwrap(), None);
    assert!(reference(b"&foo;").is_err());
    assert!(reference(b"&#0;").is_err());
    assert!(reference(b"&#xD800;").is_err());
    assert!(reference(b"&#;").is_err());
    assert!(reference(b"& ").is_err());
    assert!(reference(b"&#x110000").is_err());
}

#[test]
fn references_in_pieces_read_each_byte_once() {
    for whole in [&b"&quot;"[..], b"&#x1F600;", b"&#00000000000000000000065;"] {
        let mut r = RefLex::default();
        let mut got = None;
        for (k, byte) in whole.chunks(1).enumerate() {
            let (n, c) = r.step(byte, usize::MAX).unwrap();
            assert_eq!(n, 1, "byte {k}");
            got = c;
        }
        assert_eq!(got, reference(whole).unwrap().map(|(_, c)| c));
    }
    // The length bound stops the reader, which says so through `len`.
    let mut r = RefLex::default();
    let (n, c) = r.step(b"&#000000000000000", 8).unwrap();
    assert!(c.is_none() && r.len > 8 && n == r.len);
}

/// A whole name at the start of `b`.
fn qname(b: &[u8]) -> Result<Option<QName>, FrameError> {
    NameLex::default().step(b, usize::MAX).map(|(_, q)| q)
}

#[test]
fn names() {
    assert_eq!(qname(b"a:b>").unwrap().unwrap().colon, Some(1));
    assert!(qname(b":a").is_err());
    assert!(qname(b"a:>").is_err());
    assert!(qname(b"a:b:c").is_err());
    assert!(qname(b"a::b").is_err());
    assert_eq!(qname("é-1 ".as_bytes()).unwrap().unwrap().len, 4);
    assert!(qname(b"1a ").is_err());
    // Not over yet: the name may go on.
    assert!(qname(b"a:").unwrap().is_none());
    assert!(qname(b"ab").unwrap().is_none());
    assert!(qname(b"a\xC3").unwrap().is_none());
    // Fourth edition: no name characters beyond the BMP, none from the
    // compatibility area; the detail names the character.
    let e = qname("a𝒳>".as_bytes()).unwrap_err();
    assert_eq!(
        e.detail,
        "U+1D4B3 cannot be in a name (XML 1.0 fourth edition)"
    );
    assert!(qname("ｽ>".as_bytes()).is_err());
    assert!(qname("·a>".as_bytes()).is_err());
    assert_eq!(qname("a·>".as_bytes()).unwrap().unwrap().len, 3);
}

#[test]
fn names_in_pieces_read_each_byte_once() {
    let whole = "prefix:lоcal-名前>".as_bytes();
    let mut lx = NameLex::default();
    let mut at = 0;
    let mut seen = 0;
    let mut done = None;
    for end in 1..=whole.len() {
        let (n, q) = lx.step(&whole[at..end], usize::MAX).unwrap();
        seen += n;
        at += n;
        if q.is_some() {
            done = q;
            break;
        }
    }
    assert_eq!(done, qname(whole).unwrap());
    assert_eq!(seen, whole.len() - 1);
    // Too long: stops once past the bound.
    let mut lx = NameLex::default();
    let (n, q) = lx.step(&[b'a'; 100], 10).unwrap();
    assert!(q.is_none() && lx.len > 10 && n == lx.len);
}

#[test]
fn declarations() {
    assert!(xml_decl(b" version='1.0'").is_ok());
    assert!(xml_decl(b" version=\"1.0\" encoding='utf-8' standalone='yes' ").is_ok());
    assert!(xml_decl(b" encoding='UTF-8'").is_err());
    assert!(xml_decl(b" version='1.0' encoding='latin1'").is_err());
    assert!(xml_decl(b" version='1.0'encoding='UTF-8'").is_err());
    assert!(xml_decl(b"version='1.0'").is_err());
    assert!(xml_decl(b" version='2.0'").is_err());
}

#[test]
fn attribute_values() {
    let check = |v: &[u8]| {
        let mut st = ValueLex {
            plain: true,
            ..ValueLex::default()
        };
        value(v, b'\'', &mut st, usize::MAX, None).map(|r| (r, st.plain))
    };
    assert_eq!(check(b"plain\" x'").unwrap(), (Ok(8), true));
    assert_eq!(check(b"a&amp;b'").unwrap(), (Ok(7), false));
    assert_eq!(check(b"a&am").unwrap(), (Err(4), false));
    assert_eq!(check(b"ab\xC3").unwrap(), (Err(2), true));
    assert_eq!(decode_attr(b"a&amp;b\r\nc\td", false), "a&b c d");
    assert!(check(b"a<b'").is_err());
    assert!(check(b"a\x01'").is_err());
}

#[test]
fn value_keys_hash_the_decoded_value_whatever_the_pieces() {
    let keys = super::super::ns::Keys::new();
    let raw = "a&amp;b\r\nc\t&#x20AC;'\r\r\nd&#13;&#10;";
    let decoded = decode_attr(raw.as_bytes(), false);
    let want = keys.of(decoded.as_bytes());
    let bytes = format!("{raw}\"");
    let bytes = bytes.as_bytes();
    for chunk in [bytes.len(), 1, 2, 3] {
        let mut st = ValueLex::default();
        let mut key = ValueKey::new(keys.hasher());
        let (mut at, mut end) = (0, 0);
        let close = loop {
            end = (end + chunk).min(bytes.len());
            match value(&bytes[at..end], b'"', &mut st, usize::MAX, Some(&mut key)).unwrap() {
                Ok(n) => break at + n,
                Err(n) => at += n,
            }
        };
        assert_eq!(close, raw.len(), "chunk {chunk}");
        assert_eq!(key.len, decoded.len());
        assert_eq!(key.hasher.finish(), want, "chunk {chunk}");
    }
}

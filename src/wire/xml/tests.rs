//! Unit tests of the framer (the module beside this file).

use super::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='a.example'>";

fn feed_all(f: &mut Framer, data: &[u8]) -> Result<Vec<Frame>, FrameError> {
    f.buf_mut().extend_from_slice(data);
    let mut out = Vec::new();
    while let Some(fr) = f.next_frame()? {
        out.push(fr);
    }
    Ok(out)
}

fn framer() -> Framer {
    Framer::new(Limits::new(10_000))
}

#[test]
fn header_and_stanzas() {
    let mut f = framer();
    let s1 = "<message to='b@b.example' from='a.example' id='1'><body>hi &amp; <![CDATA[<x>]]> é</body></message>";
    let s2 = "<iq type='get' to='b' from='a.example' id='2'/>";
    let input = format!("{HEADER}\n{s1} \n\t{s2}</stream:stream>");
    let frames = feed_all(&mut f, input.as_bytes()).unwrap();
    let mut stanzas = Vec::new();
    let mut header = None;
    let mut ended = false;
    for fr in frames {
        match fr {
            Frame::Header(h) => header = Some(h),
            Frame::Stanza(s) => stanzas.push(s),
            Frame::Start(_) | Frame::Skipped(_) => {}
            Frame::End => ended = true,
        }
    }
    assert_eq!(header.unwrap().to.as_deref(), Some("a.example"));
    assert_eq!(stanzas.len(), 2);
    assert_eq!(&stanzas[0].bytes[..], s1.as_bytes());
    assert_eq!(stanzas[0].attrs.to.as_deref(), Some("b@b.example"));
    assert_eq!(stanzas[0].head.name, Name::Message);
    assert_eq!(stanzas[0].head.ns, Ns::Component);
    assert_eq!(&stanzas[1].bytes[..], s2.as_bytes());
    assert_eq!(stanzas[1].attrs.type_.as_deref(), Some("get"));
    assert!(ended);
}

fn header_error(h: &str) -> StreamCondition {
    feed_all(&mut framer(), h.as_bytes()).unwrap_err().condition
}

#[test]
fn bad_headers() {
    assert_eq!(
        header_error(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ),
        StreamCondition::InvalidNamespace
    );
    assert_eq!(
        header_error("<foo xmlns='jabber:component:accept'>"),
        StreamCondition::InvalidNamespace
    );
    assert_eq!(
        header_error("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' xmlns:foo='urn:foo'>"),
        StreamCondition::InvalidNamespace
    );
    // The streams namespace under another prefix, or none.
    assert_eq!(
        header_error(
            "<s:stream xmlns='jabber:component:accept' xmlns:s='http://etherx.jabber.org/streams'>"
        ),
        StreamCondition::BadNamespacePrefix
    );
    assert_eq!(
        header_error("<stream xmlns='http://etherx.jabber.org/streams'>"),
        StreamCondition::BadNamespacePrefix
    );
    // The prefix `stream` bound to something else.
    assert_eq!(
        header_error("<stream:stream xmlns='jabber:component:accept' xmlns:stream='urn:x'>"),
        StreamCondition::InvalidNamespace
    );
    // docs/behaviour.md#stream allows either condition for a DTD.
    assert!(matches!(
        header_error("<!DOCTYPE x><stream:stream>"),
        StreamCondition::RestrictedXml | StreamCondition::NotWellFormed
    ));
    assert_eq!(header_error("<<<"), StreamCondition::NotWellFormed);
}

#[test]
fn restricted_and_malformed_in_stream() {
    for (bad, cond) in [
        ("<?pi x?>", StreamCondition::RestrictedXml),
        ("<!-- c -->", StreamCondition::RestrictedXml),
        ("<message><a></b></message>", StreamCondition::NotWellFormed),
        ("<message>&foo;</message>", StreamCondition::NotWellFormed),
        ("text<", StreamCondition::BadFormat),
    ] {
        let mut f = framer();
        let err = feed_all(&mut f, format!("{HEADER}{bad}").as_bytes()).unwrap_err();
        assert_eq!(err.condition, cond, "{bad}");
    }
}

#[test]
fn size_limit_in_one_read_and_in_many() {
    let big = format!("<message><body>{}</body></message>", "x".repeat(20_000));
    let mut f = framer();
    let err = feed_all(&mut f, format!("{HEADER}{big}").as_bytes()).unwrap_err();
    assert_eq!(err.condition, StreamCondition::PolicyViolation);
    let mut f = framer();
    feed_all(&mut f, HEADER.as_bytes()).unwrap();
    let mut failed = false;
    for chunk in big.as_bytes().chunks(100) {
        if let Err(e) = feed_all(&mut f, chunk) {
            assert_eq!(e.condition, StreamCondition::PolicyViolation);
            failed = true;
            break;
        }
        assert!(f.buf.len() <= 10_100);
    }
    assert!(failed);
}

#[test]
fn depth_and_attribute_limits() {
    let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
    let mut f = framer();
    let err = feed_all(
        &mut f,
        format!("{HEADER}<message>{deep}</message>").as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.condition, StreamCondition::PolicyViolation);
    let attrs: String = (0..300).map(|i| format!(" a{i}='x'")).collect();
    let mut f = framer();
    let err = feed_all(&mut f, format!("{HEADER}<message{attrs}/>").as_bytes()).unwrap_err();
    assert_eq!(err.condition, StreamCondition::PolicyViolation);
}

#[test]
fn attribute_limit_is_checked_before_the_parser_collects_them() {
    let limits = Limits {
        max_attributes: 3,
        ..Limits::new(1 << 30)
    };
    // Namespace declarations count; `=`, `>` and quotes inside values,
    // CDATA, text and the XML declaration do not.
    let ok = "<message xmlns:x='u' a='=>\"' b=\"'=\"><x:b y=\"1\"> a=b <![CDATA[<c d='1' e='2' f='3' g='4'>]]]]></x:b></message>";
    let mut f = Framer::new(limits);
    let frames = feed_all(&mut f, format!("{HEADER}{ok}").as_bytes()).unwrap();
    assert!(frames
        .iter()
        .any(|f| matches!(f, Frame::Stanza(s) if &s.bytes[..] == ok.as_bytes())));
    // The stanza before the offending one is still framed, byte by byte too.
    let bad: String = (0..100_000).map(|i| format!(" a{i}=''")).collect();
    // The offending tag never ends: it must fail on the attribute too many.
    let input = format!("{HEADER}{ok}<message{bad}");
    for chunk in [input.len(), 1, 7, 4096] {
        let mut f = Framer::new(limits);
        let mut stanzas = 0;
        let mut err = None;
        'feed: for c in input.as_bytes().chunks(chunk) {
            f.buf_mut().extend_from_slice(c);
            loop {
                match f.next_frame() {
                    Ok(Some(Frame::Stanza(_))) => stanzas += 1,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        err = Some(e);
                        break 'feed;
                    }
                }
            }
        }
        assert_eq!(stanzas, 1, "chunk {chunk}");
        assert_eq!(
            err.map(|e| e.condition),
            Some(StreamCondition::PolicyViolation)
        );
    }
    // The same on the stream header, before any authentication.
    let mut f = Framer::new(limits);
    let err = feed_all(&mut f, format!("<stream:stream{bad}>").as_bytes()).unwrap_err();
    assert_eq!(err.condition, StreamCondition::PolicyViolation);
}

#[test]
fn stanza_bytes_do_not_share_the_read_buffer() {
    let mut f = framer();
    let pad = " ".repeat(60_000);
    let frames = feed_all(
        &mut f,
        format!("{HEADER}{pad}<iq type='get' to='b' from='a.example' id='1'/>{pad}<mess")
            .as_bytes(),
    )
    .unwrap();
    let st = frames
        .into_iter()
        .find_map(|f| match f {
            Frame::Stanza(s) => Some(s),
            _ => None,
        })
        .unwrap();
    // The routing attributes are views into the stanza's own bytes...
    assert_eq!(st.attrs.to.as_deref(), Some("b"));
    let Stanza { bytes, attrs, .. } = st;
    assert!(!bytes.is_unique());
    drop(attrs);
    // ...which are not a view into the framer's read buffer, still alive.
    assert!(bytes.is_unique());
    assert!(f.buf.capacity() > 0);
}

/// Found by fuzzing (framer_diff): each of these is wrong before its markup
/// ends, and must fail at once, the same in one read or byte by byte.
#[test]
fn faults_are_reported_before_the_markup_ends() {
    for bad in [
        &b"<message><![CDATA[ab\x01cd"[..],
        b"<message>&xy",
        b"<message>&#99999999",
        b"<message>&a\xC3",
        b"<message></mess ",
        b"<message a='1'b",
    ] {
        for chunk in [usize::MAX, 1] {
            let mut f = framer();
            let mut data = HEADER.as_bytes().to_vec();
            data.extend_from_slice(bad);
            let mut err = None;
            for c in data.chunks(chunk.min(data.len())) {
                if let Err(e) = feed_all(&mut f, c) {
                    err = Some(e.condition);
                    break;
                }
            }
            assert_eq!(
                err,
                Some(StreamCondition::NotWellFormed),
                "{} in chunks of {chunk}",
                bad.escape_ascii()
            );
        }
    }
    // A declaration longer than its bound fails the same whether its `>`
    // came in the same read or not (found by fuzzing: framer).
    let long = format!("<?xml version='1.0{}'?>", "3".repeat(300));
    for chunk in [long.len(), 7] {
        let mut f = framer();
        let mut err = None;
        for c in long.as_bytes().chunks(chunk) {
            if let Err(e) = feed_all(&mut f, c) {
                err = Some(e.detail);
                break;
            }
        }
        assert_eq!(
            err.as_deref(),
            Some("malformed XML declaration"),
            "chunk {chunk}"
        );
    }
    // A junk byte in an unfinished XML declaration.
    let mut f = framer();
    let err = feed_all(&mut f, b"<?xml version='1.0' encoding='f'\x00").unwrap_err();
    assert_eq!(err.condition, StreamCondition::NotWellFormed);
}

/// Frames `data` after the header in chunks of `chunk` bytes; the stanzas.
fn stanzas_in_chunks(data: &[u8], chunk: usize, limits: Limits) -> Vec<Stanza> {
    let mut f = Framer::new(limits);
    feed_all(&mut f, HEADER.as_bytes()).unwrap();
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        for fr in feed_all(&mut f, c).unwrap() {
            if let Frame::Stanza(s) = fr {
                out.push(s);
            }
        }
    }
    out
}

#[test]
fn default_namespace_value_span() {
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("<message xmlns='jabber:client' to='b'/>", Some("jabber:client"), false),
        // After a value holding `>` and a double-quoted look-alike.
        (
            "<message id=\"xmlns='jabber:client'\" a='>' xmlns = \"jabber:client\"><body/></message>",
            Some("jabber:client"),
            false,
        ),
        ("<message xmlns\n=\t'jabber&#58;client'/>", Some("jabber&#58;client"), false),
        ("<message to='b'><x xmlns='jabber:client'/></message>", None, false),
        ("<c:message xmlns:c='jabber:client' to='b'/>", None, true),
        ("<c:message xmlns:c='jabber:client' xmlns='urn:x'/>", Some("urn:x"), true),
    ];
    for &(st, want, prefixed) in cases {
        for chunk in [usize::MAX, 1, 3] {
            let got = stanzas_in_chunks(st.as_bytes(), chunk, Limits::new(10_000));
            let s = &got[0];
            assert_eq!(&s.bytes[..], st.as_bytes());
            let span = s.xmlns_value.clone().map(|r| &st[r]);
            assert_eq!(span, want, "{st} in chunks of {chunk}");
            assert_eq!(s.prefixed, prefixed, "{st}");
        }
    }
    let st = stanzas_in_chunks(
        b"<c:message xmlns:c='jabber:client'/>",
        5,
        Limits::new(10_000),
    );
    assert_eq!(st[0].head.ns, Ns::Client);
}

fn skipping(max_stanza_size: usize) -> Limits {
    Limits {
        excess: Excess::Skip,
        ..Limits::new(max_stanza_size)
    }
}

/// Frames `HEADER` + `data` in chunks of `chunk` bytes: the frames after
/// the header, or the error; and the most bytes held after a read.
fn run_chunked(
    data: &str,
    chunk: usize,
    limits: Limits,
) -> (Vec<Frame>, Option<FrameError>, usize) {
    let mut f = Framer::new(limits);
    feed_all(&mut f, HEADER.as_bytes()).unwrap();
    let (mut frames, mut held) = (Vec::new(), 0);
    for c in data.as_bytes().chunks(chunk.max(1)) {
        match feed_all(&mut f, c) {
            Ok(fr) => frames.extend(fr),
            Err(e) => return (frames, Some(e), held),
        }
        held = held.max(f.buf.len());
    }
    (frames, None, held)
}

fn skipped(frames: &[Frame]) -> Vec<&Skipped> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Skipped(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn stanza_bytes(frames: &[Frame]) -> Vec<&[u8]> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Stanza(s) => Some(&s.bytes[..]),
            _ => None,
        })
        .collect()
}

#[test]
fn skip_mode_skips_what_is_beyond_a_limit_and_goes_on() {
    let small = "<message from='a@x' to='b@y' id='s'/>";
    let body = "&apos;".repeat(2000);
    let big = format!(
        "<message from='c@x/r' to='d@y' id='big' type='chat'><body>{body}</body>\
         <x:y xmlns:x='urn:x' x:a='1' b:c='2' xmlns:b='urn:b'/><!-- -->"
    );
    // (The comment is restricted XML: cut it off below.)
    let big = big.replace("<!-- -->", "</message>");
    let deep = format!(
        "<iq from='e@x' to='f@y' id='deep'>{}{}</iq>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    let attrs: String = (0..20).map(|i| format!(" a{i}='v'")).collect();
    let many = format!("<presence from='g@x' id='many'><c{attrs}/></presence>");
    let long = format!("<message id='long'><b v='{}'/></message>", "v".repeat(100));
    let data = format!("{small}{big}{small} {deep}{many}{long}{small}");
    let limits = Limits {
        max_depth: 10,
        max_attributes: 8,
        max_token: 64,
        ..skipping(1000)
    };
    for chunk in [usize::MAX, 1, 7, 333] {
        let (frames, err, held) = run_chunked(&data, chunk, limits);
        assert!(err.is_none(), "chunk {chunk}: {err:?}");
        assert_eq!(
            stanza_bytes(&frames),
            [small.as_bytes(); 3],
            "chunk {chunk}"
        );
        let sk = skipped(&frames);
        let got: Vec<_> = sk
            .iter()
            .map(|s| (s.limit, s.attrs.id.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            [
                (Limit::Size, "big"),
                (Limit::Depth, "deep"),
                (Limit::Attributes, "many"),
                (Limit::Token, "long")
            ],
            "chunk {chunk}"
        );
        let s = sk[0];
        assert_eq!(
            s.head,
            Some(Head {
                name: Name::Message,
                ns: Ns::Component
            })
        );
        assert_eq!(s.attrs.from.as_deref(), Some("c@x/r"));
        assert_eq!(s.attrs.to.as_deref(), Some("d@y"));
        assert_eq!(s.attrs.type_.as_deref(), Some("chat"));
        assert_eq!(s.size, big.len() as u64);
        // Never more held than the limit and a read.
        assert!(
            held <= 1000 + chunk.min(data.len()),
            "chunk {chunk}: held {held}"
        );
    }
}

#[test]
fn skip_mode_start_tag_beyond_the_limit_has_no_head() {
    let big = format!(
        "<message to='b@y' from='a@x' v='{}'><body/></message>",
        "x".repeat(5000)
    );
    let data = format!("{big}<iq from='a@x' id='after'/>");
    let limits = Limits {
        max_token: usize::MAX,
        ..skipping(1000)
    };
    for chunk in [usize::MAX, 1, 100] {
        let (frames, err, held) = run_chunked(&data, chunk, limits);
        assert!(err.is_none(), "{err:?}");
        assert!(!frames
            .iter()
            .any(|f| matches!(f, Frame::Start(h) if h.name == Name::Message)));
        let sk = skipped(&frames);
        assert_eq!(sk.len(), 1);
        assert_eq!(sk[0].head, None);
        assert_eq!(sk[0].attrs, Attrs::default());
        assert_eq!(sk[0].size, big.len() as u64);
        assert_eq!(stanza_bytes(&frames), [&b"<iq from='a@x' id='after'/>"[..]]);
        assert!(held <= 1000 + chunk.min(data.len()));
    }
}

#[test]
fn skip_mode_still_refuses_what_is_not_well_formed() {
    let pad = "x".repeat(3000);
    for (bad, why) in [
        (
            format!("<message><b>{pad}</c></message>"),
            "end tag does not match",
        ),
        (
            format!("<message><b>{pad}</b><p:q/></message>"),
            "undeclared prefix",
        ),
        (
            format!("<message><b>{pad}</b><q a='1' a='2'/></message>"),
            "duplicate",
        ),
        (
            format!("<message><b>{pad}</b><q xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'/></message>"),
            "duplicate",
        ),
        (
            format!("<message><b>{pad}&bogus;</b></message>"),
            "undeclared entity",
        ),
        (
            format!("<message><b>{pad}\u{1}</b></message>"),
            "control character",
        ),
        (
            format!("<message><b>{pad}</b><𝒳/></message>"),
            "fourth edition",
        ),
        (
            format!("<message><b>{pad}</b><q xmlns:p=''/></message>"),
            "undeclared",
        ),
        (
            format!("<message><b>{pad}</b><!-- c --></message>"),
            "comment",
        ),
    ] {
        for chunk in [usize::MAX, 1, 64] {
            let (frames, err, _) = run_chunked(&bad, chunk, skipping(1000));
            let err = err.unwrap_or_else(|| panic!("{why}: no error in chunks of {chunk}"));
            assert!(
                matches!(
                    err.condition,
                    StreamCondition::NotWellFormed | StreamCondition::RestrictedXml
                ),
                "{why}: {err:?}"
            );
            assert!(err.detail.contains(why), "{why}: {err:?}");
            assert!(skipped(&frames).is_empty());
        }
    }
    // What is well-formed passes, prefixes declared while skipping included.
    let ok = format!(
        "<message><b>{pad}</b><p:q xmlns:p='u' xmlns:r='u' p:x='1' r:y='2'><p:z/></p:q>\
         <stream:q/><q a='1' b='2' xml:lang='en' xmlns:stream='urn:s' stream:z=''/></message>"
    );
    for chunk in [usize::MAX, 1, 64] {
        let (frames, err, _) = run_chunked(&ok, chunk, skipping(1000));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(skipped(&frames).len(), 1);
    }
}

#[test]
fn skip_mode_deep_nesting_costs_bounded_memory() {
    // 300,000 levels: far deeper than the names kept for end-tag matching
    // (max_stanza_size / 16 = 625 here), which are checked as deep as kept.
    let n = 300_000;
    let data = format!(
        "<message>{}{}</message><iq/>",
        "<a>".repeat(n),
        "</a>".repeat(n)
    );
    for chunk in [usize::MAX, 65536] {
        let mut f = Framer::new(skipping(10_000));
        feed_all(&mut f, HEADER.as_bytes()).unwrap();
        let mut frames = Vec::new();
        for c in data.as_bytes().chunks(chunk.min(data.len())) {
            frames.extend(feed_all(&mut f, c).unwrap());
            assert!(f.open.len() <= 10_000 / 16 + 1);
            assert!(f.buf.len() <= 10_000 + chunk.min(data.len()));
        }
        assert_eq!(skipped(&frames).len(), 1);
        assert_eq!(stanza_bytes(&frames), [&b"<iq/>"[..]]);
    }
    // A wrong end tag among the levels kept is still found.
    let bad = format!(
        "<message>{}</b>{}</message>",
        "<a>".repeat(2000),
        "</a>".repeat(2000)
    );
    let (_, err, _) = run_chunked(&bad, 4096, skipping(10_000));
    assert_eq!(
        err.map(|e| e.condition),
        Some(StreamCondition::NotWellFormed)
    );
}

#[test]
fn fail_mode_limits_are_errors() {
    for (limits, data) in [
        (
            Limits {
                max_token: 40,
                ..Limits::new(10_000)
            },
            format!("<message a='{}'/>", "x".repeat(41)),
        ),
        (
            Limits {
                max_token: 40,
                ..Limits::new(10_000)
            },
            format!("<message><{}/></message>", "x".repeat(41)),
        ),
        (
            Limits {
                max_token: 40,
                ..Limits::new(10_000)
            },
            format!("<message>&#{};</message>", "0".repeat(41)),
        ),
        // A value made of references, cut by every read (found by fuzzing:
        // framer; the reference's bound and the value's were mixed up, and
        // reading stopped without a verdict).
        (
            Limits {
                max_token: 40,
                ..Limits::new(10_000)
            },
            format!("<message a='{}'/>", "&#x41;&lt;".repeat(5)),
        ),
        // A malformed reference past the bound: the bound comes first,
        // whatever the reads (fuzz: framer).
        (
            Limits {
                max_token: 40,
                ..Limits::new(10_000)
            },
            format!("<message a='{}&#650&lt;'/>", "x".repeat(38)),
        ),
    ] {
        for chunk in [usize::MAX, 1, 2, 3] {
            let (_, err, _) = run_chunked(&data, chunk, limits);
            assert_eq!(
                err.map(|e| e.condition),
                Some(StreamCondition::PolicyViolation),
                "{data}"
            );
        }
    }
}

#[test]
fn long_values_pass_with_a_larger_token_limit() {
    // A client's 1,500 apostrophes, re-escaped by the server as `&apos;`.
    let v = "&apos;".repeat(1500);
    let st = format!("<message from='a@x' to='b@y' id='{v}'><body>{v}</body></message>");
    let limits = Limits {
        max_token: 1 << 20,
        ..skipping(1 << 20)
    };
    for chunk in [usize::MAX, 1, 1000] {
        let (frames, err, _) = run_chunked(&st, chunk, limits);
        assert!(err.is_none());
        assert_eq!(stanza_bytes(&frames), [st.as_bytes()]);
    }
    let (_, err, _) = run_chunked(&st, 100, Limits::new(1 << 20));
    assert_eq!(
        err.map(|e| e.condition),
        Some(StreamCondition::PolicyViolation)
    );
}

/// The namespace-heavy input that cost quadratic time (255 prefixes bound
/// to ~1 KB URIs with a reference in them, then child tags using every
/// prefix): accepted, and the same whatever the reads. Its cost is
/// measured by `cargo bench --bench worst_case`.
#[test]
fn many_prefixes_reused_by_many_attributes() {
    let uri = |i: usize| format!("urn:{}&amp;{i}", "u".repeat(1000));
    let decls: String = (0..255)
        .map(|i| format!(" xmlns:p{i}='{}'", uri(i)))
        .collect();
    let uses: String = (0..255).map(|i| format!(" p{i}:a='1'")).collect();
    let child = format!("<c{uses}/>");
    let st = format!("<message{decls}>{}</message>", child.repeat(20));
    let limits = Limits::new(1 << 20);
    for chunk in [usize::MAX, 4096] {
        let (frames, err, _) = run_chunked(&st, chunk, limits);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(stanza_bytes(&frames), [st.as_bytes()]);
    }
    // The same URI under two prefixes is the same namespace.
    let dup = format!(
        "<message{decls} xmlns:q='{}'><c p7:a='1' q:a='2'/></message>",
        uri(7)
    );
    let (_, err, _) = run_chunked(&dup, usize::MAX, limits);
    assert_eq!(
        err.map(|e| e.detail),
        Some("duplicate attribute (same namespace and name)".to_string())
    );
    // Plain attributes: duplicates found past the pairwise threshold too.
    let plain: String = (0..200).map(|i| format!(" a{i}='1'")).collect();
    let (_, err, _) = run_chunked(&format!("<message{plain} a150='2'/>"), 7, limits);
    assert_eq!(
        err.map(|e| e.detail),
        Some("duplicate attribute".to_string())
    );
}

#[test]
fn handshake_text() {
    let mut f = framer();
    let frames = feed_all(
        &mut f,
        format!("{HEADER}<handshake> abc </handshake>").as_bytes(),
    )
    .unwrap();
    let s = frames
        .into_iter()
        .find_map(|f| match f {
            Frame::Stanza(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(s.head.name, Name::Handshake);
    assert_eq!(s.text, " abc ");
    assert!(!s.has_children);
}

/// The `<text/>` of a stream error is kept (references expanded, in any
/// chunking), only that of the first `<text/>`, and nothing for other elements.
#[test]
fn stream_error_text_is_kept() {
    let cases: [(&str, Option<&str>, Option<&str>); 5] = [
        (
            "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>c.example does not match &lt;x&gt;</text></stream:error>",
            Some("host-unknown"),
            Some("c.example does not match <x>"),
        ),
        (
            "<stream:error><conflict xmlns='x'/></stream:error>",
            Some("conflict"),
            None,
        ),
        (
            "<stream:error><textual/><text/></stream:error>",
            Some("textual"),
            Some(""),
        ),
        (
            "<stream:error><text>a<b>c</b><![CDATA[d]]></text><x>e</x><text>f</text></stream:error>",
            Some("text"),
            Some("ad"),
        ),
        ("<message to='a' from='b'><text>no</text></message>", None, None),
    ];
    for (el, first, text) in cases {
        for chunk in [1, 7, 4096] {
            let mut f = framer();
            let input = format!("{HEADER}{el}");
            let mut got = None;
            for piece in input.as_bytes().chunks(chunk) {
                for fr in feed_all(&mut f, piece).unwrap() {
                    if let Frame::Stanza(s) = fr {
                        got = Some(s);
                    }
                }
            }
            let s = got.expect(el);
            assert_eq!(s.first_child.as_deref(), first, "{el}");
            assert_eq!(s.error_text.as_deref(), text, "{el} in {chunk}-byte pieces");
            assert_eq!(s.text, "", "{el}");
        }
    }
}

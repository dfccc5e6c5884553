//! The stream-header path: a header prefix (picked by the first byte) followed
//! by arbitrary bytes, through the framer and then what the component does with
//! a header: parse `to` as a JID, and build our reply header (or the error
//! header) from it. Checked: no panic; the reply header we would send, with the
//! peer's `to` echoed in it, is itself a well-formed component stream header
//! that our own framer accepts and reads the same `from` back from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use test_support::xcr::component::new_stream_id;
use test_support::xcr::jid;
use test_support::xcr::stanza::{accept_header, error_header};
use test_support::xcr::xml::{Frame, Framer, Limits};

const PREFIXES: &[&str] = &[
    "",
    "<?xml version='1.0'?>",
    "<stream:stream ",
    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='",
    "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to=\"",
    "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' ",
    "<?xml version='1.0'?>\n<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' to='a.example' version='1.0'>",
];

/// The `from` our framer reads back from a header we send, as a peer would.
fn reread_from(header: &[u8]) -> Option<String> {
    // Our framer expects `to`; a reply header has `from`. Read it back through
    // the framer (well-formedness, namespaces) and the attribute by hand.
    let mut f = Framer::new(Limits::new(1 << 20));
    f.buf_mut().extend_from_slice(header);
    match f.next_frame() {
        Ok(Some(Frame::Header(h))) => h.from,
        other => panic!(
            "our own header is refused: {other:?}\n{}",
            String::from_utf8_lossy(header)
        ),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else {
        return;
    };
    let mut data = PREFIXES[pick as usize % PREFIXES.len()].as_bytes().to_vec();
    data.extend_from_slice(rest);
    let mut f = Framer::new(Limits::new(10_000));
    f.buf_mut().extend_from_slice(&data);
    let header = loop {
        match f.next_frame() {
            Ok(Some(Frame::Header(h))) => break h,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        }
    };
    // The rest of the stream is framed as usual (nothing may panic there either).
    while let Ok(Some(_)) = f.next_frame() {}

    let Some(to) = header.to else {
        return;
    };
    // What Connection::run does with `to`.
    if let Some(j) = jid::parse(&to) {
        let _ = jid::routing_key(j.domain);
        let _ = jid::valid_domain(j.domain);
    }
    let id = new_stream_id();
    let reply = accept_header(&to, &id);
    assert_eq!(reread_from(&reply).as_deref(), Some(to.as_str()));
    let err = error_header(Some(&to));
    assert_eq!(reread_from(&err).as_deref(), Some(to.as_str()));
});

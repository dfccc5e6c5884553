//! The stream framer on arbitrary bytes in an arbitrary chunking.
//!
//! Input: byte 0 picks the limits, half the time skipping what is beyond
//! them (the upstream link's mode) rather than failing; byte 1 says how many of the following bytes
//! are chunk sizes (cycled); the rest is the stream. Checked:
//! - no panic, whatever the bytes and the chunking;
//! - the framer never holds more than `max_stanza_size` plus one chunk (plus
//!   the few bytes of a pending stream header), and no stanza is larger than
//!   `max_stanza_size`;
//! - the frames and the error do not depend on the chunking (compared with the
//!   whole input in one piece);
//! - the attribute limit, checked while the framer looks for the end of a start
//!   tag (before reading the tag), agrees with rxml's tokenizer as a reference: no "too many attributes" error unless some
//!   element has more than `max_attributes` attributes (namespace declarations
//!   included), and an error whenever rxml reads such an element before any
//!   other problem.
#![no_main]

use libfuzzer_sys::fuzz_target;

use rxml::{Parse, RawEvent};
use test_support::fuzz_limits as limits;
use test_support::xcr::xml::{Frame, FrameError, Framer, Limits};

#[derive(Debug, PartialEq)]
enum Out {
    Header(Option<String>, Option<String>),
    Start(String),
    Stanza(Vec<u8>, String),
    Skipped(String),
    End,
}

fn describe(f: Frame) -> Out {
    match f {
        Frame::Header(h) => Out::Header(h.to, h.version),
        Frame::Start(h) => Out::Start(format!("{h:?}")),
        Frame::Stanza(s) => Out::Stanza(s.bytes.to_vec(), format!("{:?} {:?}", s.head, s.attrs)),
        Frame::Skipped(s) => Out::Skipped(format!("{s:?}")),
        Frame::End => Out::End,
    }
}

/// Feed `data` in chunks of `sizes` (cycled); frames and the first error.
fn run(data: &[u8], sizes: &[usize], limits: Limits) -> (Vec<Out>, Option<FrameError>) {
    let mut f = Framer::new(limits);
    let mut outs = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < data.len() {
        let n = sizes[k % sizes.len()].min(data.len() - at);
        k += 1;
        f.buf_mut().extend_from_slice(&data[at..at + n]);
        at += n;
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => {
                    if let Frame::Stanza(s) = &fr {
                        assert!(s.bytes.len() <= limits.max_stanza_size);
                    }
                    outs.push(describe(fr));
                }
                Ok(None) => break,
                Err(e) => return (outs, Some(e)),
            }
        }
        if outs.last() == Some(&Out::End) {
            // The connection ends here; nothing more is read.
            return (outs, None);
        }
        // What is held: at most the limit plus this chunk.
        assert!(
            f.buf_mut().len() <= limits.max_stanza_size + n,
            "holding {} bytes with limit {}",
            f.buf_mut().len(),
            limits.max_stanza_size
        );
    }
    (outs, None)
}

/// Where rxml's raw tokenizer first sees an element with more than `max`
/// attributes: `Some(true)` if it does before any error, `Some(false)` if no
/// element has that many and the input is clean, `None` if it errors first or
/// the input ends inside a start tag.
fn raw_attribute_overflow(data: &[u8], max: usize) -> Option<bool> {
    let mut p = rxml::RawParser::new();
    let mut slice = data;
    let mut count = 0;
    let mut in_head = false;
    loop {
        match p.parse(&mut slice, false) {
            Ok(Some(RawEvent::ElementHeadOpen(..))) => {
                count = 0;
                in_head = true;
            }
            Ok(Some(RawEvent::ElementHeadClose(..))) => in_head = false,
            Ok(Some(RawEvent::Attribute(..))) => {
                count += 1;
                if count > max {
                    return Some(true);
                }
            }
            Ok(Some(_)) => {}
            // The input ends inside a start tag: its last attribute may be
            // incomplete (rxml reports it only with its value), so undecided.
            Ok(None) | Err(rxml::error::EndOrError::NeedMoreData) if in_head => return None,
            Ok(None) | Err(rxml::error::EndOrError::NeedMoreData) => return Some(false),
            Err(rxml::error::EndOrError::Error(_)) => return None,
        }
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let limits = limits::pick_any(input[0]);
    let n_sizes = (input[1] % 8) as usize;
    let rest = &input[2..];
    let n_sizes = n_sizes.min(rest.len());
    let mut sizes: Vec<usize> = rest[..n_sizes].iter().map(|&b| b as usize + 1).collect();
    if sizes.is_empty() {
        sizes.push(usize::MAX);
    }
    let data = &rest[n_sizes..];

    let (outs, err) = run(data, &sizes, limits);
    let (whole_outs, whole_err) = run(data, &[usize::MAX], limits);
    // The size limit may trip at a chunk-dependent point (the check runs when
    // the parser wants more data), so compare the outcome only when it did not.
    let size_msg = format!(
        "larger than max_stanza_size ({} bytes)",
        limits.max_stanza_size
    );
    let size_tripped =
        |e: &Option<FrameError>| e.as_ref().is_some_and(|e| e.detail.ends_with(&size_msg));
    if !size_tripped(&err) && !size_tripped(&whole_err) {
        assert_eq!(outs, whole_outs, "chunks {sizes:?}");
        assert_eq!(err, whole_err, "chunks {sizes:?}");
    }

    // The attribute pre-scan against rxml's tokenizer, on the whole input, with
    // limits that nothing else trips first.
    let roomy = Limits {
        max_stanza_size: 1 << 30,
        max_depth: 1 << 20,
        max_attributes: limits.max_attributes,
        ..Limits::new(1 << 30)
    };
    let (roomy_outs, e) = run(data, &[usize::MAX], roomy);
    let attr_error = e.as_ref().is_some_and(|e| {
        e.detail
            == format!(
                "more than {} attributes on one element",
                roomy.max_attributes
            )
    });
    match raw_attribute_overflow(data, roomy.max_attributes) {
        Some(false) => assert!(!attr_error, "false attribute-limit error: {e:?}"),
        Some(true) => assert!(
            e.is_some() || roomy_outs.last() == Some(&Out::End),
            "attribute overflow not caught"
        ),
        None => {}
    }
});

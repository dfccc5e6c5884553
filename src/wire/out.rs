//! What a writer writes: protocol bytes of the router's own, or a stanza with
//! what the framer read of it.
//!
//! A stanza keeps its name, namespace, routing attributes and the span of its
//! own `xmlns` value from the framer to the socket it is written to, so a
//! stanza that cannot be written is bounced, and one going upstream has its
//! default namespace rewritten, without being parsed again.

use bytes::Bytes;

use crate::proto::ns::NS_COMPONENT;
use crate::wire::xml::{Attrs, Head, Ns, Stanza};

/// A top-level element on its way from one stream to another.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub head: Head,
    /// Its routing attributes: slices of `bytes`, or decoded values.
    pub attrs: Attrs,
    /// The exact bytes to write.
    pub bytes: Bytes,
    /// Where the value of its own `xmlns` attribute lies in `bytes` (start,
    /// length), if it has one.
    pub xmlns_value: Option<(u32, u32)>,
    /// Its name has a prefix: its namespace was not reached through `xmlns`.
    pub prefixed: bool,
}

impl From<Stanza> for Envelope {
    fn from(st: Stanza) -> Envelope {
        Envelope {
            head: st.head,
            attrs: st.attrs,
            bytes: st.bytes,
            xmlns_value: st
                .xmlns_value
                .map(|r| (r.start as u32, (r.end - r.start) as u32)),
            prefixed: st.prefixed,
        }
    }
}

impl Envelope {
    /// What it costs a queue: its bytes and its decoded attribute values.
    pub fn cost(&self) -> usize {
        self.bytes.len() + self.attrs.heap_len()
    }

    /// The element as it goes to an upstream server: a top-level
    /// `jabber:client` default namespace is rewritten to
    /// `jabber:component:accept`, which Prosody would otherwise drop silently.
    /// Exactly the value the framer recorded is replaced (wherever the
    /// declaration sits, however it is quoted, spaced or written with
    /// references); no other byte changes. An element that is in
    /// `jabber:client` only through a prefix cannot be rewritten so: `Err`
    /// gives it back, to be bounced `bad-request`.
    // Handed back by value: boxing it would allocate for every refusal.
    #[allow(clippy::result_large_err)]
    pub fn for_upstream(self) -> Result<Envelope, Envelope> {
        if self.head.ns != Ns::Client {
            return Ok(self);
        }
        let (start, len) = match (self.xmlns_value, self.prefixed) {
            (Some((s, l)), false) => (s as usize, l as usize),
            _ => return Err(self),
        };
        let end = start + len;
        let mut v = Vec::with_capacity(self.bytes.len() - len + NS_COMPONENT.len());
        v.extend_from_slice(&self.bytes[..start]);
        v.extend_from_slice(NS_COMPONENT.as_bytes());
        v.extend_from_slice(&self.bytes[end..]);
        let bytes = Bytes::from(v);
        let delta = NS_COMPONENT.len() as isize - len as isize;
        Ok(Envelope {
            head: Head {
                ns: Ns::Component,
                ..self.head
            },
            attrs: self.attrs.moved(&self.bytes, &bytes, end, delta),
            bytes,
            xmlns_value: Some((start as u32, NS_COMPONENT.len() as u32)),
            prefixed: false,
        })
    }
}

/// One item of an outgoing queue.
#[derive(Debug)]
pub enum Out {
    /// Bytes of the router's own that are not a stanza (a header,
    /// `<handshake/>`, a whitespace keepalive, a ping): never bounced.
    Raw(Bytes),
    /// A stanza (from a peer, or a bounce the router made).
    Stanza(Envelope),
}

impl Out {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Out::Raw(b) => b,
            Out::Stanza(e) => &e.bytes,
        }
    }

    /// What it costs a queue (see [`Envelope::cost`]).
    pub fn cost(&self) -> usize {
        match self {
            Out::Raw(b) => b.len(),
            Out::Stanza(e) => e.cost(),
        }
    }

    pub fn into_stanza(self) -> Option<Envelope> {
        match self {
            Out::Raw(_) => None,
            Out::Stanza(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::xml::{Frame, Framer, Limits};

    /// Frame one stanza (after a component stream header).
    fn frame(st: &str) -> Envelope {
        let mut f = Framer::new(Limits::new(100_000));
        f.buf_mut().extend_from_slice(
            b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='x'>",
        );
        f.buf_mut().extend_from_slice(st.as_bytes());
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Stanza(s))) => return s.into(),
                Ok(Some(_)) => continue,
                other => panic!("{st}: {other:?}"),
            }
        }
    }

    #[test]
    fn client_namespace_rewrite_replaces_exactly_the_value() {
        let cases = [
            (
                "<message xmlns='jabber:client' to='x'><body xmlns='jabber:client'/></message>",
                "<message xmlns='jabber:component:accept' to='x'><body xmlns='jabber:client'/></message>",
            ),
            (
                "<message a='>' id=\"xmlns='jabber:client'\" xmlns = \"jabber:client\"/>",
                "<message a='>' id=\"xmlns='jabber:client'\" xmlns = \"jabber:component:accept\"/>",
            ),
            (
                "<iq xmlns='jabber&#x3A;client' type='get'/>",
                "<iq xmlns='jabber:component:accept' type='get'/>",
            ),
        ];
        for (input, want) in cases {
            let got = frame(input).for_upstream().unwrap();
            assert_eq!(std::str::from_utf8(&got.bytes).unwrap(), want);
        }
        // Already jabber:component:accept (or inherited): unchanged.
        let st = frame("<message to='x'/>");
        let bytes = st.bytes.clone();
        assert_eq!(st.for_upstream().unwrap().bytes, bytes);
        // jabber:client only through a prefix: bounced.
        let st = frame("<c:message xmlns:c='jabber:client' to='x'/>");
        assert!(st.for_upstream().is_err());
    }

    /// The routing attributes of a rewritten stanza read the same and are
    /// slices of the new bytes (the old ones are not kept alive).
    #[test]
    fn rewritten_attributes_move_with_the_bytes() {
        let e = frame(
            "<message to='a@x' xmlns='jabber:client' from='c.example/r' id='i&amp;1' type='chat'/>",
        );
        let old = e.attrs.clone();
        let got = e.for_upstream().unwrap();
        assert_eq!(got.attrs, old);
        assert_eq!(got.head.ns, Ns::Component);
        // `id` was decoded (a reference): held apart, counted in the cost.
        assert_eq!(got.attrs.heap_len(), "i&1".len());
        assert_eq!(got.cost(), got.bytes.len() + 3);
        for v in [&got.attrs.to, &got.attrs.from, &got.attrs.type_] {
            let v = v.as_ref().unwrap().as_str();
            let p = v.as_ptr() as usize;
            let base = got.bytes.as_ptr() as usize;
            assert!(p >= base && p + v.len() <= base + got.bytes.len(), "{v}");
        }
        let (s, l) = got.xmlns_value.unwrap();
        assert_eq!(
            &got.bytes[s as usize..(s + l) as usize],
            NS_COMPONENT.as_bytes()
        );
    }

    /// What a writer hands back carries what the bounce needs: name and
    /// addresses as the framer read them (references expanded, a quoted `>`
    /// inside a value), and no bounce for a result.
    #[test]
    fn a_queued_stanza_gives_its_bounce() {
        use crate::wire::stanza::Bounce;
        use crate::wire::xml::Name;
        let e = frame("<message to='u@x' from='c.example/r' id='a&amp;b' type='chat'><body>hi</body></message>");
        assert_eq!(e.head.name, Name::Message);
        let reply = Bounce::UPSTREAM_UNAVAILABLE
            .reply(e.head.name, &e.attrs)
            .unwrap();
        let s = std::str::from_utf8(&reply).unwrap();
        assert!(s.starts_with("<message from='u@x' to='c.example/r' id='a&amp;b' type='error'><error type='wait'><remote-server-timeout"), "{s}");
        assert!(s.contains("Upstream server unavailable"));
        let e = frame("<iq xmlns='jabber:component:accept' type='result' id='1' to='x' from='c'/>");
        assert!(Bounce::UPSTREAM_UNAVAILABLE
            .reply(e.head.name, &e.attrs)
            .is_none());
        let e = frame("<presence from='c/a>b' to=\"u/x\"><status>1 > 0</status></presence>");
        assert_eq!(e.head.name, Name::Presence);
        assert_eq!(e.attrs.from.as_deref(), Some("c/a>b"));
        assert_eq!(e.attrs.to.as_deref(), Some("u/x"));
    }
}

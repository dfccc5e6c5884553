//! Frames what the router writes to a component, with rxml: an XML parser that
//! shares no code with the router's own framer, so a framer bug cannot hide an
//! output bug (a stanza the router forwards that its own framer accepts but no
//! other parser would). rxml checks well-formedness and namespaces (an unbound
//! prefix, a duplicate attribute, a character XML forbids are all errors).
//!
//! [`XmlReader`] is fed bytes as they arrive ([`XmlReader::push`]) and gives back
//! the stream header, each top-level element as the exact bytes received, and
//! `</stream:stream>` ([`XmlReader::next_item`]). It keeps only the bytes of the
//! element in progress, and copies each element once, so reading tens of MB
//! costs the parse and one copy.
//!
//! Known limit: rxml 0.14 mishandles a carriage return inside an attribute
//! value (see [`crate::oracle::rxml::rxml_quirk_at`]); no black-box test sends
//! one.

use rxml::{Event, Namespace, Parse, WithOptions};

use crate::ns;

/// The longest name or attribute value accepted (text is not limited: rxml
/// splits it). As large as anything the router may pass on: the upstream
/// links allow a value as long as the stanza.
const MAX_TOKEN: usize = 64 << 20;

/// One unit of the router's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// The stream header.
    Header {
        /// Everything received up to the end of the header's start tag (an XML
        /// declaration and whitespace before it included).
        raw: String,
        /// The start tag alone, `<stream:stream …>`.
        tag: String,
        /// Its `id` attribute.
        id: Option<String>,
    },
    /// A top-level element, exactly as received.
    Stanza(String),
    /// `</stream:stream>`.
    End,
}

/// Incremental framer of one stream the router writes.
pub struct XmlReader {
    parser: rxml::Parser,
    buf: Vec<u8>,
    /// Bytes of `buf` given to the parser.
    fed: usize,
    /// Bytes of `buf` accounted for by the events so far (the parser may have
    /// taken more: part of a token it has not finished).
    pos: usize,
    /// Open elements, the stream root included.
    depth: usize,
    /// Offset in `buf` of the current top-level element's `<`.
    start: usize,
    ended: bool,
    /// The first error; every later call returns it again.
    failed: Option<String>,
}

impl Default for XmlReader {
    fn default() -> Self {
        XmlReader::new()
    }
}

impl XmlReader {
    pub fn new() -> XmlReader {
        let opts = rxml::parser::Options {
            max_token_length: MAX_TOKEN,
            ..Default::default()
        };
        XmlReader {
            parser: rxml::Parser::with_options(opts),
            buf: Vec::new(),
            fed: 0,
            pos: 0,
            depth: 0,
            start: 0,
            ended: false,
            failed: None,
        }
    }

    /// Append received bytes. After `</stream:stream>` nothing more is kept.
    pub fn push(&mut self, data: &[u8]) {
        if !self.ended {
            self.buf.extend_from_slice(data);
        }
    }

    /// `</stream:stream>` has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next item from the bytes pushed so far; `Ok(None)` when more bytes
    /// are needed (or the stream has ended); `Err` with rxml's reason when the
    /// bytes are not well-formed XML or not an XMPP stream.
    pub fn next_item(&mut self) -> Result<Option<Item>, String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let item = self.step();
        if let Err(e) = &item {
            let from = self.fed.saturating_sub(200);
            let seen = String::from_utf8_lossy(&self.buf[from..self.fed]);
            self.failed = Some(format!("{e}; the bytes before it: {seen:?}"));
            self.buf = Vec::new();
        }
        item.map_err(|_| self.failed.clone().unwrap_or_default())
    }

    fn step(&mut self) -> Result<Option<Item>, String> {
        while !self.ended {
            let mut rest = &self.buf[self.fed..];
            let before = rest.len();
            let parsed = self.parser.parse(&mut rest, false);
            self.fed += before - rest.len();
            match parsed {
                Ok(Some(ev)) => {
                    if let Some(item) = self.on_event(ev)? {
                        return Ok(Some(item));
                    }
                }
                Ok(None) => return Err("the parser saw the end of the document".into()),
                Err(rxml::error::EndOrError::NeedMoreData) => {
                    self.compact();
                    return Ok(None);
                }
                Err(rxml::error::EndOrError::Error(e)) => return Err(e.to_string()),
            }
        }
        Ok(None)
    }

    fn on_event(&mut self, ev: Event) -> Result<Option<Item>, String> {
        // The parser stops right after the `>` of a tag, so an element event
        // ends exactly at `fed`; other events may read a byte ahead, so they
        // are placed by their length.
        match &ev {
            Event::StartElement(..) | Event::EndElement(..) => self.pos = self.fed,
            _ => self.pos += ev.metrics().len(),
        }
        match ev {
            Event::XmlDeclaration(..) => Ok(None),
            Event::StartElement(metrics, (ns, name), attrs) => {
                self.depth += 1;
                match self.depth {
                    1 => {
                        if ns.as_str() != ns::STREAMS || name.as_str() != "stream" {
                            return Err(format!(
                                "the first element is {{{ns}}}{name}, not <stream:stream>"
                            ));
                        }
                        let id = attrs.get(&Namespace::NONE, "id").cloned();
                        self.header(id).map(Some)
                    }
                    2 => {
                        self.start = self.fed - metrics.len();
                        Ok(None)
                    }
                    _ => Ok(None),
                }
            }
            Event::EndElement(_) => {
                self.depth -= 1;
                match self.depth {
                    0 => {
                        self.ended = true;
                        self.buf = Vec::new();
                        Ok(Some(Item::End))
                    }
                    1 => {
                        let bytes = self.buf[self.start..self.fed].to_vec();
                        String::from_utf8(bytes)
                            .map(|s| Some(Item::Stanza(s)))
                            .map_err(|e| e.to_string())
                    }
                    _ => Ok(None),
                }
            }
            Event::Text(_, text) => {
                if self.depth <= 1 && !text.bytes().all(|b| b" \t\r\n".contains(&b)) {
                    return Err(format!("text between stanzas: {text:?}"));
                }
                Ok(None)
            }
        }
    }

    /// The header ends at `fed`; nothing before it was dropped.
    fn header(&mut self, id: Option<String>) -> Result<Item, String> {
        let raw = String::from_utf8(self.buf[..self.fed].to_vec()).map_err(|e| e.to_string())?;
        // The only `<?` rxml allows is the XML declaration.
        let at = raw
            .match_indices('<')
            .map(|(i, _)| i)
            .find(|&i| !raw[i..].starts_with("<?"))
            .unwrap_or(0);
        let tag = raw[at..].to_string();
        Ok(Item::Header { raw, tag, id })
    }

    /// Drop the bytes no item needs any more: before the header, none; inside
    /// a top-level element, those before it; between elements, those of the
    /// events so far.
    fn compact(&mut self) {
        let keep_from = match self.depth {
            0 => 0,
            1 => self.pos,
            _ => self.start,
        };
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.fed -= keep_from;
            self.pos -= keep_from;
            self.start = self.start.saturating_sub(keep_from);
        }
    }
}

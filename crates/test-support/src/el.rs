//! A minimal element tree, parsed with rxml (namespace-aware), for checking the
//! shape of errors and bounces without depending on attribute order or quotes.
//! Panics on XML that is not well-formed (an assertion failure in a test).

use rxml::{Event, Parse};

use crate::ns;

/// An element: namespace, local name, attributes, children, text.
#[derive(Debug, Clone)]
pub struct El {
    pub ns: String,
    pub name: String,
    /// Attributes without a namespace.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<El>,
    /// Its own text (not its children's).
    pub text: String,
}

impl El {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.ns == ns && c.name == name)
    }
}

/// Parse one top-level element as it appears inside a component stream
/// (default namespace `jabber:component:accept`, prefix `stream` bound).
pub fn parse_el(s: &str) -> El {
    let doc = format!(
        "<stream:stream xmlns='{}' xmlns:stream='{}'>{s}</stream:stream>",
        ns::COMPONENT,
        ns::STREAMS
    );
    let mut p = rxml::Parser::default();
    let mut slice = doc.as_bytes();
    let mut stack: Vec<El> = Vec::new();
    let mut found: Option<El> = None;
    loop {
        match p.parse(&mut slice, true) {
            Ok(Some(Event::StartElement(_, (el_ns, name), attrs))) => {
                let attrs = attrs
                    .into_iter()
                    .filter(|((ns, _), _)| ns.is_none())
                    .map(|((_, n), v)| (n.as_str().to_string(), v))
                    .collect();
                stack.push(El {
                    ns: el_ns.as_str().to_string(),
                    name: name.as_str().to_string(),
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                });
            }
            Ok(Some(Event::EndElement(_))) => {
                let el = stack.pop().expect("end without start");
                match stack.len() {
                    0 => {}
                    1 => {
                        assert!(found.is_none(), "more than one element in {s:?}");
                        found = Some(el);
                    }
                    _ => stack.last_mut().unwrap().children.push(el),
                }
            }
            Ok(Some(Event::Text(_, t))) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t);
                }
            }
            Ok(Some(Event::XmlDeclaration(..))) => {}
            Ok(None) => break,
            Err(e) => panic!("not well-formed: {e:?}: {s:?}"),
        }
    }
    found.unwrap_or_else(|| panic!("no element in {s:?}"))
}

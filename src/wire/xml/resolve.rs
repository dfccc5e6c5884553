//! Namespaces in XML applied to a start tag once it is whole: its
//! declarations recorded in scope, every prefix checked to be bound, no two
//! prefixed attributes with one expanded name (linear: each declaration's key
//! computed once, duplicates found through a hash set).

use super::lex::{nwf, QName};
use super::ns::{DupSet, Given, Keys, NameKey, Scope, NO_NS, SMALL, XML_NS};
use super::tag::{at, ensure_key, AttrKind, AttrTok};
use super::FrameError;

/// What [`resolve`] works on.
pub(super) struct ResolveCx<'a> {
    pub buf: &'a [u8],
    pub base: usize,
    pub keys: &'a Keys,
    pub scope: &'a mut Scope,
    pub attrs: &'a mut [AttrTok],
    pub decoded: &'a str,
    /// The tag's bytes are at hand (not skipping).
    pub exact: bool,
    /// The stream header bound the `stream` prefix.
    pub stream_bound: bool,
}

impl<'a> ResolveCx<'a> {
    fn name_bytes(&self, a: &AttrTok) -> Option<&'a [u8]> {
        let buf = self.buf;
        self.exact
            .then(|| at(buf, self.base, a.name_start, a.name_start + a.name.len))
    }
    /// A declaration's decoded value, when at hand.
    pub fn decl_value(&self, a: &AttrTok) -> Option<&'a [u8]> {
        let (buf, decoded) = (self.buf, self.decoded);
        if !self.exact {
            return None;
        }
        match a.decl {
            Some((_, _, Some((s, l)))) => Some(&decoded.as_bytes()[s as usize..(s + l) as usize]),
            _ => Some(at(
                buf,
                self.base,
                a.value_start,
                a.value_start + a.value_len,
            )),
        }
    }
}

/// Apply Namespaces in XML to a start tag (its `<` at `open`, its name `elem`,
/// its attributes in `cx.attrs`, its element at `depth`): record its
/// declarations, check every prefix is bound and that no two prefixed
/// attributes share an expanded name (the same name twice and the
/// declarations' own constraints were checked as the tag was read). Returns
/// the element's namespace, [`NO_NS`] for an unprefixed element (its default
/// namespace is the caller's business).
pub(super) fn resolve(
    cx: &mut ResolveCx<'_>,
    dups: &mut DupSet,
    open: usize,
    elem: (QName, Option<NameKey>),
    depth: u32,
) -> Result<u32, FrameError> {
    for i in 0..cx.attrs.len() {
        if cx.attrs[i].kind == AttrKind::Declaration {
            declare(cx, i, depth);
        }
    }
    let (q, key) = elem;
    let ns = match q.colon {
        None => NO_NS,
        Some(c) => {
            let prefix = if cx.exact {
                let b = at(cx.buf, cx.base, open + 1, open + 1 + c);
                Given {
                    key: cx.keys.of(b),
                    bytes: Some(b),
                }
            } else {
                Given {
                    key: key.unwrap_or_default().prefix,
                    bytes: None,
                }
            };
            if prefix
                .bytes
                .map_or(prefix.key == cx.keys.xmlns, |b| b == b"xmlns")
            {
                return Err(nwf("an element with the xmlns prefix"));
            }
            match cx.scope.lookup(prefix, cx.stream_bound, cx.keys) {
                NO_NS => return Err(nwf("an element with an undeclared prefix")),
                ns => ns,
            }
        }
    };
    let prefixed = cx
        .attrs
        .iter()
        .filter(|a| a.kind == AttrKind::Prefixed)
        .count();
    for i in 0..cx.attrs.len() {
        if cx.attrs[i].kind != AttrKind::Prefixed {
            continue;
        }
        let a = &cx.attrs[i];
        let bytes = cx.name_bytes(a).and_then(|n| a.name.prefix(n));
        if bytes == Some(b"xml") && prefixed <= SMALL {
            // Bound for good: no key needed (nor, this few, for duplicates).
            cx.attrs[i].ns = XML_NS;
            continue;
        }
        let k = ensure_key(&mut cx.attrs[i], cx.buf, cx.base, cx.keys);
        let prefix = Given {
            key: k.prefix,
            bytes,
        };
        match cx.scope.lookup(prefix, cx.stream_bound, cx.keys) {
            NO_NS => return Err(nwf("an attribute with an undeclared prefix")),
            ns => cx.attrs[i].ns = ns,
        }
    }
    if prefixed > 1 && expanded_duplicate(cx, dups) {
        return Err(nwf("duplicate attribute (same namespace and name)"));
    }
    Ok(ns)
}

/// Record the declaration `cx.attrs[i]` (`xmlns:p='uri'`).
fn declare(cx: &mut ResolveCx<'_>, i: usize, depth: u32) {
    let k = ensure_key(&mut cx.attrs[i], cx.buf, cx.base, cx.keys);
    let a = &cx.attrs[i];
    let local = cx.name_bytes(a).map(|n| a.name.local(n));
    // `xmlns:xml` (checked already) binds what is built in.
    if local.map_or(k.local == cx.keys.xml, |l| l == b"xml") {
        return;
    }
    let Some((value_key, _, _)) = a.decl else {
        return;
    };
    let prefix = Given {
        key: k.local,
        bytes: local,
    };
    let bytes = cx.decl_value(a);
    let key = match (value_key, bytes) {
        (Some(k), _) => k,
        (None, Some(b)) => cx.keys.of(b),
        (None, None) => return,
    };
    let uri = Given { key, bytes };
    cx.scope.declare(depth, prefix, uri, cx.keys);
}

/// Whether two prefixed attributes of the tag share namespace and local name.
fn expanded_duplicate(cx: &ResolveCx<'_>, dups: &mut DupSet) -> bool {
    let local = |a: &AttrTok| cx.name_bytes(a).map(|n| a.name.local(n));
    let same = |a: &AttrTok, b: &AttrTok| {
        a.ns == b.ns
            && match (local(a), local(b)) {
                (Some(x), Some(y)) => x == y,
                _ => a.key.map(|k| k.local) == b.key.map(|k| k.local),
            }
    };
    let count = cx
        .attrs
        .iter()
        .filter(|a| a.kind == AttrKind::Prefixed)
        .count();
    if count <= SMALL {
        for (i, a) in cx.attrs.iter().enumerate() {
            if a.kind == AttrKind::Prefixed
                && cx.attrs[i + 1..]
                    .iter()
                    .any(|b| b.kind == AttrKind::Prefixed && same(a, b))
            {
                return true;
            }
        }
        return false;
    }
    dups.clear();
    for (i, a) in cx.attrs.iter().enumerate() {
        if a.kind != AttrKind::Prefixed {
            continue;
        }
        // Prefixed attributes have their keys (resolving them needed them).
        let local = a.key.map_or(0, |k| k.local);
        let key = local ^ u64::from(a.ns).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if dups.insert(key, i as u32, |j| same(&cx.attrs[j as usize], a)) {
            return true;
        }
    }
    false
}

//! Namespaces in XML for the framer: which prefixes are bound to what, and
//! which attributes share an expanded name, in time linear in the input.
//!
//! - Each namespace URI is decoded once, when it is declared, and gets a small
//!   id: URIs are compared by id from then on ([`Scope::declare`]).
//! - A prefix is found through a hash table, not by scanning the declarations
//!   in scope; each declaration remembers the binding it shadows, which comes
//!   back when its element ends ([`Scope::close`]).
//! - Duplicate attributes are found through a hash table ([`DupSet`]) once a
//!   tag has more than [`SMALL`] of them (below that, comparing every pair is
//!   cheaper than hashing).
//!
//! Keys ([`Keys`]) are a universal hash under a per-framer random key: the
//! bytes, in 7-byte words, are the coefficients of a polynomial evaluated at a
//! random point modulo the prime 2^61 - 1, then multiplied by a random odd
//! number. Two different strings of at most `L` words get the same key with
//! probability at most `(L + 2) / 2^61` over the keys, whatever the strings, and
//! the same table slot with probability about `1 / slots`: a peer that cannot
//! see keys cannot choose names that collide. (It costs a multiplication per 7
//! bytes, a tenth of SipHash on the short names that are the common case.)
//! While the bytes are at hand (an element being framed), equal keys are
//! confirmed by comparing bytes: the checks are exact. While an element is
//! skipped (see the module documentation of `xml`), its bytes are dropped as
//! they are read and only keys remain: two different names then pass for equal
//! with that tiny probability, which can only make a skipped element (dropped
//! anyway) fail.
//!
//! All tables and vectors are reused from one top-level element to the next
//! and cleared in time proportional to what they hold.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::lex::nwf;
use super::FrameError;
use crate::proto::ns::NS_STREAMS;

pub(super) const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
pub(super) const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Namespace ids: none (unbound), the built-in ones, then declared URIs.
pub(super) const NO_NS: u32 = 0;
pub(super) const XML_NS: u32 = 1;
pub(super) const STREAMS_NS: u32 = 2;
pub(super) const XMLNS_NS: u32 = 3;
const FIRST_DECLARED: u32 = 4;

/// Below this many attributes on a tag, duplicates are found by comparing
/// pairs (at most `SMALL * (SMALL - 1) / 2` short comparisons).
pub(super) const SMALL: usize = 8;

/// The prime 2^61 - 1.
const P: u64 = (1 << 61) - 1;

#[inline]
fn mul_mod(a: u64, b: u64) -> u64 {
    let t = u128::from(a) * u128::from(b);
    let s = (t as u64 & P) + (t >> 61) as u64;
    if s >= P {
        s - P
    } else {
        s
    }
}

#[inline]
fn add_mod(a: u64, w: u64) -> u64 {
    let s = a + w;
    if s >= P {
        s - P
    } else {
        s
    }
}

/// A key computed as bytes go by (see the module documentation): the same
/// whatever pieces the bytes come in.
#[derive(Clone, Debug)]
pub(super) struct KeyHasher {
    h: u64,
    /// Bytes of the word being filled (`n` of them).
    word: u64,
    n: u32,
    len: u64,
    r: u64,
    mix: u64,
}

impl KeyHasher {
    #[inline]
    fn absorb(&mut self, w: u64) {
        self.h = add_mod(mul_mod(self.h, self.r), w);
    }

    pub fn write(&mut self, mut b: &[u8]) {
        self.len += b.len() as u64;
        while self.n != 0 {
            let Some((&x, rest)) = b.split_first() else {
                return;
            };
            self.word |= u64::from(x) << (8 * self.n);
            self.n += 1;
            b = rest;
            if self.n == 7 {
                let w = self.word;
                self.absorb(w);
                self.word = 0;
                self.n = 0;
            }
        }
        let mut words = b.chunks_exact(7);
        for c in &mut words {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], 0]);
            self.absorb(w);
        }
        for &x in words.remainder() {
            self.word |= u64::from(x) << (8 * self.n);
            self.n += 1;
        }
    }

    pub fn finish(&self) -> u64 {
        // The last word tagged with its byte count, then the length.
        let h = add_mod(mul_mod(self.h, self.r), self.word | u64::from(self.n) << 56);
        let h = add_mod(mul_mod(h, self.r), self.len % P);
        h.wrapping_mul(self.mix)
    }
}

/// The framer's hashing keys, and the keys of the names it knows.
pub(super) struct Keys {
    r: u64,
    mix: u64,
    pub xml: u64,
    pub xmlns: u64,
    pub stream: u64,
    pub ns_xml: u64,
    pub ns_xmlns: u64,
    pub ns_streams: u64,
}

impl Keys {
    pub fn new() -> Self {
        // Random per framer without a system call: std seeds `RandomState`
        // from the OS once per thread and varies it per instance.
        let state = RandomState::new();
        let mut keys = Keys {
            r: 1 + state.hash_one(1u8) % (P - 1),
            mix: state.hash_one(2u8) | 1,
            xml: 0,
            xmlns: 0,
            stream: 0,
            ns_xml: 0,
            ns_xmlns: 0,
            ns_streams: 0,
        };
        keys.xml = keys.of(b"xml");
        keys.xmlns = keys.of(b"xmlns");
        keys.stream = keys.of(b"stream");
        keys.ns_xml = keys.of(NS_XML.as_bytes());
        keys.ns_xmlns = keys.of(NS_XMLNS.as_bytes());
        keys.ns_streams = keys.of(NS_STREAMS.as_bytes());
        keys
    }
    pub fn hasher(&self) -> KeyHasher {
        KeyHasher {
            h: 0,
            word: 0,
            n: 0,
            len: 0,
            r: self.r,
            mix: self.mix,
        }
    }
    #[inline]
    pub fn of(&self, b: &[u8]) -> u64 {
        if b.len() < 7 {
            // What `KeyHasher` computes for fewer bytes than a word, directly.
            let mut w = [0u8; 8];
            w[..b.len()].copy_from_slice(b);
            let word = u64::from_le_bytes(w) | (b.len() as u64) << 56;
            return add_mod(mul_mod(word, self.r), b.len() as u64).wrapping_mul(self.mix);
        }
        let mut h = self.hasher();
        h.write(b);
        h.finish()
    }
    /// The key of a whole qualified name (`colon`: where its `:` is, if any).
    #[inline]
    pub fn name(&self, name: &[u8], colon: Option<usize>) -> NameKey {
        match colon {
            Some(c) => NameKey {
                prefix: self.of(&name[..c]),
                local: self.of(&name[c + 1..]),
            },
            None => NameKey {
                prefix: 0,
                local: self.of(name),
            },
        }
    }
}

/// The key of a qualified name: of its prefix (0 without one) and local part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct NameKey {
    pub prefix: u64,
    pub local: u64,
}

impl NameKey {
    /// One key for the qualified name as written.
    pub fn raw(self) -> u64 {
        self.prefix.rotate_left(29) ^ self.local
    }
}

/// A [`NameKey`] computed as the name's bytes go by.
#[derive(Clone, Debug)]
pub(super) struct NameHasher {
    prefix: Option<u64>,
    cur: KeyHasher,
}

impl NameHasher {
    pub fn new(keys: &Keys) -> Self {
        NameHasher {
            prefix: None,
            cur: keys.hasher(),
        }
    }
    /// More bytes of the name (a `:` among them ends the prefix).
    pub fn feed(&mut self, keys: &Keys, mut b: &[u8]) {
        if self.prefix.is_none() {
            if let Some(c) = memchr::memchr(b':', b) {
                self.cur.write(&b[..c]);
                let done = std::mem::replace(&mut self.cur, keys.hasher());
                self.prefix = Some(done.finish());
                b = &b[c + 1..];
            }
        }
        self.cur.write(b);
    }
    pub fn finish(&self) -> NameKey {
        NameKey {
            prefix: self.prefix.unwrap_or(0),
            local: self.cur.finish(),
        }
    }
}

/// Open addressing from keys to small indexes (linear probing, at most half
/// full), cleared in time proportional to what it holds.
#[derive(Default)]
pub(super) struct Table {
    slots: Vec<(u64, u32)>,
    /// Slots in use, so that clearing touches only those.
    used: Vec<u32>,
}

const EMPTY: u32 = u32::MAX;

impl Table {
    pub fn clear(&mut self) {
        for &s in &self.used {
            self.slots[s as usize].1 = EMPTY;
        }
        self.used.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.used.len()
    }

    /// The index stored under `key` for which `eq` holds.
    pub fn find(&self, key: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut s = (key >> 32) as usize & mask;
        loop {
            let (k, v) = self.slots[s];
            if v == EMPTY {
                return None;
            }
            if k == key && eq(v) {
                return Some(v);
            }
            s = (s + 1) & mask;
        }
    }

    pub fn insert(&mut self, key: u64, v: u32) {
        if (self.used.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut s = (key >> 32) as usize & mask;
        while self.slots[s].1 != EMPTY {
            s = (s + 1) & mask;
        }
        self.slots[s] = (key, v);
        self.used.push(s as u32);
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![(0, EMPTY); n]);
        let used = std::mem::take(&mut self.used);
        for s in used {
            let (k, v) = old[s as usize];
            self.insert(k, v);
        }
    }

    /// Drop the allocation (an idle stream keeps nothing).
    pub fn release(&mut self) {
        *self = Table::default();
    }
}

/// Bytes copied aside: `(start, len)` in [`Scope::arena`], or nothing when
/// only the key is known.
type Span = Option<(u32, u32)>;

struct Prefix {
    key: u64,
    name: Span,
    /// The namespace it is bound to now ([`NO_NS`]: not bound).
    bound: u32,
}

struct Binding {
    prefix: u32,
    /// What the prefix was bound to before.
    shadowed: u32,
    /// Depth of the element that declared it.
    depth: u32,
}

/// A name or value given to the scope: its key, and its bytes when known.
#[derive(Clone, Copy)]
pub(super) struct Given<'a> {
    pub key: u64,
    pub bytes: Option<&'a [u8]>,
}

/// The namespace bindings in scope inside one top-level element.
#[derive(Default)]
pub(super) struct Scope {
    prefix_table: Table,
    prefixes: Vec<Prefix>,
    uri_table: Table,
    /// Declared URIs: key and decoded bytes (ids from [`FIRST_DECLARED`]).
    uris: Vec<(u64, Span)>,
    arena: Vec<u8>,
    stack: Vec<Binding>,
}

impl Scope {
    /// Forget every binding (a new top-level element).
    pub fn reset(&mut self) {
        if self.prefixes.is_empty() && self.uris.is_empty() && self.arena.is_empty() {
            return;
        }
        self.prefix_table.clear();
        self.prefixes.clear();
        self.uri_table.clear();
        self.uris.clear();
        self.arena.clear();
        self.stack.clear();
    }

    /// Drop the allocations (an idle stream keeps nothing).
    pub fn release(&mut self) {
        self.prefix_table.release();
        self.uri_table.release();
        *self = Scope {
            prefix_table: std::mem::take(&mut self.prefix_table),
            uri_table: std::mem::take(&mut self.uri_table),
            ..Scope::default()
        };
    }

    /// Bindings in scope (for the skipping budget).
    pub fn len(&self) -> usize {
        self.stack.len()
    }

    fn span(&mut self, b: Option<&[u8]>) -> Span {
        let b = b?;
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(b);
        Some((start, b.len() as u32))
    }

    fn bytes(&self, s: Span) -> Option<&[u8]> {
        s.map(|(a, l)| &self.arena[a as usize..(a + l) as usize])
    }

    /// Equal keys, and equal bytes where both are known.
    fn same(&self, key: u64, s: Span, g: Given<'_>) -> bool {
        key == g.key
            && match (self.bytes(s), g.bytes) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// The id of a namespace URI (its decoded value), declared or built in.
    fn uri_id(&mut self, uri: Given<'_>, keys: &Keys) -> u32 {
        let streams = match uri.bytes {
            Some(b) => b == NS_STREAMS.as_bytes(),
            None => uri.key == keys.ns_streams,
        };
        if streams {
            return STREAMS_NS;
        }
        let found = self.uri_table.find(uri.key, |i| {
            let (k, s) = self.uris[i as usize];
            self.same(k, s, uri)
        });
        if let Some(i) = found {
            return FIRST_DECLARED + i;
        }
        let span = self.span(uri.bytes);
        let i = self.uris.len() as u32;
        self.uris.push((uri.key, span));
        self.uri_table.insert(uri.key, i);
        FIRST_DECLARED + i
    }

    fn find_prefix(&self, p: Given<'_>) -> Option<u32> {
        self.prefix_table.find(p.key, |i| {
            let e = &self.prefixes[i as usize];
            self.same(e.key, e.name, p)
        })
    }

    /// `xmlns:p='uri'` on an element at `depth`; the constraints on the
    /// declaration itself were checked already.
    pub fn declare(&mut self, depth: u32, prefix: Given<'_>, uri: Given<'_>, keys: &Keys) {
        let ns = self.uri_id(uri, keys);
        let p = match self.find_prefix(prefix) {
            Some(p) => p,
            None => {
                let name = self.span(prefix.bytes);
                let p = self.prefixes.len() as u32;
                self.prefixes.push(Prefix {
                    key: prefix.key,
                    name,
                    bound: NO_NS,
                });
                self.prefix_table.insert(prefix.key, p);
                p
            }
        };
        let e = &mut self.prefixes[p as usize];
        self.stack.push(Binding {
            prefix: p,
            shadowed: e.bound,
            depth,
        });
        e.bound = ns;
    }

    /// What `prefix` is bound to ([`NO_NS`]: nothing). `stream` is bound by
    /// the stream header once it has been read (`stream_bound`); `xml` always.
    pub fn lookup(&self, prefix: Given<'_>, stream_bound: bool, keys: &Keys) -> u32 {
        if let Some(p) = self.find_prefix(prefix) {
            let bound = self.prefixes[p as usize].bound;
            if bound != NO_NS {
                return bound;
            }
        }
        let is = |word: &[u8], key: u64| match prefix.bytes {
            Some(b) => b == word,
            None => prefix.key == key,
        };
        if is(b"xml", keys.xml) {
            XML_NS
        } else if stream_bound && is(b"stream", keys.stream) {
            STREAMS_NS
        } else {
            NO_NS
        }
    }

    /// The decoded bytes of a declared namespace, when kept.
    pub fn uri_bytes(&self, ns: u32) -> Option<&[u8]> {
        match ns {
            NO_NS | XMLNS_NS => None,
            XML_NS => Some(NS_XML.as_bytes()),
            STREAMS_NS => Some(NS_STREAMS.as_bytes()),
            n => self.bytes(self.uris[(n - FIRST_DECLARED) as usize].1),
        }
    }

    /// Leave an element at `depth`: its declarations go out of scope, and the
    /// bindings they shadowed come back.
    pub fn close(&mut self, depth: u32) {
        while let Some(b) = self.stack.last() {
            if b.depth < depth {
                break;
            }
            self.prefixes[b.prefix as usize].bound = b.shadowed;
            self.stack.pop();
        }
    }
}

/// Names seen on one tag, to find the same one twice in time linear in the
/// number of attributes.
#[derive(Default)]
pub(super) struct DupSet {
    table: Table,
    /// How many of the tag's attributes have been considered.
    pub upto: usize,
}

impl DupSet {
    pub fn clear(&mut self) {
        self.table.clear();
        self.upto = 0;
    }
    /// Record item `i` under `key`; whether an item recorded before is the
    /// same (`eq` decides among equal keys).
    pub fn insert(&mut self, key: u64, i: u32, eq: impl FnMut(u32) -> bool) -> bool {
        if self.table.find(key, eq).is_some() {
            return true;
        }
        self.table.insert(key, i);
        false
    }
    pub fn release(&mut self) {
        self.table.release();
    }
}

/// The constraints of Namespaces in XML 1.0 on a declaration by itself
/// (section 3): the reserved prefixes and namespaces, and no undeclaring.
/// `default`: `xmlns` rather than `xmlns:p`; `prefix_is`: whether `p` is the
/// given word; `value`: the decoded value's facts.
pub(super) fn check_declaration(
    default: bool,
    prefix_is: impl Fn(&[u8]) -> bool,
    value: DeclValue,
) -> Result<(), FrameError> {
    let reserved = value.is_xml || value.is_xmlns;
    if default {
        if reserved {
            return Err(nwf("default namespace bound to a reserved namespace"));
        }
        return Ok(());
    }
    if prefix_is(b"xmlns") {
        return Err(nwf("the xmlns prefix declared"));
    }
    if prefix_is(b"xml") {
        if !value.is_xml {
            return Err(nwf("the xml prefix bound to another namespace"));
        }
        return Ok(());
    }
    if value.empty {
        return Err(nwf("a prefix undeclared (not allowed in XML 1.0)"));
    }
    if reserved {
        return Err(nwf("a prefix bound to a reserved namespace"));
    }
    Ok(())
}

/// What [`check_declaration`] needs to know of a declaration's decoded value.
#[derive(Clone, Copy, Debug)]
pub(super) struct DeclValue {
    pub empty: bool,
    pub is_xml: bool,
    pub is_xmlns: bool,
}

impl DeclValue {
    pub fn of_bytes(v: &[u8]) -> Self {
        DeclValue {
            empty: v.is_empty(),
            is_xml: v == NS_XML.as_bytes(),
            is_xmlns: v == NS_XMLNS.as_bytes(),
        }
    }
    pub fn of_key(key: u64, len: usize, keys: &Keys) -> Self {
        DeclValue {
            empty: len == 0,
            is_xml: key == keys.ns_xml,
            is_xmlns: key == keys.ns_xmlns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(b: &[u8], keys: &Keys) -> Given<'static> {
        Given {
            key: keys.of(b),
            bytes: Some(Box::leak(b.to_vec().into_boxed_slice())),
        }
    }

    #[test]
    fn bindings_shadow_and_come_back() {
        let keys = Keys::new();
        let mut s = Scope::default();
        let p = given(b"p", &keys);
        s.declare(2, p, given(b"urn:a", &keys), &keys);
        let a = s.lookup(p, true, &keys);
        s.declare(3, p, given(b"urn:b", &keys), &keys);
        let b = s.lookup(p, true, &keys);
        assert_ne!(a, b);
        // The same URI under another prefix has the same id.
        s.declare(3, given(b"q", &keys), given(b"urn:a", &keys), &keys);
        assert_eq!(s.lookup(given(b"q", &keys), true, &keys), a);
        s.close(3);
        assert_eq!(s.lookup(p, true, &keys), a);
        assert_eq!(s.lookup(given(b"q", &keys), true, &keys), NO_NS);
        s.close(2);
        assert_eq!(s.lookup(p, true, &keys), NO_NS);
        // Built in: xml always, stream once the header bound it; a declaration
        // shadows stream, and the streams URI has its fixed id.
        assert_eq!(s.lookup(given(b"xml", &keys), false, &keys), XML_NS);
        let st = given(b"stream", &keys);
        assert_eq!(s.lookup(st, false, &keys), NO_NS);
        assert_eq!(s.lookup(st, true, &keys), STREAMS_NS);
        s.declare(2, st, given(b"urn:x", &keys), &keys);
        assert_ne!(s.lookup(st, true, &keys), STREAMS_NS);
        s.declare(3, p, given(NS_STREAMS.as_bytes(), &keys), &keys);
        assert_eq!(s.lookup(p, true, &keys), STREAMS_NS);
        // Keys alone (bytes dropped) find the same bindings.
        let by_key = Given {
            key: keys.of(b"p"),
            bytes: None,
        };
        assert_eq!(s.lookup(by_key, true, &keys), STREAMS_NS);
        s.reset();
        assert_eq!(s.lookup(p, true, &keys), NO_NS);
    }

    #[test]
    fn many_prefixes_one_uri() {
        let keys = Keys::new();
        let mut s = Scope::default();
        let names: Vec<Vec<u8>> = (0..20_000).map(|i| format!("p{i}").into_bytes()).collect();
        for n in &names {
            s.declare(2, given(n, &keys), given(b"urn:same", &keys), &keys);
        }
        let ids: std::collections::HashSet<u32> = names
            .iter()
            .map(|n| s.lookup(given(n, &keys), true, &keys))
            .collect();
        assert_eq!(ids.len(), 1, "one URI, one id");
    }

    #[test]
    fn keys_are_the_same_in_any_pieces_and_differ_otherwise() {
        let keys = Keys::new();
        let words: Vec<Vec<u8>> = (0..40)
            .map(|n| (0..n).map(|i| b'a' + (i % 7) as u8).collect())
            .chain([
                b"\0".to_vec(),
                b"a\0".to_vec(),
                b"abcdefg\0".to_vec(),
                vec![0; 7],
                vec![0; 14],
            ])
            .collect();
        let mut seen = std::collections::HashMap::new();
        for w in &words {
            let k = keys.of(w);
            for cut in [1, 2, 3, 6, 7, 8, 13] {
                let mut h = keys.hasher();
                w.chunks(cut).for_each(|c| h.write(c));
                assert_eq!(h.finish(), k, "{w:?} in pieces of {cut}");
            }
            assert_eq!(seen.insert(k, w.clone()), None, "{w:?} collides");
        }
        // The short cut for short names is the same key.
        for w in [&b""[..], b"a", b"xmlns", b"abcdef", b"abcdefg"] {
            let mut h = keys.hasher();
            h.write(w);
            assert_eq!(keys.of(w), h.finish(), "{w:?}");
        }
        let mut n = NameHasher::new(&keys);
        n.feed(&keys, b"pre:local");
        assert_eq!(n.finish(), keys.name(b"pre:local", Some(3)));
        // Another framer, other keys.
        assert_ne!(Keys::new().of(b"xml"), keys.of(b"xml"));
    }

    #[test]
    fn table_clears_what_it_holds() {
        let mut t = Table::default();
        for i in 0..10_000u32 {
            t.insert(u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
        }
        assert_eq!(t.len(), 10_000);
        t.clear();
        assert_eq!(t.len(), 0);
        assert!(t.find(0x9E37_79B9_7F4A_7C15, |_| true).is_none());
        t.insert(7, 1);
        assert_eq!(t.find(7, |v| v == 1), Some(1));
    }
}

//! Start and end tags, read in pieces, and Namespaces in XML applied to each
//! start tag once it is whole.
//!
//! A tag's lexer keeps where it stopped ([`TagLex::at`]) and goes on from
//! there on the next read, so a tag that arrives a byte at a time is still
//! read once. Offsets are *stream offsets* (bytes since the stream began;
//! `base` is the offset of the read buffer's first byte), so they stay valid
//! as the buffer drops what it no longer needs.
//!
//! While an element is skipped its bytes are dropped as soon as they are read,
//! so the lexers also compute keys (see [`super::ns`]) of the names and of
//! namespace declarations' values as the bytes go by; otherwise keys are
//! computed from the bytes when a check needs them.

use super::lex::{self, nwf, NameLex, QName, ValueKey, ValueLex};
use super::ns::{check_declaration, DeclValue, DupSet, Keys, NameHasher, NameKey, NO_NS, SMALL};
use super::{FrameError, Limit};

/// What an attribute is to Namespaces in XML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AttrKind {
    Plain,
    /// `p:name`.
    Prefixed,
    /// `xmlns`.
    Default,
    /// `xmlns:p`.
    Declaration,
}

/// One attribute of the tag being read.
#[derive(Clone, Debug)]
pub(super) struct AttrTok {
    pub name_start: usize,
    pub name: QName,
    pub value_start: usize,
    pub value_len: usize,
    pub plain: bool,
    pub kind: AttrKind,
    /// Key of its name, once needed.
    pub key: Option<NameKey>,
    /// A declaration's value: key and facts of its decoded form, and where
    /// that form is in the tag's scratch (`None`: the value is its bytes, or
    /// they are not kept).
    pub decl: Option<Decl>,
    /// Namespace of a prefixed attribute, once resolved.
    pub ns: u32,
}

/// A namespace declaration's value: the key of its decoded form (computed
/// when needed while the bytes are kept), facts about it, and where the
/// decoded form is in the tag's scratch when it is not the value's bytes
/// (`None` also when the bytes are not kept).
pub(super) type Decl = (Option<u64>, DeclValue, Option<(u32, u32)>);

/// The bytes between stream offsets `start` and `end`.
#[inline]
pub(super) fn at(buf: &[u8], base: usize, start: usize, end: usize) -> &[u8] {
    &buf[start - base..end - base]
}

/// Keys computed as a skipped element's bytes go by: of the name being read
/// and of a namespace declaration's value. Kept apart from [`TagLex`] and
/// [`EndLex`], so that starting a tag costs little.
#[derive(Debug, Default)]
pub(super) struct Hashing {
    pub name: Option<NameHasher>,
    pub value: Option<ValueKey>,
}

/// What reading a tag needs besides its own state.
pub(super) struct TagCx<'a> {
    pub buf: &'a [u8],
    pub base: usize,
    /// Stream offset to read no further than.
    pub end: usize,
    pub max_token: usize,
    pub max_attributes: usize,
    /// While skipping, attributes past this many are read but not kept (nor
    /// checked for duplicates or namespaces).
    pub budget: usize,
    pub keys: &'a Keys,
    /// The element is being skipped: its bytes go once read.
    pub skipping: bool,
    pub attrs: &'a mut Vec<AttrTok>,
    pub dups: &'a mut DupSet,
    /// Decoded values of this tag's declarations that are not plain.
    pub decoded: &'a mut String,
    pub hashing: &'a mut Hashing,
    /// The tag has a prefixed name or a namespace declaration (else Namespaces
    /// in XML have nothing to check in it).
    pub ns_work: &'a mut bool,
}

impl TagCx<'_> {
    fn bytes(&self, start: usize, end: usize) -> &[u8] {
        at(self.buf, self.base, start, end)
    }
}

/// The limits [`TagLex::quick`] keeps to, and how many attributes the tag has.
#[derive(Clone, Copy)]
pub(super) struct QuickLimits {
    pub max_token: usize,
    pub max_attributes: usize,
    pub attrs: usize,
}

/// How far reading a tag got.
pub(super) enum TagStep {
    More,
    /// A limit was passed; the lexer goes on from here if called again.
    Limit(Limit),
    /// The tag's `>` is at this stream offset.
    Done {
        gt: usize,
        self_closing: bool,
    },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum TagState {
    #[default]
    Name,
    /// After the name or an attribute: whitespace, an attribute, `/` or `>`.
    Between,
    /// After `/`: only `>`.
    Slash,
    AttrName,
    /// After an attribute's name: whitespace, then `=`.
    BeforeEq,
    /// After `=`: whitespace, then a quote.
    AfterEq,
    Value,
}

/// A start tag being read.
#[derive(Debug)]
pub(super) struct TagLex {
    /// Stream offset of its `<`.
    pub open: usize,
    /// Stream offset to go on at.
    pub at: usize,
    state: TagState,
    /// The name being read (the element's, then each attribute's).
    name: NameLex,
    name_start: usize,
    /// The element's name once read, and its key while skipping.
    pub elem: Option<(QName, Option<NameKey>)>,
    /// The attribute whose value comes next.
    attr: Option<(usize, QName, AttrKind, Option<NameKey>)>,
    value: ValueLex,
    value_start: usize,
    quote: u8,
    /// Whitespace since the last name or value (attributes must be separated).
    ws: bool,
    /// Attributes went past the budget of a skipped tag: its namespaces are
    /// not checked.
    pub unchecked: bool,
}

impl TagLex {
    /// Start over for the tag whose `<` is at `open` (field by field: the
    /// rest is set before it is read).
    pub fn reset(&mut self, open: usize) {
        self.open = open;
        self.at = open + 1;
        self.state = TagState::Name;
        self.name = NameLex::default();
        self.name_start = open + 1;
        self.elem = None;
        self.attr = None;
        self.ws = false;
        self.unchecked = false;
    }

    pub fn new(open: usize) -> Self {
        TagLex {
            open,
            at: open + 1,
            state: TagState::Name,
            name: NameLex::default(),
            name_start: open + 1,
            elem: None,
            attr: None,
            value: ValueLex::default(),
            value_start: 0,
            quote: 0,
            ws: false,
            unchecked: false,
        }
    }

    /// Go on reading the tag, the attributes going to `cx.attrs` (cleared
    /// when the tag begins). The attribute count is checked at each
    /// attribute's `=`, so a tag with too many stops before the rest is read.
    pub fn step(&mut self, cx: &mut TagCx<'_>) -> Result<TagStep, FrameError> {
        use TagState::*;
        if self.at == self.open + 1 && self.state == Name && self.name.len == 0 {
            cx.attrs.clear();
            cx.dups.clear();
            cx.decoded.clear();
            *cx.ns_work = false;
            if cx.skipping {
                cx.hashing.name = Some(NameHasher::new(cx.keys));
            }
        }
        let buf = cx.buf;
        loop {
            let rest = at(buf, cx.base, self.at, cx.end);
            match self.state {
                Name | AttrName => {
                    let Some(q) = self.read_name(rest, cx)? else {
                        return Ok(if self.name.len > cx.max_token {
                            TagStep::Limit(Limit::Token)
                        } else {
                            TagStep::More
                        });
                    };
                    self.name_done(q, cx);
                }
                Between => {
                    if let Some(step) = self.between(rest, cx)? {
                        return Ok(step);
                    }
                }
                Slash => match rest.first() {
                    None => return Ok(TagStep::More),
                    Some(b'>') => return Ok(self.done(true)),
                    Some(_) => return Err(nwf("'/' not followed by '>' in a start tag")),
                },
                BeforeEq => {
                    let w = lex::skip_ws(rest);
                    self.at += w;
                    match rest.get(w) {
                        None => return Ok(TagStep::More),
                        Some(b'=') => {
                            if cx.attrs.len() >= cx.max_attributes {
                                return Ok(TagStep::Limit(Limit::Attributes));
                            }
                            self.at += 1;
                            self.state = AfterEq;
                        }
                        Some(_) => return Err(nwf("attribute without '='")),
                    }
                }
                AfterEq => {
                    let w = lex::skip_ws(rest);
                    self.at += w;
                    match rest.get(w) {
                        None => return Ok(TagStep::More),
                        Some(&q @ (b'\'' | b'"')) => self.value_begins(q, cx),
                        Some(_) => return Err(nwf("attribute value not quoted")),
                    }
                }
                Value => {
                    if let Some(step) = self.read_value(rest, cx)? {
                        return Ok(step);
                    }
                }
            }
        }
    }

    /// After the name or an attribute: whitespace, then an attribute, `/` or
    /// `>`. `Some(step)` to return.
    #[inline]
    fn between(&mut self, rest: &[u8], cx: &mut TagCx<'_>) -> Result<Option<TagStep>, FrameError> {
        let w = lex::skip_ws(rest);
        self.ws |= w > 0;
        self.at += w;
        let Some(&b) = rest.get(w) else {
            return Ok(Some(TagStep::More));
        };
        match b {
            b'>' => return Ok(Some(self.done(false))),
            b'/' => {
                self.at += 1;
                self.state = TagState::Slash;
            }
            _ if !self.ws => return Err(nwf("malformed start tag")),
            _ if !cx.skipping && self.whole_attr(&rest[w..], cx)? => {}
            _ => {
                self.state = TagState::AttrName;
                self.name = NameLex::default();
                self.name_start = self.at;
                if cx.skipping {
                    cx.hashing.name = Some(NameHasher::new(cx.keys));
                }
            }
        }
        Ok(None)
    }

    /// Go on reading the name at `self.at` (`rest` holds the bytes from
    /// there); the name once it is whole, `None` when `rest` ends first or
    /// the name is longer than the token limit.
    #[inline]
    fn read_name(&mut self, rest: &[u8], cx: &mut TagCx<'_>) -> Result<Option<QName>, FrameError> {
        // Fast path: a whole ASCII name, followed by what ends it (and
        // short enough).
        if self.name.len == 0 && cx.hashing.name.is_none() {
            if let Some(q) = lex::ascii_qname(rest) {
                if q.len <= cx.max_token {
                    self.at += q.len;
                    return Ok(Some(q));
                }
            }
        }
        let (n, q) = self.name.step(rest, cx.max_token)?;
        if let Some(h) = &mut cx.hashing.name {
            h.feed(cx.keys, &rest[..n]);
        }
        self.at += n;
        Ok(q)
    }

    /// Fast path for small reads (see `Framer::quick`): go on through the
    /// tag as far as the ordinary way would without anything but the tag's
    /// own state: whitespace, a name (not its end), `=`, an opening quote
    /// (not of a namespace declaration), plain value bytes; within the limits.
    /// Not while keys are computed (skipping) or a reference is cut. The rest
    /// (a name's end, a closing quote, `/`, `>`) goes the ordinary way.
    #[inline]
    pub fn quick(&mut self, mut rest: &[u8], lim: QuickLimits, hashing: &Hashing) {
        if hashing.name.is_some() || hashing.value.is_some() {
            return;
        }
        loop {
            let before = self.at;
            self.quick_one(rest, lim);
            let n = self.at - before;
            if n == 0 || n == rest.len() {
                return;
            }
            rest = &rest[n..];
        }
    }

    #[inline]
    fn quick_one(&mut self, rest: &[u8], lim: QuickLimits) {
        use TagState::*;
        match self.state {
            Between | BeforeEq | AfterEq => {
                let w = lex::skip_ws(rest);
                self.at += w;
                if self.state == Between {
                    self.ws |= w > 0;
                }
                match (self.state, rest.get(w)) {
                    (Between, Some(&b)) if self.ws && lex::is_name_start_ascii(b) => {
                        self.state = AttrName;
                        self.name = NameLex::default();
                        self.name_start = self.at;
                    }
                    (BeforeEq, Some(b'=')) if lim.attrs < lim.max_attributes => {
                        self.at += 1;
                        self.state = AfterEq;
                    }
                    (AfterEq, Some(&q @ (b'\'' | b'"')))
                        if matches!(
                            self.attr,
                            Some((_, _, AttrKind::Plain | AttrKind::Prefixed, _))
                        ) =>
                    {
                        self.quote = q;
                        self.value = ValueLex {
                            plain: true,
                            ..ValueLex::default()
                        };
                        self.at += 1;
                        self.value_start = self.at;
                        self.state = Value;
                    }
                    _ => {}
                }
            }
            Value if self.value.pending.len == 0 => {
                let n = lex::plain_value(rest);
                if self.at + n - self.value_start <= lim.max_token {
                    self.at += n;
                }
            }
            Name | AttrName if self.name.len > 0 && self.name.colon != Some(self.name.len - 1) => {
                // Inside a name: plain ASCII name characters, the common bytes.
                let n = lex::name_chars(rest);
                if n > 0 && self.name.len + n <= lim.max_token {
                    self.name.len += n;
                    self.at += n;
                    return;
                }
                self.quick_name(rest, lim);
            }
            Name | AttrName => self.quick_name(rest, lim),
            _ => {}
        }
    }

    /// A name's bytes as [`NameLex`] reads them, but only while it goes on
    /// (its end goes the ordinary way).
    #[inline]
    fn quick_name(&mut self, rest: &[u8], lim: QuickLimits) {
        let mut name = self.name;
        if let Ok((n, None)) = name.step(rest, lim.max_token) {
            if name.len <= lim.max_token {
                self.name = name;
                self.at += n;
            }
        }
    }

    /// Fast path for the common attribute, read in one go when it has come
    /// whole: an ASCII name, `=` (whitespace around it allowed), a quoted
    /// value within the token limit, and room for one more attribute.
    /// Whether it was read (`self.at` is then after its closing quote); if
    /// not, nothing changed and the state machine reads it.
    #[inline]
    fn whole_attr(&mut self, rest: &[u8], cx: &mut TagCx<'_>) -> Result<bool, FrameError> {
        let Some(q) = lex::ascii_qname(rest) else {
            return Ok(false);
        };
        let mut i = q.len;
        i += lex::skip_ws(&rest[i..]);
        if rest.get(i) != Some(&b'=') || cx.attrs.len() >= cx.max_attributes || q.len > cx.max_token
        {
            return Ok(false);
        }
        i += 1;
        i += lex::skip_ws(&rest[i..]);
        let quote = match rest.get(i) {
            Some(&x @ (b'\'' | b'"')) => x,
            _ => return Ok(false),
        };
        let mut value = ValueLex {
            plain: true,
            ..ValueLex::default()
        };
        let v = &rest[i + 1..];
        let Ok(Ok(len)) = lex::value(v, quote, &mut value, cx.max_token, None) else {
            // Cut, too long, or wrong: the state machine says which.
            return Ok(false);
        };
        let kind = kind_of(&rest[..q.len], q);
        if kind != AttrKind::Plain {
            *cx.ns_work = true;
        }
        self.attr = Some((self.at, q, kind, None));
        self.value = value;
        self.value_start = self.at + i + 1;
        self.at = self.value_start + len;
        self.attr_done(cx)?;
        self.at += 1;
        self.ws = false;
        Ok(true)
    }

    /// Go on reading the value at `self.at`: `Some(step)` to return (more is
    /// needed, or a limit was passed), `None` when the value has ended.
    #[inline]
    fn read_value(
        &mut self,
        rest: &[u8],
        cx: &mut TagCx<'_>,
    ) -> Result<Option<TagStep>, FrameError> {
        let room = cx.max_token.saturating_sub(self.at - self.value_start);
        let sink = cx.hashing.value.as_mut();
        match lex::value(rest, self.quote, &mut self.value, room, sink)? {
            Err(n) => {
                self.at += n;
                if self.at - self.value_start > cx.max_token {
                    return Ok(Some(TagStep::Limit(Limit::Token)));
                }
                Ok(Some(TagStep::More))
            }
            Ok(n) => {
                self.at += n;
                self.attr_done(cx)?;
                self.at += 1;
                self.state = TagState::Between;
                self.ws = false;
                Ok(None)
            }
        }
    }

    fn done(&self, self_closing: bool) -> TagStep {
        TagStep::Done {
            gt: self.at,
            self_closing,
        }
    }

    /// A name has ended (the element's or an attribute's).
    fn name_done(&mut self, q: QName, cx: &mut TagCx<'_>) {
        let key = cx.hashing.name.take().map(|h| h.finish());
        if q.colon.is_some() {
            *cx.ns_work = true;
        }
        if self.state == TagState::Name {
            self.elem = Some((q, key));
        } else {
            let kind = if cx.skipping {
                kind_of_key(key.unwrap_or_default(), q, cx.keys)
            } else {
                kind_of(cx.bytes(self.name_start, self.name_start + q.len), q)
            };
            self.attr = Some((self.name_start, q, kind, key));
        }
        self.state = if self.state == TagState::Name {
            TagState::Between
        } else {
            TagState::BeforeEq
        };
        self.ws = false;
    }

    fn value_begins(&mut self, quote: u8, cx: &mut TagCx<'_>) {
        self.quote = quote;
        self.value = ValueLex {
            plain: true,
            ..ValueLex::default()
        };
        self.at += 1;
        self.value_start = self.at;
        let decl = matches!(
            self.attr,
            Some((_, _, AttrKind::Default | AttrKind::Declaration, _))
        );
        if decl {
            *cx.ns_work = true;
            if cx.skipping {
                cx.hashing.value = Some(ValueKey::new(cx.keys.hasher()));
            }
        }
        self.state = TagState::Value;
    }

    /// An attribute's value has ended (its closing quote is at `self.at`).
    fn attr_done(&mut self, cx: &mut TagCx<'_>) -> Result<(), FrameError> {
        let Some((name_start, name, kind, key)) = self.attr.take() else {
            return Err(nwf("malformed start tag"));
        };
        if cx.skipping && cx.attrs.len() >= cx.budget {
            self.unchecked = true;
            cx.hashing.value = None;
            return Ok(());
        }
        let mut a = AttrTok {
            name_start,
            name,
            value_start: self.value_start,
            value_len: self.at - self.value_start,
            plain: self.value.plain,
            kind,
            key,
            decl: None,
            ns: NO_NS,
        };
        if raw_duplicate(cx, &mut a) {
            return Err(nwf("duplicate attribute"));
        }
        if matches!(kind, AttrKind::Default | AttrKind::Declaration) {
            let decl = match cx.hashing.value.take() {
                Some(k) => {
                    let key = k.hasher.finish();
                    (Some(key), DeclValue::of_key(key, k.len, cx.keys), None)
                }
                None => decode_declaration(cx, &a),
            };
            let local = |word: &[u8]| match key {
                Some(k) if cx.skipping => k.local == cx.keys.of(word),
                _ => name.local(cx.bytes(name_start, name_start + name.len)) == word,
            };
            check_declaration(kind == AttrKind::Default, local, decl.1)?;
            a.decl = Some(decl);
        }
        cx.attrs.push(a);
        Ok(())
    }

    /// The element is skipped from now on: compute the keys that reading it
    /// needs from the bytes that are about to be dropped.
    pub fn start_hashing(&mut self, cx: &mut TagCx<'_>) {
        for a in cx.attrs.iter_mut() {
            ensure_key(a, cx.buf, cx.base, cx.keys);
            key_declaration(a, cx.buf, cx.base, cx.decoded, cx.keys);
        }
        if let Some((q, k @ None)) = &mut self.elem {
            let s = self.open + 1;
            *k = Some(cx.keys.name(at(cx.buf, cx.base, s, s + q.len), q.colon));
        }
        if let Some((s, q, _, k @ None)) = &mut self.attr {
            *k = Some(cx.keys.name(at(cx.buf, cx.base, *s, *s + q.len), q.colon));
        }
        match self.state {
            TagState::Name | TagState::AttrName => {
                let mut h = NameHasher::new(cx.keys);
                h.feed(cx.keys, at(cx.buf, cx.base, self.name_start, self.at));
                cx.hashing.name = Some(h);
            }
            TagState::Value
                if matches!(
                    self.attr,
                    Some((_, _, AttrKind::Default | AttrKind::Declaration, _))
                ) =>
            {
                // Read the value so far again, into a key: the same state results.
                let mut key = ValueKey::new(cx.keys.hasher());
                let mut st = ValueLex {
                    plain: true,
                    ..ValueLex::default()
                };
                let so_far = at(cx.buf, cx.base, self.value_start, self.at);
                let _ = lex::value(so_far, self.quote, &mut st, usize::MAX, Some(&mut key));
                self.value = st;
                cx.hashing.value = Some(key);
            }
            _ => {}
        }
    }
}

fn kind_of(n: &[u8], q: QName) -> AttrKind {
    match q.prefix(n) {
        None if n == b"xmlns" => AttrKind::Default,
        None => AttrKind::Plain,
        Some(b"xmlns") => AttrKind::Declaration,
        Some(_) => AttrKind::Prefixed,
    }
}

fn kind_of_key(k: NameKey, q: QName, keys: &Keys) -> AttrKind {
    match q.colon {
        None if k.local == keys.xmlns => AttrKind::Default,
        None => AttrKind::Plain,
        Some(_) if k.prefix == keys.xmlns => AttrKind::Declaration,
        Some(_) => AttrKind::Prefixed,
    }
}

/// Compute a declaration's value key from its decoded value, if not known
/// yet (the bytes are about to go).
pub(super) fn key_declaration(
    a: &mut AttrTok,
    buf: &[u8],
    base: usize,
    decoded: &str,
    keys: &Keys,
) {
    if let Some((k @ None, _, span)) = &mut a.decl {
        let v = match span {
            Some((s, l)) => &decoded.as_bytes()[*s as usize..(*s + *l) as usize],
            None => at(buf, base, a.value_start, a.value_start + a.value_len),
        };
        *k = Some(keys.of(v));
    }
}

/// Compute an attribute's name key from its bytes, if not known yet.
pub(super) fn ensure_key(a: &mut AttrTok, buf: &[u8], base: usize, keys: &Keys) -> NameKey {
    *a.key.get_or_insert_with(|| {
        keys.name(
            at(buf, base, a.name_start, a.name_start + a.name.len),
            a.name.colon,
        )
    })
}

/// The decoded value of a declaration whose bytes are kept: its key, its
/// facts, and (when not plain) where it was decoded to in `cx.decoded`.
fn decode_declaration(cx: &mut TagCx<'_>, a: &AttrTok) -> Decl {
    let raw = at(cx.buf, cx.base, a.value_start, a.value_start + a.value_len);
    if a.plain {
        return (None, DeclValue::of_bytes(raw), None);
    }
    let start = cx.decoded.len();
    lex::decode_into(raw, cx.decoded);
    let v = &cx.decoded.as_bytes()[start..];
    let span = (start as u32, v.len() as u32);
    (None, DeclValue::of_bytes(v), Some(span))
}

/// Whether `a`, the tag's next attribute, has the name of one before it.
/// Below [`SMALL`] attributes by comparing pairs, from there through `cx.dups`.
/// A prefixed name twice is found with the expanded names, at the tag's end
/// ([`resolve`]): the same prefix twice is the same namespace.
fn raw_duplicate(cx: &mut TagCx<'_>, a: &mut AttrTok) -> bool {
    if a.kind == AttrKind::Prefixed {
        return false;
    }
    let (buf, base, skipping) = (cx.buf, cx.base, cx.skipping);
    let same = |x: &AttrTok, y: &AttrTok| {
        if skipping {
            x.key == y.key
        } else {
            at(buf, base, x.name_start, x.name_start + x.name.len)
                == at(buf, base, y.name_start, y.name_start + y.name.len)
        }
    };
    let n = cx.attrs.len();
    if n < SMALL {
        return cx.attrs.iter().any(|b| same(b, a));
    }
    while cx.dups.upto < n {
        let i = cx.dups.upto;
        cx.dups.upto += 1;
        if cx.attrs[i].kind != AttrKind::Prefixed {
            let k = ensure_key(&mut cx.attrs[i], buf, base, cx.keys);
            cx.dups.insert(k.raw(), i as u32, |_| false);
        }
    }
    let k = ensure_key(a, buf, base, cx.keys);
    let attrs = &*cx.attrs;
    cx.dups.upto = n + 1;
    cx.dups
        .insert(k.raw(), n as u32, |j| same(&attrs[j as usize], a))
}

/// An end tag being read.
#[derive(Debug)]
pub(super) struct EndLex {
    /// Stream offset of its `<`.
    pub open: usize,
    pub at: usize,
    name: NameLex,
    /// Its name has been read and matched.
    named: bool,
}

/// The name an end tag must have.
pub(super) enum Expect<'a> {
    /// No element is open.
    Nothing,
    Bytes(&'a [u8]),
    /// The key of the name (the bytes are gone).
    Key(u64),
    /// Any name (an element deeper than what skipping keeps names for).
    Any,
}

pub(super) struct EndCx<'a> {
    pub buf: &'a [u8],
    pub base: usize,
    pub end: usize,
    pub max_token: usize,
    pub keys: &'a Keys,
    pub skipping: bool,
    pub expect: Expect<'a>,
}

impl EndLex {
    pub fn new(open: usize) -> Self {
        EndLex {
            open,
            at: open + 2,
            name: NameLex::default(),
            named: false,
        }
    }

    /// The element is skipped from now on: its name so far becomes a key.
    pub fn start_hashing(
        &mut self,
        buf: &[u8],
        base: usize,
        keys: &Keys,
        h: &mut Option<NameHasher>,
    ) {
        if !self.named {
            let mut n = NameHasher::new(keys);
            n.feed(keys, at(buf, base, self.open + 2, self.at));
            *h = Some(n);
        }
    }

    /// Go on reading; `Done` with the stream offset of its `>`. While
    /// skipping, the name's key goes to `hasher`.
    pub fn step(
        &mut self,
        cx: &EndCx<'_>,
        hasher: &mut Option<NameHasher>,
    ) -> Result<TagStep, FrameError> {
        if let Some(done) = self.whole(cx) {
            return Ok(done);
        }
        if cx.skipping && hasher.is_none() && !self.named && self.at == self.open + 2 {
            *hasher = Some(NameHasher::new(cx.keys));
        }
        // The tag's whole length is bounded: name and whitespace.
        let over = |s: &Self| s.at - s.open > cx.max_token.saturating_add(3);
        if !self.named {
            let rest = at(cx.buf, cx.base, self.at, cx.end);
            let (n, q) = self.name.step(rest, cx.max_token)?;
            if let Some(h) = hasher.as_mut() {
                h.feed(cx.keys, &rest[..n]);
            }
            self.at += n;
            if over(self) {
                return Ok(TagStep::Limit(Limit::Token));
            }
            let Some(q) = q else {
                return Ok(TagStep::More);
            };
            self.check_name(q, cx, hasher.take())?;
            self.named = true;
        }
        let rest = at(cx.buf, cx.base, self.at, cx.end);
        let w = lex::skip_ws(rest);
        self.at += w;
        if over(self) {
            return Ok(TagStep::Limit(Limit::Token));
        }
        match rest.get(w) {
            None => Ok(TagStep::More),
            Some(b'>') => Ok(TagStep::Done {
                gt: self.at,
                self_closing: false,
            }),
            Some(_) => Err(nwf("malformed end tag")),
        }
    }

    /// Fast path: the whole end tag has come and is exactly the expected
    /// name (already checked as the start tag's), then `>`.
    #[inline]
    fn whole(&self, cx: &EndCx<'_>) -> Option<TagStep> {
        let Expect::Bytes(want) = cx.expect else {
            return None;
        };
        if self.at != self.open + 2 {
            return None;
        }
        let rest = at(cx.buf, cx.base, self.at, cx.end);
        (rest.len() > want.len() && rest[want.len()] == b'>' && rest.starts_with(want)).then(|| {
            TagStep::Done {
                gt: self.at + want.len(),
                self_closing: false,
            }
        })
    }

    fn check_name(
        &self,
        q: QName,
        cx: &EndCx<'_>,
        key: Option<NameHasher>,
    ) -> Result<(), FrameError> {
        let ok = match cx.expect {
            Expect::Nothing => return Err(nwf("end tag before the stream header")),
            Expect::Any => true,
            Expect::Bytes(want) => {
                let s = self.open + 2;
                at(cx.buf, cx.base, s, s + q.len) == want
            }
            Expect::Key(k) => key.is_some_and(|h| h.finish().raw() == k),
        };
        if !ok {
            return Err(nwf("end tag does not match the start tag"));
        }
        Ok(())
    }
}

//! The framer's element markup: start tags (the stream header and top-level
//! elements among them), end tags, the end of a top-level element, and
//! skipping one that went beyond the limits.

use super::*;

impl Framer {
    /// Go on reading the start tag at `pos`.
    pub(super) fn start_tag(&mut self) -> Result<Step, FrameError> {
        let end = self.visible_end();
        let skipping = self.skipping();
        let max_attributes = if skipping {
            usize::MAX
        } else {
            self.limits.max_attributes
        };
        let lx = &mut self.tag;
        let mut cx = TagCx {
            buf: &self.buf,
            base: self.base,
            end,
            max_token: if skipping {
                usize::MAX
            } else {
                self.limits.max_token
            },
            max_attributes,
            budget: if skipping {
                (self.limits.max_stanza_size / 128).max(self.limits.max_attributes)
            } else {
                usize::MAX
            },
            keys: &self.keys,
            skipping,
            attrs: &mut self.attrs,
            dups: &mut self.dups,
            decoded: &mut self.decoded,
            hashing: &mut self.hashing,
            ns_work: &mut self.ns_work,
        };
        match lx.step(&mut cx)? {
            TagStep::More => Ok(Step::More),
            TagStep::Limit(l) => {
                self.exceed(l)?;
                Ok(Step::Continue)
            }
            TagStep::Done { gt, self_closing } => {
                self.markup = Markup::None;
                let Some((name, key)) = lx.elem else {
                    return Err(nwf("malformed start tag"));
                };
                let read = Read {
                    open: lx.open,
                    name,
                    key,
                    unchecked: lx.unchecked,
                };
                self.tag_done(read, gt, self_closing)
            }
        }
    }

    /// A start tag has been read whole: its `>` is at `gt`.
    fn tag_done(&mut self, mut r: Read, gt: usize, self_closing: bool) -> Result<Step, FrameError> {
        match self.phase {
            Phase::Start | Phase::Prolog => return self.header(r, gt, self_closing),
            Phase::Stream => {}
            Phase::Ended => return Ok(Step::More),
        }
        let depth = self.depth + 1;
        let unchecked = self.skipping()
            && (r.unchecked || self.scope.len() + self.attrs.len() > self.skip_budget());
        let ns_unchecked = match self.cur.as_mut() {
            Some(c) => {
                c.ns_unchecked |= unchecked;
                c.ns_unchecked
            }
            None => false,
        };
        let ns = if ns_unchecked || !self.ns_work {
            NO_NS
        } else {
            self.resolve(&r, depth, true)?
        };
        // Checked after the namespaces, as a parser would find those faults
        // in the tag before the tag's depth counts.
        if depth > 2 && depth - 1 > self.limits.max_depth && !self.skipping() {
            self.exceed(Limit::Depth)?;
            if self.skipping() {
                self.key_finished_tag(&mut r);
            }
        }
        let skipping = self.skipping();
        self.depth = depth;
        self.pos = gt + 1;
        if depth == 2 && !skipping {
            return self.top_level_start(&r, ns, self_closing);
        }
        if let Some(cur) = self.cur.as_mut() {
            if !skipping && depth == 3 && cur.head_is(Name::Error) {
                let q = tag::at(&self.buf, self.base, r.open + 1, r.open + 1 + r.name.len);
                stream_error_child(cur, r.name.local(q));
            }
            cur.has_children = true;
        }
        if self_closing {
            if depth == 2 {
                self.owed = Owed::Stanza;
            } else {
                self.close_element();
            }
        } else {
            self.push_open(&r);
        }
        self.check_size()?;
        Ok(Step::Continue)
    }

    /// While skipping, how many attributes of one tag and namespace bindings
    /// are kept for the namespace and duplicate checks.
    fn skip_budget(&self) -> usize {
        (self.limits.max_stanza_size / 128).max(self.limits.max_attributes)
    }

    /// Skipping began as a tag ended: the keys of its names from its bytes.
    fn key_finished_tag(&mut self, r: &mut Read) {
        for a in self.attrs.iter_mut() {
            tag::ensure_key(a, &self.buf, self.base, &self.keys);
        }
        if r.key.is_none() {
            let s = r.open + 1;
            let name = tag::at(&self.buf, self.base, s, s + r.name.len);
            r.key = Some(self.keys.name(name, r.name.colon));
        }
    }

    /// Apply Namespaces in XML to the tag just read (see [`tag::resolve`]).
    fn resolve(&mut self, r: &Read, depth: usize, stream_bound: bool) -> Result<u32, FrameError> {
        let mut cx = ResolveCx {
            buf: &self.buf,
            base: self.base,
            keys: &self.keys,
            scope: &mut self.scope,
            attrs: &mut self.attrs,
            decoded: &self.decoded,
            exact: !self.skip,
            stream_bound,
        };
        resolve::resolve(
            &mut cx,
            &mut self.dups,
            r.open,
            (r.name, r.key),
            depth as u32,
        )
    }

    /// The decoded value of the tag's `xmlns` attribute, when it has one.
    fn default_ns(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        let a = self.attrs.iter().find(|a| a.kind == AttrKind::Default)?;
        Some(match a.decl {
            Some((_, _, Some((s, l)))) => {
                std::borrow::Cow::Borrowed(&self.decoded.as_bytes()[s as usize..(s + l) as usize])
            }
            _ => std::borrow::Cow::Borrowed(self.bytes(a.value_start, a.value_start + a.value_len)),
        })
    }

    /// The namespace of the element whose tag was just read: through its
    /// prefix (`ns`), or its own `xmlns`, else `None` (inherited).
    fn elem_ns(&self, prefixed: bool, ns: u32) -> Option<std::borrow::Cow<'_, [u8]>> {
        if prefixed {
            return Some(std::borrow::Cow::Borrowed(
                self.scope.uri_bytes(ns).unwrap_or_default(),
            ));
        }
        self.default_ns()
    }

    /// The start tag of a top-level element was read: its head, its routing
    /// attributes, and [`Frame::Start`].
    fn top_level_start(
        &mut self,
        r: &Read,
        ns: u32,
        self_closing: bool,
    ) -> Result<Step, FrameError> {
        let q = r.name;
        let qname = self.bytes(r.open + 1, r.open + 1 + q.len);
        let head = Head {
            name: classify_name(q.local(qname)),
            ns: classify_ns(self.elem_ns(q.colon.is_some(), ns).as_deref()),
        };
        let Some(cur) = self.cur.as_mut() else {
            return Err(nwf("element outside the stream"));
        };
        let rel = |at: usize| (at - cur.start) as u32;
        for a in self.attrs.iter().filter(|a| a.kind == AttrKind::Plain) {
            let n = tag::at(
                &self.buf,
                self.base,
                a.name_start,
                a.name_start + a.name.len,
            );
            let slot = match n {
                b"to" => 0,
                b"from" => 1,
                b"type" => 2,
                b"id" => 3,
                _ => continue,
            };
            cur.attrs[slot] = if a.plain {
                Pending::Plain(rel(a.value_start), a.value_len as u32)
            } else {
                let v = tag::at(
                    &self.buf,
                    self.base,
                    a.value_start,
                    a.value_start + a.value_len,
                );
                Pending::Decoded(lex::decode_attr(v, false).into())
            };
        }
        cur.xmlns_value = self
            .attrs
            .iter()
            .find(|a| a.kind == AttrKind::Default)
            .map(|a| (rel(a.value_start), a.value_len as u32));
        cur.prefixed = q.colon.is_some();
        cur.head = Some(head);
        if head.name == Name::Handshake {
            cur.text = Some(Collect {
                cap: MAX_HANDSHAKE_TEXT,
                ..Collect::default()
            });
        }
        if self_closing {
            self.owed = Owed::Stanza;
        } else {
            self.push_open(r);
        }
        self.check_size()?;
        Ok(Step::Start(head))
    }

    /// Remember an element's name until its end tag: where it is, or (while
    /// skipping) its key, for up to `max_stanza_size / 16` levels.
    fn push_open(&mut self, r: &Read) {
        let entry = match r.key {
            Some(k) if self.skipping() => Open::Key(k.raw()),
            _ => Open::At(r.open + 1, r.name.len as u32),
        };
        if !self.skipping() || self.open.len() < (self.limits.max_stanza_size / 16).max(64) {
            self.open.push(entry);
        }
    }

    /// The stream header: the root element's start tag.
    fn header(&mut self, r: Read, gt: usize, self_closing: bool) -> Result<Step, FrameError> {
        self.scope.reset();
        let ns = self.resolve(&r, 1, false)?;
        let q = r.name;
        let qname = self.bytes(r.open + 1, r.open + 1 + q.len);
        let in_streams =
            self.elem_ns(q.colon.is_some(), ns).as_deref() == Some(NS_STREAMS.as_bytes());
        if !in_streams || q.local(qname) != b"stream" {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                "first element is not <stream:stream/> in http://etherx.jabber.org/streams",
            ));
        }
        if q.prefix(qname) != Some(b"stream") {
            let p = String::from_utf8_lossy(q.prefix(qname).unwrap_or_default()).into_owned();
            return Err(FrameError::new(
                StreamCondition::BadNamespacePrefix,
                format!("the streams namespace has the prefix {p:?}, not 'stream'"),
            ));
        }
        let header = self.header_attrs()?;
        self.scope.reset();
        self.depth = 1;
        self.phase = Phase::Stream;
        self.pos = gt + 1;
        // Nothing before the first stanza is ever forwarded.
        self.consume(self.pos - self.base);
        if self_closing {
            self.owed = Owed::End;
        }
        Ok(Step::Header(Box::new(header)))
    }

    /// The stream header's attributes, and its declarations checked.
    fn header_attrs(&self) -> Result<StreamHeader, FrameError> {
        let default = self
            .default_ns()
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let mut other_prefix = None;
        let mut header = StreamHeader {
            to: None,
            version: None,
            id: None,
            from: None,
        };
        for a in &self.attrs {
            let n = self.bytes(a.name_start, a.name_start + a.name.len);
            let value = || {
                let v = self.bytes(a.value_start, a.value_start + a.value_len);
                lex::decode_attr(v, a.plain).into_owned()
            };
            match a.kind {
                AttrKind::Declaration if a.name.local(n) != b"stream" => {
                    other_prefix = Some(String::from_utf8_lossy(a.name.local(n)).into_owned())
                }
                AttrKind::Plain => match n {
                    b"to" => header.to = Some(value()),
                    b"version" => header.version = Some(value()),
                    b"id" => header.id = Some(value()),
                    b"from" => header.from = Some(value()),
                    _ => {}
                },
                _ => {}
            }
        }
        if default.as_deref() != Some(NS_COMPONENT) {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                format!(
                    "default namespace is {:?}, not jabber:component:accept",
                    default.unwrap_or_default()
                ),
            ));
        }
        if let Some(p) = other_prefix {
            return Err(FrameError::new(
                StreamCondition::InvalidNamespace,
                format!("stream header declares prefix {p:?}; only 'stream' is supported"),
            ));
        }
        Ok(header)
    }

    /// Go on reading the end tag at `pos`.
    pub(super) fn end_tag(&mut self) -> Result<Step, FrameError> {
        let end = self.visible_end();
        let skipping = self.skipping();
        let max_token = self.max_token();
        let expect = match self.depth {
            0 => Expect::Nothing,
            1 => Expect::Bytes(STREAM_ROOT),
            d if self.open.len() < d - 1 => Expect::Any,
            _ => match self.open.last() {
                Some(&Open::At(s, l)) => {
                    Expect::Bytes(tag::at(&self.buf, self.base, s, s + l as usize))
                }
                Some(&Open::Key(k)) => Expect::Key(k),
                None => Expect::Any,
            },
        };
        let lx = &mut self.end;
        let cx = EndCx {
            buf: &self.buf,
            base: self.base,
            end,
            max_token,
            keys: &self.keys,
            skipping,
            expect,
        };
        let gt = match lx.step(&cx, &mut self.hashing.name)? {
            TagStep::More => return Ok(Step::More),
            TagStep::Limit(l) => {
                self.exceed(l)?;
                return Ok(Step::Continue);
            }
            TagStep::Done { gt, .. } => gt,
        };
        self.markup = Markup::None;
        self.pos = gt + 1;
        if self.depth == 1 {
            self.depth = 0;
            self.phase = Phase::Ended;
            return Ok(Step::End);
        }
        if self.open.len() >= self.depth - 1 {
            self.open.pop();
        }
        self.check_size()?;
        if self.depth == 2 {
            self.depth = 1;
            return Ok(Step::Element);
        }
        self.close_element();
        Ok(Step::Continue)
    }

    /// Leave an element below the top level: its declarations go out of scope.
    fn close_element(&mut self) {
        self.scope.close(self.depth as u32);
        self.depth -= 1;
    }

    /// The current top-level element has ended (at `pos`).
    pub(super) fn finish_element(&mut self) -> Frame {
        self.depth = 1;
        let Some(cur) = self.cur.take() else {
            // Unreachable: only called with a top-level element open.
            return Frame::End;
        };
        self.open.clear();
        self.scope.reset();
        if let Some(limit) = cur.skip {
            self.skip = false;
            self.hashing = Hashing::default();
            self.consume(self.pos - self.base);
            let [to, from, type_, id] = cur.attrs.map(|p| p.value(&Bytes::new()));
            return Frame::Skipped(Skipped {
                head: cur.head,
                attrs: Attrs {
                    to,
                    from,
                    type_,
                    id,
                },
                limit,
                size: (self.pos - cur.start) as u64,
            });
        }
        let bytes = Bytes::copy_from_slice(self.bytes(cur.start, self.pos));
        self.consume(self.pos - self.base);
        let is_error = cur.head_is(Name::Error);
        let (text, overflow, error_text) = match cur.text {
            Some(c) if is_error => (String::new(), false, Some(c.text)),
            // Too long to be a handshake: nothing of it is kept.
            Some(c) if c.overflow => (String::new(), true, None),
            Some(c) => (c.text, false, None),
            None => (String::new(), false, None),
        };
        let [to, from, type_, id] = cur.attrs;
        let attrs = Attrs {
            to: to.value(&bytes),
            from: from.value(&bytes),
            type_: type_.value(&bytes),
            id: id.value(&bytes),
        };
        Frame::Stanza(Stanza {
            head: cur.head.unwrap_or(Head {
                name: Name::Other,
                ns: Ns::Other,
            }),
            attrs,
            bytes,
            text,
            // An overlong handshake text is treated like one with children: invalid.
            has_children: cur.has_children || overflow,
            first_child: cur.first_child,
            error_text,
            xmlns_value: cur.xmlns_value.map(|(s, l)| s as usize..(s + l) as usize),
            prefixed: cur.prefixed,
        })
    }

    /// The current top-level element went beyond `limit` (and [`Excess::Skip`]
    /// applies): from now on its bytes are dropped as they are read. What is
    /// still needed of the bytes read so far becomes keys and owned values.
    pub(super) fn begin_skip(&mut self, limit: Limit) {
        let Some(cur) = self.cur.as_mut() else {
            return;
        };
        cur.skip = Some(limit);
        self.skip = true;
        cur.text = None;
        if cur.head.is_some() {
            for p in cur.attrs.iter_mut() {
                if let Pending::Plain(s, l) = *p {
                    let s = cur.start + s as usize;
                    let v = tag::at(&self.buf, self.base, s, s + l as usize);
                    *p = Pending::Decoded(String::from_utf8_lossy(v).into());
                }
            }
        } else {
            cur.attrs = Default::default();
        }
        for o in self.open.iter_mut() {
            if let Open::At(s, l) = *o {
                let name = tag::at(&self.buf, self.base, s, s + l as usize);
                let colon = memchr::memchr(b':', name);
                *o = Open::Key(self.keys.name(name, colon).raw());
            }
        }
        match self.markup {
            Markup::Start => {
                let mut cx = TagCx {
                    buf: &self.buf,
                    base: self.base,
                    end: self.base + self.buf.len(),
                    max_token: usize::MAX,
                    max_attributes: usize::MAX,
                    budget: usize::MAX,
                    keys: &self.keys,
                    skipping: true,
                    attrs: &mut self.attrs,
                    dups: &mut self.dups,
                    decoded: &mut self.decoded,
                    hashing: &mut self.hashing,
                    ns_work: &mut self.ns_work,
                };
                self.tag.start_hashing(&mut cx);
            }
            Markup::End => {
                let h = &mut self.hashing.name;
                self.end.start_hashing(&self.buf, self.base, &self.keys, h);
            }
            _ => {}
        }
    }
}

/// A child element of a `<stream:error/>` starts: the first names the
/// condition; the character data of the first `<text/>` is kept, nothing after it.
fn stream_error_child(cur: &mut Current, local: &[u8]) {
    if !cur.has_children {
        cur.first_child = Some(String::from_utf8_lossy(local).into_owned());
    }
    if cur.text.is_some() {
        cur.text_depth = 0;
    } else if local == b"text" {
        cur.text = Some(Collect {
            cap: MAX_ERROR_TEXT,
            ..Collect::default()
        });
        cur.text_depth = 3;
    }
}

//! Quick looks into one serialized element, for assertions and predicates:
//! its name, an attribute, a child's text, an error's condition. String
//! scanning, exact on what the router and Prosody write; for the shape of an
//! element (namespaces, children), parse it with [`crate::el`].

/// Name of the top-level element, e.g. `message`, `stream:error`.
pub fn element_name(xml: &str) -> &str {
    let s = xml.trim_start();
    let s = s.strip_prefix('<').unwrap_or(s);
    let end = s
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(s.len());
    &s[..end]
}

/// Value of attribute `name` on the top-level element (entities unescaped).
pub fn attr(xml: &str, name: &str) -> Option<String> {
    let start = xml.find('<')?;
    let bytes = xml.as_bytes();
    // End of the top-level start tag, outside quotes.
    let mut quote = None;
    let mut end = None;
    for (i, &b) in bytes.iter().enumerate().skip(start + 1) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => {
                end = Some(i);
                break;
            }
            None => {}
        }
    }
    let tag = &xml[start + 1..end?];
    let mut rest = tag.find(char::is_whitespace).map(|p| &tag[p..])?;
    loop {
        rest = rest.trim_start();
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let q = after.chars().next()?;
        if q != '\'' && q != '"' {
            return None;
        }
        let close = after[1..].find(q)? + 1;
        if key == name {
            return Some(unescape(&after[1..close]));
        }
        rest = &after[close + 1..];
    }
}

/// Text content of the first `<tag>...</tag>` (with or without attributes).
pub fn text_of(xml: &str, tag: &str) -> Option<String> {
    let mut from = 0;
    loop {
        let p = from + xml[from..].find(&format!("<{tag}"))?;
        let after = &xml[p + 1 + tag.len()..];
        let next = after.chars().next()?;
        if next == '>' || next.is_whitespace() {
            let gt = after.find('>')?;
            if after[..gt].ends_with('/') {
                return Some(String::new());
            }
            let body = &after[gt + 1..];
            let close = body.find(&format!("</{tag}>"))?;
            return Some(unescape(&body[..close]));
        }
        from = p + 1;
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// The element name of the first child of `<stream:error>`.
pub fn condition_of(s: &str) -> String {
    let inner = s.trim_start_matches("<stream:error>");
    inner
        .trim_start_matches('<')
        .split(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .next()
        .unwrap_or("")
        .to_string()
}

/// The stanza-error condition inside an error stanza.
pub fn stanza_error_condition(s: &str) -> Option<String> {
    let i = s.find("<error")?;
    let rest = &s[i..];
    let j = rest.find('>')?;
    let after = &rest[j + 1..];
    let after = after.strip_prefix('<')?;
    Some(
        after
            .split(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .next()?
            .to_string(),
    )
}

/// A `<message/>` whose `<body/>` is `body`.
pub fn is_body(s: &str, body: &str) -> bool {
    element_name(s) == "message" && text_of(s, "body").as_deref() == Some(body)
}

/// A predicate: a `name` element (`message`, `iq`, ...) with this `id`.
pub fn with_id<'a>(name: &'a str, id: &'a str) -> impl Fn(&str) -> bool + 'a {
    move |s| element_name(s) == name && attr(s, "id").as_deref() == Some(id)
}

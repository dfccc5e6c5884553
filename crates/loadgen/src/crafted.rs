//! Crafted worst-case stanzas for the framer, beside ordinary ones: the same
//! inputs for the in-process benchmark (`benches/worst_case.rs` includes this
//! file) and for `loadgen worst-case` against the real router, so the two
//! measurements are of the same bytes.
//!
//! Every stanza is within the router's default limits: `max_stanza_size`
//! 512 KiB (each is at most 500,000 bytes), 256 attributes on an element,
//! depth 64, names and values of at most 8 KiB.

/// The inputs, `ordinary` first (the others' ratios are to it).
pub const CASES: &[&str] = &[
    "ordinary",
    "namespaces",
    "namespaces-short",
    "attributes",
    "references",
    "long-names",
    "long-values",
    "deep",
];

/// What each input is, for a report.
pub fn describe(case: &str) -> &'static str {
    match case {
        "ordinary" => "198-byte <message/> stanzas (the load generator's shape)",
        "namespaces" => "252 prefixes bound to 1 KB URIs with a reference, then child tags each using all 252",
        "namespaces-short" => "the same with short URIs (more prefixed attributes per byte)",
        "attributes" => "child tags with 256 attributes each (max_attributes)",
        "references" => "text and attribute values made of character and entity references",
        "long-names" => "element and attribute names of 8,000 bytes",
        "long-values" => "attribute values of 8,000 bytes",
        "deep" => "elements nested 63 deep inside the stanza, over and over",
        "handshake" => "before authentication: a 300 KB <handshake> with 255 prefixes bound to 1 KB URIs and children using them all",
        _ => "",
    }
}

/// A message of the load generator's anchor shape (198 bytes with the
/// default addresses `s0@a.bench.local` and `r0@b.bench.local`).
pub fn ordinary(from: &str, to: &str, seq: usize) -> String {
    let head = format!("<message from='{from}' to='{to}' type='chat' id='{seq}'><body>");
    let tail = "</body></message>";
    let mut body = format!("~t:0:{seq}:{};", 1_000_000_000u64 + seq as u64 * 5_000);
    let pad = 198usize.saturating_sub(head.len() + tail.len() + body.len());
    body.extend(std::iter::repeat_n('x', pad));
    format!("{head}{body}{tail}")
}

/// A stanza of about `size` bytes: `open`, `child` repeated, `close`.
fn filled(open: &str, child: &str, close: &str, size: usize) -> String {
    let n = (size.saturating_sub(open.len() + close.len()) / child.len()).max(1);
    format!("{open}{}{close}", child.repeat(n))
}

/// `n` prefix declarations, and a child tag using each prefix once.
fn prefixes(n: usize, uri: impl Fn(usize) -> String) -> (String, String) {
    let decls: String = (0..n)
        .map(|i| format!(" xmlns:p{i}='{}'", uri(i)))
        .collect();
    let uses: String = (0..n).map(|i| format!(" p{i}:a='1'")).collect();
    (decls, format!("<c{uses}/>"))
}

/// A 1 KB namespace URI with a reference in it.
fn long_uri(i: usize) -> String {
    format!("urn:{}&amp;{i}", "u".repeat(1000))
}

/// One stanza of `case` from `from` to `to` (`ordinary`: number `seq`).
pub fn stanza(case: &str, from: &str, to: &str, seq: usize) -> String {
    // Three attributes: with 252 declarations, 255 on the element.
    let open = format!("<message from='{from}' to='{to}' id='{case}-{seq}'");
    let open_plain = format!("{open}>");
    match case {
        "namespaces" | "namespaces-short" => {
            let (decls, child) = if case == "namespaces" {
                prefixes(252, long_uri)
            } else {
                prefixes(252, |i| format!("urn:{i}"))
            };
            filled(&format!("{open}{decls}>"), &child, "</message>", 500_000)
        }
        "attributes" => {
            let attrs: String = (0..256).map(|i| format!(" a{i}='1'")).collect();
            filled(&open_plain, &format!("<c{attrs}/>"), "</message>", 500_000)
        }
        "references" => {
            let refs = "&amp;&lt;&#x41;&#65;&apos;&quot;&gt;&#x1F600;";
            let child = format!("{}<v a='{refs}'/>", refs.repeat(20));
            filled(
                &format!("{open_plain}<body>"),
                &child,
                "</body></message>",
                100_000,
            )
        }
        "long-names" => {
            let n = "n".repeat(8000);
            filled(
                &open_plain,
                &format!("<{n} {n}='1'/>"),
                "</message>",
                500_000,
            )
        }
        "long-values" => {
            let v = "v".repeat(8000);
            filled(
                &open_plain,
                &format!("<c a='{v}' b='{v}'/>"),
                "</message>",
                500_000,
            )
        }
        "deep" => {
            let deep = format!("{}{}", "<a>".repeat(63), "</a>".repeat(63));
            filled(&open_plain, &deep, "</message>", 500_000)
        }
        _ => ordinary(from, to, seq),
    }
}

/// The `<handshake>` element of the attack before authentication, about
/// `size` bytes.
pub fn handshake(size: usize) -> String {
    let (decls, child) = prefixes(255, long_uri);
    filled(&format!("<handshake{decls}>"), &child, "</handshake>", size)
}

//! A throwaway XEP-0114 router for the integration tests: does the
//! handshake (checking the SHA-1 digest) and routes `<message>` stanzas by
//! the domain of their `to` attribute, forwarding the raw bytes. Messages to
//! an unknown domain are bounced back with `type='error'`. Components whose
//! domain starts with `void` are authenticated but never registered, so
//! everything sent to them bounces.

#![allow(dead_code)]

use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

type Registry = Arc<Mutex<HashMap<String, Arc<Mutex<TcpStream>>>>>;

pub struct Router {
    pub addr: SocketAddr,
}

/// The secrets the benchmark configs use.
pub fn secret_for(domain: &str) -> String {
    match domain {
        "a.bench.local" => "secret-a".into(),
        "b.bench.local" => "secret-b".into(),
        d => {
            if let Some(n) = d
                .strip_prefix('c')
                .and_then(|r| r.strip_suffix(".bench.local"))
                .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
            {
                format!("secret-{n}")
            } else {
                format!("secret-{d}")
            }
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn attr(tag: &[u8], name: &str) -> Option<String> {
    let pat = format!(" {name}='");
    let p = find(tag, pat.as_bytes())? + pat.len();
    let e = tag[p..].iter().position(|&c| c == b'\'')?;
    Some(String::from_utf8_lossy(&tag[p..p + e]).into_owned())
}

fn domain_of(jid: &str) -> &str {
    let d = jid.split_once('@').map_or(jid, |(_, d)| d);
    d.split_once('/').map_or(d, |(d, _)| d)
}

static IDS: AtomicU64 = AtomicU64::new(1);

fn serve(mut s: TcpStream, reg: Registry) -> Option<()> {
    s.set_nodelay(true).ok()?;
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    // Stream header.
    let to = loop {
        if let Some(p) = find(&buf, b"<stream:stream") {
            if let Some(gt) = buf[p..].iter().position(|&c| c == b'>') {
                let tag = buf[p..p + gt].to_vec();
                buf.drain(..p + gt + 1);
                break attr(&tag, "to")?;
            }
        }
        let n = s.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let id = format!("test{}", IDS.fetch_add(1, Ordering::Relaxed));
    write!(
        s,
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' from=\"{to}\" id=\"{id}\">"
    )
    .ok()?;
    let digest = loop {
        if let Some(e) = find(&buf, b"</handshake>") {
            let b = find(&buf, b"<handshake>")? + 11;
            let d = String::from_utf8_lossy(&buf[b..e]).into_owned();
            buf.drain(..e + 12);
            break d;
        }
        let n = s.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let mut h = Sha1::new();
    h.update(id.as_bytes());
    h.update(secret_for(&to).as_bytes());
    if hex::encode(h.finalize()) != digest {
        let _ = s.write_all(
            b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
              </stream:error></stream:stream>",
        );
        return None;
    }
    // Registered before `<handshake/>` goes out, as a real router does: a
    // client that starts sending once authenticated must find it routable.
    let me = Arc::new(Mutex::new(s.try_clone().ok()?));
    if !to.starts_with("void") {
        reg.lock().ok()?.insert(to.clone(), me.clone());
    }
    s.write_all(b"<handshake/>").ok()?;
    let result = (|| -> Option<()> {
        loop {
            let n = s.read(&mut tmp).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
            let mut pos = 0;
            let mut pending: Option<(Arc<Mutex<TcpStream>>, usize)> = None; // dest, start
            let flush = |p: &mut Option<(Arc<Mutex<TcpStream>>, usize)>, end: usize, buf: &[u8]| {
                if let Some((d, start)) = p.take() {
                    if let Ok(mut w) = d.lock() {
                        let _ = w.write_all(&buf[start..end]);
                    }
                }
            };
            while let Some(e) = find(&buf[pos..], b"</message>") {
                let end = pos + e + 10;
                let stanza = &buf[pos..end];
                let tag_end = stanza
                    .iter()
                    .position(|&c| c == b'>')
                    .unwrap_or(stanza.len());
                let tag = &stanza[..tag_end];
                let to_jid = attr(tag, "to").unwrap_or_default();
                let dest = reg.lock().ok()?.get(domain_of(&to_jid)).cloned();
                match dest {
                    Some(d) => {
                        let same = pending.as_ref().is_some_and(|(p, _)| Arc::ptr_eq(p, &d));
                        if !same {
                            flush(&mut pending, pos, &buf);
                            pending = Some((d, pos));
                        }
                    }
                    None => {
                        flush(&mut pending, pos, &buf);
                        let from = attr(tag, "from").unwrap_or_default();
                        let bounce = format!(
                            "<message from='{to_jid}' to='{from}' type='error'>\
                             <error type='cancel'><service-unavailable \
                             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
                        );
                        me.lock().ok()?.write_all(bounce.as_bytes()).ok()?;
                    }
                }
                pos = end;
            }
            flush(&mut pending, pos, &buf);
            buf.drain(..pos);
            if find(&buf, b"</stream:stream>").is_some() {
                let _ = me.lock().ok()?.write_all(b"</stream:stream>");
                return None;
            }
        }
    })();
    if let Ok(mut r) = reg.lock() {
        if r.get(&to).is_some_and(|c| Arc::ptr_eq(c, &me)) {
            r.remove(&to);
        }
    }
    result
}

pub fn start() -> Router {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind test router");
    let addr = l.local_addr().expect("local addr");
    let reg: Registry = Arc::default();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let reg = reg.clone();
            thread::spawn(move || serve(s, reg));
        }
    });
    Router { addr }
}

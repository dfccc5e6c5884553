//! Spreading a balanced domain's stanzas over its set of connections
//! (README, "Several connections for one domain"):
//!
//! - affinity: every stanza whose `from` has the same bare JID goes to the
//!   same connection, chosen by rendezvous (highest random weight) hashing,
//!   so when a connection joins or leaves only the bare JIDs it owns move;
//! - [`Requests`]: the `iq` requests the domain's connections sent, so that
//!   a result or error goes back to the connection that asked.
//!
//! Per stanza this costs one pass over the bare `from` and a multiply-xor
//! per connection; nothing allocates. A request costs one short lock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::proto::jid;
use crate::wire::xml::{Attrs, Name};

/// How long a request is remembered (at least a minute, as promised).
pub const REQUEST_TTL: Duration = Duration::from_secs(120);
/// Requests remembered per domain; the oldest are forgotten beyond it.
pub const MAX_REQUESTS: usize = 16_384;

/// A key drawn once per process, so nobody can precompute which bare JIDs
/// land together.
fn process_key() -> u64 {
    static KEY: OnceLock<u64> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut b = [0u8; 8];
        // Without randomness the spread is still even, only predictable.
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    })
}

/// The splitmix64 finaliser: a cheap, well-mixing 64-bit permutation.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The weight seed of the connection with this session id.
pub fn seed(session_id: u64) -> u64 {
    mix(session_id ^ mix(process_key()))
}

/// FNV-1a over `bytes`, ASCII lower-cased (JIDs from the server are
/// normalised; a component may write a domain in capitals).
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash of the bare JID of `from` (`local@domain`, or `domain`); a
/// missing or unparsable `from` hashes as the empty bare JID.
pub fn bare_hash(from: Option<&str>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ process_key();
    if let Some(j) = from.and_then(jid::split) {
        if let Some(l) = j.local {
            h = fnv(h, l.as_bytes());
            h = fnv(h, b"@");
        }
        h = fnv(h, j.domain.strip_suffix('.').unwrap_or(j.domain).as_bytes());
    }
    mix(h)
}

/// The index of the connection (by weight seed) that owns `bare`: the one
/// with the highest weight. `seeds` is not empty.
pub fn owner(seeds: &[u64], bare: u64) -> usize {
    let mut best = 0;
    let mut top = 0;
    for (i, s) in seeds.iter().enumerate() {
        let w = mix(bare ^ s);
        if i == 0 || w > top {
            best = i;
            top = w;
        }
    }
    best
}

/// The member (index into `seeds`, one per member) a stanza from `from`
/// goes to: with one member (or none) that one, without hashing.
pub fn pick_index(seeds: &[u64], from: Option<&str>) -> usize {
    if seeds.len() <= 1 {
        return 0;
    }
    owner(seeds, bare_hash(from))
}

/// Is this stanza an `iq` request (`get`/`set`) with an id?
pub fn is_request(name: Name, attrs: &Attrs) -> bool {
    name == Name::Iq && attrs.id.is_some() && matches!(attrs.type_.as_deref(), Some("get" | "set"))
}

/// Is this stanza an `iq` response (`result`/`error`) with an id?
pub fn is_response(name: Name, attrs: &Attrs) -> bool {
    name == Name::Iq
        && attrs.id.is_some()
        && matches!(attrs.type_.as_deref(), Some("result" | "error"))
}

/// One remembered request: which connection sent it.
#[derive(Clone, Copy)]
struct Entry {
    session: u64,
    seq: u64,
}

/// The `iq` requests a balanced domain's connections sent, keyed by a
/// 64-bit keyed hash of (id, requester, addressee), at most
/// [`MAX_REQUESTS`] for at most [`REQUEST_TTL`] each.
#[derive(Default)]
pub struct Requests {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    map: HashMap<u64, Entry>,
    /// Insertion order, for expiry and the bound.
    order: VecDeque<(u64, u64, Instant)>,
    seq: u64,
    hasher: std::collections::hash_map::RandomState,
}

impl Table {
    fn key(&self, id: &str, requester: &str, addressee: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(id.as_bytes());
        h.write_u8(0xff);
        for part in [requester, addressee] {
            for b in part.bytes() {
                h.write_u8(b.to_ascii_lowercase());
            }
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// Forget what expired, and the oldest beyond the bound.
    fn expire(&mut self, now: Instant) {
        while let Some(&(key, seq, at)) = self.order.front() {
            if self.order.len() < MAX_REQUESTS && now.duration_since(at) < REQUEST_TTL {
                break;
            }
            self.order.pop_front();
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.map.remove(&key);
            }
        }
    }
}

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table is valid whatever a panicking holder did.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connection `session` sent this request.
    pub fn note(&self, attrs: &Attrs, session: u64) {
        let (Some(id), Some(from), Some(to)) = (&attrs.id, &attrs.from, &attrs.to) else {
            return;
        };
        let now = Instant::now();
        let mut t = self.lock();
        t.expire(now);
        let key = t.key(id, from, to);
        t.seq += 1;
        let seq = t.seq;
        t.map.insert(key, Entry { session, seq });
        t.order.push_back((key, seq, now));
    }

    /// The connection that sent the request this response answers (same
    /// id, `to`/`from` mirrored), if it is remembered; `take` forgets it.
    pub fn requester(&self, attrs: &Attrs, take: bool) -> Option<u64> {
        let (Some(id), Some(from), Some(to)) = (&attrs.id, &attrs.from, &attrs.to) else {
            return None;
        };
        let mut t = self.lock();
        let key = t.key(id, to, from);
        let e = if take {
            t.map.remove(&key)
        } else {
            t.map.get(&key).copied()
        };
        e.map(|e| e.session)
    }

    /// Requests remembered now.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_is_by_bare_jid_and_moves_only_the_leavers_jids() {
        let seeds: Vec<u64> = (1..=3).map(seed).collect();
        let h = |s: &str| bare_hash(Some(s));
        assert_eq!(h("u@x.example/a"), h("U@X.example/b"));
        assert_eq!(h("u@x.example"), h("u@x.example."));
        assert_ne!(h("u@x.example"), h("v@x.example"));
        assert_eq!(bare_hash(None), bare_hash(Some("@bad@")));
        let mut counts = [0usize; 3];
        let mut moved_wrongly = 0;
        for i in 0..3000 {
            let b = h(&format!("user{i}@example.com/r"));
            let o = owner(&seeds, b);
            counts[o] += 1;
            // Drop connection 1: only its JIDs move.
            let rest = [seeds[0], seeds[2]];
            let o2 = [0, 2][owner(&rest, b)];
            if o != 1 && o2 != o {
                moved_wrongly += 1;
            }
        }
        assert_eq!(moved_wrongly, 0);
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }

    fn attrs(id: &str, from: &str, to: &str, type_: &str) -> Attrs {
        use crate::wire::xml::{Frame, Framer, Limits};
        let mut f = Framer::new(Limits::new(100_000));
        let st = format!("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='x'><iq id='{id}' from='{from}' to='{to}' type='{type_}'/>");
        f.buf_mut().extend_from_slice(st.as_bytes());
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Stanza(s))) => return s.attrs,
                Ok(Some(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn responses_find_their_requester_within_the_bounds() {
        let r = Requests::default();
        let req = attrs("q1", "c.example/a", "u@example.com", "get");
        assert!(is_request(Name::Iq, &req));
        r.note(&req, 7);
        let res = attrs("q1", "U@example.com", "c.example/a", "result");
        assert!(is_response(Name::Iq, &res));
        // Mirrored addresses (case aside) and the same id match; others do not.
        assert_eq!(
            r.requester(&attrs("q1", "u@example.com", "c.example/b", "result"), true),
            None
        );
        assert_eq!(
            r.requester(&attrs("q2", "u@example.com", "c.example/a", "result"), true),
            None
        );
        assert_eq!(r.requester(&res, false), Some(7));
        assert_eq!(r.requester(&res, true), Some(7));
        assert_eq!(r.requester(&res, true), None);
        // Bounded: the oldest are forgotten beyond the bound.
        for i in 0..MAX_REQUESTS + 10 {
            r.note(
                &attrs(&format!("n{i}"), "c.example", "u@example.com", "set"),
                1,
            );
        }
        assert!(r.remembered() <= MAX_REQUESTS);
        let first = attrs("n0", "u@example.com", "c.example", "result");
        assert_eq!(r.requester(&first, false), None);
        let last = attrs(
            &format!("n{}", MAX_REQUESTS + 9),
            "u@example.com",
            "c.example",
            "error",
        );
        assert_eq!(r.requester(&last, false), Some(1));
    }
}

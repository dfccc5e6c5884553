//! The routing decision, in one place (as Prosody's `core_route_stanza`):
//! where a stanza goes, or which stanza error it bounces with.
//!
//! A stanza goes by the domain of its `to`:
//! - a served domain: to its session, if it has one and its queue has room;
//!   while the domain is held (its component restarting), to its hold queue;
//! - any other domain: over the upstream link of the domain it came from (for
//!   a component's stanza, with the `jabber:client` rewrite), never back up a
//!   link it came from (a stanza from a link for a domain not served here
//!   bounces `remote-server-not-found`);
//!
//! and bounces otherwise, with the condition the README's routing table gives.
//! Nothing is routed from or to a domain a reload has detached: the source's
//! and the destination's gates are held from the decision to the push, so a
//! detach that has returned has seen every stanza routed before it.

use crate::proto::jid;
use crate::session::{PushError, Refused, Reservation};
use crate::wire::out::{Envelope, Out};
use crate::wire::stanza::Bounce;

use super::domain::Domain;
use super::Router;

/// Where a stanza comes from.
pub enum Source<'a> {
    /// A session of this domain sent it (its `from` was checked to be at the
    /// domain). Nothing is routed from a detached domain.
    Component(&'a Domain),
    /// The router bounces it on behalf of this domain (a stanza queued for
    /// one of its sessions that could not be written): routed like the
    /// component's own stanzas, also once the domain is detached.
    Bounce(&'a Domain),
    /// It arrived on this domain's upstream link addressed to another domain
    /// (ejabberd's `global_routes` spreads every domain over every link): it
    /// goes to that domain's session, or bounces; never upstream again.
    Upstream(&'a Domain),
}

/// What [`Router::route`] did with a stanza.
// The stanza is handed back by value: boxing it would allocate per bounce.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Routed {
    /// Queued for a session, or for the source's upstream link.
    Delivered,
    /// Not delivered: the sender gets this stanza error (unless the item is
    /// itself an error or a result).
    Bounce(Bounce, Out),
    /// The source was detached by a reload: read and discarded.
    Discarded,
}

/// Room reserved in one session's queue (by a link that waited for it).
pub struct Reserved<'a> {
    pub session: u64,
    pub room: Reservation<'a>,
}

impl Router {
    /// Route one stanza from `src`.
    pub fn route(&self, src: Source<'_>, env: Envelope) -> Routed {
        let (from, gated) = match src {
            Source::Component(d) => (d, true),
            Source::Bounce(d) | Source::Upstream(d) => (d, false),
        };
        // Held until the stanza is queued (see the module doc).
        let _src = if gated {
            match from.routing() {
                Some(g) => Some(g),
                None => return Routed::Discarded,
            }
        } else {
            None
        };
        let table = self.table.load();
        let dest = {
            let Some(to) = env.attrs.to.as_deref() else {
                return Routed::Bounce(Bounce::BAD_REQUEST, Out::Stanza(env));
            };
            let Some(j) = jid::split(to) else {
                return Routed::Bounce(Bounce::JID_MALFORMED, Out::Stanza(env));
            };
            table.get(&*jid::routing_key(j.domain))
        };
        if let Some(d) = dest {
            if let Some(_dest) = d.routing() {
                return deliver(d, env, None);
            }
            if let Source::Upstream(_) = src {
                return Routed::Bounce(Bounce::COMPONENT_UNAVAILABLE, Out::Stanza(env));
            }
        }
        if let Source::Upstream(_) = src {
            return Routed::Bounce(Bounce::NOT_FOUND, Out::Stanza(env));
        }
        self.upstream(from, env)
    }

    /// Not a served domain (never was, removed, or detached meanwhile): over
    /// the source's upstream link.
    fn upstream(&self, from: &Domain, env: Envelope) -> Routed {
        // A served domain is valid by construction; anything else is checked
        // before it leaves.
        if env.attrs.to.as_deref().and_then(jid::parse).is_none() {
            return Routed::Bounce(Bounce::JID_MALFORMED, Out::Stanza(env));
        }
        let link = from.link();
        let Some(link) = link.as_ref() else {
            let b = if self.settings.load().upstream.is_some() {
                Bounce::UPSTREAM_UNAVAILABLE
            } else {
                Bounce::NOT_FOUND
            };
            return Routed::Bounce(b, Out::Stanza(env));
        };
        let env = match env.for_upstream() {
            Ok(e) => e,
            Err(e) => return Routed::Bounce(Bounce::BAD_REQUEST, Out::Stanza(e)),
        };
        match link.try_send(Out::Stanza(env)) {
            Ok(()) => Routed::Delivered,
            Err(Refused {
                why: PushError::Full,
                item,
            }) => Routed::Bounce(Bounce::QUEUE_FULL, item),
            Err(Refused { item, .. }) => Routed::Bounce(Bounce::UPSTREAM_UNAVAILABLE, item),
        }
    }
}

/// To the session of served domain `d` that [`Domain::pick`] chooses (its
/// gate is held): into the room reserved in that session's queue, or without
/// waiting. A balanced set is read under its membership lock (shared), so a
/// member's leaving is never overtaken.
///
/// While the domain is held, the stanza goes to its hold queue instead (also
/// while the queue is being handed to a new connection: nothing overtakes a
/// held stanza). The hold is checked after the set is read: a hold begins
/// before its empty set is published.
pub fn deliver(d: &Domain, mut env: Envelope, room: Option<Reserved<'_>>) -> Routed {
    let mut sessions = d.sessions();
    let _members = if sessions.is_balanced() {
        let g = d.members();
        sessions = d.sessions();
        Some(g)
    } else {
        None
    };
    if d.hold().is_holding() {
        match d.hold().push(env) {
            Ok(routed) => return routed,
            // The hold has just ended: its queue was handed over, so the
            // set read now may take it directly.
            Err(e) => {
                env = e;
                sessions = d.sessions();
            }
        }
    }
    let Some(s) = d.pick(&sessions, env.head.name, &env.attrs, true) else {
        return Routed::Bounce(Bounce::COMPONENT_UNAVAILABLE, Out::Stanza(env));
    };
    if let Some(r) = room.filter(|r| r.session == s.id) {
        r.room.send(Out::Stanza(env));
        return Routed::Delivered;
    }
    match s.outbox.try_push(Out::Stanza(env)) {
        Ok(()) => Routed::Delivered,
        Err(Refused {
            why: PushError::Full,
            item,
        }) => Routed::Bounce(Bounce::QUEUE_FULL, item),
        Err(Refused { item, .. }) => closed(d, item),
    }
}

/// The session picked from a set read earlier has closed its queue: held if
/// the domain is held now, otherwise the component is unavailable.
fn closed(d: &Domain, item: Out) -> Routed {
    match item {
        Out::Stanza(env) if d.hold().is_holding() => match d.hold().push(env) {
            Ok(routed) => routed,
            Err(env) => Routed::Bounce(Bounce::COMPONENT_UNAVAILABLE, Out::Stanza(env)),
        },
        item => Routed::Bounce(Bounce::COMPONENT_UNAVAILABLE, item),
    }
}

impl Router {
    /// Bounce `items` (stanzas to `from` that will not reach it) to their
    /// senders with `b`, as [`Source::Bounce`]: local components directly,
    /// senders behind the upstream server over `from`'s link. Returns how
    /// many were bounced and how many bounces found no room (or no way);
    /// `error` and `result` stanzas get no bounce and count in neither.
    pub fn bounce_all(
        &self,
        from: &Domain,
        items: impl IntoIterator<Item = Envelope>,
        b: Bounce,
    ) -> (usize, usize) {
        let (mut bounced, mut lost) = (0, 0);
        let counters = from.metrics.counters();
        for env in items {
            // Counted for the domain they were for, answered or not.
            counters.bounce(b.condition.into());
            let Some(reply) = b.envelope(env.head.name, &env.attrs) else {
                continue;
            };
            match self.route(Source::Bounce(from), reply) {
                Routed::Delivered => bounced += 1,
                Routed::Bounce(..) | Routed::Discarded => lost += 1,
            }
        }
        (bounced, lost)
    }
}

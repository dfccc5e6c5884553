//! Upstream links, XEP-0114 client side: one link per served domain with
//! sessions, to the XMPP server behind the router (README, "In front of
//! Prosody"). The domain owns the link's handle (`crate::session::Link`); the
//! task here drives it.
//!
//! Each link is one task ([`task`]) that owns the link's bounded queue and
//! loops: connect ([`connect`]: TCP with a timeout, our header `to=DOMAIN`,
//! the server's header read with the router's own framer,
//! `<handshake>hex(SHA-1(id + upstream_secret))</handshake>`, the server's
//! `<handshake/>`). The address and the secret are read again at every
//! attempt, so a reload applies at the next (re)connect.
//!
//! While the link is up, a reader ([`reader`]) delivers everything the server
//! sends to the component unchanged (also what arrives together with
//! `<handshake/>`, such as XEP-0356 `<privilege/>` messages) and the wire
//! layer's writer drains the queue in batched `writev`s. `Link::try_send`
//! never waits: it refuses while the link is not authenticated and when its
//! queue is at its bound.
//!
//! A failure ([`error::LinkError`]: refused, timeout, `host-unknown`,
//! `not-authorized`, `conflict`, dropped TCP, dead link) never touches the
//! component's own connection. It is logged once per state change (the same
//! reason again is logged at debug only), and the link retries after 1 s,
//! doubling up to 30 s, each delay randomised by ±25 % (never above 30 s); a
//! link that stayed up for 30 s starts again at 1 s ([`timing`]). Stanzas that
//! were queued but not completely written when the link failed are bounced to
//! the component with `wait`/`remote-server-timeout` "Upstream server
//! unavailable" (never for `type='error'`/`'result'`).
//!
//! Liveness ([`timing::Liveness`], from `[upstream] keepalive_interval`): a
//! whitespace keepalive after an idle period without writes; after the same
//! period without reads, a ping that loops through the server (an `iq` from
//! DOMAIN to DOMAIN, which the server routes back over this same link; the
//! echo and any reply with its id are swallowed); if nothing at all arrives
//! within the ping timeout, the link is declared dead and replaced. TCP
//! keepalive and `TCP_USER_TIMEOUT` back this up.

mod connect;
mod error;
mod reader;
mod task;
mod timing;

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::router::{Domain, LinkDriver, NewLink, Router};

/// Drives the links domains open, each in a task of its own. A link connects
/// only once the domain's previous link has closed, so the server never sees
/// two at once and answers the new one with `conflict`.
/// Their tasks are spawned on the daemon's tracker, so shutdown waits for each
/// link's final flush.
pub struct Links {
    tasks: TaskTracker,
}

impl Links {
    pub fn new(tasks: TaskTracker) -> Self {
        Links { tasks }
    }
}

impl LinkDriver for Links {
    fn drive(&self, router: &Arc<Router>, domain: &Arc<Domain>, new: NewLink) {
        let task = task::LinkTask::new(router.clone(), domain.clone(), new.link, new.rx);
        self.tasks.spawn(task.run(new.predecessor));
    }
}

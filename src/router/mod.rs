//! Routing: the table of served domains and the one routing decision.
//!
//! - [`table`]: the [`Router`]: the table from canonical domain to [`Domain`]
//!   (a lock-free snapshot), the settings, a reload's changes to both.
//! - [`domain`]: one served domain: settings, its set of sessions, the gate
//!   that makes a reload's detach exclusive with routing, its upstream link.
//! - [`route`]: [`Router::route`], where every stanza from a component goes.
//! - [`balance`]: how a balanced domain's stanzas are spread over its set
//!   (rendezvous hashing of the bare `from`, `iq` responses to the requester).
//! - [`hold`]: a domain held while its component restarts (`hold_seconds`):
//!   its queue, its expiry, the hand-over to the next connection.
//!
//! Delivery never waits: a full queue is reported to the sender, which bounces
//! `resource-constraint`, so one slow reader cannot stall anyone else.

pub mod balance;
pub mod domain;
pub mod hold;
pub mod route;
pub mod table;

use std::sync::Arc;

pub use domain::{Attach, Domain, NewLink};
pub use hold::Requeued;
pub use route::{deliver, Reserved, Routed, Source};
pub use table::{Router, Settings, READDED_TEXT};

/// Drives the upstream links domains open (the upstream module's task), so
/// that whoever makes a domain open one need not know how it is driven.
pub trait LinkDriver: Send + Sync {
    fn drive(&self, router: &Arc<Router>, domain: &Arc<Domain>, new: NewLink);
}

//! A gate that lets many cheap, non-blocking operations exclude one rare one
//! without ever making the cheap ones wait (routing a stanza against a
//! reload's detach).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Lets stanza routing and a reload's detach exclude each other without ever
/// making routing wait: routing enters (a counter) and then checks the closed
/// flag; detaching sets the flag and then waits until nobody is inside. So once
/// [`Gate::close`] returns, every delivery decided while the registration was
/// attached has been made, and every later attempt sees it detached. Entering
/// never blocks, so a guard may be held while entering another gate (or the
/// same one: a component sending to itself).
#[derive(Default)]
pub struct Gate {
    closed: AtomicBool,
    inside: AtomicUsize,
}

/// Proof that a registration was attached when routing started; a detach waits
/// until it is dropped. Not `Send`: it must not be held across an `.await`.
pub struct Routing<'a> {
    gate: &'a Gate,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        self.gate.inside.fetch_sub(1, Ordering::Release);
    }
}

impl Gate {
    pub fn enter(&self) -> Option<Routing<'_>> {
        // SeqCst on both sides (store flag / load counter in `close`, add to
        // counter / load flag here): at least one side sees the other.
        self.inside.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.inside.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(Routing {
            gate: self,
            _not_send: PhantomData,
        })
    }

    /// Close for good and wait for everyone inside (each holds it only for a
    /// non-blocking push, so this is short).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.inside.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

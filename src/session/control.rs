//! How to end one connection from elsewhere: a replacing session's `conflict`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use crate::wire::stanza::StreamError;

/// How to end one connection from elsewhere (a conflict).
#[derive(Default)]
pub struct Control {
    notify: Notify,
    /// Set once a stream error was asked for (read before every read of the
    /// connection, so without a lock).
    killed: AtomicBool,
    reason: Mutex<Option<StreamError>>,
}

impl Control {
    /// Ask the connection to end with this stream error (the first request wins).
    pub fn kill(&self, err: StreamError) {
        {
            // A poisoned lock still holds a valid `Option`: never let it
            // change what the connection is told.
            let mut r = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
            if r.is_none() {
                *r = Some(err);
            }
        }
        self.killed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// The stream error [`Control::kill`] asked for, if it was called.
    pub fn reason(&self) -> Option<StreamError> {
        if !self.killed.load(Ordering::Acquire) {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Resolves when [`Control::kill`] was called; returns its stream error.
    pub async fn killed(&self) -> StreamError {
        loop {
            if let Some(e) = self.reason() {
                return e;
            }
            self.notify.notified().await;
        }
    }
}

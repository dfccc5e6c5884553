//! What the HTTP listener serves, independent of HTTP: the metrics text, the
//! status document and the health state, all from the daemon's [`Source`] and
//! [`Globals`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::exposition::{self, Format};
use super::model::{Globals, Snapshot, Source};
use super::status::StatusDoc;

/// The daemon's side of the metrics listener. It outlives listener rebinds.
pub struct Exporter {
    source: Arc<dyn Source>,
    globals: Arc<Globals>,
    serving: AtomicBool,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter")
            .field("serving", &self.is_serving())
            .finish_non_exhaustive()
    }
}

impl Exporter {
    pub fn new(source: Arc<dyn Source>, globals: Arc<Globals>) -> Arc<Self> {
        Arc::new(Exporter {
            source,
            globals,
            serving: AtomicBool::new(true),
        })
    }

    pub fn globals(&self) -> &Arc<Globals> {
        &self.globals
    }

    /// Shutdown began (SIGTERM/SIGINT): `/health` answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.serving.store(false, Ordering::Relaxed);
    }

    /// `true` until [`Exporter::begin_shutdown`].
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    /// Reads the source now. Cost grows with the number of domains: call it off
    /// the runtime's worker threads (the listener does).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(&*self.source, &self.globals)
    }

    /// The `/metrics` body in `format`.
    pub fn metrics(&self, format: Format) -> Result<String, fmt::Error> {
        exposition::render(self.snapshot(), format)
    }

    /// The `/status` document.
    pub fn status(&self) -> StatusDoc {
        StatusDoc::new(&self.snapshot(), self.is_serving())
    }
}

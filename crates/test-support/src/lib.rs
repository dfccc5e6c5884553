//! What the router's tests share: its black-box tests (`tests/`), the interop
//! tests (`crates/interop-tests`) and the fuzz targets (`fuzz/`). A dev-only
//! crate, never part of the daemon.
//!
//! - [`xcr`]: the daemon's library, re-exported; the one place that names its
//!   module paths.
//! - [`daemon`]: the router binary as a child process (start, reload, stop,
//!   log waits, memory); [`events`]: what its log says happened, by the
//!   structured `event` field.
//! - [`comp`]: a raw XEP-0114 component client, and what tests expect of what
//!   it receives (byte-exact routing, stream errors, clean closes, silence).
//! - [`reader`]: how that client frames the router's output: with rxml, not
//!   with the router's own framer.
//! - [`c2s`]: a raw RFC 6120 client (SASL PLAIN, binding), for Prosody and
//!   ejabberd.
//! - [`prosody`], [`ejabberd`], [`prometheus`]: a real Prosody, ejabberd and
//!   Prometheus on loopback, private to one test; [`slix`]: a real slixmpp
//!   component (`py/slix_component.py`) driven over its stdin and stdout;
//!   [`child`]: what these harnesses share (a child process that dies with
//!   the test, free ports, readiness probes).
//! - [`stanza`]: what clients write (headers, handshake, messages); [`ns`]:
//!   namespaces; [`inspect`]: quick string looks into an element; [`el`]: an
//!   element parsed into a tree.
//! - [`not_run`]: the record of tests whose peer is missing here;
//!   [`proptest_cases`]: how many cases a property test runs.
//! - [`oracle`]: the framer's oracles (rxml, expat); [`fuzz_limits`]: the
//!   limits the framer fuzz targets pick from.

pub mod c2s;
pub mod child;
pub mod comp;
pub mod daemon;
pub mod ejabberd;
pub mod el;
pub mod events;
pub mod fuzz_limits;
pub mod inspect;
pub mod not_run;
pub mod ns;
pub mod oracle;
pub mod prometheus;
pub mod prosody;
pub mod reader;
pub mod slix;
pub mod stanza;
pub mod xcr;

/// How many cases a property test runs: `PROPTEST_CASES` if set, else
/// `default` (chosen to keep the test file fast in a debug build).
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

//! Logs: one event per line on stderr, no colours unless stderr is a terminal.
//! The level comes from `log_level` in the config; `RUST_LOG` overrides it
//! (docs/behaviour.md#observability).
//!
//! Under systemd (JOURNAL_STREAM set: stderr is connected to the journal) each
//! line starts with its syslog priority in the sd-daemon(3) form (`<3>` error,
//! `<4>` warn, `<6>` info, `<7>` debug and trace), so that journald records the
//! priority (`journalctl -p warning` works), and carries no timestamp of our own
//! and no ANSI escapes, since the journal adds its own.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber (a second call is a no-op).
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if under_journal() {
        let _ = builder.with_ansi(false).event_format(Journal).try_init();
    } else {
        let _ = builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init();
    }
}

/// Whether systemd connected stderr to the journal (it sets JOURNAL_STREAM).
fn under_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty())
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<N>` + span names and fields + the event's fields; every line of a
/// multi-line message gets the prefix, so none falls back to the default priority.
#[derive(Debug, Clone, Copy, Default)]
pub struct Journal;

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut body = String::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                body.push_str(span.name());
                let ext = span.extensions();
                if let Some(fields) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                    if !fields.is_empty() {
                        body.push('{');
                        body.push_str(fields);
                        body.push('}');
                    }
                }
                body.push_str(": ");
            }
        }
        ctx.format_fields(Writer::new(&mut body), event)?;
        let prio = syslog_priority(event.metadata().level());
        for line in body.lines() {
            writeln!(writer, "<{prio}>{line}")?;
        }
        if body.is_empty() {
            writeln!(writer, "<{prio}>")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_carry_priority_and_nothing_else() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .event_format(Journal)
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::error!("e");
            tracing::warn!(addr = "127.0.0.1:1", "w");
            tracing::info!("two\nlines");
            tracing::debug!("d");
            tracing::trace!("t");
            let span = tracing::info_span!("conn", peer = 7);
            let _g = span.enter();
            tracing::info!("in span");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            out,
            "<3>e\n<4>w addr=\"127.0.0.1:1\"\n<6>two\n<6>lines\n<7>d\n<7>t\n<6>conn{peer=7}: in span\n"
        );
    }
}

//! What the router did, as its log says it in structured fields rather than in
//! prose: every line a test waits for carries `event="NAME"` and the fields
//! that identify it (`domain=…`, `condition=…`). The names are listed in
//! docs/behaviour.md ("Observability"); the wording of a message may change
//! without breaking a test.
//!
//! [`LogMatch`] is what the log waits of [`crate::daemon::Daemon`] take: an
//! [`Event`] (name and fields, matched per line), or a plain `&str` substring
//! for the few lines whose text is the interface itself (the reload summary,
//! which is also systemd's `STATUS=`).

/// One log line (or, for a substring, anywhere in the log) that a test waits for.
pub trait LogMatch: std::fmt::Debug {
    /// How often it occurs in `log` (the whole log so far).
    fn count_in(&self, log: &str) -> usize;
}

impl LogMatch for str {
    fn count_in(&self, log: &str) -> usize {
        log.matches(self).count()
    }
}

impl LogMatch for String {
    fn count_in(&self, log: &str) -> usize {
        self.as_str().count_in(log)
    }
}

impl<T: LogMatch + ?Sized> LogMatch for &T {
    fn count_in(&self, log: &str) -> usize {
        (**self).count_in(log)
    }
}

/// An event by name, optionally narrowed by field values.
#[derive(Debug, Clone)]
pub struct Event {
    name: &'static str,
    fields: Vec<(&'static str, String)>,
}

/// The event `name` (e.g. `"session.authenticated"`).
pub fn event(name: &'static str) -> Event {
    Event {
        name,
        fields: Vec::new(),
    }
}

impl Event {
    /// Only lines whose field `key` has this value.
    pub fn with(mut self, key: &'static str, value: impl ToString) -> Event {
        self.fields.push((key, value.to_string()));
        self
    }

    /// Only lines about `domain`.
    pub fn domain(self, domain: &str) -> Event {
        self.with("domain", domain)
    }

    /// Whether one log line is this event.
    pub fn matches(&self, line: &str) -> bool {
        field(line, "event") == Some(self.name)
            && self
                .fields
                .iter()
                .all(|(k, v)| field(line, k) == Some(v.as_str()))
    }

    /// The lines of `log` that are this event.
    pub fn lines<'a>(&'a self, log: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        log.lines().filter(|l| self.matches(l))
    }
}

impl LogMatch for Event {
    fn count_in(&self, log: &str) -> usize {
        self.lines(log).count()
    }
}

/// The value of field `key` in a line as tracing's formatter writes it
/// (` key=value` or ` key="value"`, after the message); `None` if absent.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = line;
    loop {
        let at = rest.find(key)?;
        let before = rest[..at].chars().next_back();
        let after = &rest[at + key.len()..];
        rest = after;
        if before != Some(' ') {
            continue;
        }
        let Some(v) = after.strip_prefix('=') else {
            continue;
        };
        return Some(match v.strip_prefix('"') {
            Some(q) => &q[..q.find('"').unwrap_or(q.len())],
            None => &v[..v.find(' ').unwrap_or(v.len())],
        });
    }
}

/// The router logs that `domain`'s upstream link is up.
pub fn upstream_up(domain: &str) -> Event {
    event("upstream.up").domain(domain)
}

/// The router logs that `domain`'s upstream link went down (once per reason).
pub fn upstream_down(domain: &str) -> Event {
    event("upstream.down").domain(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "2026-12-03T18:17:20.398030Z  INFO upstream link for a.example up event=\"upstream.up\" domain=a.example address=\"127.0.0.1:5347\"";

    #[test]
    fn fields_are_read_quoted_or_bare() {
        assert_eq!(field(LINE, "event"), Some("upstream.up"));
        assert_eq!(field(LINE, "domain"), Some("a.example"));
        assert_eq!(field(LINE, "address"), Some("127.0.0.1:5347"));
        assert_eq!(field(LINE, "peer"), None);
        // "up" occurs in the message; only a field counts.
        assert_eq!(field(LINE, "up"), None);
    }

    #[test]
    fn events_match_by_name_and_fields() {
        assert!(upstream_up("a.example").matches(LINE));
        assert!(!upstream_up("b.example").matches(LINE));
        assert!(!upstream_down("a.example").matches(LINE));
        assert_eq!(
            event("upstream.up").count_in(&format!("{LINE}\n{LINE}\n")),
            2
        );
    }
}

//! The timing of a link: the backoff between attempts and the liveness timers.

use std::time::Duration;

/// First retry delay; it doubles with every failed attempt up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Each delay is multiplied by a random factor in `[1 - JITTER, 1 + JITTER]`.
const JITTER: f64 = 0.25;
/// How long what a component sends right after its authentication waits for
/// its link's first attempt (docs/behaviour.md#upstream), instead of bouncing.
pub const FIRST_STANZAS_WAIT: Duration = Duration::from_secs(5);
/// A link that stayed up this long starts the backoff again at [`BACKOFF_MIN`];
/// one that keeps failing sooner (e.g. kicked by a `conflict`) keeps backing off.
pub const STABLE_UP: Duration = Duration::from_secs(30);

/// Liveness timers of every link, all derived from one idle interval `idle`
/// (`[upstream] keepalive_interval`, 30 s by default; read at every connect):
/// - a whitespace keepalive after `idle` without writes;
/// - a ping (`iq` DOMAIN → DOMAIN, routed back by the server) after `idle`
///   without reads;
/// - the link is dead when nothing at all is read within `idle / 2` of that
///   ping (so after at most 45 s of silence), or when a write makes no progress
///   for `1.5 × idle`;
/// - `TCP_USER_TIMEOUT` is `1.5 × idle` too: unacknowledged data ends the link.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub idle: Duration,
    pub ping_timeout: Duration,
    pub write_stall: Duration,
}

impl Liveness {
    pub fn from_idle(idle: Duration) -> Self {
        Liveness {
            idle,
            ping_timeout: idle / 2,
            write_stall: idle + idle / 2,
        }
    }
}

/// Exponential backoff with jitter.
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { next: BACKOFF_MIN }
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The delay before the next attempt; the one after doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(BACKOFF_MAX);
        jitter(base, random_unit())
    }
}

/// `base` scaled by a factor in `[1 - JITTER, 1 + JITTER]` chosen by `u` in
/// `[0, 1]`, never above [`BACKOFF_MAX`].
fn jitter(base: Duration, u: f64) -> Duration {
    let lo = base.mul_f64(1.0 - JITTER);
    let hi = base.mul_f64(1.0 + JITTER).min(BACKOFF_MAX).max(lo);
    lo + (hi - lo).mul_f64(u.clamp(0.0, 1.0))
}

/// Uniform in `[0, 1]` from the OS RNG (0.5 if it fails).
fn random_unit() -> f64 {
    getrandom::u32()
        .map(|x| f64::from(x) / f64::from(u32::MAX))
        .unwrap_or(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new();
        let mut bases = Vec::new();
        for _ in 0..8 {
            bases.push(b.next);
            let d = b.next_delay();
            let base = *bases.last().unwrap();
            assert!(
                d >= base.mul_f64(0.75) && d <= base.mul_f64(1.25),
                "{d:?} for {base:?}"
            );
            assert!(d <= BACKOFF_MAX);
            assert!(d >= Duration::from_millis(750));
        }
        let secs: Vec<u64> = bases.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next, BACKOFF_MIN);
        assert_eq!(jitter(Duration::from_secs(30), 1.0), BACKOFF_MAX);
        assert_eq!(
            jitter(Duration::from_secs(30), 0.0),
            Duration::from_millis(22_500)
        );
        assert_eq!(
            jitter(Duration::from_secs(1), 0.0),
            Duration::from_millis(750)
        );
        assert_eq!(
            jitter(Duration::from_secs(1), 1.0),
            Duration::from_millis(1250)
        );
    }

    #[test]
    fn liveness_is_derived_from_idle() {
        let l = Liveness::from_idle(Duration::from_secs(30));
        assert_eq!(l.ping_timeout, Duration::from_secs(15));
        assert_eq!(l.write_stall, Duration::from_secs(45));
    }
}

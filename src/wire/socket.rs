//! The options of every TCP socket the router holds, accepted (component
//! connections) or connected (upstream links): `TCP_NODELAY`, TCP keepalive, so
//! a vanished peer is noticed even when nothing is sent, and `TCP_USER_TIMEOUT`,
//! so data (a stanza, a whitespace keepalive, a keepalive probe) that stays
//! unacknowledged that long ends the connection.

use std::io;
use std::time::Duration;

use crate::config::defaults;

/// Idle time before the first TCP keepalive probe when nothing else sets it.
const KEEPALIVE_TIME: Duration = Duration::from_secs(defaults::KEEPALIVE_INTERVAL_SECS);
const KEEPALIVE_PROBE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOptions {
    /// Idle time before the first TCP keepalive probe.
    pub keepalive_time: Duration,
    pub keepalive_probe_interval: Duration,
    pub keepalive_probes: u32,
    /// `TCP_USER_TIMEOUT`.
    pub user_timeout: Duration,
}

impl SocketOptions {
    /// A component connection: probes start after `keepalive_interval` (60 s
    /// when the whitespace keepalive is off); `TCP_USER_TIMEOUT` is
    /// `dead_peer_timeout`, so a half-open connection frees its domain.
    pub fn component(keepalive_interval: Option<Duration>, dead_peer_timeout: Duration) -> Self {
        SocketOptions {
            keepalive_time: keepalive_interval.unwrap_or(KEEPALIVE_TIME),
            user_timeout: dead_peer_timeout,
            ..SocketOptions::link(dead_peer_timeout)
        }
    }

    /// An upstream link: probes after 60 s idle; `TCP_USER_TIMEOUT` is the
    /// link's write-stall bound.
    pub fn link(user_timeout: Duration) -> Self {
        SocketOptions {
            keepalive_time: KEEPALIVE_TIME,
            keepalive_probe_interval: KEEPALIVE_PROBE_INTERVAL,
            keepalive_probes: KEEPALIVE_PROBES,
            user_timeout,
        }
    }

    /// Set these options (and `TCP_NODELAY`) on a connected socket.
    pub fn apply(&self, sock: socket2::SockRef<'_>) -> io::Result<()> {
        sock.set_tcp_nodelay(true)?;
        let ka = socket2::TcpKeepalive::new()
            .with_time(self.keepalive_time)
            .with_interval(self.keepalive_probe_interval)
            .with_retries(self.keepalive_probes);
        sock.set_tcp_keepalive(&ka)?;
        sock.set_tcp_user_timeout(Some(self.user_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options really end up on the socket (read back with getsockopt).
    #[test]
    fn apply_sets_keepalive_user_timeout_and_nodelay() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let o = SocketOptions {
            keepalive_time: Duration::from_secs(7),
            keepalive_probe_interval: Duration::from_secs(3),
            keepalive_probes: 4,
            user_timeout: Duration::from_millis(9500),
        };
        o.apply(socket2::SockRef::from(&s)).unwrap();
        let r = socket2::SockRef::from(&s);
        assert!(r.keepalive().unwrap());
        assert!(r.tcp_nodelay().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(r.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(r.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(
            r.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(9500))
        );
        drop(c);
    }

    #[test]
    fn socket_options_follow_the_config() {
        let c = crate::config::parse(
            "keepalive_interval = 15\ndead_peer_timeout = 40\n",
            std::path::Path::new("/x.toml"),
        )
        .unwrap();
        let o = SocketOptions::component(c.keepalive_interval, c.dead_peer_timeout);
        assert_eq!(o.keepalive_time, Duration::from_secs(15));
        assert_eq!(o.user_timeout, Duration::from_secs(40));
        let c = crate::config::parse("keepalive_interval = 0\n", std::path::Path::new("/x.toml"))
            .unwrap();
        let o = SocketOptions::component(c.keepalive_interval, c.dead_peer_timeout);
        assert_eq!(o.keepalive_time, Duration::from_secs(60));
        let o = SocketOptions::link(Duration::from_secs(45));
        assert_eq!(
            (
                o.keepalive_time,
                o.keepalive_probe_interval,
                o.keepalive_probes
            ),
            (Duration::from_secs(60), Duration::from_secs(10), 6)
        );
        assert_eq!(o.user_timeout, Duration::from_secs(45));
    }
}

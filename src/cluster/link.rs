//! One Redis connection of one cluster thread: opened with timeouts, dropped after any error
//! (a timed-out reply may still arrive later and would answer the next command), reopened
//! with back-off. Each thread has its own, so a thread blocked on Redis blocks nobody else.

use std::time::{Duration, Instant};

use log::{info, warn};
use redis::{Client, Connection, RedisResult};

/// Connecting gives up after this: a Redis on the LAN answers in a millisecond; a SYN that
/// goes unanswered for a second is an outage.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A command gives up after this (writes and plain reads). It is the bound on how long a
/// frozen Redis (SIGSTOP, a swap storm) goes unnoticed: the writer's next request fails after
/// at most this, and the chat answers `unavailable` at once after that.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Back-off between reconnects: from this...
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// ...doubling up to this, so a Redis that restarts in a few seconds is back within a second
/// of it, while a long outage costs one attempt per thread every 2 s.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// `host:port/db` of the URL, without a password, for logs.
pub(crate) fn describe(client: &Client) -> String {
    let info = client.get_connection_info();
    format!("{}/{}", info.addr, info.redis.db)
}

/// A connection that is (re)opened on demand.
pub(crate) struct Link {
    /// Which thread, for the log.
    role: &'static str,
    con: Option<Connection>,
    /// When the next connect may be tried, and the wait after that one.
    retry_at: Instant,
    backoff: Duration,
    /// Whether the outage was logged (once per outage, and once when it ends).
    down_logged: bool,
    read_timeout: Duration,
}

impl Link {
    pub(crate) fn new(role: &'static str, read_timeout: Duration) -> Link {
        Link {
            role,
            con: None,
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
            down_logged: false,
            read_timeout,
        }
    }

    /// The connection, opening it if the back-off allows; `None` while Redis is out of reach.
    pub(crate) fn get(&mut self, client: &Client) -> Option<&mut Connection> {
        if self.con.is_none() {
            if Instant::now() < self.retry_at {
                return None;
            }
            match self.open(client) {
                Ok(con) => {
                    if self.down_logged {
                        info!("cluster: {} reconnected to Redis", self.role);
                        self.down_logged = false;
                    }
                    self.backoff = BACKOFF_MIN;
                    self.con = Some(con);
                }
                Err(e) => {
                    self.failed(&e);
                    return None;
                }
            }
        }
        self.con.as_mut()
    }

    fn open(&self, client: &Client) -> RedisResult<Connection> {
        let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(self.read_timeout))?;
        con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(con)
    }

    /// A command failed: drop the connection and wait before the next attempt.
    pub(crate) fn failed(&mut self, e: &redis::RedisError) {
        self.con = None;
        if !self.down_logged {
            warn!(
                "cluster: {} lost Redis ({e}); retrying every {:?} at most",
                self.role, BACKOFF_MAX
            );
            self.down_logged = true;
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Ends the back-off: another thread just reached Redis, so it is worth trying now.
    pub(crate) fn retry_now(&mut self) {
        self.retry_at = Instant::now();
    }

    /// Whether a connection is open now.
    pub(crate) fn is_up(&self) -> bool {
        self.con.is_some()
    }

    /// How long until a reconnect may be tried (zero when connected).
    pub(crate) fn wait(&self) -> Duration {
        if self.con.is_some() {
            Duration::ZERO
        } else {
            self.retry_at.saturating_duration_since(Instant::now())
        }
    }
}

//! A token bucket: the per-connection message rate limit.
//!
//! Pure (the caller passes the time in), so the reader thread that owns one per connection can
//! test it without sleeping, and the chat logic never sees a clock. When [`TokenBucket::try_take`]
//! refuses, the reader hands `Input::RateLimited` to the chat, which answers `error rate_limited`
//! with the request's `ref`.

use std::time::Instant;

/// Messages per second a chat client may send on average. Ten is well above human typing
/// speed (a fast typist sends a line every second or two) but low enough that one client
/// cannot make the single dispatcher thread fan out more than ten room messages a second.
pub(crate) const CHAT_RATE_PER_SEC: f64 = 10.0;

/// Messages a chat client may send back to back before the rate applies. Twenty absorbs a
/// client that reconnects and fires its join / history / users requests at once, or a paste
/// that becomes several lines.
pub(crate) const CHAT_BURST: f64 = 20.0;

/// A token bucket: holds up to `burst` tokens, refilled at `rate_per_sec`; each message takes one.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date; `None` until the first call, so that a bucket
    /// created long before its first use still starts full rather than depending on `new`'s time.
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    ///
    /// A rate or burst that is negative, NaN or infinite is clamped: NaN and negatives become 0
    /// (a zero burst refuses everything, a zero rate never refills), an infinite rate refills at
    /// once. That keeps a typo in a configuration file from turning into a panic or a bucket
    /// that silently allows everything (unless it asked for infinity).
    pub(crate) fn new(rate_per_sec: f64, burst: f64) -> TokenBucket {
        let clean = |x: f64| if x.is_nan() || x < 0.0 { 0.0 } else { x };
        let burst = clean(burst);
        // An infinite burst makes `tokens` infinite, which arithmetic keeps infinite: fine.
        TokenBucket {
            rate_per_sec: clean(rate_per_sec),
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// The bucket for one chat connection, with the defaults [`CHAT_RATE_PER_SEC`] and
    /// [`CHAT_BURST`].
    #[cfg(test)]
    pub(crate) fn for_chat() -> TokenBucket {
        TokenBucket::new(CHAT_RATE_PER_SEC, CHAT_BURST)
    }

    /// Takes one token if there is one; `false` means "over the limit, refuse this message".
    ///
    /// Time going backwards (an `Instant` earlier than the previous call) counts as no time
    /// passing, never as a refund or a panic.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            // No time, no refill: also keeps `0 * inf` (NaN) out of the arithmetic.
            if elapsed > 0.0 {
                // `min` keeps an idle connection from saving up more than a burst.
                let refill = elapsed * self.rate_per_sec;
                if refill.is_finite() {
                    self.tokens = (self.tokens + refill).min(self.burst);
                } else {
                    self.tokens = self.burst;
                }
            }
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refuses() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0);
        for _ in 0..20 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
    }

    #[test]
    fn refills_at_the_rate_and_caps_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0);
        for _ in 0..5 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        // 100 ms at 10/s is one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t1));
        // A long idle period refills only up to the burst.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(b.try_take(t2));
        }
        assert!(!b.try_take(t2));
    }

    #[test]
    fn time_going_backwards_is_no_refund() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(10.0, 1.0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
    }

    #[test]
    fn nonsense_parameters_do_not_panic() {
        let t0 = Instant::now();
        let mut zero = TokenBucket::new(f64::NAN, -3.0);
        assert!(!zero.try_take(t0));
        assert!(!zero.try_take(t0 + Duration::from_secs(100)));
        let mut inf = TokenBucket::new(f64::INFINITY, 2.0);
        assert!(inf.try_take(t0));
        assert!(inf.try_take(t0));
        assert!(!inf.try_take(t0));
        assert!(inf.try_take(t0 + Duration::from_nanos(1)));
    }

    #[test]
    fn chat_defaults() {
        let t0 = Instant::now();
        let mut b = TokenBucket::for_chat();
        let allowed = (0..100).filter(|_| b.try_take(t0)).count();
        assert_eq!(allowed, 20);
    }
}

//! A fixed-window counter per key (client address and purpose), in
//! memory. Each instance counts alone, so N instances allow N times the
//! limit; enough to make guessing 100-bit codes hopeless.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

pub struct RateLimiter {
    per_window: u32,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(per_window: u32) -> Self {
        Self {
            per_window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt; `false` when `key` is over its limit.
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let Ok(mut counts) = self.counts.lock() else {
            return false;
        };
        if counts.len() > 100_000 {
            counts.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let slot = counts.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(slot.0) >= WINDOW {
            *slot = (now, 0);
        }
        slot.1 += 1;
        slot.1 <= self.per_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key() {
        let limiter = RateLimiter::new(3);
        assert!((0..3).all(|_| limiter.allow("a")));
        assert!(!limiter.allow("a"));
        assert!(limiter.allow("b"));
    }
}

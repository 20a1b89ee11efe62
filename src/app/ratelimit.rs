//! A fixed-window counter per key, in memory: per client address and
//! purpose for patients' enrollment and sign-in, per member and kind for
//! releases and visas. Each instance counts alone, so N instances allow N
//! times the limit; enough to make guessing 100-bit codes hopeless, and to
//! stop a runaway script from notifying a cohort again and again.

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

    /// Counts an attempt. Over `key`'s limit, the error is the whole
    /// seconds until its window ends (at least 1), for `Retry-After`.
    pub fn allow(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut counts) = self.counts.lock() else {
            return Err(WINDOW.as_secs());
        };
        if counts.len() > 100_000 {
            counts.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let slot = counts.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(slot.0) >= WINDOW {
            *slot = (now, 0);
        }
        slot.1 += 1;
        if slot.1 <= self.per_window {
            return Ok(());
        }
        let left = WINDOW.saturating_sub(now.duration_since(slot.0));
        Err(left.as_secs_f64().ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key() {
        let limiter = RateLimiter::new(3);
        assert!((0..3).all(|_| limiter.allow("a").is_ok()));
        let wait = limiter.allow("a").unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limiter.allow("b").is_ok());
    }
}

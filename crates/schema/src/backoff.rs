//! Exponential backoff between retries, shared by every service's retry loop: the first wait
//! is `initial`, each next one doubles, none is longer than `max`.

use std::time::Duration;

use rand::Rng;

/// The waits of one run of retries; [`reset`](Self::reset) after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial.min(max),
        }
    }

    /// The wait before the next attempt; the one after is twice as long (at most `max`).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// [`next_wait`](Self::next_wait) with jitter: a uniform draw in its second half, so
    /// retries of many clients that failed together spread out.
    pub fn next_jittered(&mut self) -> Duration {
        self.next_wait().mul_f64(rand::rng().random_range(0.5..1.0))
    }

    /// Starts over from `initial` (after an attempt succeeded).
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }

    /// The wait before attempt `attempt` (0 is the first retry) of a run that is not kept as
    /// a value: `initial · 2^attempt`, at most `max`.
    pub fn nth(initial: Duration, max: Duration, attempt: u32) -> Duration {
        let factor = 1_u32.checked_shl(attempt).unwrap_or(u32::MAX);
        initial.saturating_mul(factor).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_maximum_and_start_over_after_a_reset() {
        let mut backoff = Backoff::new(100 * MS, 500 * MS);
        let waits: Vec<_> = (0..5).map(|_| backoff.next_wait()).collect();
        assert_eq!(waits, [100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), 100 * MS);
    }

    #[test]
    fn a_jittered_wait_is_in_the_second_half_of_the_plain_one() {
        let mut backoff = Backoff::new(1_000 * MS, 1_000 * MS);
        for _ in 0..100 {
            let wait = backoff.next_jittered();
            assert!(wait >= 500 * MS && wait < 1_000 * MS, "{wait:?}");
        }
    }

    #[test]
    fn the_nth_wait_is_the_same_as_the_nth_of_a_run() {
        let mut backoff = Backoff::new(1_000 * MS, 60_000 * MS);
        for attempt in 0..10 {
            assert_eq!(
                Backoff::nth(1_000 * MS, 60_000 * MS, attempt),
                backoff.next_wait()
            );
        }
        assert_eq!(Backoff::nth(MS, 60_000 * MS, 200), 60_000 * MS);
    }
}

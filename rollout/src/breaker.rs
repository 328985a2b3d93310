//! Per-policy circuit breakers (runtime.md §3.6) as a state machine driven by outcomes and
//! time passed in.
//!
//! Closed: calls are counted in a sliding window (10 s, in ten buckets, so memory stays the same
//! at any call rate); at least 20 calls with at least 50 % failing opens it. Open: for 30 s the policy's `on failure` applies. Half-open: the next 10
//! calls are trials; if fewer than half fail it closes, otherwise it opens again. An operator
//! can force it open or closed, which holds until released.

use crate::duration::Millis;
use serde::Serialize;
use std::collections::VecDeque;

/// The closed window is counted in this many buckets.
const BUCKETS: i64 = 10;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerSettings {
    pub window_ms: i64,
    pub min_calls: u32,
    pub failure_ratio: f64,
    pub open_ms: i64,
    pub trial_calls: u32,
}

impl Default for BreakerSettings {
    fn default() -> BreakerSettings {
        BreakerSettings {
            window_ms: 10_000,
            min_calls: 20,
            failure_ratio: 0.5,
            open_ms: 30_000,
            trial_calls: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// What the caller does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Evaluate normally.
    Normal,
    /// Evaluate as a trial: its outcome decides whether the breaker closes.
    Trial,
    /// The breaker is open: apply the policy's failure mode without evaluating.
    Open,
}

/// A change of state, for the audit log and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub time: Millis,
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forced {
    Open,
    Closed,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: BreakerState,
    /// Closed: `(bucket start, calls, failures)` of the window's buckets, oldest first.
    calls: VecDeque<(Millis, u32, u32)>,
    calls_in_window: u32,
    failures_in_window: u32,
    opened_at: Millis,
    /// Half-open: trial calls admitted, their outcomes recorded, and the failed ones.
    trials: u32,
    trial_outcomes: u32,
    trial_failures: u32,
    forced: Option<Forced>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            state: BreakerState::Closed,
            calls: VecDeque::new(),
            calls_in_window: 0,
            failures_in_window: 0,
            opened_at: 0,
            trials: 0,
            trial_outcomes: 0,
            trial_failures: 0,
            forced: None,
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.forced {
            Some(Forced::Open) => BreakerState::Open,
            Some(Forced::Closed) => BreakerState::Closed,
            None => self.state,
        }
    }

    pub fn forced(&self) -> Option<Forced> {
        self.forced
    }

    /// Holds the breaker open or closed until released with `None`.
    pub fn force(&mut self, forced: Option<Forced>) {
        self.forced = forced;
    }

    /// Whether a call at `now` is evaluated, and how. Moves an open breaker whose time is up to
    /// half-open.
    pub fn admit(&mut self, now: Millis) -> (Admission, Option<Transition>) {
        match self.forced {
            Some(Forced::Open) => return (Admission::Open, None),
            Some(Forced::Closed) => return (Admission::Normal, None),
            None => {}
        }
        match self.state {
            BreakerState::Closed => (Admission::Normal, None),
            BreakerState::Open if now - self.opened_at >= self.settings.open_ms => {
                self.state = BreakerState::HalfOpen;
                self.trials = 0;
                self.trial_outcomes = 0;
                self.trial_failures = 0;
                let transition = Transition {
                    time: now,
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                    reason: format!(
                        "open for {} ms; trying {} calls",
                        self.settings.open_ms, self.settings.trial_calls
                    ),
                };
                self.trials += 1;
                (Admission::Trial, Some(transition))
            }
            BreakerState::Open => (Admission::Open, None),
            BreakerState::HalfOpen if self.trials < self.settings.trial_calls => {
                self.trials += 1;
                (Admission::Trial, None)
            }
            // The trials are out; their outcomes are still coming in.
            BreakerState::HalfOpen => (Admission::Open, None),
        }
    }

    /// The outcome of an admitted call.
    pub fn record(
        &mut self,
        now: Millis,
        failed: bool,
        admission: Admission,
    ) -> Option<Transition> {
        if self.forced.is_some() {
            return None;
        }
        match (self.state, admission) {
            (BreakerState::Closed, Admission::Normal) => {
                let width = (self.settings.window_ms / BUCKETS).max(1);
                let start = now - now.rem_euclid(width);
                match self.calls.back_mut() {
                    Some((bucket, calls, failures)) if *bucket == start => {
                        *calls += 1;
                        *failures += u32::from(failed);
                    }
                    _ => self.calls.push_back((start, 1, u32::from(failed))),
                }
                self.calls_in_window += 1;
                self.failures_in_window += u32::from(failed);
                self.expire(now);
                let calls = self.calls_in_window;
                if calls >= self.settings.min_calls
                    && self.failures_in_window as f64 >= self.settings.failure_ratio * calls as f64
                {
                    let reason = format!(
                        "{} of {calls} calls failed in {} ms",
                        self.failures_in_window, self.settings.window_ms
                    );
                    return Some(self.open(now, BreakerState::Closed, reason));
                }
                None
            }
            (BreakerState::HalfOpen, Admission::Trial) => {
                self.trial_outcomes += 1;
                if failed {
                    self.trial_failures += 1;
                }
                let done = self.trial_outcomes >= self.settings.trial_calls;
                let failing = self.trial_failures as f64
                    >= self.settings.failure_ratio * self.settings.trial_calls as f64;
                if failing {
                    let reason = format!(
                        "{} of {} trial calls failed",
                        self.trial_failures, self.settings.trial_calls
                    );
                    return Some(self.open(now, BreakerState::HalfOpen, reason));
                }
                if done {
                    self.state = BreakerState::Closed;
                    self.calls.clear();
                    self.calls_in_window = 0;
                    self.failures_in_window = 0;
                    return Some(Transition {
                        time: now,
                        from: BreakerState::HalfOpen,
                        to: BreakerState::Closed,
                        reason: format!(
                            "{} of {} trial calls failed",
                            self.trial_failures, self.settings.trial_calls
                        ),
                    });
                }
                None
            }
            // Outcomes of calls admitted before the state changed.
            _ => None,
        }
    }

    fn open(&mut self, now: Millis, from: BreakerState, reason: String) -> Transition {
        self.state = BreakerState::Open;
        self.opened_at = now;
        self.calls.clear();
        self.calls_in_window = 0;
        self.failures_in_window = 0;
        Transition {
            time: now,
            from,
            to: BreakerState::Open,
            reason,
        }
    }

    /// Drops buckets wholly older than the window.
    fn expire(&mut self, now: Millis) {
        let width = (self.settings.window_ms / BUCKETS).max(1);
        while let Some(&(start, calls, failures)) = self.calls.front() {
            if start + width > now - self.settings.window_ms {
                break;
            }
            self.calls.pop_front();
            self.calls_in_window -= calls;
            self.failures_in_window -= failures;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(breaker: &mut Breaker, now: Millis, failed: bool) -> (Admission, Vec<Transition>) {
        let (admission, opened) = breaker.admit(now);
        let mut transitions: Vec<Transition> = opened.into_iter().collect();
        if admission != Admission::Open {
            transitions.extend(breaker.record(now, failed, admission));
        }
        (admission, transitions)
    }

    #[test]
    fn opens_on_half_failing_over_twenty_calls_then_trials_close_it() {
        let mut breaker = Breaker::new(BreakerSettings::default());
        // 19 calls, all failing: below the minimum of 20, still closed.
        for i in 0..19 {
            assert_eq!(call(&mut breaker, i * 100, true).0, Admission::Normal);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        // The 20th failing call opens it.
        let (_, transitions) = call(&mut breaker, 2_000, true);
        assert_eq!(transitions[0].to, BreakerState::Open);
        // Open for 30 s: calls get the failure mode.
        assert_eq!(call(&mut breaker, 31_000, false).0, Admission::Open);
        // Then 10 trials; 4 failing of 10 is below half: closed.
        let (admission, transitions) = call(&mut breaker, 32_000, true);
        assert_eq!(admission, Admission::Trial);
        assert_eq!(transitions[0].to, BreakerState::HalfOpen);
        for i in 0..9 {
            let (admission, _) = call(&mut breaker, 32_100 + i, i < 3);
            assert_eq!(admission, Admission::Trial);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn failing_trials_open_it_again_and_old_failures_expire() {
        let mut breaker = Breaker::new(BreakerSettings::default());
        for i in 0..20 {
            call(&mut breaker, i, true);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        for i in 0..5 {
            call(&mut breaker, 30_100 + i, true);
        }
        assert_eq!(breaker.state(), BreakerState::Open, "5 of 10 trials failed");
        // Failures older than the 10 s window do not count.
        let mut fresh = Breaker::new(BreakerSettings::default());
        for i in 0..15 {
            call(&mut fresh, i, true);
        }
        for i in 0..15 {
            call(&mut fresh, 20_000 + i, i % 4 == 0);
        }
        assert_eq!(fresh.state(), BreakerState::Closed);
    }

    #[test]
    fn forcing_holds_until_released() {
        let mut breaker = Breaker::new(BreakerSettings::default());
        breaker.force(Some(Forced::Open));
        assert_eq!(call(&mut breaker, 0, false).0, Admission::Open);
        breaker.force(Some(Forced::Closed));
        for i in 0..40 {
            assert_eq!(call(&mut breaker, i, true).0, Admission::Normal);
        }
        breaker.force(None);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}

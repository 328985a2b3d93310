//! The statistics behind rollback triggers: when is a breach real, not noise?
//!
//! Every trigger is a one-sided test at 99 % (z = 2.326) of "the threshold is breached"
//! against "it is not", on the counts of the current stage's window:
//! - a rate above a maximum (error rate, divergence, the share of decisions slower than the
//!   latency limit against the 1 % a 99th percentile allows): the Wilson score lower bound of
//!   the rate is above the maximum;
//! - a change between two cohorts (deny rate, task completion): the difference against the
//!   threshold, with Agresti–Caffo's adjusted proportions (one success and one failure added to
//!   each side, which keeps the test honest at 0 % and 100 %), is more than 2.326 standard
//!   errors beyond it.
//!
//! Nothing is judged before a cohort has [`MIN_SAMPLE`] decisions: a handful of decisions
//! never rolls back. docs/rollouts.md gives the sample sizes these tests need.

/// One-sided 99 % normal quantile.
pub const Z_99: f64 = 2.326_347_874_040_840_8;

/// Fewest observations in a cohort before a trigger is judged at all.
pub const MIN_SAMPLE: u64 = 30;

/// Hits out of `n`, with the cluster-robust variance of the rate when it is known: requests
/// of one session or agent are correlated, so the binomial variance alone would understate the
/// noise and fire triggers on chance (the variance used is the larger of the two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub hits: u64,
    pub n: u64,
    pub cluster_variance: Option<f64>,
}

impl Sample {
    /// Independent observations (one per cluster).
    pub fn independent(hits: u64, n: u64) -> Sample {
        Sample {
            hits,
            n,
            cluster_variance: None,
        }
    }

    fn rate(&self) -> f64 {
        rate(self.hits, self.n)
    }

    /// The design effect: how much the clustering inflates the binomial variance (≥ 1).
    fn design_effect(&self) -> f64 {
        let p = self.rate();
        let binomial = p * (1.0 - p) / self.n.max(1) as f64;
        match self.cluster_variance {
            Some(v) if binomial > 0.0 => (v / binomial).max(1.0),
            _ => 1.0,
        }
    }

    /// Agresti–Caffo's adjusted rate and its variance (never below the cluster variance).
    fn adjusted(&self) -> (f64, f64) {
        let (p, binomial) = adjusted(self.hits, self.n);
        (p, binomial.max(self.cluster_variance.unwrap_or(0.0)))
    }
}

/// A figure judged against its threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// The point estimate (a rate, a relative change, a ratio).
    pub value: f64,
    /// The point estimate is on the wrong side of the threshold.
    pub beyond: bool,
    /// ... and significantly so: the trigger fires.
    pub significant: bool,
}

impl Judgement {
    fn not_judged(value: f64) -> Judgement {
        Judgement {
            value,
            beyond: false,
            significant: false,
        }
    }
}

fn rate(hits: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        hits as f64 / n as f64
    }
}

/// Wilson score lower bound of a proportion at one-sided 99 %.
pub fn wilson_lower(hits: u64, n: u64) -> f64 {
    wilson_lower_f(hits as f64, n as f64)
}

fn wilson_lower_f(hits: f64, n: f64) -> f64 {
    if n <= 0.0 {
        return 0.0;
    }
    let p = hits / n;
    let z2 = Z_99 * Z_99;
    let centre = p + z2 / (2.0 * n);
    let spread = Z_99 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// Is the rate of `sample` above `max`? Wilson's bound on the effective sample size (the
/// sample size over the design effect).
pub fn rate_above(sample: Sample, max: f64) -> Judgement {
    let value = sample.rate();
    if sample.n < MIN_SAMPLE {
        return Judgement::not_judged(value);
    }
    let effective = sample.n as f64 / sample.design_effect();
    Judgement {
        value,
        beyond: value > max,
        significant: wilson_lower_f(value * effective, effective) > max,
    }
}

/// Adjusted proportion and its variance (Agresti–Caffo).
fn adjusted(hits: u64, n: u64) -> (f64, f64) {
    let p = (hits as f64 + 1.0) / (n as f64 + 2.0);
    (p, p * (1.0 - p) / (n as f64 + 2.0))
}

/// Has the candidate's rate moved from stable's by more than `max_change`, relative to
/// stable's (`|p_c - p_s| / p_s`), in either direction?
pub fn relative_change_above(candidate: Sample, stable: Sample, max_change: f64) -> Judgement {
    let (pc, ps) = (candidate.rate(), stable.rate());
    let value = if ps > 0.0 {
        (pc - ps).abs() / ps
    } else if pc > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    if candidate.n < MIN_SAMPLE || stable.n < MIN_SAMPLE {
        return Judgement::not_judged(value);
    }
    let (ac, vc) = candidate.adjusted();
    let (as_, vs) = stable.adjusted();
    // Up: p_c - (1 + m) p_s > 0. Down: (1 - m) p_s - p_c > 0 (only possible for m < 1).
    let up = {
        let k = 1.0 + max_change;
        (ac - k * as_) / (vc + k * k * vs).sqrt()
    };
    let down = if max_change < 1.0 {
        let k = 1.0 - max_change;
        (k * as_ - ac) / (vc + k * k * vs).sqrt()
    } else {
        f64::NEG_INFINITY
    };
    Judgement {
        value,
        beyond: value > max_change,
        significant: up.max(down) > Z_99,
    }
}

/// Is the candidate's rate below `min_ratio` times stable's?
pub fn ratio_below(candidate: Sample, stable: Sample, min_ratio: f64) -> Judgement {
    let (pc, ps) = (candidate.rate(), stable.rate());
    let value = if ps > 0.0 { pc / ps } else { 1.0 };
    if candidate.n < MIN_SAMPLE || stable.n < MIN_SAMPLE {
        return Judgement::not_judged(value);
    }
    let (ac, vc) = candidate.adjusted();
    let (as_, vs) = stable.adjusted();
    let z = (min_ratio * as_ - ac) / (vc + min_ratio * min_ratio * vs).sqrt();
    Judgement {
        value,
        beyond: value < min_ratio,
        significant: z > Z_99,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handful_of_decisions_never_fires() {
        let s = Sample::independent;
        assert!(!rate_above(s(5, 5), 0.01).significant);
        assert!(!relative_change_above(s(10, 10), s(0, 10), 0.05).significant);
    }

    #[test]
    fn clear_breaches_fire_and_clear_passes_do_not() {
        let s = Sample::independent;
        assert!(rate_above(s(30, 1000), 0.01).significant);
        assert!(!rate_above(s(12, 1000), 0.01).significant);
        assert!(relative_change_above(s(150, 1000), s(1000, 10_000), 0.2).significant);
        assert!(!relative_change_above(s(105, 1000), s(1000, 10_000), 0.2).significant);
        // A drop in deny rate is a change too.
        assert!(relative_change_above(s(50, 1000), s(1000, 10_000), 0.2).significant);
        assert!(ratio_below(s(700, 1000), s(900, 1000), 0.9).significant);
        assert!(!ratio_below(s(880, 1000), s(900, 1000), 0.9).significant);
    }

    #[test]
    fn clustering_widens_the_interval() {
        // 30 errors in 1000 decisions is a breach of 1 % if independent, not if they came
        // from a few sessions (a large cluster variance).
        let independent = Sample::independent(30, 1000);
        let clustered = Sample {
            cluster_variance: Some(0.0004),
            ..independent
        };
        assert!(rate_above(independent, 0.01).significant);
        assert!(!rate_above(clustered, 0.01).significant);
    }

    #[test]
    fn wilson_bound_is_below_the_rate() {
        for (hits, n) in [(0, 100), (1, 100), (50, 100), (100, 100), (3, 1_000_000)] {
            let lower = wilson_lower(hits, n);
            assert!(lower <= hits as f64 / n as f64 + 1e-12);
            assert!(lower >= 0.0);
        }
    }
}

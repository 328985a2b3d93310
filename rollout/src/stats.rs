//! The statistics behind criteria and rollback triggers: when is a breach real, not noise?
//!
//! Every figure is turned into a z statistic for "the threshold is breached" against "it is
//! not", on the counts of the current stage's window:
//! - a rate above a maximum (error rate, divergence, the share of decisions slower than the
//!   latency limit against the 1 % a 99th percentile allows): the score test of the rate
//!   against the maximum (equivalently, Wilson's lower bound is above it);
//! - a change between two cohorts (deny rate, task completion): the difference against the
//!   threshold over its standard error, with Agresti–Caffo's adjusted proportions (one success
//!   and one failure added to each side, which keeps the test honest at 0 % and 100 %);
//! - the same change when both versions decided the same requests (a shadow stage, and the
//!   last stage where stable decides in shadow): a paired test, whose variance comes from the
//!   requests where the versions differ, and so sees a real change far sooner.
//!
//! A breach fires at one-sided 99 % (z > 2.326). Requests of one session or agent are
//! correlated, so variances are cluster-robust (per stickiness key) whenever that is larger
//! than the binomial one. Nothing is judged before a cohort has [`MIN_SAMPLE`] decisions: a
//! handful of decisions never rolls back. A stage does not advance while a criterion is
//! *likely* breached (z > 1.282, one-sided 90 %) but not yet significantly: it waits for the
//! data to decide.

/// One-sided 99 % normal quantile: a breach.
pub const Z_99: f64 = 2.326_347_874_040_840_8;
/// One-sided 90 % normal quantile: likely enough to hold a stage.
pub const Z_90: f64 = 1.281_551_565_544_600_4;

/// Fewest observations in a cohort before a trigger is judged at all.
pub const MIN_SAMPLE: u64 = 30;

/// Hits out of `n`, with the cluster-robust variance of the rate when it is known (the
/// variance used is the larger of it and the binomial one).
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
        let p = (self.hits as f64 + 1.0) / (self.n as f64 + 2.0);
        let binomial = p * (1.0 - p) / (self.n as f64 + 2.0);
        (p, binomial.max(self.cluster_variance.unwrap_or(0.0)))
    }
}

/// Two versions' decisions on the same requests: per request, whether each denied.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Paired {
    /// Requests both decided.
    pub n: u64,
    pub candidate: u64,
    pub stable: u64,
    pub both: u64,
    /// Per-cluster sums for the cluster-robust variance: Σn², Σc², Σs², Σcs, Σcn, Σsn.
    pub sums: Option<[f64; 6]>,
    /// Clusters.
    pub clusters: u64,
}

/// A figure judged against its threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// The point estimate (a rate, a relative change, a ratio).
    pub value: f64,
    /// The test statistic for "breached": above [`Z_99`] fires, above [`Z_90`] holds a stage.
    pub z: f64,
}

impl Judgement {
    fn not_judged(value: f64) -> Judgement {
        Judgement {
            value,
            z: f64::NEG_INFINITY,
        }
    }

    /// The breach is significant: the trigger fires.
    pub fn significant(&self) -> bool {
        self.z > Z_99
    }

    /// The breach is likely but not yet significant: a stage waits.
    pub fn likely(&self) -> bool {
        self.z > Z_90 && !self.significant()
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
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let p = hits as f64 / n;
    let z2 = Z_99 * Z_99;
    let centre = p + z2 / (2.0 * n);
    let spread = Z_99 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// Is the rate of `sample` above `max`? The score test on the effective sample size (the
/// sample size over the design effect).
pub fn rate_above(sample: Sample, max: f64) -> Judgement {
    let value = sample.rate();
    if sample.n < MIN_SAMPLE {
        return Judgement::not_judged(value);
    }
    let effective = sample.n as f64 / sample.design_effect();
    let z = if max <= 0.0 {
        // Any hit breaches a maximum of zero, and a few are enough to be sure.
        if sample.hits > 0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        }
    } else if max >= 1.0 {
        f64::NEG_INFINITY
    } else {
        (value - max) / (max * (1.0 - max) / effective).sqrt()
    };
    Judgement { value, z }
}

fn relative(pc: f64, ps: f64) -> f64 {
    if ps > 0.0 {
        (pc - ps).abs() / ps
    } else if pc > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// Has the candidate's rate moved from stable's by more than `max_change`, relative to
/// stable's (`|p_c - p_s| / p_s`), in either direction? Independent cohorts.
pub fn relative_change_above(candidate: Sample, stable: Sample, max_change: f64) -> Judgement {
    let value = relative(candidate.rate(), stable.rate());
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
        z: up.max(down),
    }
}

/// [`relative_change_above`] when both versions decided the same requests.
pub fn paired_relative_change_above(paired: Paired, max_change: f64) -> Judgement {
    let n = paired.n as f64;
    let (pc, ps) = (
        rate(paired.candidate, paired.n),
        rate(paired.stable, paired.n),
    );
    let value = relative(pc, ps);
    if paired.n < MIN_SAMPLE {
        return Judgement::not_judged(value);
    }
    // d_i = c_i - k s_i; with one pseudo-request of each kind of disagreement added, so that
    // no difference at all still has a variance.
    let z_for = |k: f64, sign: f64| -> f64 {
        let (c, s, both) = (
            paired.candidate as f64 + 1.0,
            paired.stable as f64 + 1.0,
            paired.both as f64,
        );
        let m = n + 2.0;
        let mean = (c - k * s) / m;
        let second = (c + k * k * s - 2.0 * k * both) / m;
        let binomial = (second - mean * mean).max(0.0) / m;
        let cluster = paired.sums.and_then(|[nn, cc, ss, cs, cn, sn]| {
            if paired.clusters < 2 {
                return None;
            }
            let d = (paired.candidate as f64 - k * paired.stable as f64) / n;
            // Σ_j ((C_j - k S_j) - d N_j)²
            let squares = cc + k * k * ss - 2.0 * k * cs - 2.0 * d * (cn - k * sn) + d * d * nn;
            let g = paired.clusters as f64;
            Some(g / (g - 1.0) * squares.max(0.0) / (n * n))
        });
        let variance = binomial.max(cluster.unwrap_or(0.0));
        if variance <= 0.0 {
            return f64::NEG_INFINITY;
        }
        sign * mean / variance.sqrt()
    };
    let up = z_for(1.0 + max_change, 1.0);
    let down = if max_change < 1.0 {
        z_for(1.0 - max_change, -1.0)
    } else {
        f64::NEG_INFINITY
    };
    Judgement {
        value,
        z: up.max(down),
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
    Judgement { value, z }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handful_of_decisions_never_fires() {
        let s = Sample::independent;
        assert!(!rate_above(s(5, 5), 0.01).significant());
        assert!(!relative_change_above(s(10, 10), s(0, 10), 0.05).significant());
    }

    #[test]
    fn clear_breaches_fire_and_clear_passes_do_not() {
        let s = Sample::independent;
        assert!(rate_above(s(30, 1000), 0.01).significant());
        assert!(!rate_above(s(12, 1000), 0.01).significant());
        assert!(relative_change_above(s(150, 1000), s(1000, 10_000), 0.2).significant());
        assert!(!relative_change_above(s(105, 1000), s(1000, 10_000), 0.2).significant());
        // A drop in deny rate is a change too.
        assert!(relative_change_above(s(50, 1000), s(1000, 10_000), 0.2).significant());
        assert!(ratio_below(s(700, 1000), s(900, 1000), 0.9).significant());
        assert!(!ratio_below(s(880, 1000), s(900, 1000), 0.9).significant());
    }

    #[test]
    fn the_score_test_agrees_with_wilson() {
        for (hits, n, max) in [
            (30, 1000, 0.01),
            (12, 1000, 0.01),
            (5, 100, 0.02),
            (40, 2000, 0.015),
        ] {
            let judged = rate_above(Sample::independent(hits, n), max).significant();
            assert_eq!(
                judged,
                wilson_lower(hits, n) > max,
                "{hits}/{n} against {max}"
            );
        }
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
        assert!(rate_above(independent, 0.01).significant());
        assert!(!rate_above(clustered, 0.01).significant());
    }

    #[test]
    fn pairing_sees_a_change_independent_cohorts_cannot() {
        // 1000 requests; stable denies 100, the candidate those and 20 more.
        let paired = Paired {
            n: 1000,
            candidate: 120,
            stable: 100,
            both: 100,
            sums: None,
            clusters: 0,
        };
        let s = Sample::independent;
        assert!(paired_relative_change_above(paired, 0.05).significant());
        assert!(!relative_change_above(s(120, 1000), s(100, 1000), 0.05).significant());
        // The same decisions: no change, whatever the threshold.
        let same = Paired {
            candidate: 100,
            ..paired
        };
        assert!(!paired_relative_change_above(same, 0.0).significant());
    }
}

//! How far an accuracy measured on a finite test set can be trusted: Wilson score intervals for
//! one accuracy, and McNemar's exact test for the difference between two classifiers evaluated
//! on the same inputs (the SNN against its ANN).

use serde::{Deserialize, Serialize};

/// The standard normal quantile of 0.975 (a two-sided 95 % interval).
const Z_95: f64 = 1.959_963_984_540_054;

/// A 95 % confidence interval of a proportion.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound, in [0, 1].
    pub low: f64,
    /// Upper bound, in [0, 1].
    pub high: f64,
}

/// The Wilson score interval (95 %) of `successes` out of `trials`; `None` without trials.
pub fn wilson(successes: usize, trials: usize) -> Option<Interval> {
    if trials == 0 || successes > trials {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z_95 * Z_95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z_95 / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At 0 or all successes one bound is exactly 0 or 1; rounding must not move it.
    let low = if successes == 0 { 0.0 } else { (centre - half).max(0.0) };
    let high = if successes == trials { 1.0 } else { (centre + half).min(1.0) };
    Some(Interval { low, high })
}

/// McNemar's exact test of two classifiers on the same inputs: only the inputs on which exactly
/// one of them is right carry information.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Inputs the first classifier (the SNN) gets right and the second (the ANN) wrong.
    pub first_only: usize,
    /// Inputs the second classifier gets right and the first wrong.
    pub second_only: usize,
    /// Two-sided exact p-value of "both are equally accurate" (binomial, p = 1/2, on the
    /// discordant inputs); 1 when there are none.
    pub p_value: f64,
}

/// McNemar's exact test from the per-input correctness of two classifiers.
///
/// # Panics
///
/// Panics if the two slices differ in length.
pub fn mcnemar(first_correct: &[bool], second_correct: &[bool]) -> McNemar {
    assert_eq!(first_correct.len(), second_correct.len(), "one verdict per input from each classifier");
    let first_only = first_correct.iter().zip(second_correct).filter(|&(&a, &b)| a && !b).count();
    let second_only = first_correct.iter().zip(second_correct).filter(|&(&a, &b)| !a && b).count();
    McNemar { first_only, second_only, p_value: exact_two_sided(first_only, second_only) }
}

/// `min(1, 2 · P(X ≤ min(b, c)))` for X ~ Binomial(b + c, 1/2), summed in log space.
fn exact_two_sided(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k_max = b.min(c);
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    // ln C(n, k), built up term by term.
    let mut ln_choose = 0.0;
    let mut terms = Vec::with_capacity(k_max + 1);
    for k in 0..=k_max {
        if k > 0 {
            ln_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        terms.push(ln_choose - ln_half_n);
    }
    let largest = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = largest.exp() * terms.iter().map(|t| (t - largest).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), Table I, example 81/263: 0.2553 to 0.3662.
        let i = wilson(81, 263).unwrap();
        assert!((i.low - 0.2553).abs() < 5e-5 && (i.high - 0.3662).abs() < 5e-5, "{i:?}");
        // All right still leaves room below: 10/10 gives 0.7225 to 1.
        let i = wilson(10, 10).unwrap();
        assert!((i.low - 0.7225).abs() < 5e-5 && i.high == 1.0, "{i:?}");
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn mcnemar_exact_by_hand() {
        // b = 1, c = 5: 2 · (C(6,0) + C(6,1)) / 2⁶ = 14 / 64.
        let a = [true, false, false, false, false, false, true, true];
        let b = [false, true, true, true, true, true, true, false];
        let m = mcnemar(&a, &b);
        assert_eq!((m.first_only, m.second_only), (2, 5));
        // b = 2, c = 5: 2 · (1 + 7 + 21) / 128 = 58 / 128.
        assert!((m.p_value - 58.0 / 128.0).abs() < 1e-15, "{m:?}");
        assert_eq!(mcnemar(&[true, false], &[true, false]).p_value, 1.0);
        // Large counts stay finite: 400 against 600 is far from chance.
        let p = exact_two_sided(400, 600);
        assert!(p > 0.0 && p < 1e-9, "{p}");
    }
}

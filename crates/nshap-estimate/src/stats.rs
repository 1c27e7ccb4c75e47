//! Small statistics: running mean/variance, confidence bounds, the normal quantile.

use serde::{Deserialize, Serialize};

/// Running count, mean and sum of squared deviations (Welford 1962).
///
/// Welford instead of sums of squares because marginal contributions of neurons are small
/// differences of nearly equal accuracies: the naive formula loses them to cancellation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Welford {
    /// Number of samples.
    pub count: u64,
    /// Sample mean (0 before any sample).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Welford {
    /// Adds one sample.
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
    }

    /// Unbiased sample variance; 0 with fewer than two samples.
    pub fn variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).max(0.0)
        }
    }

    /// Standard error of the mean, `sqrt(var / t)`; infinite with fewer than two samples
    /// (nothing is known about the spread yet).
    pub fn stderr(&self) -> f64 {
        if self.count < 2 {
            f64::INFINITY
        } else {
            (self.variance() / self.count as f64).sqrt()
        }
    }
}

/// Empirical Bernstein half-width (Maurer & Pontil 2009), in the form the Neuron Shapley
/// reference uses (`cb_aggregate.py`):
/// `sqrt(2 var ln(2/delta) / t) + 7 R ln(2/delta) / (3 (t - 1))`, and `R` while `t <= 1`.
///
/// `var` is the unbiased sample variance and `range` (`R`) bounds the spread of one sample.
pub fn empirical_bernstein(var: f64, t: u64, range: f64, delta: f64) -> f64 {
    if t <= 1 {
        return range;
    }
    let l = (2.0 / delta).ln();
    let t = t as f64;
    (2.0 * var.max(0.0) * l / t).sqrt() + 7.0 * range * l / (3.0 * (t - 1.0))
}

/// The standard normal quantile `Phi^-1(p)` for `0 < p < 1` (Wichura 1988, algorithm AS 241,
/// PPND16: about 16 significant digits). Returns `-inf`/`+inf` at 0/1 and NaN outside [0, 1].
// The coefficients are copied digit for digit from the published algorithm.
#[allow(clippy::inconsistent_digit_grouping, clippy::excessive_precision)]
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q
            * (((((((2509.080_928_730_122_7 * r + 33430.575_583_588_13) * r
                + 67265.770_927_008_7)
                * r
                + 45921.953_931_549_87)
                * r
                + 13731.693_765_509_46)
                * r
                + 1971.590_950_306_551_3)
                * r
                + 133.141_667_891_784_38)
                * r
                + 3.387_132_872_796_366_5)
            / (((((((5226.495_278_852_545 * r + 28729.085_735_721_943) * r
                + 39307.895_800_092_71)
                * r
                + 21213.794_301_586_597)
                * r
                + 5394.196_021_424_751)
                * r
                + 687.187_007_492_057_9)
                * r
                + 42.313_330_701_600_91)
                * r
                + 1.0);
    }
    let mut r = if q < 0.0 { p } else { 1.0 - p };
    r = (-r.ln()).sqrt();
    let x = if r <= 5.0 {
        r -= 1.6;
        (((((((7.745_450_142_783_414e-4 * r + 0.022_723_844_989_269_184) * r
            + 0.241_780_725_177_450_6)
            * r
            + 1.270_458_252_452_368_4)
            * r
            + 3.647_848_324_763_204_5)
            * r
            + 5.769_497_221_460_691)
            * r
            + 4.630_337_846_156_546)
            * r
            + 1.423_437_110_749_683_5)
            / (((((((1.050_750_071_644_416_9e-9 * r + 5.475_938_084_995_345e-4) * r
                + 0.015_198_666_563_616_457)
                * r
                + 0.148_103_976_427_480_08)
                * r
                + 0.689_767_334_985_1)
                * r
                + 1.676_384_830_183_803_8)
                * r
                + 2.053_191_626_637_759)
                * r
                + 1.0)
    } else {
        r -= 5.0;
        (((((((2.010_334_399_292_288_1e-7 * r + 2.711_555_568_743_487_6e-5) * r
            + 0.001_242_660_947_388_078_4)
            * r
            + 0.026_532_189_526_576_124)
            * r
            + 0.296_560_571_828_504_9)
            * r
            + 1.784_826_539_917_291_3)
            * r
            + 5.463_784_911_164_114)
            * r
            + 6.657_904_643_501_103)
            / (((((((2.044_263_103_389_939_7e-15 * r + 1.421_511_758_316_446e-7) * r
                + 1.846_318_317_510_054_8e-5)
                * r
                + 7.868_691_311_456_133e-4)
                * r
                + 0.014_875_361_290_850_615)
                * r
                + 0.136_929_880_922_735_8)
                * r
                + 0.599_832_206_555_888)
                * r
                + 1.0)
    };
    if q < 0.0 {
        -x
    } else {
        x
    }
}

/// Two-sided normal critical value for a `confidence` interval, e.g. 1.95996 for 0.95.
pub fn two_sided_z(confidence: f64) -> f64 {
    normal_quantile(0.5 + confidence / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass() {
        let xs = [0.3, -1.2, 4.5, 0.0, 2.25, 1e-3];
        let mut w = Welford::default();
        xs.iter().for_each(|&x| w.push(x));
        let mean = xs.iter().sum::<f64>() / 6.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0;
        assert!((w.mean - mean).abs() < 1e-15);
        assert!((w.variance() - var).abs() < 1e-14);
        assert!((w.stderr() - (var / 6.0).sqrt()).abs() < 1e-14);
        assert_eq!(Welford::default().stderr(), f64::INFINITY);
    }

    #[test]
    fn quantile_known_values() {
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-14);
        assert!((normal_quantile(0.5)).abs() < 1e-16);
        assert!((normal_quantile(0.025) + 1.959_963_984_540_054).abs() < 1e-14);
        assert!((normal_quantile(1e-4) + 3.719_016_485_455_68).abs() < 1e-12);
        assert!((normal_quantile(1e-10) + 6.361_340_902_404_056).abs() < 1e-11);
        assert!((two_sided_z(0.95) - 1.959_963_984_540_054).abs() < 1e-14);
        assert!(normal_quantile(1.5).is_nan());
    }

    #[test]
    fn bernstein_reference_form() {
        assert_eq!(empirical_bernstein(0.5, 1, 2.0, 0.2), 2.0);
        let l = 10f64.ln();
        let want = (2.0 * 0.25 * l / 11.0).sqrt() + 7.0 * l / 30.0;
        assert!((empirical_bernstein(0.25, 11, 1.0, 0.2) - want).abs() < 1e-15);
    }
}

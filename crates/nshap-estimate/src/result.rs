//! What an estimator reports: per-player estimates, run diagnostics, progress, and rank helpers.

use serde::{Deserialize, Serialize};

/// Where a player stands with respect to the top-k.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Still being sampled: its interval straddles the top-k boundary.
    Active,
    /// Settled inside the top-k (for estimators without a stopping rule: ranked in the top-k).
    SettledIn,
    /// Settled outside the top-k (for estimators without a stopping rule: ranked below it).
    SettledOut,
}

/// One player's estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlayerEstimate {
    /// Point estimate of the Shapley value.
    pub value: f64,
    /// Standard error of `value` (0 for exact methods; infinite before two samples).
    pub stderr: f64,
    /// Lower end of the estimator's interval (see each estimator for which interval).
    pub ci_low: f64,
    /// Upper end of the estimator's interval.
    pub ci_high: f64,
    /// Number of samples behind `value`.
    pub samples: u64,
    /// Standing with respect to the top-k.
    pub status: Status,
}

impl PlayerEstimate {
    /// An exact value: no error, the interval is the point.
    pub fn exact(value: f64, status: Status) -> Self {
        Self {
            value,
            stderr: 0.0,
            ci_low: value,
            ci_high: value,
            samples: 1,
            status,
        }
    }
}

/// Run-level diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Game evaluations spent (rows that reached the game after deduplication).
    pub evaluations: u64,
    /// `|sum phi - (v(N) - v(empty))|` when both values are known. Efficiency holds exactly for
    /// the true Shapley values, so a large residual flags truncation bias or too few samples.
    pub efficiency_residual: Option<f64>,
    /// Players whose interval still straddles the top-k boundary.
    pub ambiguous: usize,
    /// Estimate of `v(N)` (mean over the draws it was evaluated on).
    pub grand_value: Option<f64>,
    /// Estimate of `v(empty)` (mean over the draws it was evaluated on).
    pub empty_value: Option<f64>,
    /// Permutation walks cut short by the truncation rule (their remaining players got 0).
    pub truncated_walks: u64,
    /// What each player's `[ci_low, ci_high]` is (a 95% normal interval, a bandit's bound, a
    /// confidence sequence...): reports name their columns after it.
    pub interval: IntervalKind,
    /// Top-k methods: whether the stopping rule separated the top-k from the rest (`false`: the
    /// run stopped on its budget with players unresolved). `None` for methods without a top-k
    /// rule (permutation sampling, leave-one-out). What "separated" guarantees depends on the
    /// method (`docs/estimators.md`): only `certified` carries a joint 1 - δ guarantee.
    pub top_k_resolved: Option<bool>,
    /// When the top-k is not resolved: a rough estimate of the further evaluations the rule
    /// would need (unresolved players' intervals shrinking as 1/sqrt(samples) to their gap).
    pub evaluations_needed: Option<u64>,
}

/// What a reported interval is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum IntervalKind {
    /// No interval (the point is repeated).
    #[default]
    None,
    /// Exact values: the interval is the point.
    Exact,
    /// A normal (CLT) confidence interval of this coverage for each player separately.
    Normal { confidence: f64 },
    /// An empirical-Bernstein bound at failure probability `delta` (per player and per check
    /// unless `union_bound`).
    Bernstein { delta: f64, union_bound: bool },
    /// A CLT interval with a union bound over players at `delta` (CMCS's PAC rule).
    Pac { delta: f64 },
    /// An anytime-valid confidence sequence: with probability `1 - delta` every player's
    /// interval holds at every sample count, simultaneously.
    ConfidenceSequence { delta: f64 },
}

impl IntervalKind {
    /// Column-name stem for tables: `ci95` (`ci95_low`, `ci95_high`), `eb80`, `pac80`, `cs95`...
    /// The number is the nominal coverage in percent.
    pub fn column_stem(&self) -> String {
        let pct = |p: f64| {
            let x = 100.0 * p;
            if (x - x.round()).abs() < 1e-9 {
                format!("{}", x.round() as i64)
            } else {
                format!("{x}").replace('.', "_")
            }
        };
        match *self {
            IntervalKind::None | IntervalKind::Exact => "interval".into(),
            IntervalKind::Normal { confidence } => format!("ci{}", pct(confidence)),
            IntervalKind::Bernstein { delta, .. } => format!("eb{}", pct(1.0 - delta)),
            IntervalKind::Pac { delta } => format!("pac{}", pct(1.0 - delta)),
            IntervalKind::ConfidenceSequence { delta } => format!("cs{}", pct(1.0 - delta)),
        }
    }

    /// A short human description, e.g. "95% normal interval per player".
    pub fn describe(&self) -> String {
        match *self {
            IntervalKind::None => "no interval".into(),
            IntervalKind::Exact => "exact (no error)".into(),
            IntervalKind::Normal { confidence } => {
                format!("{:.3}% normal interval, per player", 100.0 * confidence)
                    .replace(".000%", "%")
            }
            IntervalKind::Bernstein { delta, union_bound } => format!(
                "empirical-Bernstein bound at delta {delta}{}",
                if union_bound {
                    ", union over players and sample counts"
                } else {
                    " per player per check (no joint guarantee)"
                }
            ),
            IntervalKind::Pac { delta } => {
                format!("CLT interval, union over players at delta {delta} (asymptotic)")
            }
            IntervalKind::ConfidenceSequence { delta } => {
                format!("anytime-valid confidence sequence, all players jointly at delta {delta}")
            }
        }
    }
}

/// A rough count of further samples the unresolved players need: each interval of half-width
/// `w` after `t` samples shrinks as `1/sqrt(t)` and must shrink to `gap` (its distance to the
/// top-k boundary, at least `floor` and a tenth of `w`): about `t (w / gap)^2 - t` more samples
/// each.
pub fn samples_needed(unresolved: &[(f64, u64, f64)], floor: f64) -> u64 {
    unresolved
        .iter()
        .map(|&(half_width, t, gap)| {
            let t = t.max(1) as f64;
            // A near-tie needs without bound; count it as at most 100x its samples so far
            // (the caller suggests a tolerance epsilon).
            let gap = gap.abs().max(floor).max(0.1 * half_width).max(1e-12);
            let want = t * (half_width / gap).powi(2);
            (want - t).clamp(0.0, 1e15) as u64
        })
        .sum()
}

/// Everything an estimator knows at a point in time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    /// One entry per player, in player order.
    pub players: Vec<PlayerEstimate>,
    /// Run-level diagnostics.
    pub diagnostics: Diagnostics,
    /// Banzhaf values, when the estimator gets them for free (exact enumeration).
    pub banzhaf: Option<Vec<f64>>,
}

impl Estimates {
    /// Point estimates in player order.
    pub fn values(&self) -> Vec<f64> {
        self.players.iter().map(|p| p.value).collect()
    }

    /// The `k` players with the largest signed values, best first (ties broken by index).
    pub fn top_k(&self, k: usize) -> Vec<usize> {
        top_k_indices(&self.values(), k)
    }
}

/// Progress after one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Game evaluations spent so far.
    pub evaluations: u64,
    /// The evaluation budget.
    pub budget: u64,
    /// Players still being sampled (ambiguous with respect to the top-k).
    pub active: usize,
    /// Current top-k by signed value, best first.
    pub top_k: Vec<usize>,
    /// True once the estimator has stopped.
    pub done: bool,
}

/// Indices of the `k` largest values, best first; ties broken by lower index so results are
/// reproducible. NaN sorts last.
pub fn top_k_indices(values: &[f64], k: usize) -> Vec<usize> {
    let mut idx = ranking(values);
    idx.truncate(k.min(values.len()));
    idx
}

/// All indices ordered by decreasing value (ties: lower index first).
pub fn ranking(values: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.total_cmp(&x).then(a.cmp(&b)),
        }
    });
    idx
}

/// `SettledIn` for the top-k by value, `SettledOut` for the rest (all in when `k >= n`).
pub fn rank_status(values: &[f64], k: usize) -> Vec<Status> {
    let mut status = vec![Status::SettledOut; values.len()];
    for i in top_k_indices(values, k) {
        status[i] = Status::SettledIn;
    }
    status
}

/// Fraction of `truth_top` found in `estimated_top` (precision@k by signed value).
pub fn precision_at_k(estimated_top: &[usize], truth_top: &[usize]) -> f64 {
    if truth_top.is_empty() {
        return 1.0;
    }
    let hits = estimated_top
        .iter()
        .filter(|i| truth_top.contains(i))
        .count();
    hits as f64 / truth_top.len() as f64
}

/// The boundary between the k-th and (k+1)-th largest values (their midpoint), if both exist.
pub(crate) fn boundary(values: &[f64], k: usize) -> Option<f64> {
    if k == 0 || k >= values.len() {
        return None;
    }
    let r = ranking(values);
    Some(0.5 * (values[r[k - 1]] + values[r[k]]))
}

/// Number of players whose `[lo, hi]` interval contains the top-k boundary.
pub(crate) fn count_ambiguous(players: &[PlayerEstimate], k: usize) -> usize {
    let values: Vec<f64> = players.iter().map(|p| p.value).collect();
    match boundary(&values, k) {
        None => 0,
        Some(b) => players
            .iter()
            .filter(|p| p.ci_low <= b && b <= p.ci_high)
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_is_stable_and_signed() {
        let v = [0.5, -2.0, 0.5, 3.0, f64::NAN];
        assert_eq!(ranking(&v), vec![3, 0, 2, 1, 4]);
        assert_eq!(top_k_indices(&v, 2), vec![3, 0]);
        assert_eq!(top_k_indices(&v, 10).len(), 5);
        let s = rank_status(&v, 1);
        assert_eq!(s[3], Status::SettledIn);
        assert_eq!(s[0], Status::SettledOut);
        assert_eq!(precision_at_k(&[3, 1], &[3, 0]), 0.5);
        assert_eq!(boundary(&[1.0, 3.0, 2.0], 1), Some(2.5));
        assert_eq!(boundary(&[1.0], 1), None);
    }
}

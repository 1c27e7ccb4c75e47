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

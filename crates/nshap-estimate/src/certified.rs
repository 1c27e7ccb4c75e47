//! Certified top-k: anytime-valid confidence sequences, a union bound over players, and
//! LUCB-style sampling and stopping on the top-k boundary.
//!
//! * **Samples.** As in CMCS (Kolpaczki et al. 2025): an anchor coalition `S` (size uniform in
//!   `0..=n`, then uniform given its size) and, for each selected player `i`, the flip
//!   `S xor {i}`; the marginal is an unbiased, independent sample of `phi_i`. An anchor and its
//!   flips share one draw id (common random numbers), so each costs `|selected| + 1` rows.
//! * **Intervals.** Every player has the predictable plug-in empirical-Bernstein confidence
//!   sequence of Waudby-Smith & Ramdas (2023) at `alpha = delta / n` ([`crate::cs`]), for
//!   marginals known to lie in `[lo, hi]` (default `[-R, R]`: a metric whose values span `R`).
//!   With probability at least `1 - delta`, **every** player's interval contains its Shapley
//!   value at **every** sample count — so checking after every batch, stopping whenever the
//!   rule is met, and choosing whom to sample from the data are all allowed. No normality and
//!   no variance assumption: a player whose marginals have all been equal so far (a rare event
//!   that has not fired) keeps an interval of width about `R ln(2n/delta) / t`.
//! * **Selection and stopping (LUCB, Kalyanakrishnan et al. 2012).** `top` = the k largest
//!   means, `b` = the midpoint of the k-th and (k+1)-th means. A top player is flipped while
//!   `LCB_i < b - eps/2`, any other while `UCB_j > b + eps/2` (TMAB's active set, with
//!   confidence sequences); the run stops when `min LCB(top) >= max UCB(rest) - eps`. Whom to
//!   sample is chosen from the data; that does not touch the guarantee, which holds at all
//!   times.
//! * **Certificate.** On that event every returned player has `phi_i >= LCB_i >= UCB_j - eps
//!   >= phi_j - eps` for every player `j` left out: the returned set is an eps-correct top-k
//!   (exactly the top-k when `eps = 0` and values are distinct) with probability >= 1 - delta.
//!   A run that stops on its budget says so (`top_k_resolved: Some(false)`, players `Active`).
//! * **A marginal outside `[lo, hi]` is an error**, not a silent loss of the guarantee.

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::config::{check_common, check_non_negative, check_open_unit, CommonOptions, Method};
use crate::cs::{ConfidenceSequence, CsParams};
use crate::error::{ConfigError, EvalError};
use crate::estimator::{save, AnyRef, Estimator};
use crate::game::{Game, GameError};
use crate::result::{
    rank_status, ranking, samples_needed, top_k_indices, Diagnostics, Estimates, IntervalKind,
    PlayerEstimate, Progress, Status,
};
use crate::stats::Welford;

/// Configuration of [`Certified`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertifiedConfig {
    /// Size of the top set to certify. Default 10.
    pub top_k: usize,
    /// Hard cap on evaluations. Default 2,000,000.
    pub budget: u64,
    /// Probability that the certificate is wrong (all players, all times). Default 0.05.
    pub delta: f64,
    /// Boundary tolerance: the returned set is eps-correct. Default 0.
    pub epsilon: f64,
    /// `R`: marginals lie in `[-R, R]` (a metric whose values span at most `R`). Default 1
    /// (accuracy). Ignored when `marginal_bounds` is set.
    pub value_range: f64,
    /// Known bounds `[lo, hi]` of every marginal, when tighter than `[-R, R]`.
    pub marginal_bounds: Option<(f64, f64)>,
    /// Target rows per game call. Default 1024.
    pub batch_size: usize,
}

impl Default for CertifiedConfig {
    fn default() -> Self {
        Self {
            delta: 0.05,
            ..Self::from_common(&CommonOptions::default())
        }
    }
}

impl CertifiedConfig {
    /// Takes `top_k`, `budget`, `delta`, `epsilon`, `value_range`, `batch_size`.
    pub fn from_common(o: &CommonOptions) -> Self {
        Self {
            top_k: o.top_k,
            budget: o.budget,
            delta: o.delta,
            epsilon: o.epsilon,
            value_range: o.value_range,
            marginal_bounds: None,
            batch_size: o.batch_size,
        }
    }

    /// The marginal bounds in force.
    pub fn bounds(&self) -> (f64, f64) {
        self.marginal_bounds
            .unwrap_or((-self.value_range, self.value_range))
    }
}

/// Certified top-k estimator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Certified {
    config: CertifiedConfig,
    n: usize,
    rng: ChaCha12Rng,
    params: CsParams,
    sequences: Vec<ConfidenceSequence>,
    stats: Vec<Welford>,
    next_draw: u64,
    evaluations: u64,
    anchors: u64,
    done: bool,
}

/// The current top set and its critical bounds.
struct Boundary {
    in_top: Vec<bool>,
    min_lcb: f64,
    max_ucb: f64,
}

impl Certified {
    /// Validates the configuration and seeds the anchor stream.
    pub fn new(config: CertifiedConfig, n_players: usize, seed: u64) -> Result<Self, ConfigError> {
        check_common(n_players, config.top_k, config.budget, config.batch_size)?;
        check_open_unit("delta", config.delta)?;
        check_non_negative("epsilon", config.epsilon)?;
        let (lo, hi) = config.bounds();
        if config.marginal_bounds.is_none()
            && !(config.value_range.is_finite() && config.value_range > 0.0)
        {
            return Err(ConfigError::invalid(
                "value_range",
                config.value_range,
                "must be finite and > 0",
            ));
        }
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(ConfigError::invalid(
                "marginal_bounds",
                format!("[{lo}, {hi}]"),
                "must be finite with lo < hi",
            ));
        }
        Ok(Self {
            params: CsParams {
                lo,
                hi,
                alpha: config.delta / n_players as f64,
            },
            done: config.top_k >= n_players,
            config,
            n: n_players,
            rng: ChaCha12Rng::seed_from_u64(seed),
            sequences: vec![ConfidenceSequence::default(); n_players],
            stats: vec![Welford::default(); n_players],
            next_draw: 0,
            evaluations: 0,
            anchors: 0,
        })
    }

    fn means(&self) -> Vec<f64> {
        self.stats.iter().map(|s| s.mean).collect()
    }

    fn interval(&self, i: usize) -> (f64, f64) {
        self.sequences[i].interval(&self.params)
    }

    fn boundary(&self) -> Option<Boundary> {
        let k = self.config.top_k;
        if k >= self.n {
            return None;
        }
        let order = ranking(&self.means());
        let mut in_top = vec![false; self.n];
        let mut min_lcb = f64::INFINITY;
        for &i in &order[..k] {
            in_top[i] = true;
            min_lcb = min_lcb.min(self.interval(i).0);
        }
        let max_ucb = order[k..]
            .iter()
            .map(|&j| self.interval(j).1)
            .fold(f64::NEG_INFINITY, f64::max);
        Some(Boundary {
            in_top,
            min_lcb,
            max_ucb,
        })
    }

    fn separated(&self, b: &Boundary) -> bool {
        b.min_lcb >= b.max_ucb - self.config.epsilon
    }

    fn is_ambiguous(&self, b: &Boundary, i: usize) -> bool {
        let (lcb, ucb) = self.interval(i);
        if b.in_top[i] {
            lcb < b.max_ucb - self.config.epsilon
        } else {
            ucb > b.min_lcb + self.config.epsilon
        }
    }

    /// The midpoint between the k-th and (k+1)-th means: where the boundary probably is.
    fn threshold(&self) -> Option<f64> {
        let k = self.config.top_k;
        if k >= self.n {
            return None;
        }
        let means = self.means();
        let order = ranking(&means);
        Some(0.5 * (means[order[k - 1]] + means[order[k]]))
    }

    /// Players to flip next (ascending), or `None` once certified.
    ///
    /// Not every ambiguous player: only those whose interval still reaches past the estimated
    /// boundary `b` (a top player with `LCB < b - eps/2`, another with `UCB > b + eps/2`). A null
    /// player whose upper bound is already below `b` waits until the top players' lower bounds
    /// catch up instead of being flipped for nothing. The rule cannot stall: when nobody is
    /// selected, `min LCB(top) >= b - eps/2` and `max UCB(rest) <= b + eps/2`, so the stopping
    /// rule holds.
    fn select(&self) -> Option<Vec<usize>> {
        let b = self.boundary()?;
        if self.separated(&b) {
            return None;
        }
        let t = self.threshold()?;
        let half = 0.5 * self.config.epsilon;
        let chosen: Vec<usize> = (0..self.n)
            .filter(|&i| {
                let (lcb, ucb) = self.interval(i);
                if b.in_top[i] {
                    lcb < t - half
                } else {
                    ucb > t + half
                }
            })
            .collect();
        // Rounding could leave nobody selected while the bounds are not separated: then fall
        // back to every ambiguous player.
        Some(if chosen.is_empty() {
            (0..self.n).filter(|&i| self.is_ambiguous(&b, i)).collect()
        } else {
            chosen
        })
    }

    fn statuses(&self) -> Vec<Status> {
        let by_rank = rank_status(&self.means(), self.config.top_k);
        match self.boundary() {
            None => by_rank,
            Some(b) if self.separated(&b) => by_rank,
            Some(b) => (0..self.n)
                .map(|i| {
                    if self.is_ambiguous(&b, i) {
                        Status::Active
                    } else {
                        by_rank[i]
                    }
                })
                .collect(),
        }
    }

    /// Whether the stopping rule holds now (always for k = n).
    pub fn is_certified(&self) -> bool {
        self.boundary().is_none_or(|b| self.separated(&b))
    }

    /// About how many more evaluations (one per flip) the ambiguous players need.
    fn evaluations_needed(&self) -> u64 {
        let Some(b) = self.boundary() else {
            return 0;
        };
        let mid = 0.5 * (b.min_lcb + b.max_ucb);
        let unresolved: Vec<(f64, u64, f64)> = (0..self.n)
            .filter(|&i| self.is_ambiguous(&b, i))
            .map(|i| {
                let (l, h) = self.interval(i);
                (0.5 * (h - l), self.stats[i].count, self.stats[i].mean - mid)
            })
            .collect();
        samples_needed(&unresolved, self.config.epsilon)
    }

    /// Samples each selected player should plan its confidence sequence for: enough for its
    /// interval to reach the estimated boundary `t` (within `eps/2`) from its mean. Computed
    /// before the batch is drawn, so the bets stay predictable.
    fn plans(&self, selected: &[usize]) -> Vec<Option<f64>> {
        let mut plans = vec![None; self.n];
        let (Some(b), Some(t)) = (self.boundary(), self.threshold()) else {
            return plans;
        };
        let half = 0.5 * self.config.epsilon;
        for &i in selected {
            let mean = self.stats[i].mean;
            let distance = if b.in_top[i] {
                mean - (t - half)
            } else {
                (t + half) - mean
            };
            if self.stats[i].count >= 2 && distance > 0.0 {
                plans[i] = Some(self.sequences[i].planned_samples(distance, &self.params));
            }
        }
        plans
    }

    fn record(&mut self, player: usize, marginal: f64, plan: Option<f64>) -> Result<(), GameError> {
        let (lo, hi) = (self.params.lo, self.params.hi);
        let slack = 1e-9 * (hi - lo);
        if marginal < lo - slack || marginal > hi + slack {
            return Err(Box::new(EvalError::OutOfRange {
                player,
                value: marginal,
                low: lo,
                high: hi,
            }));
        }
        self.sequences[player].push_planned(marginal, &self.params, plan);
        self.stats[player].push(marginal);
        Ok(())
    }
}

impl Estimator for Certified {
    fn method(&self) -> Method {
        Method::Certified
    }
    fn n_players(&self) -> usize {
        self.n
    }
    fn step(&mut self, game: &mut dyn Game) -> Result<Progress, GameError> {
        if self.done {
            return Ok(self.progress());
        }
        let Some(selected) = self.select() else {
            self.done = true;
            return Ok(self.progress());
        };
        let remaining = self.config.budget.saturating_sub(self.evaluations);
        let plans = self.plans(&selected);
        let Some(sampled) = crate::flips::sample(
            game,
            &mut self.rng,
            &mut self.next_draw,
            self.n,
            selected,
            remaining,
            self.config.batch_size,
        )?
        else {
            self.done = true;
            return Ok(self.progress());
        };
        self.evaluations += sampled.evaluations;
        self.anchors += sampled.anchors;
        for (i, marginal) in sampled.marginals {
            self.record(i, marginal, plans[i])?;
        }
        self.done = self.evaluations >= self.config.budget || self.select().is_none();
        Ok(self.progress())
    }
    fn is_done(&self) -> bool {
        self.done
    }
    fn progress(&self) -> Progress {
        Progress {
            evaluations: self.evaluations,
            budget: self.config.budget,
            active: self.select().map_or(0, |s| s.len()),
            top_k: top_k_indices(&self.means(), self.config.top_k),
            done: self.done,
        }
    }
    fn result(&self) -> Estimates {
        let status = self.statuses();
        let ambiguous = status.iter().filter(|s| **s == Status::Active).count();
        let certified = self.is_certified();
        let players = (0..self.n)
            .zip(status)
            .map(|(i, status)| {
                let (lo, hi) = self.interval(i);
                let s = &self.stats[i];
                PlayerEstimate {
                    value: s.mean,
                    stderr: s.stderr(),
                    ci_low: lo,
                    ci_high: hi,
                    samples: s.count,
                    status,
                }
            })
            .collect();
        Estimates {
            players,
            diagnostics: Diagnostics {
                evaluations: self.evaluations,
                ambiguous,
                interval: IntervalKind::ConfidenceSequence {
                    delta: self.config.delta,
                },
                top_k_resolved: Some(certified),
                evaluations_needed: (!certified).then(|| self.evaluations_needed()),
                ..Diagnostics::default()
            },
            banzhaf: None,
        }
    }
    fn set_budget(&mut self, budget: u64) {
        self.config.budget = budget;
        self.done = self.evaluations >= budget || self.is_certified();
    }
    fn save_state(&self) -> Vec<u8> {
        save(AnyRef::Certified(self))
    }
}

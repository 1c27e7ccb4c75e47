//! CMCS — comparable marginal contributions sampling for top-k identification (Kolpaczki,
//! Nielen & Hüllermeier 2025, "Antithetic sampling for top-k Shapley identification").
//!
//! One *anchor* coalition `S` is drawn per sample: size uniform in `0..=n`, then a uniform set of
//! that size. For every selected player `i` the batch holds the single flip `S xor {i}`, and its
//! marginal is `v(S ∪ i) - v(S)` when `i ∉ S`, `v(S) - v(S \ i)` when `i ∈ S`. With the size
//! uniform over `0..=n` the coalition *without* `i` has size uniform over `0..n-1` and is uniform
//! given its size, so each marginal is an unbiased sample of `phi_i`; all of them share `v(S)`
//! and the draw id, which makes marginals of different players comparable (correlated noise
//! cancels in their difference). One anchor with all `n` flips costs `n + 1` evaluations.
//!
//! Selection: a warm-up flips every player until it has `t_min` samples (30, as the paper's PAC
//! mode). Then only *ambiguous* players are flipped: with `top` the current k best means,
//! `UCB/LCB = mean ± z stderr` and `z = Phi^-1(1 - δ/(2n))`, a top player is ambiguous while
//! `LCB_i < max UCB(rest) - ε`, any other while `UCB_j > min LCB(top) + ε` (`Selection::Lucb`
//! flips only the two critical players, as LUCB / SHAP@k do).
//!
//! Stopping (PAC): `max UCB(rest) - min LCB(top) <= ε`. With the union over `n` players in `z`,
//! the returned set is an ε-correct top-k with probability about `1 - δ` (the intervals are
//! CLT-based, so "about": exact for normal marginals, asymptotic otherwise).

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::config::{check_common, check_non_negative, check_open_unit, CommonOptions, Method};
use crate::error::ConfigError;
use crate::estimator::{save, AnyRef, Estimator};
use crate::game::{Game, GameError};
use crate::result::{
    rank_status, ranking, top_k_indices, Diagnostics, Estimates, IntervalKind, PlayerEstimate,
    Progress, Status,
};
use crate::stats::{normal_quantile, Welford};

/// Which players get flipped on each anchor after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Every player whose interval overlaps the boundary (default: big batches, few anchors).
    Ambiguous,
    /// Only the top player with the lowest LCB and the other with the highest UCB.
    Lucb,
}

/// Configuration of [`Cmcs`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CmcsConfig {
    /// Size of the top set to identify. Default 10.
    pub top_k: usize,
    /// Hard cap on evaluations. Default 2,000,000.
    pub budget: u64,
    /// Failure probability of the PAC rule. Default 0.2 (shared default).
    pub delta: f64,
    /// Boundary tolerance ε. Default 0.
    pub epsilon: f64,
    /// Samples every player gets before selection and stopping start. Default 30 (paper).
    pub t_min: u64,
    /// Selection rule after the warm-up. Default `Ambiguous`.
    pub selection: Selection,
    /// Target rows per game call. Default 1024.
    pub batch_size: usize,
}

impl Default for CmcsConfig {
    fn default() -> Self {
        Self::from_common(&CommonOptions::default())
    }
}

impl CmcsConfig {
    /// Takes `top_k`, `budget`, `delta`, `epsilon`, `batch_size` from the shared options.
    pub fn from_common(o: &CommonOptions) -> Self {
        Self {
            top_k: o.top_k,
            budget: o.budget,
            delta: o.delta,
            epsilon: o.epsilon,
            t_min: 30,
            selection: Selection::Ambiguous,
            batch_size: o.batch_size,
        }
    }
}

/// CMCS top-k estimator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cmcs {
    config: CmcsConfig,
    n: usize,
    rng: ChaCha12Rng,
    stats: Vec<Welford>,
    /// `Phi^-1(1 - δ/(2n))`.
    z: f64,
    next_draw: u64,
    evaluations: u64,
    anchors: u64,
    done: bool,
}

/// The boundary picture: current top set, and the critical bounds.
struct Boundary {
    in_top: Vec<bool>,
    /// Lowest LCB among the top and who has it.
    min_lcb: (f64, usize),
    /// Highest UCB among the rest and who has it.
    max_ucb: (f64, usize),
}

impl Cmcs {
    /// Validates the configuration and seeds the anchor stream.
    pub fn new(config: CmcsConfig, n_players: usize, seed: u64) -> Result<Self, ConfigError> {
        check_common(n_players, config.top_k, config.budget, config.batch_size)?;
        check_open_unit("delta", config.delta)?;
        check_non_negative("epsilon", config.epsilon)?;
        if config.t_min < 2 {
            return Err(ConfigError::invalid(
                "t_min",
                config.t_min,
                "must be at least 2 (a variance needs two samples)",
            ));
        }
        let z = normal_quantile(1.0 - config.delta / (2.0 * n_players as f64));
        Ok(Self {
            done: config.top_k >= n_players,
            config,
            n: n_players,
            rng: ChaCha12Rng::seed_from_u64(seed),
            stats: vec![Welford::default(); n_players],
            z,
            next_draw: 0,
            evaluations: 0,
            anchors: 0,
        })
    }

    fn means(&self) -> Vec<f64> {
        self.stats.iter().map(|s| s.mean).collect()
    }

    fn warmed_up(&self) -> bool {
        self.stats.iter().all(|s| s.count >= self.config.t_min)
    }

    fn lcb(&self, i: usize) -> f64 {
        self.stats[i].mean - self.z * self.stats[i].stderr()
    }

    fn ucb(&self, i: usize) -> f64 {
        self.stats[i].mean + self.z * self.stats[i].stderr()
    }

    /// `None` when k = n (no boundary).
    fn boundary(&self) -> Option<Boundary> {
        if self.config.top_k >= self.n {
            return None;
        }
        let order = ranking(&self.means());
        let mut in_top = vec![false; self.n];
        let mut min_lcb = (f64::INFINITY, order[0]);
        for &i in &order[..self.config.top_k] {
            in_top[i] = true;
            let l = self.lcb(i);
            if l < min_lcb.0 {
                min_lcb = (l, i);
            }
        }
        let mut max_ucb = (f64::NEG_INFINITY, order[self.config.top_k]);
        for &j in &order[self.config.top_k..] {
            let u = self.ucb(j);
            if u > max_ucb.0 {
                max_ucb = (u, j);
            }
        }
        Some(Boundary {
            in_top,
            min_lcb,
            max_ucb,
        })
    }

    fn separated(&self, b: &Boundary) -> bool {
        b.max_ucb.0 - b.min_lcb.0 <= self.config.epsilon
    }

    fn is_ambiguous(&self, b: &Boundary, i: usize) -> bool {
        if b.in_top[i] {
            self.lcb(i) < b.max_ucb.0 - self.config.epsilon
        } else {
            self.ucb(i) > b.min_lcb.0 + self.config.epsilon
        }
    }

    /// Players to flip on the next anchors (ascending), or `None` when the PAC rule is met.
    fn select(&self) -> Option<Vec<usize>> {
        if !self.warmed_up() {
            return Some(
                (0..self.n)
                    .filter(|&i| self.stats[i].count < self.config.t_min)
                    .collect(),
            );
        }
        let b = self.boundary()?;
        if self.separated(&b) {
            return None;
        }
        Some(match self.config.selection {
            Selection::Ambiguous => (0..self.n).filter(|&i| self.is_ambiguous(&b, i)).collect(),
            Selection::Lucb => {
                let mut v = vec![b.min_lcb.1, b.max_ucb.1];
                v.sort_unstable();
                v
            }
        })
    }

    /// Settled players by rank, the rest `Active` — also when the run stopped on its budget
    /// (a spent budget settles nobody).
    /// About how many more evaluations the ambiguous players need (one per flip): before the
    /// warm-up ends, what it still costs; then each ambiguous interval must shrink to its
    /// distance from the boundary (at least ε).
    fn evaluations_needed(&self) -> u64 {
        if !self.warmed_up() {
            return self
                .stats
                .iter()
                .map(|s| self.config.t_min.saturating_sub(s.count))
                .sum();
        }
        let Some(b) = self.boundary() else {
            return 0;
        };
        let mid = 0.5 * (b.min_lcb.0 + b.max_ucb.0);
        let unresolved: Vec<(f64, u64, f64)> = (0..self.n)
            .filter(|&i| self.is_ambiguous(&b, i))
            .map(|i| {
                let s = &self.stats[i];
                (self.z * s.stderr(), s.count, s.mean - mid)
            })
            .collect();
        crate::result::samples_needed(&unresolved, self.config.epsilon)
    }

    fn statuses(&self) -> Vec<Status> {
        let by_rank = rank_status(&self.means(), self.config.top_k);
        if self.config.top_k >= self.n {
            return by_rank;
        }
        if !self.warmed_up() {
            return vec![Status::Active; self.n];
        }
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
}

impl Estimator for Cmcs {
    fn method(&self) -> Method {
        Method::Cmcs
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
            self.stats[i].push(marginal);
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
            active: self
                .statuses()
                .iter()
                .filter(|s| **s == Status::Active)
                .count(),
            top_k: top_k_indices(&self.means(), self.config.top_k),
            done: self.done,
        }
    }
    fn result(&self) -> Estimates {
        let status = self.statuses();
        let ambiguous = status.iter().filter(|s| **s == Status::Active).count();
        let players = self
            .stats
            .iter()
            .zip(status)
            .enumerate()
            .map(|(i, (s, status))| PlayerEstimate {
                value: s.mean,
                stderr: s.stderr(),
                ci_low: self.lcb(i),
                ci_high: self.ucb(i),
                samples: s.count,
                status,
            })
            .collect();
        Estimates {
            players,
            diagnostics: Diagnostics {
                evaluations: self.evaluations,
                ambiguous,
                interval: IntervalKind::Pac {
                    delta: self.config.delta,
                },
                top_k_resolved: Some(ambiguous == 0),
                evaluations_needed: (ambiguous > 0).then(|| self.evaluations_needed()),
                ..Diagnostics::default()
            },
            banzhaf: None,
        }
    }
    fn set_budget(&mut self, budget: u64) {
        self.config.budget = budget;
        self.done = self.evaluations >= budget || self.select().is_none();
    }
    fn save_state(&self) -> Vec<u8> {
        save(AnyRef::Cmcs(self))
    }
}

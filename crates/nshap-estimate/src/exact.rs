//! Exact Shapley and Banzhaf values by enumerating all `2^n` coalitions (`n <= 20`).
//!
//! The ground truth every sampler is tested against. All coalitions share one draw id, so a
//! stochastic game is enumerated on a single sample of examples: the values are then the exact
//! Shapley values of that sample's game.

use serde::{Deserialize, Serialize};

use crate::config::{check_common, CommonOptions, Method};
use crate::error::ConfigError;
use crate::estimator::{save, AnyRef, Estimator};
use crate::game::{evaluate_unique, Evaluated, Game, GameError};
use crate::result::{
    rank_status, top_k_indices, Diagnostics, Estimates, IntervalKind, PlayerEstimate, Progress,
    Status,
};

/// Largest `n` exact enumeration accepts: 2^20 values are 8 MiB; 2^21 doubles it for little use.
pub const MAX_EXACT_PLAYERS: usize = 20;

/// Configuration of [`Exact`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExactConfig {
    /// k for the reported top-k status. Default 10.
    pub top_k: usize,
    /// Must be at least `2^n`: enumeration cannot stop half way. Default 2,000,000.
    pub budget: u64,
    /// Coalitions per game call. Default 1024.
    pub batch_size: usize,
}

impl Default for ExactConfig {
    fn default() -> Self {
        Self::from_common(&CommonOptions::default())
    }
}

impl ExactConfig {
    /// Takes `top_k`, `budget` and `batch_size` from the shared options.
    pub fn from_common(o: &CommonOptions) -> Self {
        Self {
            top_k: o.top_k,
            budget: o.budget,
            batch_size: o.batch_size,
        }
    }
}

/// Exact enumeration. Coalition `mask` has player `i` present when bit `i` of `mask` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exact {
    config: ExactConfig,
    n: usize,
    /// `v(mask)` for every mask evaluated so far (`next` of them).
    values: Vec<f64>,
    next: u64,
    evaluations: u64,
}

impl Exact {
    /// Validates the configuration; the seed is unused (enumeration is deterministic) but kept
    /// for a uniform constructor.
    pub fn new(config: ExactConfig, n_players: usize, _seed: u64) -> Result<Self, ConfigError> {
        check_common(n_players, config.top_k, config.budget, config.batch_size)?;
        if n_players > MAX_EXACT_PLAYERS {
            return Err(ConfigError::TooManyPlayersForExact {
                n: n_players,
                max: MAX_EXACT_PLAYERS,
            });
        }
        let needed = 1u64 << n_players;
        if config.budget < needed {
            return Err(ConfigError::BudgetTooSmallForExact {
                n: n_players,
                needed,
                budget: config.budget,
            });
        }
        Ok(Self {
            config,
            n: n_players,
            values: Vec::with_capacity(needed as usize),
            next: 0,
            evaluations: 0,
        })
    }

    fn total(&self) -> u64 {
        1u64 << self.n
    }

    /// The enumerated coalition values once every one is in (`None` before): the same table
    /// interactions are computed from, so an exact run's enumeration need not be repeated.
    pub fn value_table(&self) -> Option<crate::interactions::ValueTable> {
        if !self.is_done() {
            return None;
        }
        crate::interactions::ValueTable::from_values(self.n, self.values.clone()).ok()
    }

    /// `(shapley, banzhaf)` from the full table.
    fn values_from_table(&self) -> (Vec<f64>, Vec<f64>) {
        shapley_banzhaf(self.n, &self.values)
    }
}

/// Evaluates the coalitions `masks` (bit `i` of a mask = player `i`, so `n <= 64`) in one game
/// call, all under draw id 0: the enumeration step shared by [`Exact`] and
/// [`ValueTable`](crate::interactions::ValueTable).
pub(crate) fn evaluate_masks(
    game: &mut dyn Game,
    n: usize,
    masks: std::ops::Range<u64>,
) -> Result<Evaluated, GameError> {
    let mut batch = crate::CoalitionBatch::with_capacity(n, (masks.end - masks.start) as usize);
    for mask in masks {
        batch.push_row_unchecked(&[mask], 0);
    }
    evaluate_unique(game, &batch)
}

/// `(shapley, banzhaf)` from a full table `v[mask]` of `n` players: shared by [`Exact`] and
/// [`ValueTable`](crate::interactions::ValueTable).
///
/// Marginals are summed per coalition size before weighting: each size's weight
/// `s! (n-s-1)! / n!` then multiplies one sum instead of 2^(n-1) products, which keeps the
/// efficiency residual at rounding level (< 1e-12).
pub(crate) fn shapley_banzhaf(n: usize, v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(v.len(), 1usize << n);
    // weight(s) = 1 / (n * C(n-1, s)), exact in f64 for n <= 20
    let mut binom = vec![1.0f64; n];
    for s in 1..n {
        binom[s] = binom[s - 1] * (n - s) as f64 / s as f64;
    }
    let mut shapley = vec![0.0; n];
    let mut banzhaf = vec![0.0; n];
    let mut by_size = vec![0.0f64; n];
    for i in 0..n {
        by_size.iter_mut().for_each(|x| *x = 0.0);
        let bit = 1usize << i;
        for mask in 0..v.len() {
            if mask & bit == 0 {
                by_size[mask.count_ones() as usize] += v[mask | bit] - v[mask];
            }
        }
        shapley[i] = by_size
            .iter()
            .zip(&binom)
            .map(|(sum, c)| sum / (n as f64 * c))
            .sum();
        banzhaf[i] = by_size.iter().sum::<f64>() / (1u64 << (n - 1)) as f64;
    }
    (shapley, banzhaf)
}

impl Estimator for Exact {
    fn method(&self) -> Method {
        Method::Exact
    }
    fn n_players(&self) -> usize {
        self.n
    }
    fn step(&mut self, game: &mut dyn Game) -> Result<Progress, GameError> {
        if self.is_done() {
            return Ok(self.progress());
        }
        let end = (self.next + self.config.batch_size as u64).min(self.total());
        let e = evaluate_masks(game, self.n, self.next..end)?;
        self.values.extend_from_slice(&e.values);
        self.evaluations += e.evaluations;
        self.next = end;
        Ok(self.progress())
    }
    fn is_done(&self) -> bool {
        self.next >= self.total()
    }
    fn progress(&self) -> Progress {
        let done = self.is_done();
        Progress {
            evaluations: self.evaluations,
            budget: self.config.budget,
            active: if done { 0 } else { self.n },
            top_k: if done {
                top_k_indices(&self.values_from_table().0, self.config.top_k)
            } else {
                Vec::new()
            },
            done,
        }
    }
    fn result(&self) -> Estimates {
        if !self.is_done() {
            let unknown = PlayerEstimate {
                value: 0.0,
                stderr: f64::INFINITY,
                ci_low: f64::NEG_INFINITY,
                ci_high: f64::INFINITY,
                samples: 0,
                status: Status::Active,
            };
            return Estimates {
                players: vec![unknown; self.n],
                diagnostics: Diagnostics {
                    evaluations: self.evaluations,
                    ambiguous: self.n,
                    ..Diagnostics::default()
                },
                banzhaf: None,
            };
        }
        let (shapley, banzhaf) = self.values_from_table();
        let status = rank_status(&shapley, self.config.top_k);
        let grand = self.values[self.values.len() - 1];
        let empty = self.values[0];
        let sum: f64 = shapley.iter().sum();
        Estimates {
            players: shapley
                .iter()
                .zip(status)
                .map(|(&v, s)| PlayerEstimate::exact(v, s))
                .collect(),
            diagnostics: Diagnostics {
                evaluations: self.evaluations,
                efficiency_residual: Some((sum - (grand - empty)).abs()),
                ambiguous: 0,
                grand_value: Some(grand),
                empty_value: Some(empty),
                truncated_walks: 0,
                interval: IntervalKind::Exact,
                top_k_resolved: Some(true),
                evaluations_needed: None,
            },
            banzhaf: Some(banzhaf),
        }
    }
    fn set_budget(&mut self, budget: u64) {
        // Enumeration cannot stop half way: `new` refused budgets below 2^n, and the last
        // batch is the table's end, not the budget's.
        self.config.budget = budget;
    }
    fn save_state(&self) -> Vec<u8> {
        save(AnyRef::Exact(self))
    }
}

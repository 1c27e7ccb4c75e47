//! Leave-one-out: `v(N) - v(N \ i)` for every player, in `n + 1` evaluations.
//!
//! The baseline Neuron Shapley compares against: cheap, but blind to redundancy (two neurons
//! that back each other up both look useless when removed alone).

use serde::{Deserialize, Serialize};

use crate::batch::{clear_bit, full_row, CoalitionBatch};
use crate::config::{check_common, CommonOptions, Method};
use crate::error::ConfigError;
use crate::estimator::{save, AnyRef, Estimator};
use crate::game::{evaluate_unique, Game, GameError};
use crate::result::{
    rank_status, top_k_indices, Diagnostics, Estimates, PlayerEstimate, Progress, Status,
};

/// Configuration of [`Loo`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LooConfig {
    /// k for the reported top-k status. Default 10.
    pub top_k: usize,
    /// Must be at least `n + 1`. Default 2,000,000.
    pub budget: u64,
    /// Coalitions per game call. Default 1024.
    pub batch_size: usize,
}

impl Default for LooConfig {
    fn default() -> Self {
        Self::from_common(&CommonOptions::default())
    }
}

impl LooConfig {
    /// Takes `top_k`, `budget` and `batch_size` from the shared options.
    pub fn from_common(o: &CommonOptions) -> Self {
        Self {
            top_k: o.top_k,
            budget: o.budget,
            batch_size: o.batch_size,
        }
    }
}

/// Leave-one-out values. Row 0 is `N`, row `j + 1` is `N \ {j}`; all share one draw id so every
/// difference is taken on the same examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loo {
    config: LooConfig,
    n: usize,
    values: Vec<f64>,
    evaluations: u64,
}

impl Loo {
    /// Validates the configuration; the seed is unused (the method is deterministic).
    pub fn new(config: LooConfig, n_players: usize, _seed: u64) -> Result<Self, ConfigError> {
        check_common(n_players, config.top_k, config.budget, config.batch_size)?;
        let needed = n_players as u64 + 1;
        if config.budget < needed {
            return Err(ConfigError::BudgetTooSmallForLoo {
                needed,
                budget: config.budget,
            });
        }
        Ok(Self {
            config,
            n: n_players,
            values: Vec::with_capacity(n_players + 1),
            evaluations: 0,
        })
    }

    fn loo_values(&self) -> Vec<f64> {
        (0..self.n)
            .map(|i| self.values[0] - self.values[i + 1])
            .collect()
    }
}

impl Estimator for Loo {
    fn method(&self) -> Method {
        Method::Loo
    }
    fn n_players(&self) -> usize {
        self.n
    }
    fn step(&mut self, game: &mut dyn Game) -> Result<Progress, GameError> {
        if self.is_done() {
            return Ok(self.progress());
        }
        let start = self.values.len();
        let end = (start + self.config.batch_size).min(self.n + 1);
        let mut batch = CoalitionBatch::with_capacity(self.n, end - start);
        let full = full_row(self.n);
        for r in start..end {
            let mut row = full.clone();
            if r > 0 {
                clear_bit(&mut row, r - 1);
            }
            batch.push_row_unchecked(&row, 0);
        }
        let e = evaluate_unique(game, &batch)?;
        self.values.extend_from_slice(&e.values);
        self.evaluations += e.evaluations;
        Ok(self.progress())
    }
    fn is_done(&self) -> bool {
        self.values.len() > self.n
    }
    fn progress(&self) -> Progress {
        let done = self.is_done();
        Progress {
            evaluations: self.evaluations,
            budget: self.config.budget,
            active: if done { 0 } else { self.n },
            top_k: if done {
                top_k_indices(&self.loo_values(), self.config.top_k)
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
        let values = self.loo_values();
        let status = rank_status(&values, self.config.top_k);
        Estimates {
            players: values
                .iter()
                .zip(status)
                .map(|(&v, s)| PlayerEstimate::exact(v, s))
                .collect(),
            diagnostics: Diagnostics {
                evaluations: self.evaluations,
                grand_value: Some(self.values[0]),
                ..Diagnostics::default()
            },
            banzhaf: None,
        }
    }
    fn set_budget(&mut self, budget: u64) {
        self.config.budget = budget;
    }
    fn save_state(&self) -> Vec<u8> {
        save(AnyRef::Loo(self))
    }
}

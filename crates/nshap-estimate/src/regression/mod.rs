//! Regression-adjusted Monte Carlo: every value from every evaluation.
//!
//! Permutation sampling uses each evaluation for two players' marginals. This estimator uses
//! each for all players: it samples complementary pairs `(S, N \ S)` (see `design.rs` for the
//! size law), fits a linear surrogate game to them by least squares (`fit.rs`), takes the
//! surrogate's Shapley values (its coefficients) and corrects them with an unbiased,
//! importance-weighted Monte Carlo estimate of the residual game's values, cross-fitted so that
//! the fit never biases the answer (`estimate.rs`).
//!
//! This is the regression-adjusted Monte Carlo idea of Witter, Musco et al. (2025,
//! "Regression-adjusted Monte Carlo estimators for Shapley values and probabilistic values"),
//! with a linear surrogate, paired sampling (Covert & Lee 2021, "Improving KernelSHAP"), a
//! size-only control variate, and cross-fitting (Chernozhukov et al. 2018). Intervals are
//! normal (CLT) intervals from the pooled within-fold spread of the correction terms.
//!
//! Cost of the answer (not of the game): `O(n^2 P / 64 + K n^3)` for the exact fit with `P`
//! pairs and `K` folds, used up to `exact_fit_max_players`; `O(n P)` above it.

mod design;
mod estimate;
mod fit;

use std::sync::OnceLock;

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::batch::{full_row, members_of, words_for, CoalitionBatch};
use crate::config::{check_common, check_open_unit, CommonOptions, Method};
use crate::error::ConfigError;
use crate::estimator::{save, AnyRef, Estimator};
use crate::game::{evaluate_unique, Game, GameError};
use crate::result::{
    count_ambiguous, rank_status, top_k_indices, Diagnostics, Estimates, IntervalKind,
    PlayerEstimate, Progress,
};
use crate::stats::two_sided_z;

use design::{complement, draw_coalition, SizeLaw};
use estimate::{cross_fit, Setting};

/// Configuration of [`Regression`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegressionConfig {
    /// k for the reported top-k status (ranking only: no stopping rule). Default 10.
    pub top_k: usize,
    /// Stop once this many evaluations are spent. Default 2,000,000.
    pub budget: u64,
    /// Cross-fitting folds. Default 5.
    pub folds: usize,
    /// Coverage of the reported normal intervals. Default 0.95.
    pub confidence: f64,
    /// Target rows per game call (two per pair). Default 1024.
    pub batch_size: usize,
    /// Largest player count fitted with the sample Gram matrix (`n^2` memory per fold, `n^3`
    /// time); above it the population Gram matrix is used. Default 1024.
    pub exact_fit_max_players: usize,
}

impl Default for RegressionConfig {
    fn default() -> Self {
        Self::from_common(&CommonOptions::default())
    }
}

impl RegressionConfig {
    /// Shared options.
    pub fn from_common(o: &CommonOptions) -> Self {
        Self {
            top_k: o.top_k,
            budget: o.budget,
            folds: 5,
            confidence: o.confidence,
            batch_size: o.batch_size,
            exact_fit_max_players: 1024,
        }
    }
}

/// The sampled pairs: `S` as row bits, its size, and `y = (v(S) - v(N \ S)) / 2`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pairs {
    pub n: usize,
    pub words: usize,
    pub bits: Vec<u64>,
    pub sizes: Vec<u32>,
    pub y: Vec<f64>,
}

impl Pairs {
    fn new(n: usize) -> Self {
        Self {
            n,
            words: words_for(n),
            ..Self::default()
        }
    }
    pub fn len(&self) -> usize {
        self.y.len()
    }
    fn push(&mut self, row: &[u64], size: usize, y: f64) {
        self.bits.extend_from_slice(row);
        self.sizes.push(size as u32);
        self.y.push(y);
    }
    /// Members of pair `j`'s `S`.
    pub fn members(&self, j: usize) -> impl Iterator<Item = usize> + '_ {
        members_of(&self.bits[j * self.words..(j + 1) * self.words])
    }
}

/// The last computed result, dropped whenever new pairs arrive. Not part of the state:
/// equality and clones ignore it, a restored run recomputes it.
#[derive(Debug, Default)]
struct Cached(OnceLock<Estimates>);

impl Clone for Cached {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Cached {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Regression-adjusted Monte Carlo estimator of all Shapley values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    config: RegressionConfig,
    n: usize,
    rng: ChaCha12Rng,
    next_draw: u64,
    evaluations: u64,
    empty: Option<f64>,
    grand: Option<f64>,
    pairs: Pairs,
    done: bool,
    #[serde(skip)]
    cached: Cached,
}

impl Regression {
    /// Validates the configuration and seeds the pair stream.
    pub fn new(config: RegressionConfig, n_players: usize, seed: u64) -> Result<Self, ConfigError> {
        check_common(n_players, config.top_k, config.budget, config.batch_size)?;
        check_open_unit("confidence", config.confidence)?;
        if config.folds < 2 {
            return Err(ConfigError::invalid(
                "folds",
                config.folds,
                "must be at least 2 (cross-fitting keeps the surrogate from biasing the values)",
            ));
        }
        Ok(Self {
            config,
            n: n_players,
            rng: ChaCha12Rng::seed_from_u64(seed),
            next_draw: 0,
            evaluations: 0,
            empty: None,
            grand: None,
            pairs: Pairs::new(n_players),
            done: false,
            cached: Cached::default(),
        })
    }

    fn remaining(&self) -> u64 {
        self.config.budget.saturating_sub(self.evaluations)
    }

    /// Evaluates `v(∅)` and `v(N)`: every estimate needs them.
    fn ends(&mut self, game: &mut dyn Game) -> Result<(), GameError> {
        let mut batch = CoalitionBatch::with_capacity(self.n, 2);
        batch.push_row_unchecked(&vec![0u64; words_for(self.n)], self.next_draw);
        batch.push_row_unchecked(&full_row(self.n), self.next_draw + 1);
        self.next_draw += 2;
        let e = evaluate_unique(game, &batch)?;
        self.evaluations += e.evaluations;
        self.empty = Some(e.values[0]);
        self.grand = Some(e.values[1]);
        Ok(())
    }

    /// Draws and evaluates as many pairs as the batch size and the budget allow.
    fn sample_pairs(&mut self, game: &mut dyn Game) -> Result<(), GameError> {
        let count = (self.config.batch_size / 2)
            .max(1)
            .min((self.remaining() / 2) as usize);
        if count == 0 {
            return Ok(());
        }
        let law = SizeLaw::new(self.n);
        let mut batch = CoalitionBatch::with_capacity(self.n, 2 * count);
        let mut drawn = Vec::with_capacity(count);
        for _ in 0..count {
            let size = law.draw(&mut self.rng);
            let row = draw_coalition(&mut self.rng, self.n, size);
            // both halves on one draw: a stochastic metric sees the same examples, so noise
            // common to S and N \ S cancels in the odd part
            batch.push_row_unchecked(&row, self.next_draw);
            batch.push_row_unchecked(&complement(&row, self.n), self.next_draw);
            self.next_draw += 1;
            drawn.push((row, size));
        }
        let e = evaluate_unique(game, &batch)?;
        self.evaluations += e.evaluations;
        for (j, (row, size)) in drawn.iter().enumerate() {
            let y = (e.values[2 * j] - e.values[2 * j + 1]) / 2.0;
            self.pairs.push(row, *size, y);
        }
        Ok(())
    }

    fn compute(&self) -> Estimates {
        let grand_minus_empty = match (self.grand, self.empty) {
            (Some(g), Some(e)) => g - e,
            _ => 0.0,
        };
        let (values, stderr) = if self.n == 1 {
            (vec![grand_minus_empty], vec![0.0])
        } else if self.grand.is_none() {
            (vec![0.0; self.n], vec![f64::INFINITY; self.n])
        } else {
            let law = SizeLaw::new(self.n);
            let f = cross_fit(
                &self.pairs,
                &Setting {
                    law: &law,
                    grand_minus_empty,
                    folds: self.config.folds,
                    exact_fit_max_players: self.config.exact_fit_max_players,
                },
            );
            (f.values, f.stderr)
        };
        let z = two_sided_z(self.config.confidence);
        let status = rank_status(&values, self.config.top_k);
        let samples = if self.n == 1 {
            u64::from(self.grand.is_some())
        } else {
            self.pairs.len() as u64
        };
        let players: Vec<PlayerEstimate> = values
            .iter()
            .zip(&stderr)
            .zip(status)
            .map(|((&value, &se), status)| PlayerEstimate {
                value,
                stderr: se,
                ci_low: value - z * se,
                ci_high: value + z * se,
                samples,
                status,
            })
            .collect();
        let residual = self
            .grand
            .map(|_| (values.iter().sum::<f64>() - grand_minus_empty).abs());
        Estimates {
            diagnostics: Diagnostics {
                evaluations: self.evaluations,
                efficiency_residual: residual,
                ambiguous: count_ambiguous(&players, self.config.top_k),
                grand_value: self.grand,
                empty_value: self.empty,
                truncated_walks: 0,
                interval: if self.n == 1 && self.grand.is_some() {
                    IntervalKind::Exact
                } else {
                    IntervalKind::Normal {
                        confidence: self.config.confidence,
                    }
                },
                top_k_resolved: None,
                evaluations_needed: None,
            },
            players,
            banzhaf: None,
        }
    }
}

impl Estimator for Regression {
    fn method(&self) -> Method {
        Method::Regression
    }
    fn n_players(&self) -> usize {
        self.n
    }
    fn step(&mut self, game: &mut dyn Game) -> Result<Progress, GameError> {
        if !self.done {
            let before = self.evaluations;
            if self.grand.is_none() {
                if self.remaining() >= 2 {
                    self.ends(game)?;
                }
            } else if self.n >= 2 {
                self.sample_pairs(game)?;
            }
            self.cached = Cached::default();
            let all_known = self.n == 1 && self.grand.is_some();
            self.done = all_known || self.remaining() < 2 || self.evaluations == before;
        }
        Ok(self.progress())
    }
    fn is_done(&self) -> bool {
        self.done
    }
    fn progress(&self) -> Progress {
        // the fit costs up to a second per call on wide games: while sampling, report the
        // ranking only when a result was already computed
        let top_k = match self.cached.0.get() {
            Some(r) => top_k_indices(&r.values(), self.config.top_k),
            None if self.done => top_k_indices(&self.result().values(), self.config.top_k),
            None => Vec::new(),
        };
        Progress {
            evaluations: self.evaluations,
            budget: self.config.budget,
            active: 0,
            top_k,
            done: self.done,
        }
    }
    fn result(&self) -> Estimates {
        self.cached.0.get_or_init(|| self.compute()).clone()
    }
    fn set_budget(&mut self, budget: u64) {
        self.config.budget = budget;
        self.done = (self.n == 1 && self.grand.is_some()) || self.remaining() < 2;
    }
    fn save_state(&self) -> Vec<u8> {
        save(AnyRef::Regression(self))
    }
}

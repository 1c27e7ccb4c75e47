//! Permutation sampling: antithetic permutation walks with Neuron Shapley's truncation rule.
//!
//! Each sample is one walk (or, with `antithetic`, the average of a walk and its reverse); the
//! estimate is the per-player mean, the interval a normal one, `mean ± z stderr`.
//!
//! **Truncated players.** When the truncation rule stops a walk, the players not yet removed get
//! marginal 0 *and that 0 counts as a sample*, as in the reference. The alternative — skipping
//! them — would make each player's mean an average over only the early positions of walks, i.e.
//! over large coalitions, which is a different (and for networks, far larger) bias than the one
//! truncation already accepts: "once the network is at chance, removing more neurons changes
//! nothing". Counting the zeros estimates the Shapley value of that truncated game, keeps every
//! player's sample count equal to the number of walks, and keeps each walk's marginals summing
//! to `v(N) - v(truncation point)`. The cost is that intervals describe the truncated game; with
//! `chance_level = None` (no truncation) the estimator is unbiased and the intervals are honest.

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::config::{
    check_common, check_non_negative, check_open_unit, check_truncation, CommonOptions, Method,
    Truncation,
};
use crate::error::ConfigError;
use crate::estimator::{save, AnyRef, Estimator};
use crate::game::{Game, GameError};
use crate::result::{
    count_ambiguous, rank_status, top_k_indices, Diagnostics, Estimates, IntervalKind,
    PlayerEstimate, Progress,
};
use crate::stats::two_sided_z;
use crate::walk::{WalkEngine, WalkSettings};

/// Configuration of [`Permutation`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PermutationConfig {
    /// k for the reported top-k status. Default 10.
    pub top_k: usize,
    /// Stop once this many evaluations are spent. Default 2,000,000.
    pub budget: u64,
    /// Pair each permutation with its reverse (Covert & Lee 2021; shap). Default true: it halves
    /// the variance on near-additive games and is exact when interactions are at most pairwise.
    pub antithetic: bool,
    /// Neuron Shapley truncation; `None` (default) walks every permutation to the end.
    pub truncation: Option<Truncation>,
    /// Coverage of the reported intervals. Default 0.95.
    pub confidence: f64,
    /// Target rows per game call. Default 1024.
    pub batch_size: usize,
    /// Prefixes per walk per call; 0 (default) = `ceil(batch_size / walks in flight)`.
    pub chunk_len: usize,
    /// Walks kept in flight at least. Default 32: with truncation each wastes at most one chunk.
    pub min_walks_in_flight: usize,
    /// Walks in flight at most (each holds a permutation). Default 128.
    pub max_walks_in_flight: usize,
    /// Also stop after this many samples (walks, or antithetic pairs). Default none.
    pub max_samples: Option<u64>,
    /// Also stop once every player's standard error is at most this. Default none.
    pub target_stderr: Option<f64>,
}

impl Default for PermutationConfig {
    fn default() -> Self {
        Self::from_common(&CommonOptions::default())
    }
}

impl PermutationConfig {
    /// Shared options; `antithetic: None` means on.
    pub fn from_common(o: &CommonOptions) -> Self {
        Self {
            top_k: o.top_k,
            budget: o.budget,
            antithetic: o.antithetic.unwrap_or(true),
            truncation: o.truncation(),
            confidence: o.confidence,
            batch_size: o.batch_size,
            chunk_len: 0,
            min_walks_in_flight: 32,
            max_walks_in_flight: 128,
            max_samples: None,
            target_stderr: None,
        }
    }

    pub(crate) fn walk_settings(&self) -> WalkSettings {
        WalkSettings {
            antithetic: self.antithetic,
            truncation: self.truncation,
            batch_size: self.batch_size,
            chunk_len: self.chunk_len,
            min_walks: self.min_walks_in_flight,
            max_walks: self.max_walks_in_flight,
        }
    }
}

/// Permutation sampling estimator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Permutation {
    config: PermutationConfig,
    n: usize,
    engine: WalkEngine,
    done: bool,
}

impl Permutation {
    /// Validates the configuration and seeds the permutation stream.
    pub fn new(
        config: PermutationConfig,
        n_players: usize,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        check_common(n_players, config.top_k, config.budget, config.batch_size)?;
        check_open_unit("confidence", config.confidence)?;
        check_truncation(&config.truncation)?;
        if config.max_walks_in_flight == 0 {
            return Err(ConfigError::invalid(
                "max_walks_in_flight",
                0,
                "must be at least 1",
            ));
        }
        if let Some(t) = config.target_stderr {
            check_non_negative("target_stderr", t)?;
        }
        if config.max_samples == Some(0) {
            return Err(ConfigError::invalid("max_samples", 0, "must be at least 1"));
        }
        let engine = WalkEngine::new(
            n_players,
            config.walk_settings(),
            ChaCha12Rng::seed_from_u64(seed),
        );
        Ok(Self {
            config,
            n: n_players,
            engine,
            done: false,
        })
    }

    fn means(&self) -> Vec<f64> {
        self.engine.stats.iter().map(|s| s.mean).collect()
    }

    fn converged(&self) -> bool {
        if let Some(max) = self.config.max_samples {
            if self.engine.groups_done >= max {
                return true;
            }
        }
        if let Some(target) = self.config.target_stderr {
            if self.engine.stats.iter().all(|s| s.stderr() <= target) {
                return true;
            }
        }
        false
    }
}

impl Estimator for Permutation {
    fn method(&self) -> Method {
        Method::Permutation
    }
    fn n_players(&self) -> usize {
        self.n
    }
    fn step(&mut self, game: &mut dyn Game) -> Result<Progress, GameError> {
        if !self.done {
            let before = self.engine.evaluations;
            self.engine.step(game, self.config.budget, None)?;
            self.done = self.engine.evaluations >= self.config.budget
                || self.engine.evaluations == before
                || self.converged();
        }
        Ok(self.progress())
    }
    fn is_done(&self) -> bool {
        self.done
    }
    fn progress(&self) -> Progress {
        let r = self.result();
        Progress {
            evaluations: self.engine.evaluations,
            budget: self.config.budget,
            active: r.diagnostics.ambiguous,
            top_k: top_k_indices(&self.means(), self.config.top_k),
            done: self.done,
        }
    }
    fn result(&self) -> Estimates {
        let z = two_sided_z(self.config.confidence);
        let means = self.means();
        let status = rank_status(&means, self.config.top_k);
        let players: Vec<PlayerEstimate> = self
            .engine
            .stats
            .iter()
            .zip(status)
            .map(|(s, status)| {
                let se = s.stderr();
                PlayerEstimate {
                    value: s.mean,
                    stderr: se,
                    ci_low: s.mean - z * se,
                    ci_high: s.mean + z * se,
                    samples: s.count,
                    status,
                }
            })
            .collect();
        let e = &self.engine;
        let grand = (e.grand.count > 0).then_some(e.grand.mean);
        let empty = (e.empty.count > 0).then_some(e.empty.mean);
        let residual = match (grand, empty, e.groups_done > 0) {
            (Some(g), Some(m), true) => Some((means.iter().sum::<f64>() - (g - m)).abs()),
            _ => None,
        };
        Estimates {
            diagnostics: Diagnostics {
                evaluations: e.evaluations,
                efficiency_residual: residual,
                ambiguous: count_ambiguous(&players, self.config.top_k),
                grand_value: grand,
                empty_value: empty,
                truncated_walks: e.truncated_walks,
                interval: IntervalKind::Normal {
                    confidence: self.config.confidence,
                },
                top_k_resolved: None,
                evaluations_needed: None,
            },
            players,
            banzhaf: None,
        }
    }
    fn set_budget(&mut self, budget: u64) {
        self.config.budget = budget;
        self.done = self.engine.evaluations >= budget || self.converged();
    }
    fn save_state(&self) -> Vec<u8> {
        save(AnyRef::Permutation(self))
    }
}

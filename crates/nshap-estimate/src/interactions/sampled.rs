//! Monte Carlo pairwise Shapley interaction index for games of any size.
//!
//! **The identity.** For a pair `{i, j}` the SII weight of `S ⊆ N \ {i,j}`,
//! `|S|! (n-|S|-2)! / (n-1)!`, is the Shapley weight of `S` in a game of `n - 1` players. So
//! `I(i,j)` is the Shapley value of the merged player `[ij]` in the game on
//! `(N \ {i,j}) ∪ {[ij]}` whose marginals are the discrete derivatives: `u(S) = v(S ∪ j) - v(S)`,
//! `u(S ∪ [ij]) = v(S ∪ ij) - v(S ∪ i)`, hence `u(S ∪ [ij]) - u(S) = Δ_ij v(S)` (Grabisch &
//! Roubens 1999). Equivalently `I(i,j) = E[Δ_ij v(S)]` with `S` the predecessors of `[ij]` in a
//! uniform random order of the `n - 1` items: size uniform in `0..=n-2`, then uniform given it.
//!
//! **The estimator** samples that expectation directly, permutation-style (Castro, Gómez &
//! Tejada 2009): draw a uniform permutation of all `n` players; for every pair, `S` = the
//! predecessors of `i` other than `j` (the order of `N \ {j}` is uniform, so `i`'s position in it
//! is uniform and its predecessors are uniform given their number). One observation is
//! `Δ_ij v(S)` from the four rows `S, S ∪ i, S ∪ j, S ∪ ij`.
//!
//! * **Antithetic:** `S` and its complement in `N \ {i,j}` have equal weight (the weight is
//!   symmetric in `|S| <-> n-2-|S|`), and the complement is what the reversed permutation gives.
//!   One observation is the average of the two derivatives (8 rows): still unbiased, and exact
//!   for games whose dividends containing `{i,j}` have order <= 3 (`[k ∈ S] + [k ∉ S] = 1`).
//! * **Common random numbers:** all rows of one permutation share a fresh draw id, so a
//!   stochastic game evaluates the four (eight) coalitions of a derivative on the same examples.
//! * One permutation serves every pair of a round; pairs' estimates are then correlated with each
//!   other, but each pair's observations stay i.i.d. across permutations, so each pair's mean is
//!   unbiased and `stderr = sd / sqrt(samples)` is honest. Rows shared between pairs (e.g.
//!   prefixes of the permutation) are merged by [`evaluate_unique`].
//! * Every round puts `batch_size / (8 pairs)` permutations (at least one) into one game call;
//!   the budget counts rows reaching the game, and a round is shrunk or skipped rather than
//!   exceed it. Seeded with ChaCha12: the same seed gives the same result.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::batch::{clear_bit, full_row, set_bit, words_for, CoalitionBatch};
use crate::error::ConfigError;
use crate::game::{evaluate_unique, Game, GameError};
use crate::interactions::Interaction;
use crate::stats::Welford;

/// Rows behind one observation of one pair: `S, S ∪ i, S ∪ j, S ∪ ij` and the antithetic four.
const ROWS_PER_OBSERVATION: u64 = 8;

/// Configuration of [`SampledSii`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SampledSiiConfig {
    /// Stop before this many evaluations (rows that reach the game) would be exceeded. Must
    /// cover one observation of every pair (`8 x pairs`). Default 2,000,000.
    pub budget: u64,
    /// Target rows per game call (at least one permutation, `8 x pairs` rows, per call).
    /// Default 1024.
    pub batch_size: usize,
    /// Seed of the permutation stream. Default 0.
    pub seed: u64,
}

impl Default for SampledSiiConfig {
    fn default() -> Self {
        Self {
            budget: 2_000_000,
            batch_size: 1024,
            seed: 0,
        }
    }
}

/// Where a [`SampledSii`] run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiiProgress {
    /// Rows that reached the game.
    pub evaluations: u64,
    /// The configured budget.
    pub budget: u64,
    /// Observations per pair so far (antithetic pairs of derivatives).
    pub samples: u64,
    /// True once the budget cannot pay for another observation.
    pub done: bool,
}

/// Monte Carlo estimator of the pairwise Shapley interaction index (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampledSii {
    config: SampledSiiConfig,
    n: usize,
    /// `(i, j)` with `i < j`, in the caller's order.
    pairs: Vec<(usize, usize)>,
    rng: ChaCha12Rng,
    stats: Vec<Welford>,
    samples: u64,
    evaluations: u64,
    next_draw: u64,
    done: bool,
}

impl SampledSii {
    /// Validates the pairs and the budget and seeds the permutation stream.
    ///
    /// Errors for `n < 2`, no pairs, a pair `(i, i)`, a player `>= n`, `batch_size = 0`, or a
    /// budget below one observation of every pair (`8 x pairs` evaluations).
    pub fn new(
        config: SampledSiiConfig,
        n_players: usize,
        pairs: Vec<(usize, usize)>,
    ) -> Result<Self, ConfigError> {
        let pairs: Vec<(usize, usize)> = pairs
            .into_iter()
            .map(|(i, j)| (i.min(j), i.max(j)))
            .collect();
        let est = Self {
            rng: ChaCha12Rng::seed_from_u64(config.seed),
            config,
            n: n_players,
            stats: vec![Welford::default(); pairs.len()],
            pairs,
            samples: 0,
            evaluations: 0,
            next_draw: 0,
            done: false,
        };
        est.check()?;
        Ok(est)
    }

    /// The checks of [`SampledSii::new`], repeated before each step so a hand-edited saved state
    /// is an error, not an out-of-bounds panic.
    fn check(&self) -> Result<(), ConfigError> {
        if self.n < 2 {
            return Err(ConfigError::invalid(
                "n_players",
                self.n,
                "interactions need at least 2 players",
            ));
        }
        if self.config.batch_size == 0 {
            return Err(ConfigError::invalid("batch_size", 0, "must be at least 1"));
        }
        if self.pairs.is_empty() {
            return Err(ConfigError::invalid(
                "pairs",
                "[]",
                "at least one pair of players is needed",
            ));
        }
        for &(i, j) in &self.pairs {
            if j >= self.n {
                return Err(ConfigError::PlayerOutOfRange {
                    player: j,
                    n_players: self.n,
                });
            }
            if i == j {
                return Err(ConfigError::invalid(
                    "pair",
                    format!("({i}, {j})"),
                    "a pair needs two distinct players",
                ));
            }
        }
        if self.stats.len() != self.pairs.len() {
            return Err(ConfigError::invalid(
                "stats",
                self.stats.len(),
                "must hold one entry per pair",
            ));
        }
        let needed = self.observation_cost();
        if self.config.budget < needed {
            return Err(ConfigError::BudgetTooSmallForSii {
                pairs: self.pairs.len(),
                needed,
                budget: self.config.budget,
            });
        }
        Ok(())
    }

    /// Rows of one permutation: one observation of every pair.
    fn observation_cost(&self) -> u64 {
        ROWS_PER_OBSERVATION * self.pairs.len() as u64
    }

    /// Number of players.
    pub fn n_players(&self) -> usize {
        self.n
    }

    /// The pairs, each as `(smaller, larger)`, in the caller's order.
    pub fn pairs(&self) -> &[(usize, usize)] {
        &self.pairs
    }

    /// One round: `batch_size / (8 pairs)` permutations (at least one, fewer if the budget is
    /// short) in one game call.
    pub fn step(&mut self, game: &mut dyn Game) -> Result<SiiProgress, GameError> {
        if self.done {
            return Ok(self.progress());
        }
        self.check()?;
        let cost = self.observation_cost();
        let remaining = self.config.budget.saturating_sub(self.evaluations);
        let perms = (self.config.batch_size as u64 / cost)
            .max(1)
            .min(remaining / cost);
        if perms == 0 {
            self.done = true;
            return Ok(self.progress());
        }
        let mut batch = CoalitionBatch::with_capacity(self.n, (perms * cost) as usize);
        let mut rows = RowBuilder::new(self.n, &self.pairs);
        for _ in 0..perms {
            let draw = self.next_draw;
            self.next_draw += 1;
            rows.push_permutation(&mut self.rng, draw, &self.pairs, &mut batch);
        }
        let e = evaluate_unique(game, &batch)?;
        let per = ROWS_PER_OBSERVATION as usize;
        for (obs, v) in e.values.chunks_exact(per).enumerate() {
            let forward = (v[3] - v[1]) - (v[2] - v[0]);
            let reverse = (v[7] - v[5]) - (v[6] - v[4]);
            self.stats[obs % self.pairs.len()].push(0.5 * (forward + reverse));
        }
        self.evaluations += e.evaluations;
        self.samples += perms;
        self.done = self.config.budget.saturating_sub(self.evaluations) < cost;
        Ok(self.progress())
    }

    /// True once the budget cannot pay for another observation of every pair.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Evaluations, budget and observations per pair so far.
    pub fn progress(&self) -> SiiProgress {
        SiiProgress {
            evaluations: self.evaluations,
            budget: self.config.budget,
            samples: self.samples,
            done: self.done,
        }
    }

    /// One estimate per pair, in the caller's order: the mean observation and
    /// `stderr = sd / sqrt(samples)` (infinite before two observations).
    pub fn result(&self) -> Vec<Interaction> {
        self.pairs
            .iter()
            .zip(&self.stats)
            .map(|(&(i, j), s)| Interaction {
                players: vec![i, j],
                value: s.mean,
                stderr: s.stderr(),
                samples: s.count,
            })
            .collect()
    }
}

/// Builds the rows of one permutation for every pair, reusing its buffers across permutations.
struct RowBuilder {
    words: usize,
    full: Vec<u64>,
    /// Distinct first players `i` of the pairs, and each pair's index into it.
    anchors: Vec<usize>,
    anchor_of_pair: Vec<usize>,
    /// `prefixes[a]`: the players before `anchors[a]` in the current permutation.
    prefixes: Vec<u64>,
    order: Vec<usize>,
    position: Vec<usize>,
    by_position: Vec<usize>,
}

impl RowBuilder {
    fn new(n: usize, pairs: &[(usize, usize)]) -> Self {
        let mut anchors: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        anchors.sort_unstable();
        anchors.dedup();
        let anchor_of_pair = pairs
            .iter()
            .map(|p| anchors.binary_search(&p.0).unwrap_or(0))
            .collect();
        let words = words_for(n);
        Self {
            words,
            full: full_row(n),
            prefixes: vec![0; anchors.len() * words],
            by_position: (0..anchors.len()).collect(),
            anchors,
            anchor_of_pair,
            order: (0..n).collect(),
            position: vec![0; n],
        }
    }

    /// Draws a permutation and appends `8 x pairs` rows under `draw`: per pair, the forward
    /// `S, S ∪ i, S ∪ j, S ∪ ij` with `S` = predecessors of `i` other than `j`, then the same
    /// four for the complement of `S` in `N \ {i,j}` (the reversed permutation's `S`).
    fn push_permutation(
        &mut self,
        rng: &mut ChaCha12Rng,
        draw: u64,
        pairs: &[(usize, usize)],
        batch: &mut CoalitionBatch,
    ) {
        // a fresh identity each time, so the permutation depends only on the RNG state
        for (k, o) in self.order.iter_mut().enumerate() {
            *o = k;
        }
        self.order.shuffle(rng);
        for (k, &p) in self.order.iter().enumerate() {
            self.position[p] = k;
        }
        let (anchors, position) = (&self.anchors, &self.position);
        self.by_position
            .sort_unstable_by_key(|&a| position[anchors[a]]);
        let mut row = vec![0u64; self.words];
        let mut k = 0;
        for &a in &self.by_position {
            while k < self.position[self.anchors[a]] {
                set_bit(&mut row, self.order[k]);
                k += 1;
            }
            self.prefixes[a * self.words..(a + 1) * self.words].copy_from_slice(&row);
        }
        for (&(i, j), &a) in pairs.iter().zip(&self.anchor_of_pair) {
            let prefix = &self.prefixes[a * self.words..(a + 1) * self.words];
            row.copy_from_slice(prefix);
            push_four(&mut row, i, j, draw, batch);
            for ((r, p), f) in row.iter_mut().zip(prefix).zip(&self.full) {
                *r = f & !p;
            }
            push_four(&mut row, i, j, draw, batch);
        }
    }
}

/// Appends `S, S ∪ i, S ∪ j, S ∪ ij` for `S = row \ {i, j}`.
fn push_four(row: &mut [u64], i: usize, j: usize, draw: u64, batch: &mut CoalitionBatch) {
    clear_bit(row, i);
    clear_bit(row, j);
    batch.push_row_unchecked(row, draw);
    set_bit(row, i);
    batch.push_row_unchecked(row, draw);
    clear_bit(row, i);
    set_bit(row, j);
    batch.push_row_unchecked(row, draw);
    set_bit(row, i);
    batch.push_row_unchecked(row, draw);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward `S` of a pair has the SII weight distribution: size uniform on `0..=n-2`.
    #[test]
    fn subset_sizes_are_uniform() {
        let n = 6;
        let pairs = [(1, 4)];
        let mut rows = RowBuilder::new(n, &pairs);
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let mut counts = vec![0u64; n - 1];
        let draws = 20_000;
        for d in 0..draws {
            let mut b = CoalitionBatch::new(n);
            rows.push_permutation(&mut rng, d, &pairs, &mut b);
            assert_eq!(b.len(), 8);
            assert!(b.draws().iter().all(|&x| x == d));
            let s = b.count(0);
            assert!(!b.contains(0, 1) && !b.contains(0, 4));
            assert_eq!(b.members(3).count(), s + 2);
            // antithetic: the complement within N \ {1, 4}
            assert_eq!(b.count(4), n - 2 - s);
            assert!((0..n).all(|p| p == 1 || p == 4 || b.contains(0, p) != b.contains(4, p)));
            counts[s] += 1;
        }
        let expect = draws as f64 / (n - 1) as f64;
        for c in counts {
            assert!(
                (c as f64 - expect).abs() < 5.0 * expect.sqrt(),
                "{c} vs {expect}"
            );
        }
    }
}

//! The game that joins a model, a backend and an eval set: coalitions of neurons -> metric values.
//!
//! It lives in the facade so that the estimator crate knows nothing of networks.

use nshap_estimate::{CoalitionBatch, Game, GameError};
use nshap_model::{Evaluator, Examples, MaskBatch};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// A Neuron Shapley game: v(S) = metric of the network with every player outside S removed.
pub struct NetworkGame {
    evaluator: Box<dyn Evaluator>,
    n_players: usize,
    n_examples: usize,
    /// Examples per evaluation; `None` evaluates every coalition on the whole eval set.
    examples_per_eval: Option<usize>,
    /// Mixed into each draw id so different runs sample different examples.
    seed: u64,
    /// Coalition-example forward passes done so far (a cost figure for reports).
    pub coalition_examples: u64,
}

impl NetworkGame {
    /// `examples_per_eval` >= the eval set size means "all examples".
    pub fn new(
        evaluator: Box<dyn Evaluator>,
        n_players: usize,
        n_examples: usize,
        examples_per_eval: Option<usize>,
        seed: u64,
    ) -> NetworkGame {
        let examples_per_eval = examples_per_eval.filter(|&k| k > 0 && k < n_examples);
        NetworkGame {
            evaluator,
            n_players,
            n_examples,
            examples_per_eval,
            seed,
            coalition_examples: 0,
        }
    }

    pub fn evaluator(&self) -> &dyn Evaluator {
        self.evaluator.as_ref()
    }

    /// The backend evaluator, for callers that pick coalitions themselves (ablation curves).
    pub fn evaluator_mut(&mut self) -> &mut dyn Evaluator {
        self.evaluator.as_mut()
    }

    /// The examples a draw id stands for: the same draw always gives the same subset, so both
    /// sides of a marginal contribution see the same examples (common random numbers).
    pub fn examples_of_draw(&self, draw: u64) -> Option<Vec<u32>> {
        let k = self.examples_per_eval?;
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut idx: Vec<u32> = sample(&mut rng, self.n_examples, k)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        idx.sort_unstable();
        Some(idx)
    }
}

/// Repack u64 rows (estimator layout) into u32 rows (backend layout).
pub fn to_mask_batch(batch: &CoalitionBatch, rows: &[usize]) -> MaskBatch {
    let mut masks = MaskBatch::new(batch.n_players());
    let wpr = masks.words_per_row();
    let mut words = vec![0u32; wpr];
    for &r in rows {
        for (i, w) in batch.row_bits(r).iter().enumerate() {
            if 2 * i < wpr {
                words[2 * i] = *w as u32;
            }
            if 2 * i + 1 < wpr {
                words[2 * i + 1] = (*w >> 32) as u32;
            }
        }
        masks.push_words(&words);
    }
    masks
}

impl Game for NetworkGame {
    fn n_players(&self) -> usize {
        self.n_players
    }

    fn is_deterministic(&self) -> bool {
        self.examples_per_eval.is_none()
    }

    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        let mut values = vec![0.0; batch.len()];
        // Group rows by the examples they must see: one backend call per group.
        let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for r in 0..batch.len() {
            let key = if self.examples_per_eval.is_some() {
                batch.draw(r)
            } else {
                0
            };
            groups.entry(key).or_default().push(r);
        }
        for (draw, rows) in groups {
            let masks = to_mask_batch(batch, &rows);
            let subset = self.examples_of_draw(draw);
            let examples = subset.as_deref().map_or(Examples::All, Examples::Subset);
            let out = self.evaluator.evaluate(examples, &masks)?;
            self.coalition_examples +=
                (rows.len() * subset.as_ref().map_or(self.n_examples, Vec::len)) as u64;
            for (r, v) in rows.into_iter().zip(out) {
                values[r] = v;
            }
        }
        Ok(values)
    }
}

//! Anchor coalitions and their single-player flips: the sampling unit shared by CMCS and the
//! certified top-k.
//!
//! An anchor `S` has a size uniform in `0..=n` and is uniform given its size; for each selected
//! player `i` the batch also holds `S xor {i}`, on the anchor's draw id. The marginal is
//! `v(S ∪ i) - v(S)` when `i ∉ S` and `v(S) - v(S \ i)` when `i ∈ S`: an unbiased sample of
//! `phi_i`, independent across anchors.

use rand::seq::index;
use rand::Rng;
use rand_chacha::ChaCha12Rng;

use crate::batch::{has_bit, set_bit, words_for, CoalitionBatch};
use crate::game::{evaluate_unique, Game, GameError};

/// What one call produced.
pub(crate) struct Sampled {
    /// Rows the game evaluated (after dedup).
    pub evaluations: u64,
    /// Anchors drawn.
    pub anchors: u64,
    /// `(player, marginal)` in anchor order, then in the order of `selected`.
    pub marginals: Vec<(usize, f64)>,
}

/// Draws as many anchors as `batch_size` and the `remaining` budget allow (at least one), flips
/// `selected` on each, and evaluates them in one game call. `None` when fewer than 2
/// evaluations remain (one anchor and one flip); a budget too small for every flip flips the
/// first players of `selected` only.
pub(crate) fn sample(
    game: &mut dyn Game,
    rng: &mut ChaCha12Rng,
    next_draw: &mut u64,
    n: usize,
    mut selected: Vec<usize>,
    remaining: u64,
    batch_size: usize,
) -> Result<Option<Sampled>, GameError> {
    if remaining < 2 {
        return Ok(None);
    }
    selected.truncate(remaining as usize - 1);
    let cost = selected.len() + 1;
    let anchors = (batch_size / cost).max(1).min(remaining as usize / cost);
    let mut batch = CoalitionBatch::with_capacity(n, anchors * cost);
    let mut anchor_rows: Vec<Vec<u64>> = Vec::with_capacity(anchors);
    for _ in 0..anchors {
        let size = rng.random_range(0..=n);
        let mut row = vec![0u64; words_for(n)];
        for i in index::sample(rng, n, size) {
            set_bit(&mut row, i);
        }
        let draw = *next_draw;
        *next_draw += 1;
        batch.push_row_unchecked(&row, draw);
        for &i in &selected {
            row[i / 64] ^= 1u64 << (i % 64);
            batch.push_row_unchecked(&row, draw);
            row[i / 64] ^= 1u64 << (i % 64);
        }
        anchor_rows.push(row);
    }
    let e = evaluate_unique(game, &batch)?;
    let mut marginals = Vec::with_capacity(anchors * selected.len());
    for (a, row) in anchor_rows.iter().enumerate() {
        let base = a * cost;
        let v_s = e.values[base];
        for (j, &i) in selected.iter().enumerate() {
            let v_flip = e.values[base + 1 + j];
            let marginal = if has_bit(row, i) {
                v_s - v_flip
            } else {
                v_flip - v_s
            };
            marginals.push((i, marginal));
        }
    }
    Ok(Some(Sampled {
        evaluations: e.evaluations,
        anchors: anchors as u64,
        marginals,
    }))
}

//! Any function of the packed coalition as a game.

use crate::batch::CoalitionBatch;
use crate::game::{Game, GameError};

/// Wraps `f(packed_row) -> value` (deterministic: draws are ignored).
pub struct FnGame<F> {
    n: usize,
    f: F,
}

impl<F: FnMut(&[u64]) -> f64> FnGame<F> {
    /// A game of `n` players whose value is `f` of the packed row.
    pub fn new(n: usize, f: F) -> Self {
        Self { n, f }
    }
}

impl<F: FnMut(&[u64]) -> f64> Game for FnGame<F> {
    fn n_players(&self) -> usize {
        self.n
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        super::check_width(batch, self.n)?;
        Ok((0..batch.len())
            .map(|r| (self.f)(batch.row_bits(r)))
            .collect())
    }
    fn is_deterministic(&self) -> bool {
        true
    }
}

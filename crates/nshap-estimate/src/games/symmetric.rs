//! `v(S) = g(|S|)`: every player is symmetric to every other, so all Shapley values are equal.

use crate::batch::CoalitionBatch;
use crate::game::{Game, GameError};
use crate::games::ClosedForm;

/// A game that only depends on coalition size; `phi_i = (g(n) - g(0)) / n` by symmetry and
/// efficiency.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeGame {
    by_size: Vec<f64>,
}

impl SizeGame {
    /// `by_size[s]` is the value of any coalition of size `s`; `n = by_size.len() - 1`.
    /// An empty table is treated as `[0.0]` (no players).
    pub fn new(by_size: Vec<f64>) -> Self {
        let by_size = if by_size.is_empty() {
            vec![0.0]
        } else {
            by_size
        };
        Self { by_size }
    }
}

impl Game for SizeGame {
    fn n_players(&self) -> usize {
        self.by_size.len() - 1
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        super::check_width(batch, self.n_players())?;
        Ok((0..batch.len())
            .map(|r| self.by_size[batch.count(r)])
            .collect())
    }
    fn is_deterministic(&self) -> bool {
        true
    }
}

impl ClosedForm for SizeGame {
    fn shapley(&self) -> Vec<f64> {
        let n = self.n_players();
        let each = (self.by_size[n] - self.by_size[0]) / n as f64;
        vec![each; n]
    }
}

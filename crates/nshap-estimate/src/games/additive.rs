//! `v(S) = sum of w_i over i in S`: every marginal is the player's own weight.

use crate::batch::CoalitionBatch;
use crate::game::{Game, GameError};
use crate::games::ClosedForm;

/// The additive game; `phi_i = w_i` and every estimator should be exact on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Additive {
    weights: Vec<f64>,
}

impl Additive {
    /// One weight per player.
    pub fn new(weights: Vec<f64>) -> Self {
        Self { weights }
    }
}

impl Game for Additive {
    fn n_players(&self) -> usize {
        self.weights.len()
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        super::check_width(batch, self.weights.len())?;
        Ok((0..batch.len())
            .map(|r| batch.members(r).map(|i| self.weights[i]).sum())
            .collect())
    }
    fn is_deterministic(&self) -> bool {
        true
    }
}

impl ClosedForm for Additive {
    fn shapley(&self) -> Vec<f64> {
        self.weights.clone()
    }
}

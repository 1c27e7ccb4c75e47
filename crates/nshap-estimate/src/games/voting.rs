//! Weighted voting games: `v(S) = 1` when the weights in `S` reach the quota, else 0.
//!
//! Their Shapley values (the Shapley–Shubik power index) are published for classic bodies, which
//! makes them an outside check on exact enumeration.

use crate::batch::CoalitionBatch;
use crate::game::{Game, GameError};

/// `[quota; w_1, ..., w_n]`.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedVoting {
    weights: Vec<f64>,
    quota: f64,
}

impl WeightedVoting {
    /// A weighted voting game with the given weights and quota.
    pub fn new(weights: Vec<f64>, quota: f64) -> Self {
        Self { weights, quota }
    }

    /// The UN Security Council as analysed by Shapley & Shubik (1954), "A Method for Evaluating
    /// the Distribution of Power in a Committee System", APSR 48(3): 11 members, a motion needs 7
    /// votes including all 5 permanent members (veto). As a weighted game: `[27; 5,5,5,5,5,
    /// 1,1,1,1,1,1]`. Published power: 0.1974 per permanent member (76/385 exactly) and 0.0022 per
    /// non-permanent member (1/462 exactly). Permanent members are players 0..5.
    pub fn un_security_council_1954() -> Self {
        let mut w = vec![5.0; 5];
        w.extend([1.0; 6]);
        Self::new(w, 27.0)
    }

    /// The 15-member UN Security Council since 1965: 9 votes including the 5 permanent members,
    /// `[39; 7 x 5, 1 x 10]`. Its Shapley–Shubik index, 0.1963 per permanent member (421/2145)
    /// and 0.0019 per non-permanent member (4/2145), is a standard textbook example (e.g. Straffin,
    /// "Game Theory and Strategy", MAA 1993).
    pub fn un_security_council() -> Self {
        let mut w = vec![7.0; 5];
        w.extend([1.0; 10]);
        Self::new(w, 39.0)
    }
}

impl Game for WeightedVoting {
    fn n_players(&self) -> usize {
        self.weights.len()
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        super::check_width(batch, self.weights.len())?;
        Ok((0..batch.len())
            .map(|r| {
                let total: f64 = batch.members(r).map(|i| self.weights[i]).sum();
                if total >= self.quota {
                    1.0
                } else {
                    0.0
                }
            })
            .collect())
    }
    fn is_deterministic(&self) -> bool {
        true
    }
}

//! Adds null players: players that never change the value (the null-player axiom says phi = 0).

use crate::batch::CoalitionBatch;
use crate::game::{Game, GameError};
use crate::games::ClosedForm;

/// `inner` plus `extra` null players, numbered after the inner game's players.
#[derive(Clone, Debug)]
pub struct WithNullPlayers<G> {
    inner: G,
    extra: usize,
}

impl<G: Game> WithNullPlayers<G> {
    /// Appends `extra` null players to `inner`.
    pub fn new(inner: G, extra: usize) -> Self {
        Self { inner, extra }
    }
}

impl<G: Game> Game for WithNullPlayers<G> {
    fn n_players(&self) -> usize {
        self.inner.n_players() + self.extra
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        super::check_width(batch, self.n_players())?;
        let n_inner = self.inner.n_players();
        let mut projected = CoalitionBatch::with_capacity(n_inner, batch.len());
        for r in 0..batch.len() {
            projected.push(batch.members(r).filter(|&i| i < n_inner), batch.draw(r))?;
        }
        self.inner.evaluate(&projected)
    }
    fn is_deterministic(&self) -> bool {
        self.inner.is_deterministic()
    }
}

impl<G: Game + ClosedForm> ClosedForm for WithNullPlayers<G> {
    fn shapley(&self) -> Vec<f64> {
        let mut phi = self.inner.shapley();
        phi.resize(phi.len() + self.extra, 0.0);
        phi
    }
}

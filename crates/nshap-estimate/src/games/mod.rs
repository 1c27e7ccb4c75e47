//! Games with known Shapley values, for tests, benchmarks and the docs table.
//!
//! They know nothing of networks: each is a small, exact model of one property an estimator must
//! get right (additivity, interactions, symmetry, null players, noise). Every deterministic game
//! here reports [`Game::is_deterministic`] so the dedup helper may merge equal coalitions.
//!
//! [`Game::is_deterministic`]: crate::Game::is_deterministic

mod additive;
mod func;
mod noisy;
mod null;
mod rare;
mod soum;
mod symmetric;
mod voting;

pub use additive::Additive;
pub use func::FnGame;
pub use noisy::Noisy;
pub use null::WithNullPlayers;
pub use rare::HiddenUnanimity;
pub use soum::{PlantedTopK, Soum, Unanimity};
pub use symmetric::SizeGame;
pub use voting::WeightedVoting;

/// Errors (instead of indexing out of bounds) when a batch was built for another player count.
pub(crate) fn check_width(batch: &crate::CoalitionBatch, n: usize) -> Result<(), crate::GameError> {
    if batch.n_players() == n {
        Ok(())
    } else {
        Err(Box::new(crate::EvalError::PlayerCount {
            game: n,
            estimator: batch.n_players(),
        }))
    }
}

/// A game whose Shapley values are known in closed form.
pub trait ClosedForm {
    /// The exact Shapley value of every player.
    fn shapley(&self) -> Vec<f64>;
}

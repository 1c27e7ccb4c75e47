//! All `2^n` coalition values of a game: the one enumeration every exact index is computed from.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::exact::{evaluate_masks, shapley_banzhaf, MAX_EXACT_PLAYERS};
use crate::game::{Game, GameError};
use crate::interactions::{Interaction, InteractionIndex};

/// `v(mask)` for every coalition of `n <= 20` players; bit `i` of the index is player `i`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueTable {
    n: usize,
    values: Vec<f64>,
    evaluations: u64,
}

impl ValueTable {
    /// Enumerates every coalition of `game`, `batch_size` per game call, all under draw id 0 (a
    /// stochastic game is enumerated on one sample of examples, as in [`Exact`](crate::Exact)),
    /// calling `progress(done, total)` after each call.
    ///
    /// Errors (a [`ConfigError`] inside the [`GameError`]) for `n = 0`, `n > 20` or
    /// `batch_size = 0`; passes game errors through.
    pub fn enumerate(
        game: &mut dyn Game,
        batch_size: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ValueTable, GameError> {
        let n = game.n_players();
        check_size(n)?;
        if n == 0 {
            return Err(Box::new(ConfigError::NoPlayers));
        }
        if batch_size == 0 {
            return Err(Box::new(ConfigError::invalid(
                "batch_size",
                0,
                "must be at least 1",
            )));
        }
        let total = 1u64 << n;
        let mut values = Vec::with_capacity(total as usize);
        let mut evaluations = 0;
        let mut next = 0;
        while next < total {
            let end = (next + batch_size as u64).min(total);
            let e = evaluate_masks(game, n, next..end)?;
            values.extend_from_slice(&e.values);
            evaluations += e.evaluations;
            next = end;
            progress(next, total);
        }
        Ok(Self {
            n,
            values,
            evaluations,
        })
    }

    /// A table from known values (`values[mask]`, `2^n` of them, finite). Costs no evaluations.
    pub fn from_values(n: usize, values: Vec<f64>) -> Result<ValueTable, ConfigError> {
        check_size(n)?;
        if values.len() != 1 << n {
            return Err(ConfigError::TableLength {
                n,
                expected: 1 << n,
                found: values.len(),
            });
        }
        if let Some((mask, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ConfigError::invalid(
                "values",
                format!("{v} (coalition {mask})"),
                "every coalition value must be finite",
            ));
        }
        Ok(Self {
            n,
            values,
            evaluations: 0,
        })
    }

    /// Number of players.
    pub fn n_players(&self) -> usize {
        self.n
    }

    /// `v(mask)` for every mask.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Rows that reached the game while enumerating (0 for [`ValueTable::from_values`]).
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Exact Shapley values, computed by the same code as [`Exact`](crate::Exact).
    pub fn shapley(&self) -> Vec<f64> {
        shapley_banzhaf(self.n, &self.values).0
    }

    /// Exact Banzhaf values, computed by the same code as [`Exact`](crate::Exact).
    pub fn banzhaf(&self) -> Vec<f64> {
        shapley_banzhaf(self.n, &self.values).1
    }

    /// Errors when a player in `players` is not one of this game's: [`ValueTable::moebius`] and
    /// [`ValueTable::sii`] silently drop such players, so check user input first.
    pub fn check_players(&self, players: &[usize]) -> Result<(), ConfigError> {
        match players.iter().find(|&&i| i >= self.n) {
            Some(&player) => Err(ConfigError::PlayerOutOfRange {
                player,
                n_players: self.n,
            }),
            None => Ok(()),
        }
    }

    /// `index` of every `T ⊆ within` up to `max_order`: [`ValueTable::moebius`] or
    /// [`ValueTable::sii`].
    pub fn interactions(
        &self,
        index: InteractionIndex,
        max_order: usize,
        within: Option<&[usize]>,
    ) -> Vec<Interaction> {
        match index {
            InteractionIndex::Moebius => self.moebius(max_order, within),
            InteractionIndex::Sii => self.sii(max_order, within),
        }
    }
}

fn check_size(n: usize) -> Result<(), ConfigError> {
    if n > MAX_EXACT_PLAYERS {
        return Err(ConfigError::TooManyPlayersForExact {
            n,
            max: MAX_EXACT_PLAYERS,
        });
    }
    Ok(())
}

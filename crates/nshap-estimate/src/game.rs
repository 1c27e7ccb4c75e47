//! The game interface and the one door through which estimators call it.
//!
//! Estimators never call [`Game::evaluate`] directly: they go through [`evaluate_unique`], which
//! drops duplicate rows before the call (a walk's grand coalition, the empty coalition, shared
//! prefixes), checks the answer, and scatters it back. The budget counts the rows that reach the
//! game, because those are what cost forward passes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::batch::CoalitionBatch;
use crate::error::EvalError;

/// Any error a game may raise; estimators pass it through unchanged.
pub type GameError = Box<dyn std::error::Error + Send + Sync>;

/// A cooperative game: a value for every coalition of `n_players()` players.
pub trait Game {
    /// Number of players.
    fn n_players(&self) -> usize;

    /// One value per row of `batch`. Rows sharing a draw id must be evaluated on the same random
    /// examples; deterministic games ignore draws.
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError>;

    /// True when the value ignores draw ids (the same coalition always has the same value).
    ///
    /// The dedup helper then also merges equal coalitions with different draws, which saves
    /// evaluations (e.g. the grand coalition of every permutation walk). Default: `false`, the
    /// safe answer for stochastic games.
    fn is_deterministic(&self) -> bool {
        false
    }
}

impl<G: Game + ?Sized> Game for &mut G {
    fn n_players(&self) -> usize {
        (**self).n_players()
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        (**self).evaluate(batch)
    }
    fn is_deterministic(&self) -> bool {
        (**self).is_deterministic()
    }
}

impl<G: Game + ?Sized> Game for Box<G> {
    fn n_players(&self) -> usize {
        (**self).n_players()
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        (**self).evaluate(batch)
    }
    fn is_deterministic(&self) -> bool {
        (**self).is_deterministic()
    }
}

/// Values for every row of a batch, and how many rows the game actually evaluated.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluated {
    /// One value per row of the original batch (duplicates get the same value).
    pub values: Vec<f64>,
    /// Rows handed to the game after deduplication: what the budget is charged.
    pub evaluations: u64,
}

/// Evaluates `batch` on `game` once per distinct (row, draw) pair — or once per distinct row when
/// the game is deterministic — and scatters the values back to every row.
///
/// Errors (never panics) when the game has a different number of players than the batch, returns
/// the wrong number of values, or returns a non-finite value: any of those would silently poison
/// every estimate downstream. An empty batch costs nothing and does not call the game.
pub fn evaluate_unique(
    game: &mut dyn Game,
    batch: &CoalitionBatch,
) -> Result<Evaluated, GameError> {
    if game.n_players() != batch.n_players() {
        return Err(Box::new(EvalError::PlayerCount {
            game: game.n_players(),
            estimator: batch.n_players(),
        }));
    }
    if batch.is_empty() {
        return Ok(Evaluated {
            values: Vec::new(),
            evaluations: 0,
        });
    }
    let ignore_draws = game.is_deterministic();
    let mut first_of: HashMap<(&[u64], u64), usize, BuildHasherDefault<RowHasher>> =
        HashMap::with_capacity_and_hasher(batch.len(), Default::default());
    let mut slot = Vec::with_capacity(batch.len());
    let mut unique = CoalitionBatch::with_capacity(batch.n_players(), batch.len());
    for row in 0..batch.len() {
        let bits = batch.row_bits(row);
        let key = (bits, if ignore_draws { 0 } else { batch.draw(row) });
        let next = unique.len();
        let s = *first_of.entry(key).or_insert_with(|| {
            unique.push_row_unchecked(bits, batch.draw(row));
            next
        });
        slot.push(s);
    }
    let unique_values = game.evaluate(&unique)?;
    if unique_values.len() != unique.len() {
        return Err(Box::new(EvalError::WrongLength {
            expected: unique.len(),
            found: unique_values.len(),
        }));
    }
    if let Some((row, &value)) = unique_values
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        return Err(Box::new(EvalError::NonFinite { row, value }));
    }
    Ok(Evaluated {
        values: slot.iter().map(|&s| unique_values[s]).collect(),
        evaluations: unique.len() as u64,
    })
}

/// A fast multiplicative hasher for packed rows (keys are our own bit rows, not attacker
/// controlled, so SipHash's DoS resistance buys nothing and costs most of the dedup time).
#[derive(Default)]
struct RowHasher(u64);

impl Hasher for RowHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }
    fn write_u64(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, w: usize) {
        self.write_u64(w as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts rows and echoes each row's draw id plus its size, to check the scatter.
    struct Echo {
        n: usize,
        seen: usize,
        deterministic: bool,
    }
    impl Game for Echo {
        fn n_players(&self) -> usize {
            self.n
        }
        fn evaluate(&mut self, b: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
            self.seen += b.len();
            Ok((0..b.len())
                .map(|r| {
                    b.count(r) as f64
                        + if self.deterministic {
                            0.0
                        } else {
                            100.0 * b.draw(r) as f64
                        }
                })
                .collect())
        }
        fn is_deterministic(&self) -> bool {
            self.deterministic
        }
    }

    #[test]
    fn dedup_by_row_and_draw() {
        let mut b = CoalitionBatch::new(5);
        b.push([0, 1], 1).unwrap();
        b.push([0, 1], 1).unwrap();
        b.push([0, 1], 2).unwrap();
        b.push([2], 1).unwrap();
        let mut g = Echo {
            n: 5,
            seen: 0,
            deterministic: false,
        };
        let e = evaluate_unique(&mut g, &b).unwrap();
        assert_eq!(e.values, vec![102.0, 102.0, 202.0, 101.0]);
        assert_eq!(e.evaluations, 3);
        assert_eq!(g.seen, 3);
        let mut g = Echo {
            n: 5,
            seen: 0,
            deterministic: true,
        };
        let e = evaluate_unique(&mut g, &b).unwrap();
        assert_eq!(e.values, vec![2.0, 2.0, 2.0, 1.0]);
        assert_eq!(e.evaluations, 2);
    }

    struct Bad(usize, f64);
    impl Game for Bad {
        fn n_players(&self) -> usize {
            3
        }
        fn evaluate(&mut self, _: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
            Ok(vec![self.1; self.0])
        }
    }

    #[test]
    fn bad_answers_are_errors() {
        let mut b = CoalitionBatch::new(3);
        b.push([0], 0).unwrap();
        b.push([1], 0).unwrap();
        let e = evaluate_unique(&mut Bad(1, 0.0), &b).unwrap_err();
        assert!(
            e.to_string().contains("returned 1 values for a batch of 2"),
            "{e}"
        );
        let e = evaluate_unique(&mut Bad(2, f64::NAN), &b).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        let b4 = CoalitionBatch::new(4);
        let e = evaluate_unique(&mut Bad(0, 0.0), &b4).unwrap_err();
        assert!(
            e.to_string()
                .contains("3 players but the estimator was built for 4"),
            "{e}"
        );
    }
}

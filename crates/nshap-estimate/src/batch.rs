//! Coalitions as packed bit rows: the unit of work handed to a game.
//!
//! A batch is an `M x n` bit matrix (one row per coalition, bit `i` set when player `i` is
//! present) plus one *draw id* per row. Rows that share a draw id must be evaluated on the same
//! random examples, so the difference of two such rows (a marginal contribution) is not drowned
//! in sampling noise: the common-random-numbers trick that makes stochastic games usable.

use serde::{Deserialize, Serialize};

use crate::error::BatchError;

/// `M x n` bit matrix of coalitions (1 = player present), plus a per-row draw id.
///
/// Rows with the same draw id are evaluated on the same random examples (common random
/// numbers). Bit `i % 64` of word `i / 64` of a row is player `i`; bits past `n_players` are
/// always zero, so rows can be hashed and compared word by word.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CoalitionBatch {
    n_players: usize,
    words_per_row: usize,
    bits: Vec<u64>,
    draws: Vec<u64>,
}

/// Number of `u64` words a packed row of `n_players` bits takes.
pub fn words_for(n_players: usize) -> usize {
    n_players.div_ceil(64)
}

impl CoalitionBatch {
    /// An empty batch for a game of `n_players` players.
    pub fn new(n_players: usize) -> Self {
        Self::with_capacity(n_players, 0)
    }

    /// An empty batch with room for `rows` rows.
    pub fn with_capacity(n_players: usize, rows: usize) -> Self {
        let words_per_row = words_for(n_players);
        Self {
            n_players,
            words_per_row,
            bits: Vec::with_capacity(rows * words_per_row),
            draws: Vec::with_capacity(rows),
        }
    }

    /// Appends the coalition made of `members` (duplicates are harmless), evaluated under `draw`.
    ///
    /// On an out-of-range member nothing is appended and an error names the member.
    pub fn push(
        &mut self,
        members: impl IntoIterator<Item = usize>,
        draw: u64,
    ) -> Result<(), BatchError> {
        let mut row = vec![0u64; self.words_per_row];
        for player in members {
            if player >= self.n_players {
                return Err(BatchError::PlayerOutOfRange {
                    player,
                    n_players: self.n_players,
                });
            }
            row[player / 64] |= 1u64 << (player % 64);
        }
        self.bits.extend_from_slice(&row);
        self.draws.push(draw);
        Ok(())
    }

    /// Appends an already packed row (`words_per_row()` words, no bits past `n_players`).
    pub fn push_row_bits(&mut self, row: &[u64], draw: u64) -> Result<(), BatchError> {
        if row.len() != self.words_per_row {
            return Err(BatchError::RowLength {
                expected: self.words_per_row,
                found: row.len(),
                n_players: self.n_players,
            });
        }
        if let Some(&last) = row.last() {
            let used = self.n_players % 64;
            if used != 0 && last >> used != 0 {
                return Err(BatchError::StrayBits {
                    n_players: self.n_players,
                });
            }
        }
        self.push_row_unchecked(row, draw);
        Ok(())
    }

    /// Appends a row the crate built itself and therefore knows to be well formed.
    pub(crate) fn push_row_unchecked(&mut self, row: &[u64], draw: u64) {
        debug_assert_eq!(row.len(), self.words_per_row);
        self.bits.extend_from_slice(row);
        self.draws.push(draw);
    }

    /// Number of rows (coalitions).
    pub fn len(&self) -> usize {
        self.draws.len()
    }

    /// True when the batch holds no rows.
    pub fn is_empty(&self) -> bool {
        self.draws.is_empty()
    }

    /// Number of players (columns).
    pub fn n_players(&self) -> usize {
        self.n_players
    }

    /// Words per packed row (`ceil(n_players / 64)`).
    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// Whether `player` is present in coalition `row`. Out-of-range indices answer `false`.
    pub fn contains(&self, row: usize, player: usize) -> bool {
        if row >= self.len() || player >= self.n_players {
            return false;
        }
        let word = self.bits[row * self.words_per_row + player / 64];
        word >> (player % 64) & 1 == 1
    }

    /// The packed bits of `row`: bit `i % 64` of word `i / 64` is player `i`.
    ///
    /// Panics if `row >= len()`, like slice indexing.
    pub fn row_bits(&self, row: usize) -> &[u64] {
        &self.bits[row * self.words_per_row..(row + 1) * self.words_per_row]
    }

    /// The draw id of `row`. Panics if `row >= len()`, like slice indexing.
    pub fn draw(&self, row: usize) -> u64 {
        self.draws[row]
    }

    /// Number of players present in `row`.
    pub fn count(&self, row: usize) -> usize {
        self.row_bits(row)
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// The players present in `row`, ascending.
    pub fn members(&self, row: usize) -> impl Iterator<Item = usize> + '_ {
        members_of(self.row_bits(row))
    }

    /// All packed rows, concatenated (`len() * words_per_row()` words).
    pub fn bits(&self) -> &[u64] {
        &self.bits
    }

    /// All draw ids, one per row.
    pub fn draws(&self) -> &[u64] {
        &self.draws
    }

    /// Removes every row, keeping the allocation.
    pub fn clear(&mut self) {
        self.bits.clear();
        self.draws.clear();
    }
}

/// Iterates the set bit positions of one word.
struct BitIter {
    word: u64,
}

impl Iterator for BitIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.word == 0 {
            return None;
        }
        let bit = self.word.trailing_zeros() as usize;
        self.word &= self.word - 1;
        Some(bit)
    }
}

/// The players set in a packed row, ascending.
pub(crate) fn members_of(row: &[u64]) -> impl Iterator<Item = usize> + '_ {
    row.iter()
        .enumerate()
        .flat_map(|(w, &word)| BitIter { word }.map(move |b| w * 64 + b))
}

/// A packed row with every one of `n_players` bits set: the grand coalition.
pub(crate) fn full_row(n_players: usize) -> Vec<u64> {
    let mut row = vec![u64::MAX; words_for(n_players)];
    let used = n_players % 64;
    if used != 0 {
        if let Some(last) = row.last_mut() {
            *last = (1u64 << used) - 1;
        }
    }
    row
}

/// Clears player `i` in a packed row.
#[inline]
pub(crate) fn clear_bit(row: &mut [u64], i: usize) {
    row[i / 64] &= !(1u64 << (i % 64));
}

/// Sets player `i` in a packed row.
#[inline]
pub(crate) fn set_bit(row: &mut [u64], i: usize) {
    row[i / 64] |= 1u64 << (i % 64);
}

/// Whether player `i` is set in a packed row.
#[inline]
pub(crate) fn has_bit(row: &[u64], i: usize) -> bool {
    row[i / 64] >> (i % 64) & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_read_back() {
        let mut b = CoalitionBatch::new(70);
        b.push([0, 5, 69], 3).unwrap();
        b.push(std::iter::empty(), 4).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b.words_per_row(), 2);
        assert!(b.contains(0, 69) && b.contains(0, 5) && !b.contains(0, 6));
        assert_eq!(b.members(0).collect::<Vec<_>>(), vec![0, 5, 69]);
        assert_eq!(b.count(0), 3);
        assert_eq!(b.count(1), 0);
        assert_eq!(b.draw(1), 4);
        assert_eq!(b.row_bits(0), &[1 | 1 << 5, 1 << 5]);
    }

    #[test]
    fn bad_rows_are_errors() {
        let mut b = CoalitionBatch::new(3);
        let e = b.push([3], 0).unwrap_err();
        assert!(e.to_string().contains("player 3"), "{e}");
        let e = b.push_row_bits(&[0, 0], 0).unwrap_err();
        assert!(e.to_string().contains("expected 1"), "{e}");
        let e = b.push_row_bits(&[0b1000], 0).unwrap_err();
        assert!(e.to_string().contains("past player"), "{e}");
        assert!(b.is_empty());
    }

    #[test]
    fn full_row_has_exactly_n_bits() {
        for n in [1, 63, 64, 65, 128, 130] {
            let r = full_row(n);
            assert_eq!(r.iter().map(|w| w.count_ones() as usize).sum::<usize>(), n);
            let mut b = CoalitionBatch::new(n);
            b.push_row_bits(&r, 0).unwrap();
        }
    }
}

//! Interaction indices: how much a *set* of players is worth beyond its members' parts.
//!
//! * **Harsanyi (Möbius) dividends** `m(T) = sum_{S ⊆ T} (-1)^{|T|-|S|} v(S)` (Harsanyi 1963):
//!   the unique coefficients with `v(S) = sum_{T ⊆ S} m(T)`, i.e. the terms of the game written as
//!   a sum of unanimity games. A SOUM's dividends are its coefficients.
//! * **Shapley interaction index** (Grabisch & Roubens 1999)
//!   `I(T) = sum_{S ⊆ N\T} (n-|S|-|T|)! |S|! / (n-|T|+1)! Δ_T v(S)`, with `Δ_T` the `|T|`-th
//!   discrete derivative. For `|T| = 1` it is the Shapley value; in dividends
//!   `I(T) = sum_{R ⊇ T} m(R) / (|R|-|T|+1)`.
//!
//! Exact values come from one enumeration of all `2^n` coalition values, [`ValueTable`]
//! (`n <= 20`, the same enumeration and Shapley code as [`Exact`](crate::Exact)); pairwise SII of
//! larger games is estimated by Monte Carlo, [`SampledSii`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

mod moebius;
mod sampled;
mod sii;
mod table;

pub use sampled::{SampledSii, SampledSiiConfig, SiiProgress};
pub use table::ValueTable;

/// Which interaction index to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InteractionIndex {
    /// Harsanyi / Möbius dividends, orders `1..=max_order`.
    Moebius,
    /// Shapley interaction index (Grabisch & Roubens 1999), orders `2..=max_order`.
    Sii,
}

impl InteractionIndex {
    /// Every index, in documentation order.
    pub const ALL: [InteractionIndex; 2] = [InteractionIndex::Moebius, InteractionIndex::Sii];

    /// The canonical lowercase name (what `FromStr` and `Display` use).
    pub fn name(self) -> &'static str {
        match self {
            InteractionIndex::Moebius => "moebius",
            InteractionIndex::Sii => "sii",
        }
    }
}

impl fmt::Display for InteractionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InteractionIndex {
    type Err = ConfigError;
    /// Case-insensitive; also accepts `mobius`, `möbius`, `harsanyi` and `shapley-interaction`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "moebius" | "mobius" | "möbius" | "harsanyi" => Ok(InteractionIndex::Moebius),
            "sii" | "shapley-interaction" => Ok(InteractionIndex::Sii),
            _ => Err(ConfigError::UnknownInteractionIndex {
                found: s.to_string(),
            }),
        }
    }
}

/// The interaction of one set of players.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// The set `T`, ascending and distinct.
    pub players: Vec<usize>,
    /// The index's value (exact, or the sample mean).
    pub value: f64,
    /// Standard error of `value`: 0 for exact values, infinite before two samples.
    pub stderr: f64,
    /// Samples behind `value`: 0 for exact values.
    pub samples: u64,
}

impl Interaction {
    /// An exact value.
    pub(crate) fn exact(players: Vec<usize>, value: f64) -> Self {
        Self {
            players,
            value,
            stderr: 0.0,
            samples: 0,
        }
    }
}

/// Every `T ⊆ within` (all `n` players when `None`) with `lo <= |T| <= hi`, as (bit mask,
/// ascending members), by order and then lexicographically. Members `>= n` and duplicates in
/// `within` are dropped (the sets are over the game's players only).
pub(crate) fn subsets(
    n: usize,
    within: Option<&[usize]>,
    lo: usize,
    hi: usize,
) -> Vec<(usize, Vec<usize>)> {
    let mut pool: Vec<usize> = match within {
        Some(w) => w.iter().copied().filter(|&i| i < n).collect(),
        None => (0..n).collect(),
    };
    pool.sort_unstable();
    pool.dedup();
    let mut out = Vec::new();
    for k in lo.max(1)..=hi.min(pool.len()) {
        // indices into `pool` of the current combination, advanced lexicographically
        let mut idx: Vec<usize> = (0..k).collect();
        loop {
            let players: Vec<usize> = idx.iter().map(|&j| pool[j]).collect();
            let mask = players.iter().fold(0usize, |m, &i| m | 1 << i);
            out.push((mask, players));
            let Some(p) = (0..k).rev().find(|&p| idx[p] < pool.len() - k + p) else {
                break;
            };
            idx[p] += 1;
            for q in p + 1..k {
                idx[q] = idx[q - 1] + 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_in_order() {
        let s = subsets(5, Some(&[4, 1, 9, 1, 3]), 1, 3);
        let sets: Vec<Vec<usize>> = s.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(
            sets,
            vec![
                vec![1],
                vec![3],
                vec![4],
                vec![1, 3],
                vec![1, 4],
                vec![3, 4],
                vec![1, 3, 4]
            ]
        );
        assert_eq!(s[4].0, 0b10010);
        assert_eq!(subsets(20, None, 2, 2).len(), 190);
        assert_eq!(subsets(6, None, 0, 6).len(), 63);
        assert!(subsets(6, None, 3, 2).is_empty());
    }

    #[test]
    fn names_round_trip() {
        for i in InteractionIndex::ALL {
            assert_eq!(i.name().parse::<InteractionIndex>().unwrap(), i);
        }
        assert_eq!(
            "Möbius".parse::<InteractionIndex>().unwrap(),
            InteractionIndex::Moebius
        );
    }
}

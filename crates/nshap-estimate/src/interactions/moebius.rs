//! Harsanyi dividends by the fast Möbius transform: `O(n 2^n)` instead of the `3^n` of summing
//! over every subset of every set.

use crate::interactions::{subsets, Interaction, ValueTable};

impl ValueTable {
    /// Harsanyi dividends `m(T) = sum_{S ⊆ T} (-1)^{|T|-|S|} v(S)` of every `T ⊆ within` (all
    /// players when `None`) with `1 <= |T| <= max_order`, by order then lexicographically.
    /// Players of `within` that are not in the game are dropped ([`ValueTable::check_players`]).
    pub fn moebius(&self, max_order: usize, within: Option<&[usize]>) -> Vec<Interaction> {
        let wanted = subsets(self.n_players(), within, 1, max_order);
        if wanted.is_empty() {
            return Vec::new();
        }
        let mut m = self.values().to_vec();
        moebius_transform(&mut m, self.n_players());
        wanted
            .into_iter()
            .map(|(mask, players)| Interaction::exact(players, m[mask]))
            .collect()
    }
}

/// In place: `v -> m`. One pass per player `i` replaces `v(S ∪ i)` by `v(S ∪ i) - v(S)`; after
/// all passes every slot holds its alternating subset sum (the passes commute, one per axis of
/// the `2 x ... x 2` cube).
pub(crate) fn moebius_transform(values: &mut [f64], n: usize) {
    for i in 0..n {
        let bit = 1usize << i;
        for block in values.chunks_exact_mut(2 * bit) {
            let (without, with) = block.split_at_mut(bit);
            for (a, b) in without.iter().zip(with.iter_mut()) {
                *b -= a;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_matches_the_definition() {
        let n = 5;
        let v: Vec<f64> = (0..1 << n)
            .map(|m: usize| ((m * 7919) % 31) as f64 * 0.37 - 3.0)
            .collect();
        let mut m = v.clone();
        moebius_transform(&mut m, n);
        for (t, &got) in m.iter().enumerate() {
            let mut want = 0.0;
            for (s, &vs) in v.iter().enumerate() {
                if s & !t == 0 {
                    let sign = if (t.count_ones() - s.count_ones()) % 2 == 0 {
                        1.0
                    } else {
                        -1.0
                    };
                    want += sign * vs;
                }
            }
            assert!((got - want).abs() < 1e-12, "T = {t:b}");
        }
    }
}

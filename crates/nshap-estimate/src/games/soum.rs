//! Unanimity games and sums of them (SOUM): interactions of any order with exact Shapley values
//! at any `n`, which is what makes them the standard ground truth for large-`n` tests.

use rand::seq::{index, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::batch::CoalitionBatch;
use crate::game::{Game, GameError};
use crate::games::ClosedForm;

#[inline]
fn bit(row: &[u64], i: usize) -> u64 {
    row[i / 64] >> (i % 64) & 1
}

/// `v(S) = a` when the carrier `T ⊆ S`, else 0; `phi_i = a / |T|` for `i in T`, 0 otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Unanimity {
    soum: Soum,
}

impl Unanimity {
    /// The unanimity game of `carrier` (player indices < n) scaled by `a`.
    pub fn new(n: usize, carrier: Vec<usize>, a: f64) -> Self {
        Self {
            soum: Soum::new(n, vec![(carrier, a)]),
        }
    }
}

impl Game for Unanimity {
    fn n_players(&self) -> usize {
        self.soum.n
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        self.soum.evaluate(batch)
    }
    fn is_deterministic(&self) -> bool {
        true
    }
}

impl ClosedForm for Unanimity {
    fn shapley(&self) -> Vec<f64> {
        self.soum.shapley()
    }
}

/// Sum of unanimity games: `v(S) = sum_j a_j [T_j ⊆ S]`;
/// `phi_i = sum_{j : i in T_j} a_j / |T_j|`.
#[derive(Clone, Debug, PartialEq)]
pub struct Soum {
    n: usize,
    /// Carriers (sorted, deduplicated, in range) and coefficients.
    terms: Vec<(Vec<u32>, f64)>,
    /// Evaluation layout: singleton coefficients per player, the constant term, and the
    /// higher-order terms. Kept apart so a row costs one pass over its members plus one
    /// branch-free pass over the interactions (random coalitions make per-member branches
    /// mispredict).
    singles: Vec<f64>,
    constant: f64,
    higher: Vec<(Vec<u32>, f64)>,
}

impl Soum {
    /// A SOUM over `n` players. Carrier members `>= n` are dropped; an empty carrier is a
    /// constant term (it adds `a` to every coalition, including the empty one).
    pub fn new(n: usize, terms: Vec<(Vec<usize>, f64)>) -> Self {
        let terms = terms
            .into_iter()
            .map(|(mut t, a)| {
                t.retain(|&i| i < n);
                t.sort_unstable();
                t.dedup();
                (t.into_iter().map(|i| i as u32).collect::<Vec<u32>>(), a)
            })
            .collect::<Vec<_>>();
        let mut singles = vec![0.0; n];
        let mut constant = 0.0;
        let mut higher = Vec::new();
        for (t, a) in &terms {
            match t.len() {
                0 => constant += a,
                1 => singles[t[0] as usize] += a,
                _ => higher.push((t.clone(), *a)),
            }
        }
        Self {
            n,
            terms,
            singles,
            constant,
            higher,
        }
    }

    /// A random SOUM: `n_terms` carriers of size uniform in `sizes` (clamped to `1..=n`), members
    /// uniform, coefficients uniform in `[-1, 1]`.
    pub fn random(
        n: usize,
        n_terms: usize,
        sizes: std::ops::RangeInclusive<usize>,
        seed: u64,
    ) -> Self {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let lo = (*sizes.start()).clamp(1, n.max(1));
        let hi = (*sizes.end()).clamp(lo, n.max(1));
        let terms = (0..n_terms)
            .map(|_| {
                let size = rng.random_range(lo..=hi);
                let members = index::sample(&mut rng, n, size).into_vec();
                (members, rng.random_range(-1.0..=1.0))
            })
            .collect();
        Self::new(n, terms)
    }

    /// The terms: carriers and coefficients.
    pub fn terms(&self) -> &[(Vec<u32>, f64)] {
        &self.terms
    }

    /// Largest possible spread of one player's marginal contribution: `max_i sum |a_j|` over the
    /// non-singleton terms containing `i` (singletons add a constant). The `R` of a Bernstein
    /// bound for this game.
    pub fn marginal_range(&self) -> f64 {
        let mut spread = vec![0.0f64; self.n];
        for (t, a) in &self.terms {
            if t.len() > 1 {
                for &i in t {
                    spread[i as usize] += a.abs();
                }
            }
        }
        spread.into_iter().fold(0.0, f64::max)
    }

    /// The smallest and largest marginal contribution any player can have, `[lo, hi]`: a
    /// player's marginal is its singleton weight plus any subset of its other terms'
    /// coefficients. The known range a confidence sequence needs.
    pub fn marginal_bounds(&self) -> (f64, f64) {
        let mut lo = self.singles.clone();
        let mut hi = self.singles.clone();
        for (t, a) in &self.higher {
            for &i in t {
                if *a < 0.0 {
                    lo[i as usize] += a;
                } else {
                    hi[i as usize] += a;
                }
            }
        }
        (
            lo.into_iter().fold(f64::INFINITY, f64::min),
            hi.into_iter().fold(f64::NEG_INFINITY, f64::max),
        )
    }

    fn value(&self, row: &[u64]) -> f64 {
        let mut v = self.constant;
        for (w, &word) in row.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                v += self.singles[w * 64 + bits.trailing_zeros() as usize];
                bits &= bits - 1;
            }
        }
        for (t, a) in &self.higher {
            let all = t.iter().fold(1u64, |acc, &i| acc & bit(row, i as usize));
            v += a * all as f64;
        }
        v
    }
}

impl Game for Soum {
    fn n_players(&self) -> usize {
        self.n
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        super::check_width(batch, self.n)?;
        Ok((0..batch.len())
            .map(|r| self.value(batch.row_bits(r)))
            .collect())
    }
    fn is_deterministic(&self) -> bool {
        true
    }
}

impl ClosedForm for Soum {
    fn shapley(&self) -> Vec<f64> {
        let mut phi = vec![0.0; self.n];
        for (t, a) in &self.terms {
            for &i in t {
                phi[i as usize] += a / t.len() as f64;
            }
        }
        phi
    }
}

/// A SOUM with a planted top-k: `k` players clearly above a boundary, one block just below it,
/// the bulk far below, and random higher-order interactions that make every marginal noisy.
///
/// This is the shape Neuron Shapley reports for real networks (a few neurons matter, most do
/// not), and it separates estimators that spend evaluations everywhere from those that focus on
/// the boundary. Shapley values are exact by construction: singleton weights are chosen so that
/// `phi` hits the planted targets after the interactions' shares.
#[derive(Clone, Debug, PartialEq)]
pub struct PlantedTopK {
    /// Number of players.
    pub n: usize,
    /// Size of the planted top set.
    pub k: usize,
    /// Distance between the k-th and the (k+1)-th Shapley value.
    pub gap: f64,
    /// How many players sit just at each side of the boundary (hard to order).
    pub near: usize,
    /// Interaction terms per player (each term has 3..=5 members).
    pub interactions_per_player: f64,
    /// Interaction coefficients are uniform in `±[scale/2, scale]`.
    pub interaction_scale: f64,
    /// Extra interactions for each of the `2 near` boundary players: they make the
    /// boundary noisy, which is what costs a uniform sampler (it pays `n + 1` evaluations per
    /// walk to sharpen a handful of players).
    pub boundary_terms: usize,
    /// Coefficient magnitude of those terms (random sign).
    pub boundary_scale: f64,
    /// Members per boundary term. Default 6: large enough that antithetic pairing does not make
    /// them nearly free (a pair is exact for 2-player terms and 4x better for 3-player ones).
    pub boundary_term_size: usize,
    /// Seed of the instance.
    pub seed: u64,
}

impl PlantedTopK {
    /// The defaults used by the tests and the docs table for `n` players and top `k`.
    pub fn new(n: usize, k: usize, seed: u64) -> Self {
        Self {
            n,
            k,
            gap: 0.03,
            near: 5,
            interactions_per_player: 1.0,
            interaction_scale: 0.5,
            boundary_terms: 2,
            boundary_scale: 1.5,
            boundary_term_size: 6,
            seed,
        }
    }

    /// Builds the game.
    pub fn build(&self) -> Soum {
        let n = self.n;
        let k = self.k.min(n);
        let mut rng = ChaCha12Rng::seed_from_u64(self.seed);
        let n_terms = (self.interactions_per_player * n as f64 / 4.0).round() as usize;
        let mut terms: Vec<(Vec<usize>, f64)> = Vec::with_capacity(n_terms + n);
        if n >= 3 {
            for _ in 0..n_terms {
                let size = rng.random_range(3..=5usize.min(n));
                let members = index::sample(&mut rng, n, size).into_vec();
                let mag = rng.random_range(0.5..=1.0) * self.interaction_scale;
                let a = if rng.random_bool(0.5) { mag } else { -mag };
                terms.push((members, a));
            }
        }
        // targets: the top-k at 1 + gap/2 and above, the (k+1)-th at 1 - gap/2; the `near`
        // players closest to the boundary on each side are spaced `gap` apart (distinct values:
        // ties just below the boundary would stall the reference's (k+1)-th threshold rule);
        // the bulk is uniform in [0, 0.7].
        let top = 1.0 + self.gap / 2.0;
        let below = 1.0 - self.gap / 2.0;
        let near = self.near.min(k).min(n - k);
        let mut targets = Vec::with_capacity(n);
        for j in 0..k {
            if j < near {
                targets.push(top + self.gap * j as f64);
            } else {
                let rest_start = top + self.gap * near as f64;
                targets.push(rest_start + 0.5 * (j + 1 - near) as f64 / (k - near).max(1) as f64);
            }
        }
        for j in k..n {
            if j - k < near {
                targets.push(below - self.gap * (j - k) as f64);
            } else {
                targets.push(rng.random_range(0.0..0.7));
            }
        }
        let mut who: Vec<usize> = (0..n).collect();
        who.shuffle(&mut rng);
        // boundary players: the `near` lowest top targets and the `near` highest others
        if n >= 3 {
            for r in (0..near).chain(k..k + near) {
                for _ in 0..self.boundary_terms {
                    let mut members = vec![who[r]];
                    while members.len() < self.boundary_term_size.clamp(2, n) {
                        let m = rng.random_range(0..n);
                        if !members.contains(&m) {
                            members.push(m);
                        }
                    }
                    let a = if rng.random_bool(0.5) {
                        self.boundary_scale
                    } else {
                        -self.boundary_scale
                    };
                    terms.push((members, a));
                }
            }
        }
        let shares = Soum::new(n, terms.clone()).shapley();
        for (t, &player) in targets.iter().zip(&who) {
            terms.push((vec![player], t - shares[player]));
        }
        Soum::new(n, terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::top_k_indices;

    #[test]
    fn planted_top_k_has_the_planted_gap() {
        let spec = PlantedTopK::new(200, 10, 7);
        let g = spec.build();
        let phi = g.shapley();
        let mut sorted = phi.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        assert!((sorted[9] - sorted[10] - spec.gap).abs() < 1e-9);
        assert_eq!(top_k_indices(&phi, 10).len(), 10);
        assert!(g.marginal_range() > 0.0);
    }
}

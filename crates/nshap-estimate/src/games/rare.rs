//! A rare-event game: one hidden unanimity set among many players, observed with noise.
//!
//! `v(S, draw) = a [T ⊆ S] + sigma (2 u(S, draw) - 1)`, `u` uniform in `[0, 1)` from a hash of
//! the coalition and the draw id. A member of `T` has Shapley value `a / |T|`, but its marginal
//! is `a` only when every other member is already present — with probability `1 / |T|` under
//! the Shapley distribution — and pure noise otherwise: for its first dozens of samples a
//! member typically looks exactly like one of the null players. Estimators whose intervals
//! come from the sample variance (CLT, or Bernstein without the range term) declare those
//! players settled too early; the noise is mean-zero, so the Shapley values are those of the
//! noise-free game.

use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

use super::ClosedForm;
use crate::batch::CoalitionBatch;
use crate::game::{Game, GameError};

/// See the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct HiddenUnanimity {
    n: usize,
    members: Vec<usize>,
    a: f64,
    sigma: f64,
}

impl HiddenUnanimity {
    /// `n` players, a hidden set of `size` members drawn with `seed`, coefficient `a`, noise
    /// amplitude `sigma`.
    pub fn new(n: usize, size: usize, a: f64, sigma: f64, seed: u64) -> Self {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let mut members = index::sample(&mut rng, n, size.min(n)).into_vec();
        members.sort_unstable();
        Self {
            n,
            members,
            a,
            sigma,
        }
    }

    /// The hidden set, ascending.
    pub fn members(&self) -> &[usize] {
        &self.members
    }

    /// Every marginal lies in `[lo, hi]`.
    pub fn marginal_bounds(&self) -> (f64, f64) {
        let (lo, hi) = (self.a.min(0.0), self.a.max(0.0));
        (lo - 2.0 * self.sigma, hi + 2.0 * self.sigma)
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed hash step.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Game for HiddenUnanimity {
    fn n_players(&self) -> usize {
        self.n
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        super::check_width(batch, self.n)?;
        Ok((0..batch.len())
            .map(|r| {
                let bits = batch.row_bits(r);
                let all = self
                    .members
                    .iter()
                    .all(|&i| bits[i / 64] >> (i % 64) & 1 == 1);
                let mut h = mix(batch.draw(r) ^ 0x9e37_79b9_7f4a_7c15);
                for &w in bits {
                    h = mix(h ^ w);
                }
                let u = (h >> 11) as f64 / (1u64 << 53) as f64;
                self.a * f64::from(u8::from(all)) + self.sigma * (2.0 * u - 1.0)
            })
            .collect())
    }
}

impl ClosedForm for HiddenUnanimity {
    fn shapley(&self) -> Vec<f64> {
        let mut phi = vec![0.0; self.n];
        for &i in &self.members {
            phi[i] = self.a / self.members.len() as f64;
        }
        phi
    }
}

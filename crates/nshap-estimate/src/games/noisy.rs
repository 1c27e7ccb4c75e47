//! A stochastic game: the inner value is an accuracy observed on a sample of examples.
//!
//! Each draw id stands for a random sample of `examples` examples; example `e` of draw `d` is
//! "classified correctly" by coalition `S` when its uniform `u(d, e) < p(S)`, with `p` the inner
//! game's value clamped to [0, 1]. So `E[v(S, d)] = p(S)`, the same draw gives the same noise,
//! and two coalitions on one draw differ only on examples with `u` between their accuracies —
//! exactly how a network's accuracies on one minibatch are coupled. That coupling is what common
//! random numbers exploit.

use crate::batch::CoalitionBatch;
use crate::game::{Game, GameError};
use crate::games::ClosedForm;

/// An accuracy-like game observed through `examples` Bernoulli examples per draw.
#[derive(Clone, Debug)]
pub struct Noisy<G> {
    inner: G,
    examples: usize,
    seed: u64,
}

impl<G: Game> Noisy<G> {
    /// Observes `inner` (values expected in [0, 1]) on `examples` examples per draw.
    pub fn new(inner: G, examples: usize, seed: u64) -> Self {
        Self {
            inner,
            examples: examples.max(1),
            seed,
        }
    }

    /// The noiseless game.
    pub fn inner(&self) -> &G {
        &self.inner
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The uniform in [0, 1) attached to example `e` of draw `d`.
fn uniform(seed: u64, draw: u64, e: u64) -> f64 {
    let h = mix(mix(seed ^ mix(draw)) ^ e);
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl<G: Game> Game for Noisy<G> {
    fn n_players(&self) -> usize {
        self.inner.n_players()
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        let p = self.inner.evaluate(batch)?;
        let m = self.examples as u64;
        Ok(p.iter()
            .enumerate()
            .map(|(r, &p)| {
                let p = p.clamp(0.0, 1.0);
                let d = batch.draw(r);
                let correct = (0..m).filter(|&e| uniform(self.seed, d, e) < p).count();
                correct as f64 / m as f64
            })
            .collect())
    }
    fn is_deterministic(&self) -> bool {
        false
    }
}

impl<G: Game + ClosedForm> ClosedForm for Noisy<G> {
    /// Shapley values of the expected game; exact when the inner values lie in [0, 1].
    fn shapley(&self) -> Vec<f64> {
        self.inner.shapley()
    }
}

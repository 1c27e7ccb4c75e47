//! Helpers shared by the integration tests.
#![allow(dead_code)]

use nshap_estimate::{CoalitionBatch, Game, GameError};

/// Wraps a game and records every call's batch size.
pub struct Counting<G> {
    pub inner: G,
    pub calls: Vec<usize>,
}

impl<G> Counting<G> {
    pub fn new(inner: G) -> Self {
        Self {
            inner,
            calls: Vec::new(),
        }
    }
    pub fn rows(&self) -> u64 {
        self.calls.iter().map(|&c| c as u64).sum()
    }
}

impl<G: Game> Game for Counting<G> {
    fn n_players(&self) -> usize {
        self.inner.n_players()
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        self.calls.push(batch.len());
        self.inner.evaluate(batch)
    }
    fn is_deterministic(&self) -> bool {
        self.inner.is_deterministic()
    }
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

pub fn rmse(a: &[f64], b: &[f64]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

/// Least-squares slope of y on x.
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    sxy / sxx
}

/// A SOUM with positive coefficients and values in [0.05, 0.95]: an "accuracy" for the noisy
/// wrapper.
pub fn accuracy_soum(n: usize, n_terms: usize, seed: u64) -> nshap_estimate::games::Soum {
    use nshap_estimate::games::Soum;
    let raw = Soum::random(n, n_terms, 1..=4, seed);
    let total: f64 = raw.terms().iter().map(|(_, a)| a.abs()).sum();
    let mut terms: Vec<(Vec<usize>, f64)> = raw
        .terms()
        .iter()
        .map(|(t, a)| {
            (
                t.iter().map(|&i| i as usize).collect(),
                0.9 * a.abs() / total,
            )
        })
        .collect();
    terms.push((Vec::new(), 0.05));
    Soum::new(n, terms)
}

/// Compares two results bit for bit.
pub fn assert_same_bits(a: &nshap_estimate::Estimates, b: &nshap_estimate::Estimates) {
    assert_eq!(a.players.len(), b.players.len());
    for (i, (p, q)) in a.players.iter().zip(&b.players).enumerate() {
        assert_eq!(p.value.to_bits(), q.value.to_bits(), "value of player {i}");
        assert_eq!(
            p.stderr.to_bits(),
            q.stderr.to_bits(),
            "stderr of player {i}"
        );
        assert_eq!(
            p.ci_low.to_bits(),
            q.ci_low.to_bits(),
            "ci_low of player {i}"
        );
        assert_eq!(
            p.ci_high.to_bits(),
            q.ci_high.to_bits(),
            "ci_high of player {i}"
        );
        assert_eq!(p.samples, q.samples, "samples of player {i}");
        assert_eq!(p.status, q.status, "status of player {i}");
    }
    assert_eq!(
        format!("{:?}", a.diagnostics),
        format!("{:?}", b.diagnostics)
    );
    assert_eq!(format!("{:?}", a.banzhaf), format!("{:?}", b.banzhaf));
}

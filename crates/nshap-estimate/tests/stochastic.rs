//! Stochastic games: estimates still converge, and common random numbers (rows of one walk on
//! one draw) cut the variance of marginal contributions.

mod common;

use common::{accuracy_soum, rmse};
use nshap_estimate::games::{ClosedForm, Noisy, Soum};
use nshap_estimate::{run, AnyEstimator, CoalitionBatch, CommonOptions, Game, GameError, Method};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

#[test]
fn permutation_estimates_converge_on_a_noisy_game() {
    let seeds = 6;
    let budgets = [4_000u64, 64_000];
    let mut err = [0.0; 2];
    let mut within = 0;
    let mut total = 0;
    for seed in 0..seeds {
        let inner = accuracy_soum(12, 30, seed);
        let truth = inner.shapley();
        for (b, &budget) in budgets.iter().enumerate() {
            let mut game = Noisy::new(inner.clone(), 128, 100 + seed);
            let opts = CommonOptions {
                budget,
                ..CommonOptions::default()
            };
            let mut est = AnyEstimator::new(Method::Permutation, &opts, 12, seed).unwrap();
            let r = run(&mut est, &mut game, |_, _| {}).unwrap();
            err[b] += rmse(&r.values(), &truth) / seeds as f64;
            if b == 1 {
                for (p, t) in r.players.iter().zip(&truth) {
                    total += 1;
                    if (p.value - t).abs() <= 3.0 * p.stderr {
                        within += 1;
                    }
                }
            }
        }
    }
    println!(
        "noisy game: mean RMSE {:.5} at 4k evaluations, {:.5} at 64k",
        err[0], err[1]
    );
    // 16x the budget: 4x smaller error expected; allow 2.5x
    assert!(err[1] < err[0] / 2.5, "{err:?}");
    assert!(err[1] < 0.005, "{err:?}");
    assert!(
        within as f64 / total as f64 >= 0.95,
        "{within}/{total} within 3 s.e."
    );
}

#[test]
fn same_draw_marginals_have_far_less_variance() {
    let n = 30;
    let inner = accuracy_soum(n, 50, 42);
    let mut noisy = Noisy::new(inner.clone(), 128, 7);
    let mut exact = inner;
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let pairs = 4000;
    let mut batch = CoalitionBatch::new(n);
    let mut truth_batch = CoalitionBatch::new(n);
    for p in 0..pairs as u64 {
        let members: Vec<usize> = (0..n).filter(|_| rng.random_bool(0.5)).collect();
        let i = rng.random_range(0..n);
        let with: Vec<usize> = members.iter().copied().chain([i]).collect();
        let without: Vec<usize> = members.iter().copied().filter(|&j| j != i).collect();
        // rows 4p..4p+4: with/without on draw p (same examples), then on draws of their own
        batch.push(with.clone(), p).unwrap();
        batch.push(without.clone(), p).unwrap();
        batch.push(with.clone(), 1_000_000 + 2 * p).unwrap();
        batch.push(without.clone(), 1_000_001 + 2 * p).unwrap();
        truth_batch.push(with, 0).unwrap();
        truth_batch.push(without, 0).unwrap();
    }
    let v = noisy.evaluate(&batch).unwrap();
    let t = exact.evaluate(&truth_batch).unwrap();
    let (mut same, mut indep) = (0.0, 0.0);
    for p in 0..pairs {
        let truth = t[2 * p] - t[2 * p + 1];
        same += (v[4 * p] - v[4 * p + 1] - truth).powi(2);
        indep += (v[4 * p + 2] - v[4 * p + 3] - truth).powi(2);
    }
    let (same, indep) = (same / pairs as f64, indep / pairs as f64);
    println!(
        "marginal noise variance: same draw {same:.3e}, independent draws {indep:.3e} (ratio {:.3})",
        same / indep
    );
    assert!(same < 0.2 * indep);
}

/// Gives every row a draw of its own: the game a sampler sees without common random numbers.
struct IndependentDraws<G> {
    inner: G,
    counter: u64,
}

impl<G: Game> Game for IndependentDraws<G> {
    fn n_players(&self) -> usize {
        self.inner.n_players()
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        let mut fresh = CoalitionBatch::with_capacity(batch.n_players(), batch.len());
        for r in 0..batch.len() {
            self.counter += 1;
            fresh.push_row_bits(batch.row_bits(r), self.counter)?;
        }
        self.inner.evaluate(&fresh)
    }
}

#[test]
fn common_random_numbers_shrink_the_estimators_error_bars() {
    let n = 20;
    let inner: Soum = accuracy_soum(n, 40, 5);
    let opts = CommonOptions {
        budget: 20_000,
        ..CommonOptions::default()
    };
    let mut crn = Noisy::new(inner.clone(), 128, 3);
    let mut ind = IndependentDraws {
        inner: Noisy::new(inner, 128, 3),
        counter: 0,
    };
    let mut a = AnyEstimator::new(Method::Permutation, &opts, n, 1).unwrap();
    let mut b = AnyEstimator::new(Method::Permutation, &opts, n, 1).unwrap();
    let ra = run(&mut a, &mut crn, |_, _| {}).unwrap();
    let rb = run(&mut b, &mut ind, |_, _| {}).unwrap();
    let se =
        |r: &nshap_estimate::Estimates| r.players.iter().map(|p| p.stderr).sum::<f64>() / n as f64;
    println!(
        "mean standard error at 20k evaluations: {:.2e} with common random numbers, {:.2e} without",
        se(&ra),
        se(&rb)
    );
    assert!(se(&ra) < 0.5 * se(&rb));
}

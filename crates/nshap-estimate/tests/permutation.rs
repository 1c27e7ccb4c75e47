//! Permutation sampling: unbiased, error ~ 1/sqrt(budget), honest intervals, exact where it
//! should be, truncation as documented.

mod common;

use common::{max_abs_diff, rmse, slope, Counting};
use nshap_estimate::games::{Additive, ClosedForm, FnGame, Soum};
use nshap_estimate::{
    run, AnyEstimator, CommonOptions, Estimator, EstimatorConfig, Method, PermutationConfig,
};

fn soum50(seed: u64) -> Soum {
    Soum::random(50, 60, 1..=8, 1000 + seed)
}

#[test]
fn error_shrinks_as_one_over_sqrt_budget() {
    let checkpoints = [2_000u64, 8_000, 32_000, 128_000];
    let seeds = 16;
    let mut mean_err = vec![0.0; checkpoints.len()];
    let mut mean_evals = vec![0.0; checkpoints.len()];
    for seed in 0..seeds {
        let mut game = soum50(seed);
        let truth = game.shapley();
        let opts = CommonOptions {
            budget: *checkpoints.last().unwrap(),
            ..CommonOptions::default()
        };
        let mut est = AnyEstimator::new(Method::Permutation, &opts, 50, seed).unwrap();
        let mut next = 0;
        run(&mut est, &mut game, |p, e| {
            if next < checkpoints.len() && (p.evaluations >= checkpoints[next] || p.done) {
                let r = e.result();
                mean_err[next] += rmse(&r.values(), &truth) / seeds as f64;
                mean_evals[next] += p.evaluations as f64 / seeds as f64;
                next += 1;
            }
        })
        .unwrap();
        assert_eq!(next, checkpoints.len());
    }
    let x: Vec<f64> = mean_evals.iter().map(|v| v.ln()).collect();
    let y: Vec<f64> = mean_err.iter().map(|v| v.ln()).collect();
    let s = slope(&x, &y);
    println!("budgets {mean_evals:?}\nmean RMSE {mean_err:?}\nlog-log slope {s:.3}");
    assert!((-0.65..=-0.35).contains(&s), "slope {s}");
}

#[test]
fn nominal_95_percent_intervals_cover_the_truth() {
    let (mut covered, mut total) = (0usize, 0usize);
    for seed in 0..40 {
        let mut game = soum50(seed);
        let truth = game.shapley();
        let opts = CommonOptions {
            budget: 20_000,
            ..CommonOptions::default()
        };
        let mut est = AnyEstimator::new(Method::Permutation, &opts, 50, 77 + seed).unwrap();
        let r = run(&mut est, &mut game, |_, _| {}).unwrap();
        for (p, t) in r.players.iter().zip(&truth) {
            total += 1;
            // 1e-9: players with constant marginals have a point interval equal to the truth
            // up to rounding.
            if p.ci_low - 1e-9 <= *t && *t <= p.ci_high + 1e-9 {
                covered += 1;
            }
        }
    }
    let coverage = covered as f64 / total as f64;
    println!("coverage of nominal 95% intervals: {coverage:.3} ({covered}/{total})");
    assert!((0.90..=0.99).contains(&coverage), "coverage {coverage}");
}

#[test]
fn antithetic_walks_are_exact_on_additive_games() {
    let w: Vec<f64> = (0..30).map(|i| (i as f64 * 0.37).sin()).collect();
    let mut game = Additive::new(w.clone());
    let opts = CommonOptions {
        budget: 5_000,
        ..CommonOptions::default()
    };
    let mut est = AnyEstimator::new(Method::Permutation, &opts, 30, 1).unwrap();
    let r = run(&mut est, &mut game, |_, _| {}).unwrap();
    assert!(max_abs_diff(&r.values(), &w) < 1e-12);
    assert!(r.players.iter().all(|p| p.stderr < 1e-12));
    assert!(r.diagnostics.efficiency_residual.unwrap() < 1e-9);
}

#[test]
fn efficiency_holds_per_walk_without_truncation() {
    let mut game = soum50(3);
    let opts = CommonOptions {
        budget: 10_000,
        ..CommonOptions::default()
    };
    let mut est = AnyEstimator::new(Method::Permutation, &opts, 50, 5).unwrap();
    let r = run(&mut est, &mut game, |_, _| {}).unwrap();
    let d = &r.diagnostics;
    assert!(d.efficiency_residual.unwrap() < 1e-9, "{d:?}");
    assert!(d.evaluations <= 10_000);
    assert_eq!(d.truncated_walks, 0);
}

#[test]
fn permutation_batches_are_big_and_counted() {
    let mut game = Counting::new(soum50(4));
    let opts = CommonOptions {
        budget: 30_000,
        ..CommonOptions::default()
    };
    let mut est = AnyEstimator::new(Method::Permutation, &opts, 50, 6).unwrap();
    let r = run(&mut est, &mut game, |_, _| {}).unwrap();
    assert_eq!(r.diagnostics.evaluations, game.rows());
    assert!(game.rows() <= 30_000);
    // only the last calls, which finish the walks the budget can still finish, may be small
    let small = game.calls.iter().filter(|&&c| c < 500).count();
    assert!(small <= 2, "calls: {:?}", game.calls);
    assert!(game.calls[..game.calls.len() - 2].iter().all(|&c| c >= 500));
}

/// Accuracy-like game: starts at 0.9 and drops linearly to chance 0.1 as players leave.
fn linear_accuracy(n: usize) -> impl nshap_estimate::Game {
    FnGame::new(n, move |row: &[u64]| {
        let present: u32 = row.iter().map(|w| w.count_ones()).sum();
        0.1 + 0.8 * present as f64 / n as f64
    })
}

#[test]
fn truncation_stops_walks_and_counts_zeros_as_samples() {
    let n = 40;
    let mut full = linear_accuracy(n);
    let mut cut = linear_accuracy(n);
    let mut plain = PermutationConfig::from_common(&CommonOptions {
        budget: 20_000,
        ..CommonOptions::default()
    });
    plain.max_samples = Some(50);
    // short chunks, so a walk stops requesting prefixes soon after it truncates
    plain.chunk_len = 4;
    let mut truncated = plain.clone();
    truncated.truncation = Some(nshap_estimate::Truncation {
        chance_level: 0.1,
        // 0.21, not 0.2: 0.1 + 0.8 * 10/40 - 0.1 rounds to 0.2000000000000000x
        tolerance: 0.21,
        patience: 5,
    });
    let mut a = AnyEstimator::from_config(EstimatorConfig::Permutation(plain), n, 1).unwrap();
    let mut b = AnyEstimator::from_config(EstimatorConfig::Permutation(truncated), n, 1).unwrap();
    let ra = run(&mut a, &mut full, |_, _| {}).unwrap();
    let rb = run(&mut b, &mut cut, |_, _| {}).unwrap();
    // v - chance <= 0.2 once at most 10 players remain (30 removed); the 6th such step (35
    // removed) exceeds patience 5, so the last 5 players of every walk get 0: the average value
    // drops from 0.02 to 0.02 * 35/40.
    assert!(rb.diagnostics.truncated_walks >= 50);
    assert!(rb.diagnostics.evaluations < ra.diagnostics.evaluations);
    for p in &ra.players {
        assert!((p.value - 0.02).abs() < 1e-12);
    }
    // truncated zeros count as samples: every player has one sample per completed pair
    let pairs = rb.players[0].samples;
    assert!(pairs >= 50);
    assert!(rb.players.iter().all(|q| q.samples == pairs));
    let mean_b: f64 = rb.values().iter().sum::<f64>() / n as f64;
    assert!((mean_b - 0.02 * 35.0 / 40.0).abs() < 1e-12, "{mean_b}");
    // every walk was cut, so v(empty) was never seen and efficiency cannot be checked
    assert_eq!(rb.diagnostics.empty_value, None);
    assert_eq!(rb.diagnostics.efficiency_residual, None);
    assert!(b.is_done());
}

#[test]
fn a_budget_of_a_few_walks_finishes_walks_instead_of_starting_32() {
    // 20 n evaluations: 32 walks in flight would all be unfinished when the budget runs out,
    // and no player would get a sample. Walks the budget cannot finish are not started.
    let n = 200;
    let mut game = nshap_estimate::games::Soum::random(n, 100, 1..=4, 3);
    let opts = CommonOptions {
        budget: 20 * n as u64,
        ..CommonOptions::default()
    };
    let mut est = AnyEstimator::new(Method::Permutation, &opts, n, 1).unwrap();
    let r = run(&mut est, &mut game, |_, _| {}).unwrap();
    let samples = r.players[0].samples;
    assert!(
        samples >= 8,
        "{samples} antithetic pairs from {} evaluations",
        r.diagnostics.evaluations
    );
    assert!(r.players.iter().all(|p| p.samples == samples));
    assert!(r.diagnostics.evaluations <= 20 * n as u64);
}

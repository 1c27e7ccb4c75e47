//! Mean squared error of the regression-adjusted estimator against antithetic permutation
//! sampling at a budget of `MULT * n` evaluations on random SOUM games (docs/estimators.md,
//! "Variance reduction"):
//! `cargo run --release -p nshap-estimate --example variance_reduction -- N SEEDS MULT`.
//!
//! Families: SOUMs with `n` terms of 1-5 members (low order), `n / 10` terms of 10-100 members
//! (middle), and `n / 20` terms of 1-n members (shapiq's `SOUM` default sizes); coefficients
//! uniform in [-1, 1].
use nshap_estimate::games::{ClosedForm, Soum};
use nshap_estimate::*;

fn mse(est: &[f64], truth: &[f64]) -> f64 {
    est.iter()
        .zip(truth)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / truth.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn run_method(method: Method, game: &mut Soum, n: usize, budget: u64, seed: u64) -> Vec<f64> {
    let opts = CommonOptions {
        top_k: 1,
        budget,
        ..CommonOptions::default()
    };
    let config = EstimatorConfig::from_common(method, &opts);
    let mut est = AnyEstimator::from_config(config, n, seed).unwrap();
    run(&mut est, game, |_, _| {}).unwrap().values()
}

fn main() {
    let arg = |i: usize, d: u64| std::env::args().nth(i).map_or(d, |s| s.parse().unwrap());
    let n = arg(1, 1000) as usize;
    let seeds = arg(2, 10);
    let mult = arg(3, 20);
    let budget = mult * n as u64;
    let families: [(&str, usize, std::ops::RangeInclusive<usize>); 3] = [
        ("low order: n terms of 1-5", n, 1..=5),
        ("middle: n/10 terms of 10-100", (n / 10).max(1), 10..=100),
        ("shapiq default: n/20 terms of 1-n", (n / 20).max(1), 1..=n),
    ];
    println!("n = {n}, budget = {budget} evaluations ({mult} n), {seeds} seeds; median MSE");
    println!("| SOUM family | antithetic permutation | regression-adjusted | ratio |");
    println!("|---|---|---|---|");
    for (name, terms, sizes) in families {
        let (mut anti, mut reg) = (Vec::new(), Vec::new());
        for seed in 0..seeds {
            let mut game = Soum::random(n, terms, sizes.clone(), 1000 + seed);
            let truth = game.shapley();
            anti.push(mse(
                &run_method(Method::Permutation, &mut game, n, budget, seed),
                &truth,
            ));
            reg.push(mse(
                &run_method(Method::Regression, &mut game, n, budget, seed),
                &truth,
            ));
        }
        let (a, r) = (median(anti), median(reg));
        println!("| {name} | {a:.3e} | {r:.3e} | {:.2}x |", a / r);
    }
}

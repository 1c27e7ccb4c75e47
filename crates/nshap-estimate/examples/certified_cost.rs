//! Certified top-10 cost on the planted n = 1000 game (docs/estimators.md, "Cost"):
//! `cargo run --release -p nshap-estimate --example certified_cost -- SEEDS EPS_FRACTION_OF_GAP`.
use nshap_estimate::games::{ClosedForm, PlantedTopK};
use nshap_estimate::*;
fn main() {
    let seeds: u64 = std::env::args().nth(1).map_or(5, |s| s.parse().unwrap());
    let eps_frac: f64 = std::env::args().nth(2).map_or(0.5, |s| s.parse().unwrap());
    for seed in 0..seeds {
        let spec = PlantedTopK::new(1000, 10, seed);
        let mut game = spec.build();
        let truth = game.shapley();
        let cfg = CertifiedConfig {
            top_k: 10,
            budget: 3_000_000,
            delta: 0.05,
            epsilon: spec.gap * eps_frac,
            marginal_bounds: Some(game.marginal_bounds()),
            ..CertifiedConfig::default()
        };
        let mut est =
            AnyEstimator::from_config(EstimatorConfig::Certified(cfg), 1000, seed).unwrap();
        let r = run(&mut est, &mut game, |_, _| {}).unwrap();
        let top = r.top_k(10);
        let kth = top.iter().map(|&i| truth[i]).fold(f64::INFINITY, f64::min);
        let best_out = (0..1000)
            .filter(|i| !top.contains(i))
            .map(|j| truth[j])
            .fold(f64::NEG_INFINITY, f64::max);
        let samples: Vec<u64> = r.players.iter().map(|p| p.samples).collect();
        let mut s = samples.clone();
        s.sort();
        println!(
            "seed {seed}: evals {} resolved {:?} correct {} bounds {:?} samples median {} max {}",
            r.diagnostics.evaluations,
            r.diagnostics.top_k_resolved,
            kth >= best_out - spec.gap * eps_frac,
            game.marginal_bounds(),
            s[500],
            s[999]
        );
    }
}

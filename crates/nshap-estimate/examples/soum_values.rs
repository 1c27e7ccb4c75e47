//! Estimates on SOUM games given as JSON, for comparisons run from Python
//! (`benches/shapiq/compare.py`):
//! `cargo run --release -p nshap-estimate --example soum_values -- IN.json OUT.json`.
//!
//! `IN.json`: `{"budget": 1000, "methods": ["regression", "permutation"], "games": [{"n": 50,
//! "terms": [[[0, 3], 0.5], ...]}, ...]}`; game `g` is run with seed `g`. `OUT.json`:
//! `{"regression": [[phi_0, ...], ...], ...}`, one row of values per game.
use std::collections::BTreeMap;

use nshap_estimate::games::Soum;
use nshap_estimate::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct GameSpec {
    n: usize,
    terms: Vec<(Vec<usize>, f64)>,
}

#[derive(Deserialize)]
struct Input {
    budget: u64,
    methods: Vec<String>,
    games: Vec<GameSpec>,
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        return Err("usage: soum_values IN.json OUT.json".into());
    };
    let spec: Input = serde_json::from_slice(&std::fs::read(input)?)?;
    let mut out: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    for name in &spec.methods {
        let method: Method = name.parse()?;
        let rows = out.entry(name.clone()).or_default();
        for (g, game_spec) in spec.games.iter().enumerate() {
            let mut game = Soum::new(game_spec.n, game_spec.terms.clone());
            let opts = CommonOptions {
                top_k: 1,
                budget: spec.budget,
                ..CommonOptions::default()
            };
            let config = EstimatorConfig::from_common(method, &opts);
            let mut est = AnyEstimator::from_config(config, game_spec.n, g as u64)?;
            rows.push(run(&mut est, &mut game, |_, _| {})?.values());
        }
    }
    std::fs::write(output, serde_json::to_vec(&out)?)?;
    Ok(())
}

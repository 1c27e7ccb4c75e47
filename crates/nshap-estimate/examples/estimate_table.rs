//! Prints the evaluations-to-precision table of `docs/estimators.md`.
//!
//! `cargo run --release -p nshap-estimate --example estimate_table [seeds]`
//!
//! For every test game and estimator, over `seeds` seeds (default 5): evaluations until
//! precision@k (by signed value) reaches 0.9 and stays there, and until it is 1 and stays there;
//! evaluations at the stop; precision@k and exact top-k recovery at the stop; RMSE and max error
//! against the exact Shapley values; coverage of the reported intervals; efficiency residual.

use std::time::Instant;

use nshap_estimate::games::{ClosedForm, Noisy, PlantedTopK, Soum, WeightedVoting};
use nshap_estimate::Threshold;
use nshap_estimate::{
    precision_at_k, run, top_k_indices, AnyEstimator, CommonOptions, EstimatorConfig, Game, Method,
};

/// A per-method adjustment on top of the shared options.
type Tweak = fn(&mut EstimatorConfig);

fn none(_: &mut EstimatorConfig) {}

fn midpoint(c: &mut EstimatorConfig) {
    if let EstimatorConfig::Tmab(t) = c {
        t.threshold = Threshold::Midpoint;
    }
}

struct Case {
    name: &'static str,
    k: usize,
    make: Box<dyn Fn(u64) -> Box<dyn Game>>,
    truth: Box<dyn Fn(u64) -> Vec<f64>>,
    /// `R` for TMAB: the game's largest marginal spread.
    range: Box<dyn Fn(u64) -> f64>,
    opts: CommonOptions,
    methods: Vec<(&'static str, Method, Option<bool>, Tweak)>,
}

#[derive(Default)]
struct Row {
    to_90: Vec<u64>,
    to_100: Vec<u64>,
    at_stop: Vec<u64>,
    precision: Vec<f64>,
    exact_topk: usize,
    rmse: Vec<f64>,
    max_err: Vec<f64>,
    covered: usize,
    intervals: usize,
    residual: Vec<f64>,
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn fmt_evals(x: u64) -> String {
    if x >= 1_000_000 {
        format!("{:.2}M", x as f64 / 1e6)
    } else if x >= 10_000 {
        format!("{:.0}k", x as f64 / 1e3)
    } else {
        x.to_string()
    }
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let all: Vec<(&'static str, Method, Option<bool>, Tweak)> = vec![
        ("permutation", Method::Permutation, None, none),
        (
            "permutation (plain)",
            Method::Permutation,
            Some(false),
            none,
        ),
        ("tmab", Method::Tmab, None, none),
        ("tmab (midpoint)", Method::Tmab, None, midpoint),
        ("cmcs", Method::Cmcs, None, none),
        ("loo", Method::Loo, None, none),
    ];
    let planted = |seed: u64| PlantedTopK::new(1000, 10, seed);
    let cases = vec![
        Case {
            name: "UN Security Council, n=15, k=5",
            k: 5,
            make: Box::new(|_| Box::new(WeightedVoting::un_security_council())),
            truth: Box::new(|_| {
                let mut v = vec![421.0 / 2145.0; 5];
                v.extend([4.0 / 2145.0; 10]);
                v
            }),
            range: Box::new(|_| 1.0),
            opts: CommonOptions {
                top_k: 5,
                budget: 100_000,
                ..CommonOptions::default()
            },
            methods: {
                let mut m: Vec<(&'static str, Method, Option<bool>, Tweak)> =
                    vec![("exact", Method::Exact, None, none)];
                m.extend(all.iter().cloned());
                m
            },
        },
        Case {
            name: "random SOUM, n=50, k=5",
            k: 5,
            make: Box::new(|s| Box::new(Soum::random(50, 60, 1..=8, 1000 + s))),
            truth: Box::new(|s| Soum::random(50, 60, 1..=8, 1000 + s).shapley()),
            range: Box::new(|s| Soum::random(50, 60, 1..=8, 1000 + s).marginal_range()),
            opts: CommonOptions {
                top_k: 5,
                budget: 200_000,
                ..CommonOptions::default()
            },
            methods: all.clone(),
        },
        Case {
            name: "noisy accuracy SOUM, n=20, k=3, 128 examples/draw",
            k: 3,
            make: Box::new(|s| Box::new(Noisy::new(accuracy_soum(20, 40, s), 128, 7 + s))),
            truth: Box::new(|s| accuracy_soum(20, 40, s).shapley()),
            range: Box::new(|_| 1.0),
            opts: CommonOptions {
                top_k: 3,
                budget: 200_000,
                ..CommonOptions::default()
            },
            methods: all.clone(),
        },
        Case {
            name: "planted top-k SOUM, n=1000, k=10 (test game)",
            k: 10,
            make: Box::new(move |s| Box::new(planted(s).build())),
            truth: Box::new(move |s| planted(s).build().shapley()),
            range: Box::new(move |s| planted(s).build().marginal_range()),
            opts: CommonOptions {
                top_k: 10,
                budget: 2_500_000,
                // half the planted gap, as in the test: an ε-correct top-k is then exact
                epsilon: 0.015,
                ..CommonOptions::default()
            },
            methods: all.clone(),
        },
    ];

    println!("seeds per cell: {seeds}; precision@k by signed value; medians of evaluations, means of the rest\n");
    println!("| game | method | evals to P@k>=0.9 | evals to P@k=1 | evals at stop | P@k at stop | exact top-k | RMSE | max abs err | CI coverage | efficiency residual |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for case in &cases {
        for (label, method, antithetic, tweak) in &case.methods {
            let started = Instant::now();
            let mut row = Row::default();
            for seed in 0..seeds {
                let mut game = (case.make)(seed);
                let truth = (case.truth)(seed);
                let truth_top = top_k_indices(&truth, case.k);
                let mut opts = case.opts.clone();
                opts.antithetic = *antithetic;
                opts.value_range = (case.range)(seed);
                let mut cfg = EstimatorConfig::from_common(*method, &opts);
                tweak(&mut cfg);
                let mut est =
                    AnyEstimator::from_config(cfg, game.n_players(), seed).expect("config");
                let (mut first90, mut first100) = (None, None);
                let r = run(&mut est, game.as_mut(), |p, _| {
                    let prec = precision_at_k(&p.top_k, &truth_top);
                    if p.top_k.is_empty() {
                        return;
                    }
                    if prec >= 0.9 {
                        first90.get_or_insert(p.evaluations);
                    } else {
                        first90 = None;
                    }
                    if prec >= 1.0 {
                        first100.get_or_insert(p.evaluations);
                    } else {
                        first100 = None;
                    }
                })
                .expect("run");
                let evals = r.diagnostics.evaluations;
                let prec = precision_at_k(&r.top_k(case.k), &truth_top);
                row.to_90.push(first90.unwrap_or(u64::MAX));
                row.to_100.push(first100.unwrap_or(u64::MAX));
                row.at_stop.push(evals);
                row.precision.push(prec);
                row.exact_topk += usize::from(prec >= 1.0);
                let v = r.values();
                row.rmse.push(
                    (v.iter()
                        .zip(&truth)
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>()
                        / v.len() as f64)
                        .sqrt(),
                );
                row.max_err.push(
                    v.iter()
                        .zip(&truth)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max),
                );
                if matches!(method, Method::Permutation | Method::Tmab | Method::Cmcs) {
                    for (p, t) in r.players.iter().zip(&truth) {
                        row.intervals += 1;
                        row.covered += usize::from(p.ci_low - 1e-9 <= *t && *t <= p.ci_high + 1e-9);
                    }
                }
                if let Some(res) = r.diagnostics.efficiency_residual {
                    row.residual.push(res);
                }
            }
            let show = |mut v: Vec<u64>| {
                let m = median(&mut v);
                if m == u64::MAX {
                    "never".to_string()
                } else {
                    fmt_evals(m)
                }
            };
            println!(
                "| {} | {} | {} | {} | {} | {:.2} | {}/{} | {:.2e} | {:.2e} | {} | {} |",
                case.name,
                label,
                show(row.to_90),
                show(row.to_100),
                fmt_evals(median(&mut row.at_stop)),
                mean(&row.precision),
                row.exact_topk,
                seeds,
                mean(&row.rmse),
                mean(&row.max_err),
                if row.intervals > 0 {
                    format!("{:.3}", row.covered as f64 / row.intervals as f64)
                } else {
                    "-".into()
                },
                if row.residual.is_empty() {
                    "-".into()
                } else {
                    format!("{:.1e}", mean(&row.residual))
                },
            );
            eprintln!(
                "  ({label} on {} took {:.1}s)",
                case.name,
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Same construction as the tests: positive SOUM with values in [0.05, 0.95].
fn accuracy_soum(n: usize, n_terms: usize, seed: u64) -> Soum {
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

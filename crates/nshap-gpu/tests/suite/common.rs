//! Test support: the shared device, random data, and a tolerance check.

use nshap_gpu::{GpuBackend, GpuOptions};
use nshap_model::{EvalJob, EvalSet, Graph, MaskBatch, Metric, PlayerLayer, Players};
use rand::{Rng, SeedableRng};
use std::sync::{Arc, OnceLock};

/// The shared GPU backend, or `None` (after a loud SKIPPED line) when no adapter exists.
/// Panics when `NSHAP_REQUIRE_GPU=1` and there is no adapter, so CI cannot pass by skipping.
pub fn gpu() -> Option<&'static GpuBackend> {
    static BACKEND: OnceLock<Result<GpuBackend, String>> = OnceLock::new();
    let backend = BACKEND.get_or_init(|| {
        let b = GpuBackend::new(GpuOptions::default()).map_err(|e| e.to_string());
        if let Ok(b) = &b {
            eprintln!("GPU tests run on: {}", b.adapter_info());
        }
        b
    });
    match backend {
        Ok(b) => Some(b),
        Err(e) if std::env::var("NSHAP_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("NSHAP_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// A backend on the shared device with a memory budget (to force chunking).
pub fn gpu_with_budget(budget: u64) -> Option<GpuBackend> {
    gpu().map(|b| {
        b.with_options(GpuOptions {
            memory_budget_bytes: budget,
            ..GpuOptions::default()
        })
        .expect("same device")
    })
}

/// Both ways the backend runs a job: with its fast paths (pushdown, tables, the mask on read) and
/// without (every op as written). Tests hold both to the reference.
pub fn gpu_both() -> Vec<(&'static str, GpuBackend)> {
    let Some(fast) = gpu() else {
        return Vec::new();
    };
    let plain = fast
        .with_options(GpuOptions {
            fast_paths: false,
            ..GpuOptions::default()
        })
        .expect("same device");
    let fast = fast
        .with_options(GpuOptions::default())
        .expect("same device");
    vec![("fast paths", fast), ("plain", plain)]
}

/// A linear layer with random weights and biases in [-0.5, 0.5).
pub fn random_linear(i: usize, o: usize, seed: u64) -> nshap_model::Op {
    let mut rng = rng(seed);
    nshap_model::Op::Linear(nshap_model::Linear {
        in_features: i,
        out_features: o,
        weight: random_vec(&mut rng, i * o, 0.5),
        bias: random_vec(&mut rng, o, 0.5),
        has_bias: true,
    })
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn random_vec(rng: &mut impl Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// `m` random coalitions of `n` players, plus the full and the empty coalition.
pub fn random_masks(rng: &mut impl Rng, n: usize, m: usize) -> MaskBatch {
    let mut masks = MaskBatch::new(n);
    masks.push_full();
    masks.push_bools(&vec![false; n]);
    for _ in 0..m {
        let row: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
        masks.push_bools(&row);
    }
    masks
}

/// Players on the named nodes with random non-zero baselines (so replacement is visible).
pub fn players_on(graph: &Graph, names: &[&str], rng: &mut impl Rng) -> Players {
    Players::new(
        names
            .iter()
            .map(|name| {
                let node = graph.find(name).unwrap_or_else(|| panic!("node {name}"));
                let c = graph.nodes[node].shape.channels();
                PlayerLayer {
                    node,
                    name: name.to_string(),
                    baseline: random_vec(rng, c, 1.0),
                }
            })
            .collect(),
    )
    .unwrap()
}

/// A random eval set for `graph` with `n` examples.
pub fn random_data(graph: &Graph, n: usize, rng: &mut impl Rng) -> EvalSet {
    let classes = graph.num_classes();
    let inputs = random_vec(rng, n * graph.input.numel(), 1.0);
    let labels = (0..n)
        .map(|_| rng.random_range(0..classes as u32))
        .collect();
    EvalSet::new(graph.input, inputs, labels, classes).unwrap()
}

pub fn job(graph: &Graph, players: &Players, data: &EvalSet, metric: Metric) -> EvalJob {
    EvalJob {
        graph: Arc::new(graph.clone()),
        players: players.clone(),
        data: Arc::new(data.clone()),
        metric,
    }
}

/// `got` within `rel` of `want` relative to each value, with an absolute floor.
pub fn assert_close(got: &[f32], want: &[f32], rel: f32, floor: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = (rel * w.abs()).max(floor);
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

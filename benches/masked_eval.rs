//! Masked evaluation throughput: coalitions x examples through the shipped digits CNN.
//!
//! `cargo bench --bench masked_eval`. Throughput is in coalition-examples per second
//! (criterion's "elements"). The PyTorch baseline for the same work is
//! `python3 benches/pytorch/masked_cnn.py`; run both in one session and compare medians.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nshap::model::{
    load_eval_set, load_model, Baseline, DataOptions, EvalJob, Examples, MaskBatch, Metric,
};
use nshap::{make_backend, resolve_players, BackendChoice};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;

fn masks(n: usize, m: usize) -> MaskBatch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut batch = MaskBatch::new(n);
    for _ in 0..m {
        let row: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
        batch.push_bools(&row);
    }
    batch
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/digits-cnn");
    let graph = load_model(&dir.join("model.json"), &dir.join("weights.safetensors")).unwrap();
    let data = load_eval_set(
        &dir.join("eval.safetensors"),
        &graph,
        &DataOptions::default(),
    )
    .unwrap();
    let mut group = c.benchmark_group("digits_cnn_masked_eval");
    group.sample_size(10);
    // (player layer, backend, coalitions, examples)
    let mut cases = vec![
        ("relu2", BackendChoice::Cpu, 1000, 500),
        ("relu1", BackendChoice::Cpu, 100, 500),
    ];
    if make_backend(BackendChoice::Gpu).is_ok() {
        // Small shapes: on lavapipe (software Vulkan) this measures correctness-path cost only.
        cases.push(("relu2", BackendChoice::Gpu, 64, 128));
    }
    for (player, backend, m, b) in cases {
        let players =
            resolve_players(&graph, &data, &[player.to_string()], Baseline::Zero).unwrap();
        let batch = masks(players.len(), m);
        let subset: Vec<u32> = (0..b as u32).collect();
        let job = EvalJob {
            graph: Arc::new(graph.clone()),
            players,
            data: Arc::new(data.clone()),
            metric: Metric::Accuracy,
        };
        let mut ev = make_backend(backend).unwrap().prepare(job).unwrap();
        let name = format!("{}_{player}_{m}x{b}", ev.info().backend);
        group.throughput(Throughput::Elements((m * b) as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter(|| ev.evaluate(Examples::Subset(&subset), &batch).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Per-neuron measures (one forward and two backward passes per example) on the shipped models
//! and a full-width ResNet-18 at 32x32.
//!
//! `cargo bench --bench measures`. Throughput is in examples per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nshap::cpu::neuron_measures;
use nshap::model::players::find_player_nodes;
use nshap::model::{load_arch, load_eval_set, load_model, DataOptions, EvalSet, Graph};
use std::path::Path;

fn asset(name: &str) -> (Graph, EvalSet) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name);
    let graph = load_model(&dir.join("model.json"), &dir.join("weights.safetensors")).unwrap();
    let data = load_eval_set(
        &dir.join("eval.safetensors"),
        &graph,
        &DataOptions::default(),
    )
    .unwrap();
    (graph, data)
}

/// A torchvision-shaped ResNet-18 (synthetic weights, 10 classes) on 128 deterministic inputs.
fn resnet18_32() -> (Graph, EvalSet) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    std::fs::write(
        &path,
        nshap::model::resnet::synthetic_state_dict("resnet18", 1, 10, 3).unwrap(),
    )
    .unwrap();
    let (graph, _) = load_arch("resnet18", &path, [3, 32, 32]).unwrap();
    let n = 128;
    let inputs: Vec<f32> = (0..n * graph.input.numel())
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let data = EvalSet::new(graph.input, inputs, labels, 10).unwrap();
    (graph, data)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("neuron_measures");
    group.sample_size(10);
    let cases: Vec<(&str, (Graph, EvalSet), Vec<&str>)> = vec![
        ("digits-cnn", asset("digits-cnn"), vec!["relu2"]),
        ("digits-resnet", asset("digits-resnet"), vec!["relu"]),
        (
            "resnet18@32",
            resnet18_32(),
            vec!["layer1.0.relu1", "layer4.1.relu2"],
        ),
    ];
    for (name, (graph, data), players) in &cases {
        let names: Vec<String> = players.iter().map(|s| s.to_string()).collect();
        let nodes = find_player_nodes(graph, &names).unwrap();
        group.throughput(Throughput::Elements(data.len() as u64));
        let id = format!("{name}_{}", players.join("+"));
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| neuron_measures(graph, data, &nodes).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

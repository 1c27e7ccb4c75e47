//! The shipped assets load and the CPU backend's full-network accuracy matches assets/README.md.

use nshap_cpu::CpuBackend;
use nshap_model::{load_eval_set, load_model, Backend, DataOptions, EvalJob, Examples, MaskBatch, Metric, PlayerLayer, Players};
use std::path::Path;
use std::sync::Arc;

fn accuracy(dir: &str, player: &str) -> (f64, f64) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets").join(dir);
    let graph = load_model(&root.join("model.json"), &root.join("weights.safetensors")).unwrap();
    let data = load_eval_set(&root.join("eval.safetensors"), &graph, &DataOptions::default()).unwrap();
    let node = graph.find(player).unwrap();
    let channels = graph.nodes[node].shape.channels();
    let players = Players::new(vec![PlayerLayer { node, name: player.into(), baseline: vec![0.0; channels] }]).unwrap();
    let job = EvalJob { graph: Arc::new(graph), players, data: Arc::new(data), metric: Metric::Accuracy };
    let mut ev = CpuBackend::default().prepare(job).unwrap();
    let mut masks = MaskBatch::new(channels);
    masks.push_full();
    masks.push_bools(&vec![false; channels]);
    let v = ev.evaluate(Examples::All, &masks).unwrap();
    (v[0], v[1])
}

#[test]
fn shipped_models_are_accurate_and_removing_all_players_breaks_them() {
    for (dir, player) in [("digits-mlp", "relu2"), ("digits-cnn", "relu2")] {
        let (full, empty) = accuracy(dir, player);
        println!("{dir}: full {full}, empty {empty}");
        assert!(full > 0.9, "{dir}: accuracy {full}");
        assert!(empty < 0.5, "{dir}: accuracy with no players {empty}");
    }
}

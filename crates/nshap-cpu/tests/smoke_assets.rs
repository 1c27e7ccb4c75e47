//! The shipped assets load and the CPU backend's full-network accuracy matches assets/README.md.

use nshap_cpu::CpuBackend;
use nshap_model::{
    load_eval_set, load_model, Backend, DataOptions, EvalJob, Examples, MaskBatch, Metric,
    PlayerLayer, Players,
};
use std::path::Path;
use std::sync::Arc;

fn accuracy(dir: &str, player: &str) -> (f64, f64) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets")
        .join(dir);
    let graph = load_model(&root.join("model.json"), &root.join("weights.safetensors")).unwrap();
    let data = load_eval_set(
        &root.join("eval.safetensors"),
        &graph,
        &DataOptions::default(),
    )
    .unwrap();
    let node = graph.find(player).unwrap();
    let channels = graph.nodes[node].shape.channels();
    let players = Players::new(vec![PlayerLayer {
        node,
        name: player.into(),
        baseline: vec![0.0; channels],
    }])
    .unwrap();
    let job = EvalJob {
        graph: Arc::new(graph),
        players,
        data: Arc::new(data),
        metric: Metric::Accuracy,
    };
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

/// A library caller's own metric runs on the CPU backend.
#[test]
fn custom_metric_is_applied_per_example() {
    #[derive(Debug)]
    struct Top2;
    impl nshap_model::CustomMetric for Top2 {
        fn name(&self) -> String {
            "top2".into()
        }
        fn score(&self, logits: &[f32], label: u32) -> Option<f64> {
            let mine = logits[label as usize];
            let above = logits.iter().filter(|&&v| v > mine).count();
            Some(f64::from(u8::from(above < 2)))
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/digits-mlp");
    let graph = load_model(&root.join("model.json"), &root.join("weights.safetensors")).unwrap();
    let data = load_eval_set(
        &root.join("eval.safetensors"),
        &graph,
        &DataOptions::default(),
    )
    .unwrap();
    let node = graph.find("relu2").unwrap();
    let players = Players::new(vec![PlayerLayer {
        node,
        name: "relu2".into(),
        baseline: vec![0.0; 16],
    }])
    .unwrap();
    let job = |metric| EvalJob {
        graph: Arc::new(graph.clone()),
        players: players.clone(),
        data: Arc::new(data.clone()),
        metric,
    };
    let mut masks = MaskBatch::new(16);
    masks.push_full();
    masks.push_bools(&[true, false].repeat(8));
    let top1 = CpuBackend::default()
        .prepare(job(Metric::Accuracy))
        .unwrap()
        .evaluate(Examples::All, &masks)
        .unwrap();
    let top2 = CpuBackend::default()
        .prepare(job(Metric::Custom(Arc::new(Top2))))
        .unwrap()
        .evaluate(Examples::All, &masks)
        .unwrap();
    for (a, b) in top1.iter().zip(&top2) {
        assert!(
            b >= a && *b <= 1.0,
            "top-2 accuracy {b} must be at least top-1 {a}"
        );
    }
    assert!(
        top2[1] > top1[1],
        "with half the units removed top-2 should beat top-1: {top2:?} vs {top1:?}"
    );
}

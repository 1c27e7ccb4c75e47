//! Bad requests get clear errors, never panics.

use crate::common::*;
use nshap_gpu::{GpuBackend, GpuError, GpuOptions};
use nshap_model::{
    Backend, BackendError, CustomMetric, Examples, Graph, Linear, MaskBatch, Metric, Node, Op,
    Shape, Source,
};
use std::sync::Arc;

struct Margin;

impl CustomMetric for Margin {
    fn name(&self) -> String {
        "margin".into()
    }
    fn score(&self, logits: &[f32], _label: u32) -> Option<f64> {
        Some(logits[0] as f64)
    }
}

fn tiny_graph() -> Graph {
    Graph {
        input: Shape::Features(3),
        nodes: vec![Node {
            name: "fc".into(),
            op: Op::Linear(Linear {
                in_features: 3,
                out_features: 2,
                weight: vec![0.5; 6],
                bias: vec![0.0; 2],
                has_bias: true,
            }),
            inputs: vec![Source::Input],
            shape: Shape::Features(2),
        }],
    }
}

#[test]
fn custom_metric_is_unsupported() {
    let Some(gpu) = gpu() else { return };
    let g = tiny_graph();
    let mut rng = rng(1);
    let players = players_on(&g, &["fc"], &mut rng);
    let data = random_data(&g, 4, &mut rng);
    let err = gpu
        .prepare(job(&g, &players, &data, Metric::Custom(Arc::new(Margin))))
        .err()
        .expect("must fail");
    assert!(
        matches!(err, BackendError::Unsupported { backend: "gpu", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("margin"), "{err}");
}

#[test]
fn wrong_mask_width_and_bad_example_index_are_invalid() {
    let Some(gpu) = gpu() else { return };
    let g = tiny_graph();
    let mut rng = rng(2);
    let players = players_on(&g, &["fc"], &mut rng);
    let data = random_data(&g, 4, &mut rng);
    let mut ev = gpu
        .prepare(job(&g, &players, &data, Metric::Accuracy))
        .unwrap();
    let mut wide = MaskBatch::new(3);
    wide.push_full();
    for err in [
        ev.evaluate(Examples::All, &wide).unwrap_err(),
        ev.logits(Examples::All, &wide).unwrap_err(),
    ] {
        assert!(matches!(err, BackendError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("3 players"), "{err}");
    }
    let mut ok = MaskBatch::new(2);
    ok.push_full();
    for err in [
        ev.evaluate(Examples::Subset(&[0, 4]), &ok).unwrap_err(),
        ev.logits(Examples::Subset(&[7]), &ok).unwrap_err(),
    ] {
        assert!(matches!(err, BackendError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("out of range"), "{err}");
    }
    // The evaluator still works after rejected requests; empty requests give empty answers.
    assert_eq!(
        ev.evaluate(Examples::Subset(&[0, 3]), &ok).unwrap().len(),
        1
    );
    assert!(ev
        .evaluate(Examples::All, &MaskBatch::new(2))
        .unwrap()
        .is_empty());
    assert_eq!(ev.evaluate(Examples::Subset(&[]), &ok).unwrap(), vec![0.0]);
}

#[test]
fn unknown_adapter_name_lists_the_available_ones() {
    let Some(gpu) = gpu() else { return };
    let options = GpuOptions {
        adapter: Some("no-such-adapter-xyz".into()),
        ..GpuOptions::default()
    };
    match GpuBackend::new(options) {
        Err(GpuError::AdapterNotFound { wanted, available }) => {
            assert_eq!(wanted, "no-such-adapter-xyz");
            assert!(available.contains(&gpu.adapter_info().name), "{available}");
        }
        Err(other) => panic!("expected AdapterNotFound, got {other}"),
        Ok(_) => panic!("expected AdapterNotFound, got a device"),
    }
}

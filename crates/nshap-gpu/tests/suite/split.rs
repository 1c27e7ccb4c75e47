//! Weights larger than one storage binding: a linear layer is split over output features into
//! parts that each fit (VGG's first classifier layer is 411 MB, lavapipe binds 128 MiB), and
//! must give the unsplit layer's logits; a conv weight that does not fit is a clear error.

use crate::common::*;
use crate::ops::{conv, image, node};
use crate::reference;
use nshap_gpu::plan::{Plan, StepOp};
use nshap_gpu::{GpuBackend, GpuOptions};
use nshap_model::{Activation, Backend, Examples, Graph, Metric, Op, Shape, Source};

fn with_weight_limit(bytes: u64) -> Option<GpuBackend> {
    gpu().map(|b| {
        b.with_options(GpuOptions {
            max_weight_binding_bytes: Some(bytes),
            ..GpuOptions::default()
        })
        .expect("same device")
    })
}

/// Input 37 features -> fc1 (50 outputs, split) -> relu -> fc2 (7 classes); `pre` an identity
/// player before fc1 when `masked` (fc1 then runs per coalition), else fc1 reads the input.
fn mlp(masked: bool) -> Graph {
    let (i, h, c) = (37, 50, 7);
    let first = Source::Node(0);
    let mut nodes = vec![node(
        "pre",
        Op::Identity,
        vec![Source::Input],
        Shape::Features(i),
    )];
    nodes.push(node(
        "fc1",
        random_linear(i, h, 1),
        vec![if masked { first } else { Source::Input }],
        Shape::Features(h),
    ));
    nodes.push(node(
        "relu",
        Op::Activation(Activation::Relu),
        vec![Source::Node(1)],
        Shape::Features(h),
    ));
    nodes.push(node(
        "fc2",
        random_linear(h, c, 2),
        vec![Source::Node(2)],
        Shape::Features(c),
    ));
    Graph {
        input: Shape::Features(i),
        nodes,
    }
}

fn linear_parts(plan: &Plan, node: usize) -> Vec<std::ops::Range<usize>> {
    plan.steps()
        .filter_map(|s| match &s.op {
            StepOp::Linear { node: n, outputs } if *n == node => Some(outputs.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn split_linear_matches_reference_shared_and_per_coalition_with_fused_activation() {
    // 12 rows of 37 f32 weights per part at most: fc1's 50 outputs in 5 parts of 10.
    let limit = 12 * 37 * 4;
    let Some(gpu) = with_weight_limit(limit) else {
        return;
    };
    for (masked, players) in [
        (false, vec!["relu"]),
        (true, vec!["pre", "relu"]),
        (true, vec!["pre", "fc1"]),
    ] {
        let graph = mlp(masked);
        let mut rng = rng(7);
        let players = players_on(&graph, &players, &mut rng);
        let plan = Plan::build_split(&graph, &players, 12 * 37);
        assert_eq!(
            linear_parts(&plan, 1),
            vec![0..10, 10..20, 20..30, 30..40, 40..50],
            "fc1 split evenly"
        );
        assert_eq!(linear_parts(&plan, 3), vec![0..7], "fc2 fits whole");
        let data = random_data(&graph, 6, &mut rng);
        let masks = random_masks(&mut rng, players.len(), 9);
        let want = reference::logits(&graph, &players, &data.inputs, &masks);
        let got = gpu
            .prepare(job(&graph, &players, &data, Metric::Accuracy))
            .unwrap()
            .logits(Examples::All, &masks)
            .unwrap();
        let what = format!("split fc1, masked {masked}, players {:?}", players.len());
        assert_close(&got, &want, 1e-4, 1e-5, &what);
        // The split must not change a single value beyond rounding: compare with no limit.
        let whole = crate::common::gpu()
            .unwrap()
            .prepare(job(&graph, &players, &data, Metric::Accuracy))
            .unwrap()
            .logits(Examples::All, &masks)
            .unwrap();
        assert_close(&got, &whole, 1e-6, 1e-6, &format!("{what} vs unsplit"));
    }
}

#[test]
fn uneven_split_covers_every_output_once() {
    let graph = mlp(true);
    let players = players_on(&graph, &["pre"], &mut rng(1));
    // 7 rows per part: 50 outputs -> 8 parts of width 7 (the last 1).
    let parts = linear_parts(&Plan::build_split(&graph, &players, 7 * 37), 1);
    assert_eq!(parts.len(), 8);
    let covered: Vec<usize> = parts.iter().flat_map(|r| r.clone()).collect();
    assert_eq!(covered, (0..50).collect::<Vec<_>>());
    assert!(parts.iter().all(|r| r.len() <= 7));
}

#[test]
fn conv_weight_over_the_binding_limit_is_an_error_naming_the_layer() {
    let Some(gpu) = with_weight_limit(1024) else {
        return;
    };
    // 16 x 8 x 3 x 3 f32 = 4,608 bytes: a conv is not split.
    let graph = Graph {
        input: image(8, 6, 6),
        nodes: vec![
            node(
                "features.0",
                conv(8, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, 3),
                vec![Source::Input],
                image(16, 6, 6),
            ),
            node(
                "pool",
                Op::GlobalAvgPool,
                vec![Source::Node(0)],
                Shape::Features(16),
            ),
        ],
    };
    let mut rng = rng(2);
    let players = players_on(&graph, &["features.0"], &mut rng);
    let data = random_data(&graph, 2, &mut rng);
    let err = match gpu.prepare(job(&graph, &players, &data, Metric::Accuracy)) {
        Ok(_) => panic!("a 4,608-byte conv weight under a 1,024-byte limit must be refused"),
        Err(e) => e.to_string(),
    };
    for part in [
        "features.0",
        "4608 bytes",
        "1024-byte storage binding limit",
    ] {
        assert!(err.contains(part), "{err:?} lacks {part:?}");
    }
}

#[test]
fn one_linear_row_over_the_limit_is_an_error() {
    let Some(gpu) = with_weight_limit(100) else {
        return;
    };
    let graph = mlp(true);
    let mut rng = rng(3);
    let players = players_on(&graph, &["pre"], &mut rng);
    let data = random_data(&graph, 2, &mut rng);
    let err = match gpu.prepare(job(&graph, &players, &data, Metric::Accuracy)) {
        Ok(_) => panic!("a 148-byte weight row under a 100-byte limit cannot be split"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("fc1") && err.contains("binding limit"),
        "{err}"
    );
}

//! Every op against the plain reference on random data, in two placements:
//! - `shared`: the op reads the input and is itself the player node, so it runs once per example
//!   (shared prefix) and the mask is applied by the broadcast step;
//! - `masked`: a player identity precedes it, so the op runs on coalitions x examples rows,
//!   reads a per-coalition input, and is also a player node (mask fused into its kernel).

use crate::common::*;
use crate::reference;
use nshap_model::{
    Activation, Backend, BatchNorm, Conv2d, Examples, Graph, Linear, Metric, Node, Op, Pool2d,
    Shape, Source,
};

fn node(name: &str, op: Op, inputs: Vec<Source>, shape: Shape) -> Node {
    Node {
        name: name.into(),
        op,
        inputs,
        shape,
    }
}

/// Run both placements of `op` (output `out`) on input shape `input` and compare logits.
fn check(what: &str, input: Shape, op: Op, out: Shape, seed: u64) {
    let Some(gpu) = gpu() else { return };
    let two = matches!(op, Op::Add);
    let shared = Graph {
        input,
        nodes: vec![node(
            "op",
            op.clone(),
            vec![Source::Input; 1 + usize::from(two)],
            out,
        )],
    };
    let masked_inputs = if two {
        vec![Source::Input, Source::Node(0)]
    } else {
        vec![Source::Node(0)]
    };
    let masked = Graph {
        input,
        nodes: vec![
            node("pre", Op::Identity, vec![Source::Input], input),
            node("op", op, masked_inputs, out),
        ],
    };
    for (placement, graph, names) in [
        ("shared", shared, vec!["op"]),
        ("masked", masked, vec!["pre", "op"]),
    ] {
        let mut rng = rng(seed);
        let players = players_on(&graph, &names, &mut rng);
        let data = random_data(&graph, 5, &mut rng);
        let masks = random_masks(&mut rng, players.len(), 14);
        let want = reference::logits(&graph, &players, &data.inputs, &masks);
        let mut ev = gpu
            .prepare(job(&graph, &players, &data, Metric::Accuracy))
            .unwrap_or_else(|e| panic!("{what}/{placement}: {e}"));
        let got = ev
            .logits(Examples::All, &masks)
            .unwrap_or_else(|e| panic!("{what}/{placement}: {e}"));
        assert_close(&got, &want, 1e-4, 1e-5, &format!("{what}/{placement}"));
    }
}

fn image(c: usize, h: usize, w: usize) -> Shape {
    Shape::Image { c, h, w }
}

#[allow(clippy::too_many_arguments)]
fn conv(
    cin: usize,
    cout: usize,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    d: (usize, usize),
    g: usize,
    seed: u64,
) -> Op {
    let mut rng = rng(seed);
    Op::Conv2d(Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: k,
        stride: s,
        padding: p,
        dilation: d,
        groups: g,
        weight: random_vec(&mut rng, cout * cin / g * k.0 * k.1, 0.5),
        bias: random_vec(&mut rng, cout, 0.5),
        has_bias: true,
    })
}

fn conv_out(n: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
    (n + 2 * p - d * (k - 1) - 1) / s + 1
}

#[test]
fn linear_matches_reference() {
    let mut rng = rng(1);
    let (i, o) = (37, 70);
    let op = Op::Linear(Linear {
        in_features: i,
        out_features: o,
        weight: random_vec(&mut rng, i * o, 0.3),
        bias: random_vec(&mut rng, o, 0.3),
        has_bias: true,
    });
    check("linear", Shape::Features(i), op, Shape::Features(o), 2);
}

#[test]
fn conv2d_matches_reference_with_stride_padding_dilation_groups() {
    // (cin, cout, kernel, stride, padding, dilation, groups, h, w)
    let cases = [
        (3, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, 7, 6),
        (2, 20, (3, 2), (2, 1), (2, 1), (2, 1), 1, 9, 8),
        (4, 6, (3, 3), (1, 2), (0, 1), (1, 1), 2, 6, 7),
        (4, 4, (3, 3), (1, 1), (1, 1), (1, 1), 4, 5, 5),
        (3, 17, (1, 1), (1, 1), (0, 0), (1, 1), 1, 4, 3),
    ];
    for (n, &(cin, cout, k, s, p, d, g, h, w)) in cases.iter().enumerate() {
        let out = image(
            cout,
            conv_out(h, k.0, s.0, p.0, d.0),
            conv_out(w, k.1, s.1, p.1, d.1),
        );
        check(
            &format!("conv2d case {n}"),
            image(cin, h, w),
            conv(cin, cout, k, s, p, d, g, n as u64),
            out,
            10 + n as u64,
        );
    }
}

#[test]
fn batchnorm_unfolded_matches_reference() {
    let mut rng = rng(3);
    let c = 3;
    let op = Op::BatchNorm(BatchNorm {
        scale: random_vec(&mut rng, c, 2.0),
        shift: random_vec(&mut rng, c, 1.0),
        beta: vec![0.0; c],
        running_mean: vec![0.0; c],
    });
    check("batchnorm", image(c, 4, 5), op, image(c, 4, 5), 4);
}

#[test]
fn each_activation_matches_reference() {
    for (n, act) in [
        Activation::Relu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Tanh,
    ]
    .into_iter()
    .enumerate()
    {
        check(
            &format!("{act:?}"),
            Shape::Features(50),
            Op::Activation(act),
            Shape::Features(50),
            20 + n as u64,
        );
        check(
            &format!("{act:?} image"),
            image(3, 2, 5),
            Op::Activation(act),
            image(3, 2, 5),
            30 + n as u64,
        );
    }
}

#[test]
fn activations_fused_into_linear_match_reference() {
    let Some(gpu) = gpu() else { return };
    for (n, act) in [
        Activation::Relu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Tanh,
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = rng(40 + n as u64);
        let (i, o) = (9, 12);
        let graph = Graph {
            input: Shape::Features(i),
            nodes: vec![
                node("pre", Op::Identity, vec![Source::Input], Shape::Features(i)),
                node(
                    "fc",
                    Op::Linear(Linear {
                        in_features: i,
                        out_features: o,
                        weight: random_vec(&mut rng, i * o, 1.5),
                        bias: random_vec(&mut rng, o, 1.0),
                        has_bias: true,
                    }),
                    vec![Source::Node(0)],
                    Shape::Features(o),
                ),
                node(
                    "act",
                    Op::Activation(act),
                    vec![Source::Node(1)],
                    Shape::Features(o),
                ),
            ],
        };
        let players = players_on(&graph, &["pre", "act"], &mut rng);
        let data = random_data(&graph, 4, &mut rng);
        let masks = random_masks(&mut rng, players.len(), 6);
        let want = reference::logits(&graph, &players, &data.inputs, &masks);
        let got = gpu
            .prepare(job(&graph, &players, &data, Metric::Accuracy))
            .unwrap()
            .logits(Examples::All, &masks)
            .unwrap();
        assert_close(&got, &want, 1e-4, 1e-5, &format!("fused {act:?}"));
    }
}

#[test]
fn pooling_with_padding_matches_reference() {
    let pool = |k: usize, s: usize, p: usize| Pool2d {
        kernel: (k, k),
        stride: (s, s),
        padding: (p, p),
    };
    let (h, w) = (7, 6);
    for (n, (k, s, p)) in [(3, 2, 1), (2, 2, 0), (3, 1, 1)].into_iter().enumerate() {
        let out = image(2, conv_out(h, k, s, p, 1), conv_out(w, k, s, p, 1));
        check(
            &format!("maxpool {k}/{s}/{p}"),
            image(2, h, w),
            Op::MaxPool2d(pool(k, s, p)),
            out,
            50 + n as u64,
        );
        check(
            &format!("avgpool {k}/{s}/{p}"),
            image(2, h, w),
            Op::AvgPool2d(pool(k, s, p)),
            out,
            60 + n as u64,
        );
    }
}

#[test]
fn global_avgpool_matches_reference() {
    check(
        "global_avgpool",
        image(3, 5, 4),
        Op::GlobalAvgPool,
        image(3, 1, 1),
        70,
    );
}

#[test]
fn flatten_identity_and_add_match_reference() {
    check(
        "flatten",
        image(2, 3, 3),
        Op::Flatten,
        Shape::Features(18),
        80,
    );
    check("identity", image(2, 3, 3), Op::Identity, image(2, 3, 3), 81);
    check("add", image(2, 3, 4), Op::Add, image(2, 3, 4), 82);
    check(
        "add features",
        Shape::Features(7),
        Op::Add,
        Shape::Features(7),
        83,
    );
}

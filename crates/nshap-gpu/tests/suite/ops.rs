//! Every op against the plain reference on random data, in two placements:
//! - `shared`: the op reads the input and is itself the player node, so it runs once per example
//!   (shared prefix) and the mask is applied by the broadcast step;
//! - `masked`: a player identity precedes it, so the op runs on coalitions x examples rows,
//!   reads a per-coalition input, and is also a player node (mask fused into its kernel).

use crate::common::*;
use crate::reference;
use nshap_gpu::plan::StepOp;
use nshap_model::{
    Activation, Backend, BatchNorm, Conv2d, Examples, Graph, Linear, Metric, Node, Op, Pool2d,
    Shape, Source,
};

pub fn node(name: &str, op: Op, inputs: Vec<Source>, shape: Shape) -> Node {
    Node {
        name: name.into(),
        op,
        inputs,
        shape,
    }
}

/// Compare the GPU's logits for `graph` with players on `names` with the reference's.
pub fn check_graph(what: &str, graph: &Graph, names: &[&str], seed: u64, floor: f32) {
    let mut rng = rng(seed);
    let players = players_on(graph, names, &mut rng);
    let data = random_data(graph, 5, &mut rng);
    let masks = random_masks(&mut rng, players.len(), 14);
    let want = reference::logits(graph, &players, &data.inputs, &masks);
    for (path, gpu) in gpu_both() {
        let what = format!("{what} ({path})");
        let mut ev = gpu
            .prepare(job(graph, &players, &data, Metric::Accuracy))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let got = ev
            .logits(Examples::All, &masks)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_close(&got, &want, 1e-4, floor, &what);
    }
}

/// Run both placements of `op` (output `out`) on input shape `input` and compare logits.
fn check(what: &str, input: Shape, op: Op, out: Shape, seed: u64) {
    let two = matches!(op, Op::Add | Op::Mul);
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
        check_graph(&format!("{what}/{placement}"), &graph, &names, seed, 1e-5);
    }
}

pub fn image(c: usize, h: usize, w: usize) -> Shape {
    Shape::Image { c, h, w }
}

#[allow(clippy::too_many_arguments)]
pub fn conv(
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

/// Every activation, with parameters where it has them (ReLU6 is hardtanh 0..6).
pub fn all_activations() -> Vec<Activation> {
    vec![
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Silu,
        Activation::Hardswish,
        Activation::Hardsigmoid,
        Activation::HardTanh { min: 0.0, max: 6.0 },
        Activation::HardTanh {
            min: -0.5,
            max: 0.25,
        },
        Activation::LeakyRelu { slope: 0.1 },
        Activation::LeakyRelu { slope: -1.5 },
        Activation::Elu { alpha: 1.0 },
        Activation::Elu { alpha: 0.3 },
    ]
}

#[test]
fn each_activation_matches_reference() {
    for (n, act) in all_activations().into_iter().enumerate() {
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
    for (n, act) in all_activations().into_iter().enumerate() {
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
    let pool = |k: usize, s: usize, p: usize| Pool2d::new((k, k), (s, s), (p, p));
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

/// The plan fused the activation node `act` into the kernel producing its input (not a map).
fn assert_fused(graph: &Graph, names: &[&str], act: &str) {
    let mut rng = rng(0);
    let players = players_on(graph, names, &mut rng);
    // Without the fast paths: the pushdown would move a mask past the activation under test.
    let options = nshap_gpu::plan::PlanOptions {
        fast_paths: false,
        ..Default::default()
    };
    let plan = nshap_gpu::plan::Plan::build_with(graph, &players, options);
    assert!(
        plan.steps()
            .any(|s| s.label == act && s.act.is_some() && s.op != StepOp::Map),
        "{act} not fused: {:?}",
        plan.steps().collect::<Vec<_>>()
    );
}

#[test]
fn activations_fused_into_conv_match_reference() {
    // conv -> act with the conv reading a per-coalition input: the activation is the conv's
    // epilogue, followed by the mask of `act` (a player). Weights give pre-activations of a few
    // units, so hardswish/hardsigmoid/hardtanh see both kinks.
    for (n, act) in all_activations().into_iter().enumerate() {
        let graph = Graph {
            input: image(3, 4, 5),
            nodes: vec![
                node("pre", Op::Identity, vec![Source::Input], image(3, 4, 5)),
                node(
                    "conv",
                    conv(3, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, 90 + n as u64),
                    vec![Source::Node(0)],
                    image(5, 4, 5),
                ),
                node(
                    "act",
                    Op::Activation(act),
                    vec![Source::Node(1)],
                    image(5, 4, 5),
                ),
            ],
        };
        assert_fused(&graph, &["pre", "act"], "act");
        check_graph(
            &format!("conv+{act:?}"),
            &graph,
            &["pre", "act"],
            100 + n as u64,
            1e-5,
        );
    }
}

#[test]
fn prelu_and_scale_match_reference() {
    let mut rng = rng(110);
    let slopes = random_vec(&mut rng, 3, 1.0);
    let weights = random_vec(&mut rng, 3, 2.0);
    check(
        "prelu",
        image(3, 2, 4),
        Op::Prelu(slopes.clone()),
        image(3, 2, 4),
        111,
    );
    check(
        "scale",
        image(3, 2, 4),
        Op::Scale(weights),
        image(3, 2, 4),
        112,
    );
    let f = random_vec(&mut rng, 6, 1.0);
    check(
        "prelu features",
        Shape::Features(6),
        Op::Prelu(f.clone()),
        Shape::Features(6),
        113,
    );
    check(
        "scale features",
        Shape::Features(6),
        Op::Scale(f),
        Shape::Features(6),
        114,
    );
}

#[test]
fn activation_fused_into_scale_and_prelu_matches_reference() {
    // scale by 4 spreads the inputs over the kinks of the hard activations.
    for (n, act) in [
        Activation::Hardswish,
        Activation::HardTanh { min: 0.0, max: 6.0 },
        Activation::Elu { alpha: 0.7 },
    ]
    .into_iter()
    .enumerate()
    {
        for (k, op) in [
            Op::Scale(vec![4.0, -3.0, 5.0]),
            Op::Prelu(vec![0.5, 2.0, -1.0]),
        ]
        .into_iter()
        .enumerate()
        {
            let graph = Graph {
                input: image(3, 2, 3),
                nodes: vec![
                    node("pre", Op::Identity, vec![Source::Input], image(3, 2, 3)),
                    node("per_channel", op, vec![Source::Node(0)], image(3, 2, 3)),
                    node(
                        "act",
                        Op::Activation(act),
                        vec![Source::Node(1)],
                        image(3, 2, 3),
                    ),
                ],
            };
            assert_fused(&graph, &["pre", "act"], "act");
            check_graph(
                &format!("per-channel {k} + {act:?}"),
                &graph,
                &["pre", "act"],
                120 + n as u64,
                1e-5,
            );
        }
    }
}

#[test]
fn mul_same_shape_matches_reference_for_every_mix() {
    check("mul", image(2, 3, 4), Op::Mul, image(2, 3, 4), 130);
    check(
        "mul features",
        Shape::Features(7),
        Op::Mul,
        Shape::Features(7),
        131,
    );
    // Per-coalition x shared in both orders, and per-coalition x per-coalition.
    let input = image(2, 3, 4);
    for (n, (a, b)) in [
        (Source::Node(0), Source::Input),
        (Source::Input, Source::Node(0)),
        (Source::Node(0), Source::Node(0)),
    ]
    .into_iter()
    .enumerate()
    {
        let graph = Graph {
            input,
            nodes: vec![
                node("pre", Op::Identity, vec![Source::Input], input),
                node("op", Op::Mul, vec![a, b], input),
            ],
        };
        check_graph(
            &format!("mul mix {n}"),
            &graph,
            &["pre", "op"],
            132 + n as u64,
            1e-5,
        );
    }
}

#[test]
fn mul_broadcast_per_channel_matches_reference_for_every_mix_and_order() {
    // Nodes: 0 pre (player identity), 1 gs = gap(input) (shared), 2 gp = gap(pre) (per
    // coalition), 3 fs = flatten(gs) ([C], shared), then the mul (a player).
    let (c, h, w) = (3, 4, 5);
    let input = image(c, h, w);
    let base = || {
        vec![
            node("pre", Op::Identity, vec![Source::Input], input),
            node("gs", Op::GlobalAvgPool, vec![Source::Input], image(c, 1, 1)),
            node(
                "gp",
                Op::GlobalAvgPool,
                vec![Source::Node(0)],
                image(c, 1, 1),
            ),
            node("fs", Op::Flatten, vec![Source::Node(1)], Shape::Features(c)),
        ]
    };
    let (pre, gs, gp, fs) = (
        Source::Node(0),
        Source::Node(1),
        Source::Node(2),
        Source::Node(3),
    );
    let cases = [
        ("shared big x shared gate", Source::Input, gs, false),
        ("shared gate x shared big", gs, Source::Input, false),
        ("per-coalition big x shared gate", pre, gs, true),
        ("shared gate x per-coalition big", gs, pre, true),
        ("shared big x per-coalition gate", Source::Input, gp, true),
        ("per-coalition gate x shared big", gp, Source::Input, true),
        ("per-coalition big x per-coalition gate", pre, gp, true),
        ("per-coalition big x [C] gate", pre, fs, true),
        ("[C] gate x shared big", fs, Source::Input, false),
    ];
    for (n, (what, a, b, pre_player)) in cases.into_iter().enumerate() {
        let mut nodes = base();
        nodes.push(node("op", Op::Mul, vec![a, b], input));
        let graph = Graph { input, nodes };
        let names: Vec<&str> = if pre_player {
            vec!["pre", "op"]
        } else {
            vec!["op"]
        };
        check_graph(
            &format!("mul broadcast: {what}"),
            &graph,
            &names,
            140 + n as u64,
            1e-5,
        );
    }
}

#[test]
fn concat_matches_reference_for_shared_and_per_coalition_inputs() {
    // Nodes: 0 pre (player identity), 1 a = slice 0..2 of the input (shared), 2 b = slice 1..3 of
    // pre (per coalition), then the concat (a player).
    let input = image(3, 3, 2);
    let base = || {
        vec![
            node("pre", Op::Identity, vec![Source::Input], input),
            node(
                "a",
                Op::Slice { start: 0, end: 2 },
                vec![Source::Input],
                image(2, 3, 2),
            ),
            node(
                "b",
                Op::Slice { start: 1, end: 3 },
                vec![Source::Node(0)],
                image(2, 3, 2),
            ),
        ]
    };
    let (x, pre, a, b) = (
        Source::Input,
        Source::Node(0),
        Source::Node(1),
        Source::Node(2),
    );
    let cases: Vec<(&str, Vec<Source>, bool)> = vec![
        ("all shared", vec![x, a], false),
        ("shared, one input", vec![a], false),
        ("per-coalition, shared, shared", vec![pre, a, x], true),
        ("shared, per-coalition", vec![a, pre], true),
        (
            "shared, per-coalition, shared, per-coalition",
            vec![x, b, a, pre],
            true,
        ),
        ("per-coalition twice", vec![pre, pre], true),
    ];
    for (n, (what, inputs, pre_player)) in cases.into_iter().enumerate() {
        let channels: usize = inputs
            .iter()
            .map(|s| match s {
                Source::Input | Source::Node(0) => 3,
                _ => 2,
            })
            .sum();
        let mut nodes = base();
        nodes.push(node("op", Op::Concat, inputs, image(channels, 3, 2)));
        let graph = Graph { input, nodes };
        let names: Vec<&str> = if pre_player {
            vec!["pre", "op"]
        } else {
            vec!["op"]
        };
        check_graph(
            &format!("concat: {what}"),
            &graph,
            &names,
            150 + n as u64,
            1e-5,
        );
    }
    // Features.
    let f = Shape::Features(5);
    let graph = Graph {
        input: f,
        nodes: vec![
            node("pre", Op::Identity, vec![Source::Input], f),
            node(
                "op",
                Op::Concat,
                vec![Source::Input, Source::Node(0)],
                Shape::Features(10),
            ),
        ],
    };
    check_graph("concat features", &graph, &["pre", "op"], 160, 1e-5);
}

#[test]
fn activation_fused_into_concat_matches_reference() {
    let input = image(3, 2, 2);
    let graph = Graph {
        input,
        nodes: vec![
            node("pre", Op::Identity, vec![Source::Input], input),
            node(
                "cat",
                Op::Concat,
                vec![Source::Input, Source::Node(0), Source::Input],
                image(9, 2, 2),
            ),
            node(
                "act",
                Op::Activation(Activation::LeakyRelu { slope: 0.25 }),
                vec![Source::Node(1)],
                image(9, 2, 2),
            ),
        ],
    };
    let mut rng = rng(0);
    let players = players_on(&graph, &["pre", "act"], &mut rng);
    let plan = nshap_gpu::plan::Plan::build(&graph, &players);
    let fused = plan
        .suffix_steps
        .iter()
        .filter(|s| matches!(s.op, StepOp::ChannelCopy { .. }) && s.act.is_some())
        .count();
    assert_eq!(fused, 3, "{:?}", plan.suffix_steps);
    check_graph("concat + leaky_relu", &graph, &["pre", "act"], 161, 1e-5);
}

#[test]
fn slice_and_channel_shuffle_match_reference() {
    check(
        "slice",
        image(5, 2, 3),
        Op::Slice { start: 1, end: 4 },
        image(3, 2, 3),
        170,
    );
    check(
        "slice features",
        Shape::Features(6),
        Op::Slice { start: 2, end: 6 },
        Shape::Features(4),
        171,
    );
    for (n, (c, groups)) in [(6, 2), (6, 3), (8, 4), (4, 1)].into_iter().enumerate() {
        check(
            &format!("channel_shuffle {c}/{groups}"),
            image(c, 2, 2),
            Op::ChannelShuffle { groups },
            image(c, 2, 2),
            172 + n as u64,
        );
    }
}

#[test]
fn layernorm_matches_reference() {
    let mut rng = rng(180);
    for (n, shape) in [image(5, 3, 2), Shape::Features(7), image(1, 2, 2)]
        .into_iter()
        .enumerate()
    {
        let c = shape.channels();
        let op = Op::LayerNorm(nshap_model::LayerNorm {
            weight: random_vec(&mut rng, c, 2.0),
            bias: random_vec(&mut rng, c, 1.0),
            eps: 1e-5,
        });
        check(
            &format!("layernorm {shape}"),
            shape,
            op,
            shape,
            181 + n as u64,
        );
    }
}

fn pool_out(pool: &Pool2d, h: usize, w: usize) -> (usize, usize) {
    (pool.out_len(h, 0).unwrap(), pool.out_len(w, 1).unwrap())
}

#[test]
fn pooling_options_match_reference() {
    struct Case {
        what: &'static str,
        pool: Pool2d,
        max: bool,
        /// PyTorch's output size for the 7 x 6 input (checked against `Pool2d::out_len`).
        out: (usize, usize),
    }
    let p = |k: (usize, usize), s: (usize, usize), pad: (usize, usize)| Pool2d::new(k, s, pad);
    let cases = [
        Case {
            what: "max dilation 2",
            pool: Pool2d {
                dilation: (2, 2),
                ..p((3, 3), (1, 1), (1, 1))
            },
            max: true,
            out: (5, 4),
        },
        Case {
            what: "max dilation (2, 1) stride 2",
            pool: Pool2d {
                dilation: (2, 1),
                ..p((2, 3), (2, 2), (1, 0))
            },
            max: true,
            out: (4, 2),
        },
        Case {
            what: "max ceil mode",
            pool: Pool2d {
                ceil_mode: true,
                ..p((3, 3), (2, 2), (0, 0))
            },
            max: true,
            out: (3, 3),
        },
        Case {
            what: "max ceil mode, padding, last window dropped on height",
            pool: Pool2d {
                ceil_mode: true,
                ..p((2, 2), (2, 2), (1, 1))
            },
            max: true,
            out: (4, 4),
        },
        Case {
            what: "max ceil mode with dilation",
            pool: Pool2d {
                ceil_mode: true,
                dilation: (2, 2),
                ..p((2, 2), (2, 2), (0, 0))
            },
            max: true,
            out: (3, 3),
        },
        Case {
            what: "avg ceil mode, window past the input (count_include_pad)",
            pool: Pool2d {
                ceil_mode: true,
                ..p((3, 3), (2, 2), (0, 0))
            },
            max: false,
            out: (3, 3),
        },
        Case {
            what: "avg ceil mode, padding (count_include_pad)",
            pool: Pool2d {
                ceil_mode: true,
                ..p((3, 3), (2, 2), (1, 1))
            },
            max: false,
            out: (4, 4),
        },
        Case {
            what: "avg padding, count_include_pad = false",
            pool: Pool2d {
                count_include_pad: false,
                ..p((3, 3), (2, 2), (1, 1))
            },
            max: false,
            out: (4, 3),
        },
        Case {
            what: "avg ceil mode, count_include_pad = false",
            pool: Pool2d {
                count_include_pad: false,
                ceil_mode: true,
                ..p((3, 2), (2, 2), (1, 1))
            },
            max: false,
            out: (4, 4),
        },
    ];
    let (h, w) = (7, 6);
    for (n, case) in cases.iter().enumerate() {
        assert_eq!(pool_out(&case.pool, h, w), case.out, "{}", case.what);
        let op = if case.max {
            Op::MaxPool2d(case.pool)
        } else {
            Op::AvgPool2d(case.pool)
        };
        check(
            case.what,
            image(2, h, w),
            op,
            image(2, case.out.0, case.out.1),
            190 + n as u64,
        );
    }
}

#[test]
fn adaptive_avgpool_matches_reference() {
    for (n, (h, w, oh, ow)) in [(7, 5, 3, 2), (6, 6, 3, 3), (4, 5, 1, 1), (3, 2, 4, 5)]
        .into_iter()
        .enumerate()
    {
        check(
            &format!("adaptive_avgpool {h}x{w} -> {oh}x{ow}"),
            image(2, h, w),
            Op::AdaptiveAvgPool2d,
            image(2, oh, ow),
            200 + n as u64,
        );
    }
}

#[test]
fn channel_ops_on_flattened_images_match_reference() {
    // A flatten is an alias: its tensor keeps the [C, H, W] shape of its input, while concat,
    // slice and mul must see [C * H * W] features.
    let input = image(8, 2, 2);
    let graph = Graph {
        input,
        nodes: vec![
            node("pre", Op::Identity, vec![Source::Input], input),
            // 0..3: a [8] gate that is a flattened [2, 2, 2] image.
            node(
                "small",
                Op::AdaptiveAvgPool2d,
                vec![Source::Node(0)],
                image(2, 2, 2),
            ),
            node(
                "gate",
                Op::Flatten,
                vec![Source::Node(1)],
                Shape::Features(8),
            ),
            node(
                "mul",
                Op::Mul,
                vec![Source::Node(0), Source::Node(2)],
                input,
            ),
            // 4..: flatten the product and the input, concat, slice across the old channels.
            node(
                "fm",
                Op::Flatten,
                vec![Source::Node(3)],
                Shape::Features(32),
            ),
            node("fx", Op::Flatten, vec![Source::Input], Shape::Features(32)),
            node(
                "cat",
                Op::Concat,
                vec![Source::Node(5), Source::Node(2), Source::Node(4)],
                Shape::Features(72),
            ),
            node(
                "cut",
                Op::Slice { start: 3, end: 45 },
                vec![Source::Node(6)],
                Shape::Features(42),
            ),
        ],
    };
    check_graph("flattened", &graph, &["pre", "mul", "cut"], 210, 1e-5);
    check_graph("flattened, shared prefix", &graph, &["cat"], 211, 1e-5);
}

#[test]
fn activation_after_a_flatten_of_a_conv_read_elsewhere_is_not_fused_into_it() {
    // conv -> flatten -> relu, and the conv also feeds a pool: fusing relu into the conv through
    // the flatten alias would change what the pool reads.
    let input = image(2, 3, 3);
    let graph = Graph {
        input,
        nodes: vec![
            node("pre", Op::Identity, vec![Source::Input], input),
            node(
                "conv",
                conv(2, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, 220),
                vec![Source::Node(0)],
                image(3, 3, 3),
            ),
            node(
                "flat",
                Op::Flatten,
                vec![Source::Node(1)],
                Shape::Features(27),
            ),
            node(
                "act",
                Op::Activation(Activation::Relu),
                vec![Source::Node(2)],
                Shape::Features(27),
            ),
            node(
                "gap",
                Op::GlobalAvgPool,
                vec![Source::Node(1)],
                image(3, 1, 1),
            ),
            node("fg", Op::Flatten, vec![Source::Node(4)], Shape::Features(3)),
            node(
                "cat",
                Op::Concat,
                vec![Source::Node(3), Source::Node(5)],
                Shape::Features(30),
            ),
        ],
    };
    check_graph("flatten alias fusion", &graph, &["pre"], 221, 1e-5);
}

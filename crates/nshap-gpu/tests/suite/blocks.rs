//! Graph-level tests: small versions of the blocks the new ops exist for (squeeze-and-excitation,
//! Inception, ShuffleNet, ConvNeXt), with players in several places, against the reference.

use crate::common::*;
use crate::ops::{check_graph, conv, image, node};
use crate::reference;
use nshap_model::{
    Activation, Backend, Examples, Graph, LayerNorm, Linear, Metric, Node, Op, Pool2d, Shape,
    Source,
};

/// Builds a graph by node names.
struct Builder {
    input: Shape,
    nodes: Vec<Node>,
}

impl Builder {
    fn new(input: Shape) -> Builder {
        Builder {
            input,
            nodes: Vec::new(),
        }
    }

    fn source(&self, name: &str) -> Source {
        if name == "input" {
            Source::Input
        } else {
            Source::Node(self.nodes.iter().position(|n| n.name == name).expect(name))
        }
    }

    fn shape(&self, name: &str) -> Shape {
        match self.source(name) {
            Source::Input => self.input,
            Source::Node(i) => self.nodes[i].shape,
        }
    }

    fn add(&mut self, name: &str, op: Op, inputs: &[&str], shape: Shape) -> &mut Builder {
        let inputs = inputs.iter().map(|n| self.source(n)).collect();
        self.nodes.push(node(name, op, inputs, shape));
        self
    }

    /// An op that keeps its input's shape.
    fn same(&mut self, name: &str, op: Op, input: &str) -> &mut Builder {
        let shape = self.shape(input);
        self.add(name, op, &[input], shape)
    }

    /// A `k x k` convolution with padding `k / 2` (shape kept but channels).
    fn conv(
        &mut self,
        name: &str,
        input: &str,
        cout: usize,
        k: usize,
        groups: usize,
    ) -> &mut Builder {
        let Shape::Image { c, h, w } = self.shape(input) else {
            panic!("conv on features")
        };
        let seed = self.nodes.len() as u64 * 7 + 1;
        let op = conv(
            c,
            cout,
            (k, k),
            (1, 1),
            (k / 2, k / 2),
            (1, 1),
            groups,
            seed,
        );
        self.add(name, op, &[input], image(cout, h, w))
    }

    /// global average pool, flatten, linear to `classes`.
    fn head(&mut self, input: &str, classes: usize) -> Graph {
        let c = self.shape(input).channels();
        let mut rng = rng(self.nodes.len() as u64);
        self.add("gap", Op::GlobalAvgPool, &[input], image(c, 1, 1))
            .add("flat", Op::Flatten, &["gap"], Shape::Features(c))
            .add(
                "fc",
                Op::Linear(Linear {
                    in_features: c,
                    out_features: classes,
                    weight: random_vec(&mut rng, c * classes, 0.5),
                    bias: random_vec(&mut rng, classes, 0.5),
                    has_bias: true,
                }),
                &["flat"],
                Shape::Features(classes),
            );
        Graph {
            input: self.input,
            nodes: self.nodes.clone(),
        }
    }
}

/// conv -> global_avgpool -> conv -> relu -> conv -> sigmoid -> mul with the conv output.
fn se_block() -> Graph {
    let mut b = Builder::new(image(4, 5, 5));
    b.conv("c1", "input", 6, 3, 1)
        .add("squeeze", Op::GlobalAvgPool, &["c1"], image(6, 1, 1))
        .conv("fc1", "squeeze", 3, 1, 1)
        .same("r", Op::Activation(Activation::Relu), "fc1")
        .conv("fc2", "r", 6, 1, 1)
        .same("gate", Op::Activation(Activation::Sigmoid), "fc2")
        .add("se", Op::Mul, &["c1", "gate"], image(6, 5, 5));
    b.head("se", 4)
}

#[test]
fn squeeze_and_excitation_block_matches_reference() {
    let graph = se_block();
    for (n, players) in [vec!["c1"], vec!["r"], vec!["r", "se"], vec!["gate"]]
        .iter()
        .enumerate()
    {
        check_graph(
            &format!("SE block, players {players:?}"),
            &graph,
            players,
            300 + n as u64,
            1e-4,
        );
    }
}

#[test]
fn squeeze_and_excitation_metric_matches_reference() {
    // The on-device metric (minus cross-entropy) on a per-coalition gate over a shared conv.
    let Some(gpu) = gpu() else { return };
    let graph = se_block();
    let mut rng = rng(310);
    let players = players_on(&graph, &["r"], &mut rng);
    let data = random_data(&graph, 6, &mut rng);
    let masks = random_masks(&mut rng, players.len(), 10);
    let logits = reference::logits(&graph, &players, &data.inputs, &masks);
    let classes = graph.num_classes();
    let want: Vec<f64> = logits
        .chunks_exact(classes * data.len())
        .map(|coalition| {
            let total: f64 = coalition
                .chunks_exact(classes)
                .zip(&data.labels)
                .map(|(z, &label)| {
                    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                    let lse = max + z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
                    z[label as usize] as f64 - lse
                })
                .sum();
            total / data.len() as f64
        })
        .collect();
    let got = gpu
        .prepare(job(&graph, &players, &data, Metric::NegLoss))
        .unwrap()
        .evaluate(Examples::All, &masks)
        .unwrap();
    assert_eq!(got.len(), want.len());
    for (m, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 1e-4, "coalition {m}: got {g}, want {w}");
    }
}

/// Three branches (1x1; 1x1 -> relu -> 3x3; maxpool -> 1x1) concatenated, relu, head.
fn inception_block() -> Graph {
    let mut b = Builder::new(image(3, 6, 6));
    b.conv("b1", "input", 4, 1, 1)
        .conv("b2a", "input", 3, 1, 1)
        .same("b2r", Op::Activation(Activation::Relu), "b2a")
        .conv("b2", "b2r", 5, 3, 1)
        .same(
            "b3p",
            Op::MaxPool2d(Pool2d::new((3, 3), (1, 1), (1, 1))),
            "input",
        )
        .conv("b3", "b3p", 2, 1, 1)
        .add("cat", Op::Concat, &["b1", "b2", "b3"], image(11, 6, 6))
        .same("act", Op::Activation(Activation::Relu), "cat");
    b.head("act", 4)
}

#[test]
fn inception_concat_with_players_in_one_branch_matches_reference() {
    let graph = inception_block();
    for (n, players) in [vec!["b2r"], vec!["b2r", "cat"], vec!["b3"], vec!["cat"]]
        .iter()
        .enumerate()
    {
        check_graph(
            &format!("inception, players {players:?}"),
            &graph,
            players,
            320 + n as u64,
            1e-4,
        );
    }
}

#[test]
fn inception_concat_matches_reference_when_chunked() {
    // A budget that splits coalitions (and examples) into several chunks: every concat part of
    // every chunk reads its shared inputs at row % B.
    let Some(_) = gpu() else { return };
    let graph = inception_block();
    let mut rng = rng(330);
    let players = players_on(&graph, &["b2r"], &mut rng);
    let data = random_data(&graph, 5, &mut rng);
    let masks = random_masks(&mut rng, players.len(), 9);
    let want = reference::logits(&graph, &players, &data.inputs, &masks);
    let plan = nshap_gpu::plan::Plan::build(&graph, &players);
    for (budget, split_examples) in [(60_000, false), (8_000, true)] {
        let limits = nshap_gpu::chunk::ChunkLimits {
            budget_bytes: budget,
            max_binding_bytes: 128 << 20,
            element_bytes: 4,
        };
        let chunks = nshap_gpu::chunk::choose(&plan, data.len(), masks.len(), limits);
        assert!(chunks.coalitions < masks.len(), "{budget}: {chunks:?}");
        assert_eq!(
            chunks.examples < data.len(),
            split_examples,
            "{budget}: {chunks:?}"
        );
        let gpu = gpu_with_budget(budget).unwrap();
        let got = gpu
            .prepare(job(&graph, &players, &data, Metric::Accuracy))
            .unwrap()
            .logits(Examples::All, &masks)
            .unwrap();
        assert_close(
            &got,
            &want,
            1e-4,
            1e-4,
            &format!("inception, budget {budget}"),
        );
    }
}

/// ShuffleNet v2 unit: split by slices, 1x1 -> depthwise 3x3 -> 1x1 on the right half, concat,
/// channel shuffle.
fn shufflenet_unit() -> Graph {
    let mut b = Builder::new(image(4, 5, 5));
    b.conv("stem", "input", 8, 1, 1)
        .same("stem_r", Op::Activation(Activation::Relu), "stem")
        .add(
            "left",
            Op::Slice { start: 0, end: 4 },
            &["stem_r"],
            image(4, 5, 5),
        )
        .add(
            "right",
            Op::Slice { start: 4, end: 8 },
            &["stem_r"],
            image(4, 5, 5),
        )
        .conv("r1", "right", 4, 1, 1)
        .same("r1r", Op::Activation(Activation::Relu), "r1")
        .conv("r2", "r1r", 4, 3, 4)
        .conv("r3", "r2", 4, 1, 1)
        .same("r3r", Op::Activation(Activation::Relu), "r3")
        .add("cat", Op::Concat, &["left", "r3r"], image(8, 5, 5))
        .same("shuffle", Op::ChannelShuffle { groups: 2 }, "cat");
    b.head("shuffle", 3)
}

#[test]
fn shufflenet_unit_matches_reference() {
    let graph = shufflenet_unit();
    for (n, players) in [
        vec!["stem_r"],
        vec!["r1r"],
        vec!["shuffle"],
        vec!["r1r", "shuffle"],
        vec!["left", "r3r"],
    ]
    .iter()
    .enumerate()
    {
        check_graph(
            &format!("shufflenet, players {players:?}"),
            &graph,
            players,
            340 + n as u64,
            1e-4,
        );
    }
}

/// ConvNeXt block: depthwise conv -> layernorm -> 1x1 conv -> gelu -> 1x1 conv -> layer scale,
/// plus the residual.
fn convnext_block() -> Graph {
    let mut rng = rng(350);
    let mut b = Builder::new(image(4, 6, 6));
    b.conv("stem", "input", 8, 1, 1)
        .conv("dw", "stem", 8, 3, 8)
        .same(
            "ln",
            Op::LayerNorm(LayerNorm {
                weight: random_vec(&mut rng, 8, 1.5),
                bias: random_vec(&mut rng, 8, 0.5),
                eps: 1e-6,
            }),
            "dw",
        )
        .conv("pw1", "ln", 16, 1, 1)
        .same("g", Op::Activation(Activation::Gelu), "pw1")
        .conv("pw2", "g", 8, 1, 1)
        .same("ls", Op::Scale(random_vec(&mut rng, 8, 1.0)), "pw2")
        .add("res", Op::Add, &["ls", "stem"], image(8, 6, 6));
    b.head("res", 3)
}

#[test]
fn convnext_block_matches_reference() {
    let graph = convnext_block();
    for (n, players) in [vec!["stem"], vec!["g"], vec!["ln", "res"], vec!["ls"]]
        .iter()
        .enumerate()
    {
        check_graph(
            &format!("convnext, players {players:?}"),
            &graph,
            players,
            360 + n as u64,
            1e-4,
        );
    }
}

#[test]
fn blocks_in_f16_stay_near_the_f32_reference() {
    // f16 storage, f32 arithmetic: every new kernel in its f16 build, at f16's resolution.
    let Some(gpu) = gpu() else { return };
    if !gpu.adapter_info().shader_f16 {
        eprintln!("SKIPPED f16 test: adapter has no SHADER_F16");
        return;
    }
    let f16 = gpu
        .with_options(nshap_gpu::GpuOptions {
            precision: nshap_gpu::Precision::F16,
            ..Default::default()
        })
        .unwrap();
    for (n, (what, graph, names)) in [
        ("SE", se_block(), vec!["r", "se"]),
        ("inception", inception_block(), vec!["b2r", "cat"]),
        ("shufflenet", shufflenet_unit(), vec!["r1r", "shuffle"]),
        ("convnext", convnext_block(), vec!["ln", "res"]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = rng(370 + n as u64);
        let players = players_on(&graph, &names, &mut rng);
        let data = random_data(&graph, 4, &mut rng);
        let masks = random_masks(&mut rng, players.len(), 6);
        let want = reference::logits(&graph, &players, &data.inputs, &masks);
        let got = f16
            .prepare(job(&graph, &players, &data, Metric::Accuracy))
            .unwrap()
            .logits(Examples::All, &masks)
            .unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_close(
            &got,
            &want,
            1e-2,
            1e-2 * scale.max(1.0),
            &format!("{what} f16"),
        );
    }
}

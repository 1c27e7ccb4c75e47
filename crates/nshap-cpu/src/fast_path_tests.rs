//! The fast paths agree with the plain computation: masks pushed down past channel-wise ops
//! (`nshap_model::pushdown`), per-example tables of the conv and linear layers that read a player node
//! (`table.rs`, incremental along permutation walks), and shared operands of multi-input ops
//! broadcast over coalitions in the dependent stage (`dependent.rs`).
//!
//! Every case is a small hand-built graph with players on one node, evaluated four ways on the
//! same coalitions (random ones and permutation walks) and examples: the CPU evaluator as it
//! runs, without tables, without pushdown (nor tables), and a naive reference (a full forward
//! pass per coalition with the mask applied at the player node). Logits must agree to 1e-5
//! (relative to max(1, |logit|)). Each case also states where the pushed-down player must end
//! up, so an op that should commute is known to be pushed through and a stopper is known to
//! stop it.

use crate::evaluator::{CpuEvaluator, CpuOptions};
use crate::ops;
use crate::plan::{Plan, PlanOptions};
use nshap_model::{
    Activation, BatchNorm, Conv2d, EvalJob, EvalSet, Evaluator, Examples, Graph, LayerNorm, Linear,
    MaskBatch, Metric, Node, Op, PlayerLayer, Players, Pool2d, Shape, Source,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const EXAMPLES: usize = 5;
const COALITIONS: usize = 12;
const CLASSES: usize = 5;

struct G {
    input: Shape,
    nodes: Vec<Node>,
    rng: StdRng,
}

impl G {
    fn new(input: Shape, seed: u64) -> G {
        G {
            input,
            nodes: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn last(&self) -> Source {
        match self.nodes.len() {
            0 => Source::Input,
            n => Source::Node(n - 1),
        }
    }

    fn shape(&self, s: Source) -> Shape {
        match s {
            Source::Input => self.input,
            Source::Node(i) => self.nodes[i].shape,
        }
    }

    fn uniform(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.random_range(-scale..scale))
            .collect()
    }

    /// Add a node of output shape `shape` (default: its first input's).
    fn node(&mut self, op: Op, inputs: &[Source], shape: Option<Shape>) -> Source {
        let inputs = if inputs.is_empty() {
            vec![self.last()]
        } else {
            inputs.to_vec()
        };
        let shape = shape.unwrap_or(self.shape(inputs[0]));
        let name = format!("n{}_{}", self.nodes.len(), op.kind());
        self.nodes.push(Node {
            name,
            op,
            inputs,
            shape,
        });
        self.last()
    }

    fn op(&mut self, op: Op) -> Source {
        let in_shape = self.shape(self.last());
        let shape = match (&op, in_shape) {
            (Op::MaxPool2d(p) | Op::AvgPool2d(p), Shape::Image { c, h, w }) => Shape::Image {
                c,
                h: p.out_len(h, 0).unwrap(),
                w: p.out_len(w, 1).unwrap(),
            },
            (Op::GlobalAvgPool, s) => Shape::Image {
                c: s.channels(),
                h: 1,
                w: 1,
            },
            (Op::Flatten, s) => Shape::Features(s.numel()),
            (Op::Slice { start, end }, Shape::Image { h, w, .. }) => Shape::Image {
                c: end - start,
                h,
                w,
            },
            (Op::Slice { start, end }, Shape::Features(_)) => Shape::Features(end - start),
            (_, s) => s,
        };
        self.node(op, &[], Some(shape))
    }

    fn conv(&mut self, from: Source, out: usize, k: usize, p: usize) -> Source {
        self.conv_with(from, out, k, p, 1, 1)
    }

    fn conv_with(
        &mut self,
        from: Source,
        out: usize,
        k: usize,
        p: usize,
        stride: usize,
        groups: usize,
    ) -> Source {
        let Shape::Image { c, h, w } = self.shape(from) else {
            panic!("conv on an image")
        };
        let fan = c / groups * k * k;
        let op = Op::Conv2d(Conv2d {
            in_channels: c,
            out_channels: out,
            kernel: (k, k),
            stride: (stride, stride),
            padding: (p, p),
            dilation: (1, 1),
            groups,
            weight: self.uniform(out * fan, 1.5 / (fan as f32).sqrt()),
            bias: self.uniform(out, 0.5),
            has_bias: true,
        });
        let shape = Shape::Image {
            c: out,
            h: (h + 2 * p - k) / stride + 1,
            w: (w + 2 * p - k) / stride + 1,
        };
        self.node(op, &[from], Some(shape))
    }

    fn linear(&mut self, out: usize) -> Source {
        let inf = self.shape(self.last()).numel();
        let op = Op::Linear(Linear {
            in_features: inf,
            out_features: out,
            weight: self.uniform(out * inf, 1.0 / (inf as f32).sqrt()),
            bias: self.uniform(out, 0.5),
            has_bias: true,
        });
        self.node(op, &[], Some(Shape::Features(out)))
    }

    /// Flatten (when needed) and the output linear layer.
    fn head(&mut self) -> Source {
        if matches!(self.shape(self.last()), Shape::Image { .. }) {
            self.op(Op::Flatten);
        }
        self.linear(CLASSES)
    }

    fn graph(&self) -> Graph {
        Graph {
            input: self.input,
            nodes: self.nodes.clone(),
        }
    }
}

fn plan_options(pushdown: bool, tables: bool, data: &EvalSet) -> PlanOptions {
    PlanOptions {
        pushdown,
        tables,
        examples: data.len(),
        cache_bytes: 2 << 30,
    }
}

/// The full and empty coalitions, random ones, and permutation walks (each row one player
/// more than the one before, then one fewer), more than one incremental chain long.
fn test_masks(channels: usize, rng: &mut StdRng) -> MaskBatch {
    let mut masks = MaskBatch::new(channels);
    masks.push_full();
    masks.push_bools(&vec![false; channels]);
    for _ in 2..COALITIONS {
        let row: Vec<bool> = (0..channels).map(|_| rng.random_bool(0.5)).collect();
        masks.push_bools(&row);
    }
    while masks.len() < 2 * crate::table::CHAIN + 5 {
        let mut order: Vec<usize> = (0..channels).collect();
        for i in (1..channels).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut row = vec![false; channels];
        masks.push_bools(&row);
        for &c in &order {
            row[c] = true;
            masks.push_bools(&row);
        }
        for &c in &order {
            row[c] = false;
            masks.push_bools(&row);
        }
    }
    masks
}

/// Logits `[M, B, classes]` of every coalition with the mask applied at `player` (naive).
fn reference(graph: &Graph, data: &EvalSet, layer: &PlayerLayer, masks: &MaskBatch) -> Vec<f32> {
    let rows = data.len();
    let mut all = Vec::new();
    for m in 0..masks.len() {
        let mut outs: Vec<Vec<f32>> = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let inputs: Vec<&[f32]> = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Input => data.inputs.as_slice(),
                    Source::Node(j) => outs[j].as_slice(),
                })
                .collect();
            let mut out = vec![0.0; rows * node.shape.numel()];
            ops::run(graph, node, &inputs, rows, &mut out);
            if i == layer.node {
                let spatial = node.shape.numel() / layer.channels();
                for c in (0..layer.channels()).filter(|&c| !masks.contains(m, c)) {
                    for r in 0..rows {
                        let at = (r * layer.channels() + c) * spatial;
                        out[at..at + spatial].fill(layer.baseline[c]);
                    }
                }
            }
            outs.push(out);
        }
        all.extend_from_slice(outs.last().unwrap());
    }
    all
}

/// Players on `player` (baselines of both signs); checks the three evaluations agree and
/// that the pushed-down player sits on node `pushed_to`. Returns the fast plan's suffix flag.
fn check(g: &G, player: Source, pushed_to: Source, what: &str) -> bool {
    let Source::Node(p) = player else {
        unreachable!()
    };
    let Source::Node(to) = pushed_to else {
        unreachable!()
    };
    let graph = g.graph();
    let mut rng = StdRng::seed_from_u64(7);
    let channels = graph.nodes[p].shape.channels();
    let layer = PlayerLayer {
        node: p,
        name: graph.nodes[p].name.clone(),
        // Both signs (PReLU and the activations treat them differently), magnitudes up to 4
        // (beyond hardswish's and hardsigmoid's 3).
        baseline: (0..channels)
            .map(|c| {
                let sign = if c % 2 == 0 { 1.0 } else { -1.0 };
                sign * rng.random_range(0.2..4.0)
            })
            .collect(),
    };
    let players = Players::new(vec![layer.clone()]).unwrap();
    let n = EXAMPLES * graph.input.numel();
    let inputs: Vec<f32> = (0..n).map(|_| rng.random_range(-1.5..1.5)).collect();
    let labels = (0..EXAMPLES as u32).map(|e| e % CLASSES as u32).collect();
    let data = EvalSet::new(graph.input, inputs, labels, CLASSES).unwrap();
    let masks = test_masks(channels, &mut rng);

    let fast_plan = Plan::new(&graph, &players, plan_options(true, true, &data)).unwrap();
    let fast_node = fast_plan.players.layers()[0].node;
    assert_eq!(
        fast_plan.graph.nodes[fast_node].name, graph.nodes[to].name,
        "{what}: the player should be pushed down to {:?}",
        graph.nodes[to].name
    );
    let last = graph.nodes.len() - 1;
    let suffix = fast_plan.tables[last].is_some()
        && (0..last).all(|i| !fast_plan.dependent[i] || fast_plan.unmaterialized[i]);

    let job = EvalJob {
        graph: Arc::new(graph.clone()),
        players,
        data: Arc::new(data.clone()),
        metric: Metric::Accuracy,
    };
    let options = CpuOptions::default();
    let fast = CpuEvaluator::new(job.clone(), options.clone())
        .unwrap()
        .logits(Examples::All, &masks)
        .unwrap();
    let no_tables = CpuOptions {
        tables: false,
        ..CpuOptions::default()
    };
    let pushed = CpuEvaluator::new(job.clone(), no_tables)
        .unwrap()
        .logits(Examples::All, &masks)
        .unwrap();
    let plain = CpuEvaluator::without_pushdown(job, options)
        .unwrap()
        .logits(Examples::All, &masks)
        .unwrap();
    let naive = reference(&graph, &data, &layer, &masks);
    assert_eq!(fast.len(), naive.len());
    for (name, got) in [
        ("tables", &fast),
        ("pushed down", &pushed),
        ("plain", &plain),
    ] {
        for (i, (a, b)) in got.iter().zip(&naive).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{what}: {name} logit {i} (coalition {}) = {a}, reference {b}",
                i / (EXAMPLES * CLASSES)
            );
        }
    }
    // The full coalition differs from the empty one (the masks are not vacuous).
    let diff = (0..EXAMPLES * CLASSES)
        .map(|i| (naive[i] - naive[EXAMPLES * CLASSES + i]).abs())
        .fold(0f32, f32::max);
    assert!(diff > 1e-3, "{what}: masking changes nothing");
    suffix
}

const IMG: Shape = Shape::Image { c: 3, h: 7, w: 7 };

/// conv (players; `conv_k` 3 with padding 1 gives `[4, 7, 7]`, 2 without padding `[4, 6, 6]`)
/// -> `op` -> tail, with two tails: a 1x1 conv (the players must end on `op` when `pushed`, else
/// stay on the conv; the dependent stage runs after them), and flatten + linear directly (when
/// `pushed` the players move on to the flatten and the linear-suffix table does the rest).
fn case_k(seed: u64, conv_k: usize, op: Op, pushed: bool, what: &str) {
    case_shaped(seed, conv_k, op, None, pushed, what)
}

/// [`case_k`] with the op's output shape given (adaptive pooling).
fn case_shaped(seed: u64, conv_k: usize, op: Op, shape: Option<Shape>, pushed: bool, what: &str) {
    for direct in [false, true] {
        let mut g = G::new(IMG, seed);
        let conv = g.conv(Source::Input, 4, conv_k, conv_k - 2);
        let mut after = match shape {
            Some(s) => g.node(op.clone(), &[], Some(s)),
            None => g.op(op.clone()),
        };
        if direct {
            let flat = g.op(Op::Flatten);
            after = flat;
        } else {
            g.conv(after, 3, 1, 0);
            g.op(Op::Activation(Activation::Tanh));
            g.op(Op::Flatten);
        }
        g.linear(CLASSES);
        let suffix = check(&g, conv, if pushed { after } else { conv }, what);
        assert_eq!(suffix, pushed && direct, "{what}: linear suffix");
    }
}

fn case(seed: u64, op: Op, pushed: bool, what: &str) {
    case_k(seed, 3, op, pushed, what)
}

#[test]
fn masks_move_past_every_activation() {
    let acts = [
        Activation::Relu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Silu,
        Activation::Hardswish,
        Activation::Hardsigmoid,
        Activation::HardTanh {
            min: -0.5,
            max: 0.7,
        },
        Activation::HardTanh { min: 0.0, max: 6.0 },
        Activation::LeakyRelu { slope: 0.1 },
        Activation::Elu { alpha: 0.8 },
    ];
    for (i, a) in acts.into_iter().enumerate() {
        case(100 + i as u64, Op::Activation(a), true, &format!("{a:?}"));
    }
}

#[test]
fn masks_move_past_prelu_and_scale() {
    let mut rng = StdRng::seed_from_u64(3);
    let slopes: Vec<f32> = (0..4).map(|_| rng.random_range(-0.5..0.8)).collect();
    case(120, Op::Prelu(slopes), true, "prelu");
    case(121, Op::Scale(vec![0.5, -2.0, 1.5, 0.0]), true, "scale");
}

#[test]
fn masks_move_past_max_pooling_of_every_kind() {
    let p = |k, s, p| Pool2d::new((k, k), (s, s), (p, p));
    let mut ceil = p(2, 2, 0);
    ceil.ceil_mode = true;
    let mut ceil_pad = p(3, 2, 1);
    ceil_pad.ceil_mode = true;
    let mut dilated = p(3, 1, 2);
    dilated.dilation = (2, 2);
    // Input 7 x 7 (conv 3) or 6 x 6 (conv 2); ceil mode adds a window in both ceil cases.
    for (i, (conv_k, pool, what)) in [
        (3, p(2, 2, 0), "maxpool 2x2"),
        (3, p(3, 2, 1), "maxpool 3x3 s2 p1"),
        (3, ceil, "maxpool 2x2 ceil on 7 (4 windows)"),
        (2, ceil_pad, "maxpool 3x3 s2 p1 ceil on 6 (4 windows)"),
        (3, dilated, "maxpool 3x3 dilation 2 padding 2"),
    ]
    .into_iter()
    .enumerate()
    {
        case_k(130 + i as u64, conv_k, Op::MaxPool2d(pool), true, what);
    }
}

#[test]
fn masks_move_past_average_pooling_only_when_the_divisor_ignores_padding() {
    let p = |k, s, p| Pool2d::new((k, k), (s, s), (p, p));
    let mut ceil = p(2, 2, 0);
    ceil.ceil_mode = true;
    let mut no_pad_count = p(3, 2, 1);
    no_pad_count.count_include_pad = false;
    let mut both = no_pad_count;
    both.ceil_mode = true;
    let mut ceil_counting = p(3, 2, 1);
    ceil_counting.ceil_mode = true;
    for (i, (conv_k, pool, pushed, what)) in [
        (3, p(2, 2, 0), true, "avgpool 2x2"),
        (
            3,
            ceil,
            true,
            "avgpool 2x2 ceil (7 -> 4, last window 1 tap)",
        ),
        (
            3,
            no_pad_count,
            true,
            "avgpool 3x3 s2 p1 count_include_pad=false",
        ),
        (
            2,
            both,
            true,
            "avgpool 3x3 s2 p1 ceil count_include_pad=false on 6",
        ),
        (3, p(3, 2, 1), false, "avgpool 3x3 s2 p1 counting padding"),
        (
            2,
            ceil_counting,
            false,
            "avgpool 3x3 s2 p1 ceil counting padding on 6",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        case_k(140 + i as u64, conv_k, Op::AvgPool2d(pool), pushed, what);
    }
}

#[test]
fn masks_move_past_adaptive_and_global_pooling_flatten_identity() {
    // 7 -> 3: windows [0, 3), [2, 5), [4, 7) overlap; 7 -> 4, 2, 1 and 7 (identity windows).
    for (i, (h, w)) in [(3, 3), (4, 2), (1, 1), (7, 7)].into_iter().enumerate() {
        let shape = Some(Shape::Image { c: 4, h, w });
        let what = format!("adaptive avgpool to {h}x{w}");
        case_shaped(150 + i as u64, 3, Op::AdaptiveAvgPool2d, shape, true, &what);
    }
    case(155, Op::GlobalAvgPool, true, "global avgpool");
    case(156, Op::Identity, true, "identity");
}

#[test]
fn masks_stop_at_ops_that_mix_or_move_channels() {
    let ln = LayerNorm {
        weight: vec![1.0, 0.5, -1.0, 2.0],
        bias: vec![0.1, 0.0, -0.2, 0.3],
        eps: 1e-5,
    };
    case(160, Op::LayerNorm(ln), false, "layernorm");
    case(161, Op::Slice { start: 1, end: 3 }, false, "slice");
    case(
        162,
        Op::ChannelShuffle { groups: 2 },
        false,
        "channel shuffle",
    );
}

/// A per-feature op after a flatten has one parameter per feature, not per player channel: the
/// mask must stop at the flatten.
#[test]
fn masks_stop_before_per_feature_ops_after_a_flatten() {
    let mut g = G::new(IMG, 170);
    let conv = g.conv(Source::Input, 4, 3, 1);
    g.op(Op::GlobalAvgPool);
    g.node(Op::Identity, &[], None);
    g.op(Op::Flatten); // [4]: one feature per channel, still per channel
    let prelu = g.op(Op::Prelu(vec![0.2, -0.3, 0.5, 0.9]));
    g.linear(CLASSES);
    check(&g, conv, prelu, "prelu on [C] after global pool + flatten");

    let mut g = G::new(IMG, 171);
    let conv = g.conv(Source::Input, 4, 3, 1);
    let mut pool = Pool2d::new((3, 3), (3, 3), (0, 0));
    pool.ceil_mode = true;
    g.op(Op::MaxPool2d(pool)); // [4, 3, 3]
    let flat = g.op(Op::Flatten); // [36]
    let f = 36;
    let slopes: Vec<f32> = (0..f).map(|i| 0.05 * i as f32 - 0.5).collect();
    g.op(Op::Prelu(slopes));
    let scale: Vec<f32> = (0..f).map(|i| 1.0 + 0.1 * i as f32).collect();
    let shift: Vec<f32> = (0..f).map(|i| 0.02 * i as f32).collect();
    g.op(Op::BatchNorm(BatchNorm {
        scale,
        shift: shift.clone(),
        beta: shift,
        running_mean: vec![0.0; f],
    }));
    g.op(Op::Scale((0..f).map(|i| 0.5 + 0.03 * i as f32).collect()));
    g.linear(CLASSES);
    check(
        &g,
        conv,
        flat,
        "per-feature prelu / batchnorm / scale after flatten",
    );
}

/// conv (players) -> silu -> adaptive avgpool 2x2 -> flatten -> linear: the players move to the
/// flatten and the linear-suffix table computes every coalition.
#[test]
fn linear_suffix_after_a_pushed_down_chain_of_new_ops() {
    let mut g = G::new(IMG, 180);
    let conv = g.conv(Source::Input, 4, 3, 1);
    g.op(Op::Activation(Activation::Silu));
    g.node(
        Op::AdaptiveAvgPool2d,
        &[],
        Some(Shape::Image { c: 4, h: 2, w: 2 }),
    );
    let flat = g.op(Op::Flatten);
    g.linear(CLASSES);
    assert!(
        check(&g, conv, flat, "silu + adaptive pool + flatten + linear"),
        "the linear suffix should be used"
    );

    // Longer: prelu, scale, ceil-mode max pool, hardswish, then the suffix.
    let mut g = G::new(IMG, 181);
    let conv = g.conv(Source::Input, 4, 3, 1);
    g.op(Op::Prelu(vec![0.1, -0.2, 0.3, 0.25]));
    g.op(Op::Scale(vec![1.5, -0.5, 2.0, 0.75]));
    let mut pool = Pool2d::new((2, 2), (2, 2), (0, 0));
    pool.ceil_mode = true;
    g.op(Op::MaxPool2d(pool));
    g.op(Op::Activation(Activation::Hardswish));
    let flat = g.op(Op::Flatten);
    g.linear(CLASSES);
    assert!(check(&g, conv, flat, "prelu+scale+maxpool ceil+hardswish"));
}

/// Multi-input ops whose first operand is shared (computed once per example) and whose second
/// depends on the coalition, and the other way round: the shared operand is broadcast over the
/// coalitions with inputs in their own order (mul with a broadcast [C, 1, 1], concat order).
#[test]
fn shared_operands_of_multi_input_ops_keep_their_order() {
    // Builds the op on (shared, dependent) and returns where the players end up.
    type Build = fn(&mut G, Source, Source) -> Source;
    let builds: [(&str, Build); 7] = [
        ("add(shared, dep)", |g, s, d| {
            g.node(Op::Add, &[s, d], None);
            d
        }),
        ("add(dep, shared)", |g, s, d| {
            g.node(Op::Add, &[d, s], None);
            d
        }),
        ("mul(shared, dep)", |g, s, d| {
            g.node(Op::Mul, &[s, d], None);
            d
        }),
        ("mul(dep, shared)", |g, s, d| {
            g.node(Op::Mul, &[d, s], None);
            d
        }),
        ("mul(shared [C,1,1], dep)", |g, s, d| {
            let pooled = g.node(
                Op::GlobalAvgPool,
                &[s],
                Some(Shape::Image { c: 4, h: 1, w: 1 }),
            );
            g.node(Op::Mul, &[pooled, d], Some(g.shape(d)));
            d
        }),
        ("mul(dep [C,1,1], shared)", |g, s, d| {
            let pooled = g.node(
                Op::GlobalAvgPool,
                &[d],
                Some(Shape::Image { c: 4, h: 1, w: 1 }),
            );
            g.node(Op::Mul, &[s, pooled], Some(g.shape(s)));
            pooled // the players move past the global pool
        }),
        ("concat(shared, dep, shared)", |g, s, d| {
            g.node(
                Op::Concat,
                &[s, d, s],
                Some(Shape::Image { c: 12, h: 7, w: 7 }),
            );
            d
        }),
    ];
    for (i, (what, build)) in builds.into_iter().enumerate() {
        let mut g = G::new(IMG, 190 + i as u64);
        let shared = g.conv(Source::Input, 4, 3, 1);
        let dep = g.conv(Source::Input, 4, 1, 0);
        let pushed = build(&mut g, shared, dep);
        g.op(Op::Activation(Activation::Tanh));
        g.head();
        check(&g, dep, pushed, what);
    }
    // Squeeze-and-excitation with the players upstream of both operands: they move to the
    // SiLU, read by the pool and the mul.
    let mut g = G::new(IMG, 199);
    let x = g.conv(Source::Input, 4, 3, 1);
    let act = g.op(Op::Activation(Activation::Silu));
    let pooled = g.op(Op::GlobalAvgPool);
    g.conv(pooled, 4, 1, 0);
    let gate = g.op(Op::Activation(Activation::Hardsigmoid));
    g.node(Op::Mul, &[act, gate], Some(g.shape(act)));
    g.head();
    check(&g, x, act, "squeeze-and-excitation");
}

/// The fast plan (pushdown and tables) for `g` with the channels of `player` as players.
fn fast_plan(g: &G, player: Source) -> Plan {
    let Source::Node(p) = player else {
        unreachable!()
    };
    let graph = g.graph();
    let layer = PlayerLayer {
        node: p,
        name: graph.nodes[p].name.clone(),
        baseline: vec![0.3; graph.nodes[p].shape.channels()],
    };
    let players = Players::new(vec![layer]).unwrap();
    let data = EvalSet::new(
        graph.input,
        vec![0.0; graph.input.numel()],
        vec![0],
        CLASSES,
    )
    .unwrap();
    Plan::new(&graph, &players, plan_options(true, true, &data)).unwrap()
}

/// Names of the nodes the fast plan computes from tables, and of the player nodes it never
/// materialises.
fn table_nodes(g: &G, player: Source) -> (Vec<String>, Vec<String>) {
    let plan = fast_plan(g, player);
    let names = |flags: Vec<bool>| {
        (0..flags.len())
            .filter(|&i| flags[i])
            .map(|i| plan.graph.nodes[i].name.clone())
            .collect()
    };
    (
        names(plan.tables.iter().map(Option::is_some).collect()),
        names(plan.unmaterialized.clone()),
    )
}

/// Names of the adds the fast plan folds into a table.
fn absorbed_adds(g: &G, player: Source) -> Vec<String> {
    let plan = fast_plan(g, player);
    (0..plan.graph.nodes.len())
        .filter(|&i| plan.absorbed[i].is_some())
        .map(|i| plan.graph.nodes[i].name.clone())
        .collect()
}

/// Tables past the first non-linearity: a residual block with the players inside it (the conv
/// reads them through a table, the skip add reads them masked), a strided block whose 3x3 conv
/// and 1x1 shortcut both read the players (both tables, the masked value never built), a
/// depthwise conv, and an MLP's hidden layer feeding linear -> ReLU -> linear.
#[test]
fn tables_past_the_first_nonlinearity_match_the_plain_path() {
    // Players inside a block: conv3x3 -> relu (players) -> conv3x3 -> add(skip) -> relu -> head.
    let mut g = G::new(IMG, 300);
    let stem = g.conv(Source::Input, 4, 3, 1);
    let x = g.op(Op::Activation(Activation::Relu));
    let conv = g.conv(x, 4, 3, 1);
    g.node(Op::Add, &[conv, x], None);
    g.op(Op::Activation(Activation::Relu));
    g.op(Op::GlobalAvgPool);
    g.head();
    check(&g, stem, x, "players inside a residual block");
    let (tables, skipped) = table_nodes(&g, stem);
    let Source::Node(conv) = conv else {
        unreachable!()
    };
    assert_eq!(
        tables,
        [g.nodes[conv].name.clone()],
        "the block's conv is a table"
    );
    assert!(
        skipped.is_empty(),
        "the add reads the masked players: {skipped:?}"
    );

    // Players inside a block whose skip comes from before them (shared): the add of the
    // table and the skip is folded into the table's per-example base.
    let mut g = G::new(IMG, 302);
    g.conv(Source::Input, 4, 3, 1);
    let skip = g.op(Op::Activation(Activation::Relu));
    let inner = g.conv(skip, 4, 3, 1);
    let x = g.op(Op::Activation(Activation::Relu));
    let conv = g.conv(x, 4, 3, 1);
    let add = g.node(Op::Add, &[skip, conv], None);
    g.op(Op::Activation(Activation::Relu));
    g.op(Op::GlobalAvgPool);
    g.head();
    check(&g, inner, x, "players inside a block with a shared skip");
    let (tables, _) = table_nodes(&g, inner);
    let (Source::Node(conv), Source::Node(add)) = (conv, add) else {
        unreachable!()
    };
    assert_eq!(tables, [g.nodes[conv].name.clone()]);
    assert_eq!(
        absorbed_adds(&g, inner),
        [g.nodes[add].name.clone()],
        "the skip add is folded into the table"
    );

    // A strided block at the players: conv3x3 s2 and a 1x1 s2 shortcut both read them.
    let mut g = G::new(IMG, 301);
    let stem = g.conv(Source::Input, 4, 3, 1);
    let x = g.op(Op::Activation(Activation::Relu));
    g.conv_with(x, 6, 3, 1, 2, 1);
    let act = g.op(Op::Activation(Activation::Relu));
    let main = g.conv(act, 6, 3, 1);
    let short = g.conv_with(x, 6, 1, 0, 2, 1);
    g.node(Op::Add, &[main, short], None);
    g.op(Op::Activation(Activation::Relu));
    g.head();
    check(&g, stem, x, "strided block with a 1x1 shortcut");
    let (tables, skipped) = table_nodes(&g, stem);
    assert_eq!(
        tables.len(),
        2,
        "both convs reading the players are tables: {tables:?}"
    );
    assert_eq!(
        skipped.len(),
        1,
        "the masked players are never built: {skipped:?}"
    );

    // Depthwise 3x3 (groups = channels) and a grouped 1x1 after the players.
    for (groups, out, k, pad) in [(4, 4, 3, 1), (2, 6, 1, 0), (4, 8, 3, 0)] {
        let mut g = G::new(IMG, 302 + groups as u64);
        let stem = g.conv(Source::Input, 4, 3, 1);
        let x = g.op(Op::Activation(Activation::Silu));
        g.conv_with(x, out, k, pad, 1, groups);
        g.op(Op::Activation(Activation::Tanh));
        g.head();
        check(&g, stem, x, &format!("grouped conv, {groups} groups"));
        assert_eq!(table_nodes(&g, stem).0.len(), 1);
    }

    // Wide players (16 channels): random coalitions are summed by subset sums (`subset_rows`),
    // walks by table adds; plain and in two groups of 8.
    for groups in [1, 2] {
        let mut g = G::new(IMG, 312 + groups as u64);
        let stem = g.conv(Source::Input, 16, 3, 1);
        let x = g.op(Op::Activation(Activation::Relu));
        g.conv_with(x, 6, 3, 1, 1, groups);
        g.op(Op::Activation(Activation::Relu));
        g.head();
        check(&g, stem, x, &format!("16 players, {groups} groups"));
        assert_eq!(table_nodes(&g, stem).0.len(), 1);
    }

    // MLP: linear -> relu (players, 6 features) -> linear -> relu -> linear.
    let mut g = G::new(Shape::Features(8), 310);
    g.linear(6);
    let x = g.op(Op::Activation(Activation::Relu));
    g.linear(7);
    g.op(Op::Activation(Activation::Relu));
    g.linear(CLASSES);
    check(&g, Source::Node(0), x, "MLP hidden layer");
    assert_eq!(table_nodes(&g, Source::Node(0)).0.len(), 1);
}

/// Incremental chains restart at fixed rows, so how a request is split into work items (thread
/// count, item memory) does not change a single bit of the logits.
#[test]
fn table_values_do_not_depend_on_the_work_split() {
    let mut g = G::new(IMG, 320);
    // 16 channels: both the subset-sum rows and the table adds (walks) are exercised.
    let stem = g.conv(Source::Input, 16, 3, 1);
    g.op(Op::Activation(Activation::Relu));
    g.conv(g.last(), 5, 3, 1);
    g.op(Op::Activation(Activation::Relu));
    g.head();
    let Source::Node(p) = stem else {
        unreachable!()
    };
    let graph = g.graph();
    let layer = PlayerLayer {
        node: p,
        name: graph.nodes[p].name.clone(),
        baseline: (0..16).map(|c| [0.25, -0.5, 1.0, 0.0][c % 4]).collect(),
    };
    let mut rng = StdRng::seed_from_u64(5);
    let inputs: Vec<f32> = (0..EXAMPLES * IMG.numel())
        .map(|_| rng.random_range(-1.5..1.5))
        .collect();
    let labels = (0..EXAMPLES as u32).map(|e| e % CLASSES as u32).collect();
    let data = EvalSet::new(IMG, inputs, labels, CLASSES).unwrap();
    let masks = test_masks(16, &mut rng);
    let job = EvalJob {
        graph: Arc::new(graph),
        players: Players::new(vec![layer]).unwrap(),
        data: Arc::new(data),
        metric: Metric::Accuracy,
    };
    let run = |threads: usize, item_bytes: usize| {
        let options = CpuOptions {
            threads: Some(threads),
            item_bytes,
            ..CpuOptions::default()
        };
        CpuEvaluator::new(job.clone(), options)
            .unwrap()
            .logits(Examples::All, &masks)
            .unwrap()
    };
    let reference = run(1, 64 << 20);
    for (threads, item_bytes) in [(2, 64 << 20), (3, 1), (1, 4000)] {
        assert_eq!(
            run(threads, item_bytes),
            reference,
            "{threads} threads, {item_bytes}-byte items"
        );
    }
}

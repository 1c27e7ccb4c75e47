//! FLOPs and bytes per coalition-example of the planned kernels: the numbers behind the roofline
//! table in docs/gpu.md, and a `Throughput` for benches (criterion has no FLOP unit).
//!
//! Conventions: 2 FLOPs per multiply-add (bias adds not counted), 1 per output element for
//! elementwise work and per window element for pooling, 8 per element for layernorm, none for
//! channel copies (concat, slice, shuffle). Bytes are the compulsory traffic of a step: its
//! output written once, its inputs read once, weights read once per chunk (amortised to 0 here);
//! a channel copy moves only the channels it copies (one concat input, a slice's range). Shared
//! (prefix) steps run once per example, not per coalition, and are reported with `shared = true`;
//! their cost per coalition-example is theirs divided by the coalitions in a chunk.
//!
//! A table sum (`table_sum.wgsl`) counts one add per present-or-absent channel of its group per
//! output for random coalitions (a GEMM of the mask with the table: every entry is visited) and
//! reads the table once per tile of 16 coalitions; along a permutation walk it is one add and one
//! table entry per output ([`StepCost::walk_flops`]).

use crate::plan::{Plan, PlanOptions, StepOp};
use nshap_model::graph::adaptive_window;
use nshap_model::{Graph, Op, Players, Shape};

/// The cost of one planned step for one example of one coalition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepCost {
    pub label: String,
    pub kernel: &'static str,
    /// Runs once per example (shared prefix) rather than per coalition-example.
    pub shared: bool,
    pub flops: u64,
    /// Bytes moved at 4 bytes per element (halve for f16 storage).
    pub bytes: u64,
    /// FLOPs and bytes when the coalitions are consecutive steps of permutation walks (each one
    /// player from the one before): less for table sums, the same for everything else.
    pub walk_flops: u64,
    pub walk_bytes: u64,
}

/// Per-step costs of the plan the GPU backend runs for `graph` and `players` (after batchnorm
/// folding and activation fusion), plus the metric reduction.
pub fn cost_per_coalition_example(graph: &Graph, players: &Players) -> Vec<StepCost> {
    cost_per_coalition_example_with(graph, players, PlanOptions::default())
}

/// [`cost_per_coalition_example`] of the plan made with `options` (e.g. without fast paths).
pub fn cost_per_coalition_example_with(
    graph: &Graph,
    players: &Players,
    options: PlanOptions,
) -> Vec<StepCost> {
    let (graph, players) = nshap_model::fold::fold_batchnorm(graph, players);
    let plan = Plan::build_with(&graph, &players, options);
    let mut costs: Vec<StepCost> = plan
        .steps()
        .map(|step| {
            let out = plan.tensors[step.output].shape.numel() as u64;
            let inputs: u64 = step
                .inputs
                .iter()
                .map(|&t| plan.tensors[t].shape.numel() as u64)
                .sum();
            let spatial = plan.tensors[step.output].shape.spatial() as u64;
            let mut bytes = 4 * (out + inputs);
            let mut walk = None;
            let flops = match &step.op {
                StepOp::TableBuild { node } => {
                    // One multiply-add per table entry and tap (a linear layer's taps are the
                    // positions of its flattened input).
                    let taps = match &graph.nodes[*node].op {
                        Op::Conv2d(c) => (c.kernel.0 * c.kernel.1) as u64,
                        _ => plan.tensors[step.inputs[0]].shape.spatial() as u64,
                    };
                    2 * out * taps
                }
                StepOp::TableBase { node } => 2 * out * macs_per_output(&graph.nodes[*node].op),
                StepOp::TableSum {
                    channels,
                    groups,
                    block,
                    ..
                } => {
                    let table = plan.tensors[step.inputs[0]].shape.numel() as u64;
                    bytes = 4 * (2 * out + table / 16);
                    walk = Some((out, 4 * (out + *block as u64)));
                    out * (channels / groups) as u64
                }
                StepOp::Linear { node, .. } | StepOp::Conv2d { node } => {
                    2 * out * macs_per_output(&graph.nodes[*node].op)
                }
                StepOp::MaxPool(p) | StepOp::AvgPool(p) => out * (p.kernel.0 * p.kernel.1) as u64,
                StepOp::AdaptiveAvgPool => adaptive_taps(
                    plan.tensors[step.inputs[0]].shape,
                    plan.tensors[step.output].shape,
                ),
                StepOp::GlobalAvgPool => inputs,
                StepOp::Affine { .. } | StepOp::Map | StepOp::Add | StepOp::Mul { .. } => out,
                // Mean, squared deviations and the normalisation: 8 per element.
                StepOp::LayerNorm { .. } => 8 * out,
                // A copy: no arithmetic (but a fused activation on its own channels); it reads
                // and writes only its own channels.
                StepOp::ChannelCopy { channels, .. } => {
                    let moved = *channels as u64 * spatial;
                    bytes = 8 * moved;
                    if step.act.is_some() {
                        moved
                    } else {
                        0
                    }
                }
            };
            let act = match (&step.op, step.act) {
                // A concat part activates its own channels only (counted above).
                (StepOp::ChannelCopy { .. }, _) | (_, None) => 0,
                (_, Some(_)) => out,
            };
            let (walk_flops, walk_bytes) = walk.unwrap_or((flops, bytes));
            StepCost {
                label: step.label.clone(),
                kernel: step.op.kernel().name(),
                shared: plan.tensors[step.output].shared,
                flops: flops + act,
                bytes,
                walk_flops: walk_flops + act,
                walk_bytes,
            }
        })
        .collect();
    let classes = graph.num_classes() as u64;
    costs.push(StepCost {
        label: "metric".into(),
        kernel: "metric",
        shared: false,
        flops: 3 * classes,
        bytes: 4 * (classes + 1),
        walk_flops: 3 * classes,
        walk_bytes: 4 * (classes + 1),
    });
    costs
}

/// Multiply-adds per output element of a conv or linear node.
fn macs_per_output(op: &Op) -> u64 {
    match op {
        Op::Linear(l) => l.in_features as u64,
        Op::Conv2d(c) => (c.in_channels / c.groups * c.kernel.0 * c.kernel.1) as u64,
        _ => 0,
    }
}

/// Input elements summed over the windows of adaptive average pooling from `input` to `output`
/// (one add per tap).
fn adaptive_taps(input: Shape, output: Shape) -> u64 {
    let (Shape::Image { c, h, w }, Shape::Image { h: oh, w: ow, .. }) = (input, output) else {
        return output.numel() as u64;
    };
    let axis = |n: usize, out: usize| -> u64 {
        (0..out)
            .map(|o| {
                let (a, b) = adaptive_window(o, n, out);
                (b - a) as u64
            })
            .sum()
    };
    c as u64 * axis(h, oh) * axis(w, ow)
}

/// FLOPs per coalition-example of the per-coalition (non-shared) steps: the work each extra
/// coalition costs. Use with `criterion::Throughput::Elements` to report FLOP/s.
pub fn flops_per_coalition_example(graph: &Graph, players: &Players) -> u64 {
    cost_per_coalition_example(graph, players)
        .iter()
        .filter(|c| !c.shared)
        .map(|c| c.flops)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nshap_model::{LayerNorm, Node, PlayerLayer, Source};

    fn node(name: &str, op: Op, inputs: Vec<Source>, shape: Shape) -> Node {
        Node {
            name: name.into(),
            op,
            inputs,
            shape,
        }
    }

    #[test]
    fn new_steps_are_costed() {
        let img = |c| Shape::Image { c, h: 4, w: 4 };
        let graph = Graph {
            input: img(2),
            nodes: vec![
                node("pre", Op::Identity, vec![Source::Input], img(2)),
                node(
                    "cat",
                    Op::Concat,
                    vec![Source::Node(0), Source::Input, Source::Node(0)],
                    img(6),
                ),
                node(
                    "ln",
                    Op::LayerNorm(LayerNorm {
                        weight: vec![1.0; 6],
                        bias: vec![0.0; 6],
                        eps: 1e-5,
                    }),
                    vec![Source::Node(1)],
                    img(6),
                ),
                node(
                    "pool",
                    Op::AdaptiveAvgPool2d,
                    vec![Source::Node(2)],
                    Shape::Image { c: 6, h: 3, w: 3 },
                ),
                node(
                    "flat",
                    Op::Flatten,
                    vec![Source::Node(3)],
                    Shape::Features(54),
                ),
                node(
                    "half",
                    Op::Slice { start: 0, end: 27 },
                    vec![Source::Node(4)],
                    Shape::Features(27),
                ),
            ],
        };
        let players = Players::new(vec![PlayerLayer {
            node: 0,
            name: "pre".into(),
            baseline: vec![0.0; 2],
        }])
        .unwrap();
        let costs = cost_per_coalition_example(&graph, &players);
        let find = |label: &str| costs.iter().find(|c| c.label == label).unwrap();
        // Each concat part moves its own 2 channels of 16 positions: read + write, 4 bytes.
        for k in 0..3 {
            let part = find(&format!("cat (input {k})"));
            assert_eq!(
                (part.kernel, part.flops, part.bytes),
                ("channel_copy", 0, 8 * 32)
            );
        }
        assert_eq!(find("ln").flops, 8 * 96);
        // 4 -> 3 adaptive windows per axis: [0,2), [1,3), [2,4): 6 taps an axis, 6 channels.
        assert_eq!(find("pool").flops, 6 * 6 * 6);
        assert_eq!(find("half").bytes, 8 * 27);
    }
}

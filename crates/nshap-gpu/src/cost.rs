//! FLOPs and bytes per coalition-example of the planned kernels: the numbers behind the roofline
//! table in docs/gpu.md, and a `Throughput` for benches (criterion has no FLOP unit).
//!
//! Conventions: 2 FLOPs per multiply-add (bias adds not counted), 1 per output element for
//! elementwise work and per window element for pooling. Bytes are the compulsory traffic of a
//! step: its output written once, its inputs read once, weights read once per chunk (amortised to
//! 0 here). Shared (prefix) steps run once per example, not per coalition, and are reported with
//! `shared = true`; their cost per coalition-example is theirs divided by the coalitions in a chunk.

use crate::plan::{Plan, StepOp};
use nshap_model::{Graph, Op, Players};

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
}

/// Per-step costs of the plan the GPU backend runs for `graph` and `players` (after batchnorm
/// folding and activation fusion), plus the metric reduction.
pub fn cost_per_coalition_example(graph: &Graph, players: &Players) -> Vec<StepCost> {
    let (graph, players) = nshap_model::fold::fold_batchnorm(graph, players);
    let plan = Plan::build(&graph, &players);
    let mut costs: Vec<StepCost> = plan
        .steps()
        .map(|step| {
            let out = plan.tensors[step.output].shape.numel() as u64;
            let inputs: u64 = step
                .inputs
                .iter()
                .map(|&t| plan.tensors[t].shape.numel() as u64)
                .sum();
            let flops = match &step.op {
                StepOp::Linear { node } | StepOp::Conv2d { node } => {
                    let mac = match &graph.nodes[*node].op {
                        Op::Linear(l) => l.in_features as u64,
                        Op::Conv2d(c) => {
                            (c.in_channels / c.groups * c.kernel.0 * c.kernel.1) as u64
                        }
                        _ => 0,
                    };
                    2 * out * mac
                }
                StepOp::MaxPool(p) | StepOp::AvgPool(p) => out * (p.kernel.0 * p.kernel.1) as u64,
                StepOp::GlobalAvgPool => inputs,
                StepOp::Affine { .. } | StepOp::Map | StepOp::Add => out,
            } + if step.act.is_some() { out } else { 0 };
            StepCost {
                label: step.label.clone(),
                kernel: step.op.kernel().name(),
                shared: plan.tensors[step.output].shared,
                flops,
                bytes: 4 * (out + inputs),
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
    });
    costs
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

//! From a (batchnorm-folded) graph and its players to an ordered list of kernel steps.
//!
//! What the plan decides, once per job:
//! - **Fusion**: an activation whose input is produced by a kernel that only it reads (and that is
//!   not a player node) becomes that kernel's epilogue; a flatten or identity that is not a player
//!   is an alias (no kernel).
//! - **Prefix sharing**: a step whose inputs do not depend on any player is *shared*: it runs once
//!   per example chunk with one row per example, and later steps read it at `row % B`, i.e. it is
//!   broadcast to every coalition. A player node whose inputs are all shared is computed shared and
//!   unmasked, then one `map` step broadcasts it to coalitions x examples with the mask applied;
//!   a player node deeper in the network gets the mask fused into the kernel that produces it.
//! - **Buffer reuse**: tensors are assigned to slots by liveness, separately for the shared pool
//!   (rows = B) and the per-coalition pool (rows = M x B), so memory per row is the peak of live
//!   tensors, not their sum.

use crate::kernels::Kernel;
use nshap_model::{Activation, Graph, Op, Players, Pool2d, Shape, Source};

/// Index into [`Plan::tensors`]; tensor 0 is the graph input.
pub type TensorId = usize;

/// Which buffer holds a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The example input buffer.
    Input,
    /// A shared-pool slot (one row per example).
    Shared(usize),
    /// A per-coalition slot (one row per coalition x example).
    Suffix(usize),
}

#[derive(Clone, Debug)]
pub struct Tensor {
    pub shape: Shape,
    /// Same for every coalition (does not depend on any player).
    pub shared: bool,
    pub slot: Slot,
}

/// What a step computes; weights are taken from graph node `node`.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOp {
    Linear {
        node: usize,
    },
    Conv2d {
        node: usize,
    },
    /// Unfolded batchnorm (per-channel scale and shift).
    Affine {
        node: usize,
    },
    /// Copy with epilogue: activation, player identity/flatten, or broadcast with mask.
    Map,
    MaxPool(Pool2d),
    AvgPool(Pool2d),
    GlobalAvgPool,
    Add,
}

impl StepOp {
    pub fn kernel(&self) -> Kernel {
        match self {
            StepOp::Linear { .. } => Kernel::Linear,
            StepOp::Conv2d { .. } => Kernel::Conv2d,
            StepOp::Affine { .. } => Kernel::Affine,
            StepOp::Map => Kernel::Map,
            StepOp::MaxPool(_) | StepOp::AvgPool(_) => Kernel::Pool2d,
            StepOp::GlobalAvgPool => Kernel::GlobalAvgPool,
            StepOp::Add => Kernel::Add,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Step {
    pub op: StepOp,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
    /// Fused activation epilogue.
    pub act: Option<Activation>,
    /// Global index of the first player of the node this step masks.
    pub mask: Option<usize>,
    /// Name of the graph node whose value this step (finally) produces, for costs and messages.
    pub label: String,
}

/// The executable plan of one job.
#[derive(Clone, Debug)]
pub struct Plan {
    pub tensors: Vec<Tensor>,
    /// Run once per example chunk, in order.
    pub shared_steps: Vec<Step>,
    /// Run once per (example chunk, coalition chunk), in order.
    pub suffix_steps: Vec<Step>,
    /// The tensor holding the logits.
    pub logits: TensorId,
    /// Elements per row of each shared-pool slot.
    pub shared_slots: Vec<usize>,
    /// Elements per row of each per-coalition slot.
    pub suffix_slots: Vec<usize>,
}

impl Plan {
    pub fn build(graph: &Graph, players: &Players) -> Plan {
        let mut tensors = vec![Tensor {
            shape: graph.input,
            shared: true,
            slot: Slot::Input,
        }];
        let mut steps: Vec<Step> = Vec::new();
        let mut value: Vec<TensorId> = Vec::with_capacity(graph.nodes.len());
        // The step that produced each node's value (None for aliases of the input).
        let mut producer: Vec<Option<usize>> = Vec::with_capacity(graph.nodes.len());

        for (i, node) in graph.nodes.iter().enumerate() {
            let inputs: Vec<TensorId> = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Input => 0,
                    Source::Node(k) => value[k],
                })
                .collect();
            let source_step = |s: &Source| match *s {
                Source::Input => None,
                Source::Node(k) => producer[k],
            };
            let player = players.layer_of_node(i).map(|l| players.offset(l));
            let new_step = |op: StepOp,
                            act: Option<Activation>,
                            tensors: &mut Vec<Tensor>,
                            steps: &mut Vec<Step>| {
                push_step(tensors, steps, op, &inputs, act, node)
            };
            let step = match &node.op {
                Op::Flatten | Op::Identity if player.is_none() => {
                    value.push(inputs[0]);
                    producer.push(source_step(&node.inputs[0]));
                    continue;
                }
                Op::Flatten | Op::Identity => new_step(StepOp::Map, None, &mut tensors, &mut steps),
                Op::Activation(act) => {
                    let fusable = match node.inputs[0] {
                        Source::Node(j) => producer[j].filter(|&s| {
                            steps[s].act.is_none()
                                && steps[s].mask.is_none()
                                && steps[s].output == value[j]
                                && players.layer_of_node(j).is_none()
                                && graph.consumers(j) == [i]
                        }),
                        Source::Input => None,
                    };
                    match fusable {
                        Some(s) => {
                            steps[s].act = Some(*act);
                            steps[s].label = node.name.clone();
                            s
                        }
                        None => new_step(StepOp::Map, Some(*act), &mut tensors, &mut steps),
                    }
                }
                Op::Linear(_) => {
                    new_step(StepOp::Linear { node: i }, None, &mut tensors, &mut steps)
                }
                Op::Conv2d(_) => {
                    new_step(StepOp::Conv2d { node: i }, None, &mut tensors, &mut steps)
                }
                Op::BatchNorm(_) => {
                    new_step(StepOp::Affine { node: i }, None, &mut tensors, &mut steps)
                }
                Op::MaxPool2d(p) => new_step(StepOp::MaxPool(*p), None, &mut tensors, &mut steps),
                Op::AvgPool2d(p) => new_step(StepOp::AvgPool(*p), None, &mut tensors, &mut steps),
                Op::GlobalAvgPool => {
                    new_step(StepOp::GlobalAvgPool, None, &mut tensors, &mut steps)
                }
                Op::Add => new_step(StepOp::Add, None, &mut tensors, &mut steps),
            };
            let mut out = steps[step].output;
            let mut step = step;
            if let Some(offset) = player {
                if tensors[out].shared {
                    // First player on this path: broadcast the shared value to every coalition.
                    tensors.push(Tensor {
                        shape: node.shape,
                        shared: false,
                        slot: Slot::Input,
                    });
                    steps.push(Step {
                        op: StepOp::Map,
                        inputs: vec![out],
                        output: tensors.len() - 1,
                        act: None,
                        mask: Some(offset),
                        label: format!("{} (mask, broadcast)", node.name),
                    });
                    out = tensors.len() - 1;
                    step = steps.len() - 1;
                } else {
                    steps[step].mask = Some(offset);
                }
            }
            value.push(out);
            producer.push(Some(step));
        }

        let logits = value.last().copied().unwrap_or(0);
        let (shared_steps, suffix_steps): (Vec<Step>, Vec<Step>) =
            steps.into_iter().partition(|s| tensors[s.output].shared);
        let shared_slots = assign_slots(&mut tensors, &shared_steps, &suffix_steps, logits, true);
        let suffix_slots = assign_slots(&mut tensors, &suffix_steps, &[], logits, false);
        Plan {
            tensors,
            shared_steps,
            suffix_steps,
            logits,
            shared_slots,
            suffix_slots,
        }
    }

    /// Elements per row summed over a pool's slots (the memory one row costs).
    pub fn shared_row_elements(&self) -> usize {
        self.shared_slots.iter().sum::<usize>() + self.tensors[0].shape.numel()
    }

    pub fn suffix_row_elements(&self) -> usize {
        self.suffix_slots.iter().sum()
    }

    /// Every step in execution order (shared first).
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.shared_steps.iter().chain(&self.suffix_steps)
    }
}

fn push_step(
    tensors: &mut Vec<Tensor>,
    steps: &mut Vec<Step>,
    op: StepOp,
    inputs: &[TensorId],
    act: Option<Activation>,
    node: &nshap_model::Node,
) -> usize {
    let shared = inputs.iter().all(|&t| tensors[t].shared);
    tensors.push(Tensor {
        shape: node.shape,
        shared,
        slot: Slot::Input,
    });
    steps.push(Step {
        op,
        inputs: inputs.to_vec(),
        output: tensors.len() - 1,
        act,
        mask: None,
        label: node.name.clone(),
    });
    steps.len() - 1
}

/// Greedy liveness allocation of the outputs of `steps` to slots of one pool. Tensors read by
/// `later` steps (the shared pool seen from the suffix) or holding the logits live to the end.
fn assign_slots(
    tensors: &mut [Tensor],
    steps: &[Step],
    later: &[Step],
    logits: TensorId,
    shared: bool,
) -> Vec<usize> {
    const FOREVER: usize = usize::MAX;
    let mut last_use = vec![None::<usize>; tensors.len()];
    for (s, step) in steps.iter().enumerate() {
        for &t in &step.inputs {
            last_use[t] = Some(s);
        }
    }
    for step in later {
        for &t in &step.inputs {
            last_use[t] = Some(FOREVER);
        }
    }
    last_use[logits] = Some(FOREVER);

    let mut slots: Vec<usize> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut slot_of = vec![usize::MAX; tensors.len()];
    for (s, step) in steps.iter().enumerate() {
        let numel = tensors[step.output].shape.numel();
        // Best fit: the smallest free slot that is large enough, else the largest (grown).
        let pick = free
            .iter()
            .enumerate()
            .filter(|(_, &k)| slots[k] >= numel)
            .min_by_key(|(_, &k)| slots[k])
            .or_else(|| free.iter().enumerate().max_by_key(|(_, &k)| slots[k]))
            .map(|(pos, _)| pos);
        let slot = match pick {
            Some(pos) => free.swap_remove(pos),
            None => {
                slots.push(0);
                slots.len() - 1
            }
        };
        slots[slot] = slots[slot].max(numel);
        slot_of[step.output] = slot;
        tensors[step.output].slot = if shared {
            Slot::Shared(slot)
        } else {
            Slot::Suffix(slot)
        };
        let mut released: Vec<TensorId> = step.inputs.clone();
        released.push(step.output);
        released.sort_unstable();
        released.dedup();
        for t in released {
            let mine = slot_of[t] != usize::MAX;
            let dead = match last_use[t] {
                None => t == step.output,
                Some(u) => u == s,
            };
            if mine && dead {
                free.push(slot_of[t]);
            }
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use nshap_model::{Linear, Node, PlayerLayer};

    fn linear(name: &str, inp: usize, out: usize, source: Source) -> Node {
        Node {
            name: name.into(),
            op: Op::Linear(Linear {
                in_features: inp,
                out_features: out,
                weight: vec![0.0; inp * out],
                bias: vec![0.0; out],
                has_bias: true,
            }),
            inputs: vec![source],
            shape: Shape::Features(out),
        }
    }

    fn relu(name: &str, n: usize, source: usize) -> Node {
        Node {
            name: name.into(),
            op: Op::Activation(Activation::Relu),
            inputs: vec![Source::Node(source)],
            shape: Shape::Features(n),
        }
    }

    fn mlp() -> Graph {
        Graph {
            input: Shape::Features(4),
            nodes: vec![
                linear("fc1", 4, 8, Source::Input),
                relu("relu1", 8, 0),
                linear("fc2", 8, 8, Source::Node(1)),
                relu("relu2", 8, 2),
                linear("fc3", 8, 3, Source::Node(3)),
            ],
        }
    }

    fn players(graph: &Graph, names: &[&str]) -> Players {
        Players::new(
            names
                .iter()
                .map(|n| {
                    let node = graph.find(n).unwrap();
                    let c = graph.nodes[node].shape.channels();
                    PlayerLayer {
                        node,
                        name: n.to_string(),
                        baseline: vec![0.0; c],
                    }
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn prefix_is_shared_and_first_player_is_broadcast() {
        let g = mlp();
        let plan = Plan::build(&g, &players(&g, &["relu1"]));
        // fc1+relu1 fused and shared; broadcast with mask; fc2+relu2 fused; fc3.
        assert_eq!(plan.shared_steps.len(), 1);
        assert_eq!(plan.shared_steps[0].act, Some(Activation::Relu));
        assert_eq!(plan.suffix_steps.len(), 3);
        assert_eq!(plan.suffix_steps[0].op, StepOp::Map);
        assert_eq!(plan.suffix_steps[0].mask, Some(0));
        assert_eq!(plan.suffix_steps[1].act, Some(Activation::Relu));
        assert!(!plan.tensors[plan.logits].shared);
    }

    #[test]
    fn deeper_player_gets_a_fused_mask_and_player_producer_is_not_fused() {
        let g = mlp();
        // fc2 is a player: relu2 must not be fused into it (mask before activation).
        let plan = Plan::build(&g, &players(&g, &["relu1", "fc2"]));
        let fc2 = plan.suffix_steps.iter().find(|s| s.label == "fc2").unwrap();
        assert_eq!(fc2.mask, Some(8));
        assert_eq!(fc2.act, None);
        assert!(plan
            .suffix_steps
            .iter()
            .any(|s| s.op == StepOp::Map && s.act == Some(Activation::Relu)));
    }

    #[test]
    fn slots_are_reused_and_never_alias_a_step_input() {
        let g = mlp();
        let plan = Plan::build(&g, &players(&g, &["relu1"]));
        for step in plan.steps() {
            for &i in &step.inputs {
                assert_ne!(
                    plan.tensors[i].slot, plan.tensors[step.output].slot,
                    "{}",
                    step.label
                );
            }
        }
        // Three suffix tensors (broadcast, relu2, logits) fit in two slots.
        assert_eq!(plan.suffix_slots.len(), 2);
    }
}

//! From a (batchnorm-folded) graph and its players to an ordered list of kernel steps.
//!
//! What the plan decides, once per job:
//! - **Fusion**: an activation whose input is produced by a kernel that only it reads (and that is
//!   not a player node, nor reached through an alias) becomes that kernel's epilogue; a flatten or
//!   identity that is not a player is an alias (no kernel).
//! - **Prefix sharing**: a step whose inputs do not depend on any player is *shared*: it runs once
//!   per example chunk with one row per example, and later steps read it at `row % B`, i.e. it is
//!   broadcast to every coalition. A player node whose inputs are all shared is computed shared and
//!   unmasked, then one `map` step broadcasts it to coalitions x examples with the mask applied;
//!   a player node deeper in the network gets the mask fused into the kernel that produces it.
//! - **Channel moves**: a concat is one copy step per input, each writing its channels at their
//!   offset of one output tensor, which is per coalition if any input is (a shared input is then
//!   broadcast by the copy's `row % B` read); a slice or channel shuffle is one copy step. A mask or
//!   fused activation of such a node goes to every one of its steps.
//! - **Fast paths** (on by default, [`PlanOptions::fast_paths`]): masks are first moved past the
//!   channel-wise ops after their player node (`nshap_model::pushdown`), so those ops join the
//!   shared prefix. A conv (taps >= 2) or a linear layer after a flatten of `[C, H, W]` (H W >= 2)
//!   that reads a broadcast player node is computed from per-example tables (`table_sum.wgsl`):
//!   two shared steps build `T[example, channel]` and the all-absent output, and one step per
//!   coalition sums the present channels' entries, one entry per step along a permutation walk.
//!   Any other conv reading such a node applies the mask on read of the shared tensor. A masked
//!   copy per coalition is written only for readers that need it (an add, a pool, ...).
//! - **Buffer reuse**: tensors are assigned to slots by liveness, separately for the shared pool
//!   (rows = B) and the per-coalition pool (rows = M x B), so memory per row is the peak of live
//!   tensors, not their sum.

use crate::kernels::Kernel;
use nshap_model::pushdown::{push_down, Flatten};
use nshap_model::{Activation, Graph, Op, Players, Pool2d, Shape, Source};
use std::collections::HashMap;
use std::ops::Range;

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
    /// Output features `outputs` of a linear node: one step for the whole layer, or several
    /// writing one output tensor when its weight exceeds what one storage binding may hold.
    Linear {
        node: usize,
        outputs: Range<usize>,
    },
    Conv2d {
        node: usize,
    },
    /// Per-channel constants: unfolded batchnorm (scale and shift), `Scale` (shift 0), `Prelu`.
    Affine {
        node: usize,
    },
    /// Copy with epilogue: activation, player identity/flatten, or broadcast with mask.
    Map,
    MaxPool(Pool2d),
    AvgPool(Pool2d),
    /// Adaptive average pooling to the output's size.
    AdaptiveAvgPool,
    GlobalAvgPool,
    Add,
    /// Elementwise product; an operand with one value per channel (`[C, 1, 1]` or `[C]`) under a
    /// larger output is broadcast over positions (`per_channel[k]` for input k).
    Mul {
        per_channel: [bool; 2],
    },
    /// Write `channels` channels of the output starting at output channel `out_channel`, read
    /// from the input (of `in_channels` channels) starting at channel `in_channel`, shuffled in
    /// `groups` groups (1: in order). A concat is one such step per input, all writing the same
    /// output tensor; a slice or a channel shuffle is one step.
    ///
    /// Channel counts come from the graph's shapes, not the plan's tensors: a flatten is an alias
    /// whose tensor keeps its `[C, H, W]` shape although its readers see `[C * H * W]` features.
    ChannelCopy {
        in_channels: usize,
        in_channel: usize,
        out_channel: usize,
        channels: usize,
        groups: usize,
    },
    /// Layer normalisation over channels at every position.
    LayerNorm {
        node: usize,
    },
    /// The per-example table `T[channel][block]` of a conv or linear node that reads a player
    /// node: the layer applied to each input channel minus its baseline alone, without bias (the
    /// conv kernel with one group per input channel; a linear layer after a flatten is a conv
    /// whose kernel covers the whole image). Reads the unmasked shared value.
    TableBuild {
        node: usize,
    },
    /// The node's output with every player absent (bias included), per example (a conv or a
    /// linear layer run by the conv kernel on the baselines).
    TableBase {
        node: usize,
    },
    /// Per coalition: the all-absent output plus the table entries of the present channels.
    /// Inputs: the table and the all-absent output.
    TableSum {
        node: usize,
        channels: usize,
        groups: usize,
        /// Outputs one channel reaches (one group's output channels x positions).
        block: usize,
    },
}

/// How a conv-kernel step reads its input (conv2d.wgsl `in_mode`); `offset` is the global index
/// of the input layer's first player.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Read {
    #[default]
    Plain,
    /// Value minus the channel's baseline (a table's build).
    MinusBaseline { offset: usize },
    /// The channel's baseline (the all-absent input).
    Baseline { offset: usize },
    /// The coalition's mask applied on read of a shared tensor.
    Masked { offset: usize },
}

impl Read {
    pub fn mode_and_offset(self) -> (u32, u32) {
        match self {
            Read::Plain => (0, 0),
            Read::MinusBaseline { offset } => (1, offset as u32),
            Read::Baseline { offset } => (2, offset as u32),
            Read::Masked { offset } => (3, offset as u32),
        }
    }
}

/// What the plan may do beyond the plain forward pass.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Linear weights of more elements are split over output features (one binding each).
    pub max_weight_elements: usize,
    /// Pushdown, tables and the mask on read (see the module doc); off: every op runs as written.
    pub fast_paths: bool,
    /// Largest table per example, in elements (a table lives in the shared pool, per example).
    pub max_table_elements: usize,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            max_weight_elements: usize::MAX,
            fast_paths: true,
            max_table_elements: usize::MAX,
        }
    }
}

impl StepOp {
    pub fn kernel(&self) -> Kernel {
        match self {
            StepOp::Linear { .. } => Kernel::Linear,
            StepOp::Conv2d { .. } => Kernel::Conv2d,
            StepOp::Affine { .. } => Kernel::Affine,
            StepOp::Map => Kernel::Map,
            StepOp::MaxPool(_) | StepOp::AvgPool(_) | StepOp::AdaptiveAvgPool => Kernel::Pool2d,
            StepOp::GlobalAvgPool => Kernel::GlobalAvgPool,
            StepOp::Add => Kernel::Add,
            StepOp::Mul { .. } => Kernel::Mul,
            StepOp::ChannelCopy { .. } => Kernel::ChannelCopy,
            StepOp::LayerNorm { .. } => Kernel::LayerNorm,
            StepOp::TableBuild { .. } | StepOp::TableBase { .. } => Kernel::Conv2d,
            StepOp::TableSum { .. } => Kernel::TableSum,
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
    /// How a conv-kernel step reads its input.
    pub read: Read,
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
    /// The players the steps' masks refer to (moved past channel-wise ops when fast paths are
    /// on): their baselines are the ones to upload.
    pub players: Players,
    /// One line per decision of the fast paths, for `BackendInfo::plan`.
    pub choices: Vec<String>,
}

impl Plan {
    /// The plan with every weight in one binding and the fast paths on.
    pub fn build(graph: &Graph, players: &Players) -> Plan {
        Plan::build_with(graph, players, PlanOptions::default())
    }

    /// The plan with every linear weight of more than `max_weight_elements` elements split over
    /// output features into parts that each fit (a device binds at most
    /// `max_storage_buffer_binding_size` bytes at once: 128 MiB on lavapipe, less than VGG's
    /// first classifier layer).
    pub fn build_split(graph: &Graph, players: &Players, max_weight_elements: usize) -> Plan {
        Plan::build_with(
            graph,
            players,
            PlanOptions {
                max_weight_elements,
                ..PlanOptions::default()
            },
        )
    }

    pub fn build_with(graph: &Graph, players: &Players, options: PlanOptions) -> Plan {
        let fast = options.fast_paths;
        let original = players;
        let max_weight_elements = options.max_weight_elements;
        let pushed;
        let players = if fast {
            pushed = push_down(graph, players, Flatten::KeepChannels);
            &pushed
        } else {
            players
        };
        let mut choices = Vec::new();
        // Per-coalition tensors that are a masked broadcast of a shared one: (the shared tensor,
        // global index of the layer's first player).
        let mut broadcast: HashMap<TensorId, (TensorId, usize)> = HashMap::new();
        let mut tensors = vec![Tensor {
            shape: graph.input,
            shared: true,
            slot: Slot::Input,
        }];
        let mut steps: Vec<Step> = Vec::new();
        let mut value: Vec<TensorId> = Vec::with_capacity(graph.nodes.len());
        // The steps that produced each node's value (several for a concat; None for aliases of
        // the input).
        let mut producer: Vec<Option<Range<usize>>> = Vec::with_capacity(graph.nodes.len());
        // Whether each node's value is an alias (a flatten or identity that runs no kernel).
        let mut aliased: Vec<bool> = Vec::with_capacity(graph.nodes.len());

        for (i, node) in graph.nodes.iter().enumerate() {
            let inputs: Vec<TensorId> = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Input => 0,
                    Source::Node(k) => value[k],
                })
                .collect();
            let player = players.layer_of_node(i).map(|l| players.offset(l));
            let new_step = |op: StepOp, tensors: &mut Vec<Tensor>, steps: &mut Vec<Step>| {
                let s = push_step(tensors, steps, op, &inputs, None, node);
                s..s + 1
            };
            let made: Range<usize> = match &node.op {
                Op::Flatten | Op::Identity | Op::MergeHeads if player.is_none() => {
                    value.push(inputs[0]);
                    producer.push(match node.inputs[0] {
                        Source::Input => None,
                        Source::Node(k) => producer[k].clone(),
                    });
                    aliased.push(true);
                    continue;
                }
                Op::Flatten | Op::Identity | Op::MergeHeads => {
                    new_step(StepOp::Map, &mut tensors, &mut steps)
                }
                // No kernels yet: the evaluator refuses graphs with these ops before planning.
                Op::Embedding(_) | Op::Attention(_) | Op::SelectPosition | Op::RmsNorm(_) => {
                    new_step(StepOp::Map, &mut tensors, &mut steps)
                }
                Op::Activation(act) => {
                    let fusable = match node.inputs[0] {
                        // Not through an alias: the aliased node's other readers (e.g. of the
                        // conv before a flatten) would see the activation too.
                        Source::Node(j) if !aliased[j] => producer[j].clone().filter(|r| {
                            steps[r.clone()].iter().all(|s| {
                                s.act.is_none() && s.mask.is_none() && s.output == value[j]
                            }) && players.layer_of_node(j).is_none()
                                && graph.consumers(j) == [i]
                        }),
                        Source::Node(_) => None,
                        Source::Input => None,
                    };
                    match fusable {
                        Some(r) => {
                            for s in &mut steps[r.clone()] {
                                s.act = Some(*act);
                                // Keep a part's suffix ("(input 1)", "(outputs part 0 of 2)").
                                s.label = match s.label.find(" (") {
                                    Some(at) => format!("{}{}", node.name, &s.label[at..]),
                                    None => node.name.clone(),
                                };
                            }
                            r
                        }
                        None => {
                            let s = push_step(
                                &mut tensors,
                                &mut steps,
                                StepOp::Map,
                                &inputs,
                                Some(*act),
                                node,
                            );
                            s..s + 1
                        }
                    }
                }
                Op::Linear(l) => {
                    let parts = linear_parts(l.out_features, l.in_features, max_weight_elements);
                    // A table when the layer reads a broadcast player node of several positions
                    // per channel (after a flatten): a channel's block of features costs one add.
                    let table = broadcast
                        .get(&inputs[0])
                        .filter(|_| fast && parts.len() == 1)
                        .map(|&(src, offset)| (src, offset, tensors[src].shape))
                        .filter(|&(_, _, shape)| {
                            let channels = shape.channels();
                            shape.spatial() >= 2
                                && channels * l.out_features <= options.max_table_elements
                                && channels * l.out_features.div_ceil(16) <= MAX_GRID
                        });
                    if let Some((src, offset, shape)) = table {
                        let table = TableStep {
                            node: i,
                            source: src,
                            offset,
                            channels: shape.channels(),
                            groups: 1,
                            block: l.out_features,
                            fewer: shape.spatial(),
                        };
                        push_tables(&mut tensors, &mut steps, &mut choices, node, table)
                    } else if parts.len() == 1 {
                        new_step(
                            StepOp::Linear {
                                node: i,
                                outputs: 0..l.out_features,
                            },
                            &mut tensors,
                            &mut steps,
                        )
                    } else {
                        tensors.push(Tensor {
                            shape: node.shape,
                            shared: inputs.iter().all(|&t| tensors[t].shared),
                            slot: Slot::Input,
                        });
                        let output = tensors.len() - 1;
                        let first = steps.len();
                        let count = parts.len();
                        for (k, outputs) in parts.into_iter().enumerate() {
                            steps.push(Step {
                                op: StepOp::Linear { node: i, outputs },
                                inputs: inputs.clone(),
                                output,
                                act: None,
                                mask: None,
                                read: Read::Plain,
                                label: format!("{} (outputs part {k} of {count})", node.name),
                            });
                        }
                        first..steps.len()
                    }
                }
                Op::Conv2d(c) => match broadcast.get(&inputs[0]).filter(|_| fast) {
                    Some(&(src, offset)) => {
                        let taps = c.kernel.0 * c.kernel.1;
                        let cout_g = c.out_channels / c.groups;
                        let block = cout_g * node.shape.spatial();
                        let fits = c.in_channels * block <= options.max_table_elements
                            && c.in_channels * cout_g.div_ceil(16) <= MAX_GRID;
                        if taps >= 2 && fits {
                            let table = TableStep {
                                node: i,
                                source: src,
                                offset,
                                channels: c.in_channels,
                                groups: c.groups,
                                block,
                                fewer: taps,
                            };
                            push_tables(&mut tensors, &mut steps, &mut choices, node, table)
                        } else {
                            choices.push(format!(
                                "{}: mask applied on read of the shared input ({})",
                                node.name,
                                if taps < 2 {
                                    "a 1x1 conv gains nothing from a table"
                                } else {
                                    "its table would exceed the memory limit"
                                }
                            ));
                            tensors.push(Tensor {
                                shape: node.shape,
                                shared: false,
                                slot: Slot::Input,
                            });
                            steps.push(Step {
                                op: StepOp::Conv2d { node: i },
                                inputs: vec![src],
                                output: tensors.len() - 1,
                                act: None,
                                mask: None,
                                read: Read::Masked { offset },
                                label: node.name.clone(),
                            });
                            steps.len() - 1..steps.len()
                        }
                    }
                    None => new_step(StepOp::Conv2d { node: i }, &mut tensors, &mut steps),
                },
                Op::BatchNorm(_) | Op::Scale(_) | Op::Prelu(_) => {
                    new_step(StepOp::Affine { node: i }, &mut tensors, &mut steps)
                }
                Op::LayerNorm(_) => {
                    new_step(StepOp::LayerNorm { node: i }, &mut tensors, &mut steps)
                }
                Op::MaxPool2d(p) => new_step(StepOp::MaxPool(*p), &mut tensors, &mut steps),
                Op::AvgPool2d(p) => new_step(StepOp::AvgPool(*p), &mut tensors, &mut steps),
                Op::AdaptiveAvgPool2d => {
                    new_step(StepOp::AdaptiveAvgPool, &mut tensors, &mut steps)
                }
                Op::GlobalAvgPool => new_step(StepOp::GlobalAvgPool, &mut tensors, &mut steps),
                Op::Add => new_step(StepOp::Add, &mut tensors, &mut steps),
                Op::Mul => {
                    let per_channel = |k: usize| {
                        graph.shape_of(node.inputs[k]).spatial() == 1 && node.shape.spatial() > 1
                    };
                    new_step(
                        StepOp::Mul {
                            per_channel: [per_channel(0), per_channel(1)],
                        },
                        &mut tensors,
                        &mut steps,
                    )
                }
                Op::Slice { start, end } => new_step(
                    StepOp::ChannelCopy {
                        in_channels: graph.shape_of(node.inputs[0]).channels(),
                        in_channel: *start,
                        out_channel: 0,
                        channels: end - start,
                        groups: 1,
                    },
                    &mut tensors,
                    &mut steps,
                ),
                Op::ChannelShuffle { groups } => new_step(
                    StepOp::ChannelCopy {
                        in_channels: node.shape.channels(),
                        in_channel: 0,
                        out_channel: 0,
                        channels: node.shape.channels(),
                        groups: *groups,
                    },
                    &mut tensors,
                    &mut steps,
                ),
                Op::Concat => {
                    // One copy step per input, all writing one output tensor, which is per
                    // coalition if any input is.
                    tensors.push(Tensor {
                        shape: node.shape,
                        shared: inputs.iter().all(|&t| tensors[t].shared),
                        slot: Slot::Input,
                    });
                    let output = tensors.len() - 1;
                    let first = steps.len();
                    let mut at = 0;
                    for (k, (&t, &source)) in inputs.iter().zip(&node.inputs).enumerate() {
                        let channels = graph.shape_of(source).channels();
                        steps.push(Step {
                            op: StepOp::ChannelCopy {
                                in_channels: channels,
                                in_channel: 0,
                                out_channel: at,
                                channels,
                                groups: 1,
                            },
                            inputs: vec![t],
                            output,
                            act: None,
                            mask: None,
                            read: Read::Plain,
                            label: part_label(&node.name, k, inputs.len()),
                        });
                        at += channels;
                    }
                    first..steps.len()
                }
            };
            let mut out = steps[made.start].output;
            let mut made = made;
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
                        read: Read::Plain,
                        label: format!("{} (mask, broadcast)", node.name),
                    });
                    broadcast.insert(tensors.len() - 1, (out, offset));
                    out = tensors.len() - 1;
                    made = steps.len() - 1..steps.len();
                } else {
                    for s in &mut steps[made.clone()] {
                        s.mask = Some(offset);
                    }
                }
            }
            value.push(out);
            producer.push(Some(made));
            aliased.push(false);
        }

        let logits = value.last().copied().unwrap_or(0);
        if fast {
            choices.splice(0..0, pushdown_choices(graph, original, players));
            // A broadcast whose readers all read the shared tensor themselves is never written.
            let read: std::collections::HashSet<TensorId> = steps
                .iter()
                .flat_map(|s| s.inputs.iter().copied())
                .collect();
            steps.retain(|s| {
                if !broadcast.contains_key(&s.output) {
                    return true;
                }
                let needed = read.contains(&s.output) || s.output == logits;
                if needed {
                    choices.push(format!(
                        "{}: a masked copy per coalition (read by an op that needs one)",
                        s.label.trim_end_matches(" (mask, broadcast)")
                    ));
                }
                needed
            });
        }
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
            players: players.clone(),
            choices,
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

/// Output-feature ranges of a linear layer whose parts each hold at most `max_elements` weights
/// (at least one output per part: a single row larger than the limit cannot be split further).
fn linear_parts(out: usize, inp: usize, max_elements: usize) -> Vec<Range<usize>> {
    let per_part = (max_elements / inp.max(1)).clamp(1, out.max(1));
    let parts = out.div_ceil(per_part).max(1);
    // Even parts rather than full parts and a remainder: the same kernel shape for each.
    let width = out.div_ceil(parts);
    (0..parts)
        .map(|k| k * width..((k + 1) * width).min(out))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The label of part `k` of a node made of `parts` steps (a concat: one per input).
fn part_label(name: &str, k: usize, parts: usize) -> String {
    if parts > 1 {
        format!("{name} (input {k})")
    } else {
        name.to_string()
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
        read: Read::Plain,
        label: node.name.clone(),
    });
    steps.len() - 1
}

/// Most workgroups along one grid dimension.
const MAX_GRID: usize = 65_535;

/// A table to build: conv or linear node `node` reads the broadcast of shared tensor `source`,
/// whose players start at global index `offset`.
struct TableStep {
    node: usize,
    source: TensorId,
    offset: usize,
    channels: usize,
    groups: usize,
    block: usize,
    /// How many times fewer multiply-adds per coalition than the plain layer (its taps).
    fewer: usize,
}

/// The three steps of a table node (build and all-absent output, shared; the sum per coalition),
/// and the line saying so in `choices`; the range of the sum step, which produces the node's
/// value.
fn push_tables(
    tensors: &mut Vec<Tensor>,
    steps: &mut Vec<Step>,
    choices: &mut Vec<String>,
    node: &nshap_model::Node,
    t: TableStep,
) -> Range<usize> {
    choices.push(format!(
        "{}: table of {} channels x {} outputs per example ({}x fewer multiply-adds per \
         coalition; one add per output along a walk)",
        node.name, t.channels, t.block, t.fewer
    ));
    let mut push = |shape: Shape, shared: bool, op: StepOp, inputs: Vec<TensorId>, read, label| {
        tensors.push(Tensor {
            shape,
            shared,
            slot: Slot::Input,
        });
        steps.push(Step {
            op,
            inputs,
            output: tensors.len() - 1,
            act: None,
            mask: None,
            read,
            label,
        });
        tensors.len() - 1
    };
    let table = push(
        Shape::Features(t.channels * t.block),
        true,
        StepOp::TableBuild { node: t.node },
        vec![t.source],
        Read::MinusBaseline { offset: t.offset },
        format!("{} (table)", node.name),
    );
    let base = push(
        node.shape,
        true,
        StepOp::TableBase { node: t.node },
        vec![t.source],
        Read::Baseline { offset: t.offset },
        format!("{} (all absent)", node.name),
    );
    push(
        node.shape,
        false,
        StepOp::TableSum {
            node: t.node,
            channels: t.channels,
            groups: t.groups,
            block: t.block,
        },
        vec![table, base],
        Read::Masked { offset: t.offset },
        node.name.clone(),
    );
    steps.len() - 1..steps.len()
}

/// A line per player layer whose mask the pushdown moved.
fn pushdown_choices(graph: &Graph, before: &Players, after: &Players) -> Vec<String> {
    before
        .layers()
        .iter()
        .zip(after.layers())
        .filter(|(b, a)| b.node != a.node)
        .map(|(b, a)| {
            format!(
                "{}: mask moved past the channel-wise ops to {} (they run once per example)",
                b.name, graph.nodes[a.node].name
            )
        })
        .collect()
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
    // The last step writing each tensor (the last part of a concat): an output nobody reads is
    // released there, once.
    let mut last_write = vec![0; tensors.len()];
    for (s, step) in steps.iter().enumerate() {
        for &t in &step.inputs {
            last_use[t] = Some(s);
        }
        last_write[step.output] = s;
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
        // A later part of a concat writes an output that already has a slot (taken by the first
        // part and live since then): nothing to allocate, but its inputs may die here.
        if slot_of[step.output] == usize::MAX {
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
        }
        let mut released: Vec<TensorId> = step.inputs.clone();
        released.push(step.output);
        released.sort_unstable();
        released.dedup();
        for t in released {
            let mine = slot_of[t] != usize::MAX;
            let dead = match last_use[t] {
                None => t == step.output && last_write[t] == s,
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

    /// The plan without fast paths: every op as written.
    fn plain(graph: &Graph, players: &Players) -> Plan {
        Plan::build_with(
            graph,
            players,
            PlanOptions {
                fast_paths: false,
                ..PlanOptions::default()
            },
        )
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
        let plan = plain(&g, &players(&g, &["relu1"]));
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
        let plan = plain(&g, &players(&g, &["relu1", "fc2"]));
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
        let plan = plain(&g, &players(&g, &["relu1"]));
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

    fn image_node(name: &str, op: Op, inputs: Vec<Source>, c: usize) -> Node {
        Node {
            name: name.into(),
            op,
            inputs,
            shape: Shape::Image { c, h: 2, w: 2 },
        }
    }

    /// input [4,2,2] -> pre (identity) -> a = slice 0..1 of the input (shared),
    /// cat = concat(pre, a, input) [9,2,2] -> act (leaky relu) -> shuffle (3 groups) -> out = slice.
    fn concat_graph() -> Graph {
        Graph {
            input: Shape::Image { c: 4, h: 2, w: 2 },
            nodes: vec![
                image_node("pre", Op::Identity, vec![Source::Input], 4),
                image_node("a", Op::Slice { start: 0, end: 1 }, vec![Source::Input], 1),
                image_node(
                    "cat",
                    Op::Concat,
                    vec![Source::Node(0), Source::Node(1), Source::Input],
                    9,
                ),
                image_node(
                    "act",
                    Op::Activation(Activation::LeakyRelu { slope: 0.1 }),
                    vec![Source::Node(2)],
                    9,
                ),
                image_node(
                    "shuffle",
                    Op::ChannelShuffle { groups: 3 },
                    vec![Source::Node(3)],
                    9,
                ),
                image_node(
                    "out",
                    Op::Slice { start: 2, end: 5 },
                    vec![Source::Node(4)],
                    3,
                ),
            ],
        }
    }

    #[test]
    fn concat_is_one_copy_per_input_into_one_per_coalition_tensor() {
        let g = concat_graph();
        let plan = plain(&g, &players(&g, &["pre"]));
        // Shared: pre (unmasked) and the slice `a`. Suffix: broadcast of pre, three concat
        // parts, shuffle, slice.
        assert_eq!(plan.shared_steps.len(), 2);
        let parts: Vec<&Step> = plan
            .suffix_steps
            .iter()
            .filter(|s| s.label.starts_with("act (input"))
            .collect();
        assert_eq!(parts.len(), 3, "{:?}", plan.suffix_steps);
        let offsets: Vec<(usize, usize)> = parts
            .iter()
            .map(|s| match s.op {
                StepOp::ChannelCopy {
                    out_channel,
                    channels,
                    ..
                } => (out_channel, channels),
                _ => panic!("{:?}", s.op),
            })
            .collect();
        assert_eq!(offsets, [(0, 4), (4, 1), (5, 4)]);
        // One output tensor, per coalition; the activation fused into every part.
        assert!(parts.iter().all(|s| s.output == parts[0].output));
        assert!(!plan.tensors[parts[0].output].shared);
        assert!(parts
            .iter()
            .all(|s| s.act == Some(Activation::LeakyRelu { slope: 0.1 })));
        // Inputs: the broadcast (per coalition), `a` (shared) and the graph input.
        assert!(!plan.tensors[parts[0].inputs[0]].shared);
        assert!(plan.tensors[parts[1].inputs[0]].shared);
        assert_eq!(parts[2].inputs, [0]);
        assert_eq!(plan.suffix_steps.len(), 6);
    }

    #[test]
    fn a_player_concat_masks_every_part_and_keeps_its_slot() {
        let g = concat_graph();
        let plan = plain(&g, &players(&g, &["pre", "cat"]));
        let parts: Vec<&Step> = plan
            .suffix_steps
            .iter()
            .filter(|s| s.label.starts_with("cat (input"))
            .collect();
        assert_eq!(parts.len(), 3);
        // A player node: no fused activation, the mask in every part.
        assert!(parts.iter().all(|s| s.mask == Some(4) && s.act.is_none()));
        assert!(plan
            .suffix_steps
            .iter()
            .any(|s| s.op == StepOp::Map && s.label == "act"));
        // No step's output shares a slot with one of its inputs, and no tensor written by a
        // concat part is reused by anything until the concat's reader ran.
        for step in plan.steps() {
            for &i in &step.inputs {
                assert_ne!(
                    plan.tensors[i].slot, plan.tensors[step.output].slot,
                    "{}",
                    step.label
                );
            }
        }
        let cat = parts[0].output;
        let first = plan
            .suffix_steps
            .iter()
            .position(|s| s.output == cat)
            .unwrap();
        let reader = plan
            .suffix_steps
            .iter()
            .position(|s| s.inputs.contains(&cat))
            .unwrap();
        for s in &plan.suffix_steps[first + 1..reader] {
            if s.output != cat {
                assert_ne!(
                    plan.tensors[s.output].slot, plan.tensors[cat].slot,
                    "{}",
                    s.label
                );
            }
        }
    }

    #[test]
    fn an_all_shared_concat_is_shared_and_broadcast_when_a_player() {
        let g = Graph {
            input: Shape::Image { c: 4, h: 2, w: 2 },
            nodes: vec![
                image_node("a", Op::Slice { start: 1, end: 3 }, vec![Source::Input], 2),
                image_node("cat", Op::Concat, vec![Source::Input, Source::Node(0)], 6),
            ],
        };
        let plan = plain(&g, &players(&g, &["cat"]));
        assert_eq!(plan.shared_steps.len(), 3);
        assert!(plan.shared_steps.iter().all(|s| s.mask.is_none()));
        assert_eq!(plan.suffix_steps.len(), 1);
        assert_eq!(plan.suffix_steps[0].op, StepOp::Map);
        assert_eq!(plan.suffix_steps[0].mask, Some(0));
    }

    #[test]
    fn an_activation_is_not_fused_through_an_alias() {
        // fc1 -> identity (alias) -> relu, and fc1 also feeds the add: relu must stay a map.
        let f = Shape::Features(4);
        let g = Graph {
            input: f,
            nodes: vec![
                linear("fc1", 4, 4, Source::Input),
                Node {
                    name: "id".into(),
                    op: Op::Identity,
                    inputs: vec![Source::Node(0)],
                    shape: f,
                },
                relu("r", 4, 1),
                Node {
                    name: "sum".into(),
                    op: Op::Add,
                    inputs: vec![Source::Node(2), Source::Node(0)],
                    shape: f,
                },
            ],
        };
        let plan = plain(&g, &players(&g, &["sum"]));
        let fc1 = plan.steps().find(|s| s.label == "fc1").unwrap();
        assert_eq!(fc1.act, None);
        assert!(plan
            .steps()
            .any(|s| s.op == StepOp::Map && s.act == Some(Activation::Relu)));
    }
}

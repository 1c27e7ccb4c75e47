//! The dependent stage: a block of coalitions x a block of examples through every node that
//! depends on the coalition, with the mask applied at each player node.

use crate::ops;
use crate::plan::Plan;
use crate::shared::{gather_inputs, SharedCache};
use crate::table::TablePlan;
use nshap_model::{EvalSet, MaskBatch, Op, Source};

/// One work item: coalitions `coalitions` of `masks` on cache rows `rows`.
pub struct Item<'a> {
    pub coalitions: std::ops::Range<usize>,
    pub rows: &'a [usize],
    /// Position of `rows[0]` in the request's example list.
    pub first: usize,
}

/// How the request's coalitions are assembled from each table node's tables (by node).
pub fn table_plans(plan: &Plan, masks: &MaskBatch) -> Vec<Option<TablePlan>> {
    plan.tables
        .iter()
        .map(|spec| {
            spec.as_ref().map(|spec| {
                let offset = plan.players.offset(spec.layer);
                spec.plan_request(&|m, c| masks.contains(m, offset + c), masks.len())
            })
        })
        .collect()
}

/// Run an item and hand each (coalition, example-row) logits to `sink(m, r, logits)`, where `m`
/// indexes `masks` and `r` indexes `item.rows`. `tables` is [`table_plans`] of `masks`.
pub fn run_item(
    plan: &Plan,
    cache: &SharedCache,
    data: &EvalSet,
    masks: &MaskBatch,
    tables: &[Option<TablePlan>],
    item: &Item<'_>,
    mut sink: impl FnMut(usize, usize, &[f32]),
) {
    let g = &plan.graph;
    let e = item.rows.len();
    let cm = item.coalitions.len();
    let total = cm * e;
    let mut bufs: Vec<Option<Vec<f32>>> = vec![None; g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        if !plan.dependent[i] || plan.unmaterialized[i] {
            continue;
        }
        let numel = node.shape.numel();
        let mut out = if let Some(t) = plan.absorbed[i] {
            // The table already added the shared operand: its output is this add's.
            bufs[t].take().expect("an absorbed add's table is computed")
        } else if let Some(spec) = &plan.tables[i] {
            let table = cache.tables[i]
                .as_ref()
                .expect("the cache has the node's table");
            let steps = tables[i].as_ref().expect("a plan for every table");
            // `compose` writes every value.
            let mut out = crate::pool::take_dirty(total * numel);
            spec.compose(table, steps, item.coalitions.clone(), item.rows, &mut out);
            out
        } else if plan.boundary[i] {
            // Unmasked value is shared: repeat it for every coalition, then mask.
            let one = cache.gather(plan, i, item.rows);
            // Every value is a copy of `one`.
            let mut out = crate::pool::take_dirty(one.len() * cm);
            out.chunks_exact_mut(one.len().max(1))
                .for_each(|copy| copy.copy_from_slice(&one));
            out
        } else if let Some(out) = in_place(plan, i, &mut bufs) {
            out
        } else {
            let mut out = if writes_every_value(&node.op) {
                crate::pool::take_dirty(total * numel)
            } else {
                crate::pool::take_zeroed(total * numel)
            };
            let shared: Vec<Option<Vec<f32>>> = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Node(j) if plan.dependent[j] => None,
                    Source::Node(j) => Some(cache.gather(plan, j, item.rows)),
                    Source::Input => Some(gather_inputs(
                        data,
                        item.rows.iter().map(|&r| cache.examples[r]),
                    )),
                })
                .collect();
            // A shared operand holds one row per example; the ops broadcast it over the
            // coalitions (row r reads row r % rows, see `ops`), so inputs keep their order.
            let inputs: Vec<&[f32]> = node
                .inputs
                .iter()
                .zip(&shared)
                .map(|(s, sh)| match (s, sh) {
                    (_, Some(v)) => v.as_slice(),
                    (Source::Node(j), None) => {
                        bufs[*j].as_deref().expect("dependent input computed")
                    }
                    (Source::Input, None) => unreachable!(),
                })
                .collect();
            match &node.op {
                Op::Conv2d(c) => ops::conv::conv2d_cached(
                    c,
                    &plan.convs[i],
                    g.shape_of(node.inputs[0]),
                    node.shape,
                    inputs[0],
                    total,
                    &mut out,
                ),
                _ => ops::run(g, node, &inputs, total, &mut out),
            }
            out
        };
        if let Some(layer) = plan.players.layer_of_node(i) {
            apply_mask(plan, layer, masks, item, &cache.examples, numel, &mut out);
        }
        bufs[i] = Some(out);
        for s in &node.inputs {
            if let Source::Node(j) = *s {
                if plan.last_use[j] <= i {
                    if let Some(done) = bufs[j].take() {
                        crate::pool::give(done);
                    }
                }
            }
        }
    }
    let last = g.nodes.len() - 1;
    let classes = g.nodes[last].shape.numel();
    let logits = bufs[last].as_deref().expect("output is dependent");
    for m in 0..cm {
        for r in 0..e {
            let at = (m * e + r) * classes;
            sink(item.coalitions.start + m, r, &logits[at..at + classes]);
        }
    }
    bufs.into_iter().flatten().for_each(crate::pool::give);
}

/// Node `i` computed in its input's buffer, when it is an activation, a flatten or an identity
/// of a dependent node that nothing reads after it: one pass over values still in cache (or
/// none), instead of a fresh buffer and a copy.
fn in_place(plan: &Plan, i: usize, bufs: &mut [Option<Vec<f32>>]) -> Option<Vec<f32>> {
    let node = &plan.graph.nodes[i];
    let [Source::Node(j)] = node.inputs[..] else {
        return None;
    };
    if !matches!(
        node.op,
        Op::Activation(_) | Op::Flatten | Op::Identity | Op::MergeHeads
    ) || !plan.dependent[j]
        || plan.last_use[j] != i
    {
        return None;
    }
    let mut buf = bufs[j].take()?;
    if let Op::Activation(a) = node.op {
        ops::elementwise::activation_in_place(a, &mut buf);
    }
    Some(buf)
}

/// Whether an op's kernel assigns every output value (so its buffer need not be zeroed first);
/// the others (pools with windows, layer norm) are zeroed to be safe.
fn writes_every_value(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv2d(_)
            | Op::Linear(_)
            | Op::Slice { .. }
            | Op::ChannelShuffle { .. }
            | Op::Add
            | Op::Mul
            | Op::Activation(_)
            | Op::BatchNorm(_)
            | Op::Prelu(_)
            | Op::Scale(_)
            | Op::Flatten
            | Op::Identity
            | Op::GlobalAvgPool
            | Op::Concat
            | Op::Embedding(_)
            | Op::Attention(_)
            | Op::MergeHeads
            | Op::SelectPosition
    )
}

/// Replace each absent player's channel by its baseline, for every example row of the item:
/// the channel's constant, or its block of the layer's [`BaselineValues`] (of the row's
/// eval-set example, `example_of[cache row]`, for resample ablation).
fn apply_mask(
    plan: &Plan,
    layer: usize,
    masks: &MaskBatch,
    item: &Item<'_>,
    example_of: &[u32],
    numel: usize,
    out: &mut [f32],
) {
    let pl = &plan.players.layers()[layer];
    let values = plan.players.values(layer);
    // A channel's block: H*W for images; after a pushed-down flatten, its H*W features.
    let spatial = numel / pl.channels();
    let offset = plan.players.offset(layer);
    let e = item.rows.len();
    for (m, coalition) in item.coalitions.clone().enumerate() {
        for c in 0..pl.channels() {
            if masks.contains(coalition, offset + c) {
                continue;
            }
            for (r, &row) in item.rows.iter().enumerate() {
                let at = (m * e + r) * numel + c * spatial;
                let block = &mut out[at..at + spatial];
                match values {
                    None => block.fill(pl.baseline[c]),
                    Some(v) => {
                        let example = example_of[row] as usize;
                        block.copy_from_slice(&v.row(example, numel)[c * spatial..][..spatial]);
                    }
                }
            }
        }
    }
}

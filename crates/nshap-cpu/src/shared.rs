//! The shared stage: every node that does not depend on the coalition, once per example.

use crate::ops;
use crate::plan::Plan;
use nshap_model::{EvalSet, Op, Source};
use rayon::prelude::*;

/// Shared values of the retained nodes for a list of examples, row-major per node.
pub struct SharedCache {
    /// Eval-set index of each cache row.
    pub examples: Vec<u32>,
    pub values: Vec<Option<Vec<f32>>>,
    /// With a linear suffix: each row's per-channel contribution to the logits
    /// `[rows, channels, classes]` (see [`crate::plan::LinearSuffix`]).
    pub suffix_table: Option<Vec<f32>>,
}

/// Examples per parallel task in the shared stage.
const CHUNK: usize = 32;

impl SharedCache {
    pub fn compute(plan: &Plan, data: &EvalSet, examples: Vec<u32>) -> SharedCache {
        let parts: Vec<Vec<Option<Vec<f32>>>> = examples
            .par_chunks(CHUNK)
            .map(|chunk| shared_rows(plan, data, chunk))
            .collect();
        let mut values: Vec<Option<Vec<f32>>> = vec![None; plan.graph.nodes.len()];
        for (i, v) in values.iter_mut().enumerate() {
            if plan.retained[i] {
                let numel = plan.graph.nodes[i].shape.numel();
                let mut all = Vec::with_capacity(examples.len() * numel);
                for part in &parts {
                    all.extend_from_slice(part[i].as_deref().unwrap_or_default());
                }
                *v = Some(all);
            }
        }
        let suffix_table = plan.linear_suffix.as_ref().map(|suffix| {
            let x = values[suffix.player_node]
                .as_deref()
                .expect("the player's value is retained");
            let per_row = plan.graph.nodes[suffix.player_node].shape.numel();
            let parts: Vec<Vec<f32>> = x
                .par_chunks(per_row * CHUNK)
                .map(|rows| suffix_table(plan, rows))
                .collect();
            parts.concat()
        });
        SharedCache {
            examples,
            values,
            suffix_table,
        }
    }

    /// Rows `rows` of a retained node, gathered into one buffer.
    pub fn gather(&self, plan: &Plan, node: usize, rows: &[usize]) -> Vec<f32> {
        let numel = plan.graph.nodes[node].shape.numel();
        let src = self.values[node]
            .as_deref()
            .expect("retained node is cached");
        let mut out = Vec::with_capacity(rows.len() * numel);
        for &r in rows {
            out.extend_from_slice(&src[r * numel..(r + 1) * numel]);
        }
        out
    }
}

/// Gather example inputs into one row-major buffer.
pub fn gather_inputs(data: &EvalSet, examples: impl Iterator<Item = u32>) -> Vec<f32> {
    let mut out = Vec::new();
    for e in examples {
        out.extend_from_slice(data.example(e as usize));
    }
    out
}

fn shared_rows(plan: &Plan, data: &EvalSet, examples: &[u32]) -> Vec<Option<Vec<f32>>> {
    let g = &plan.graph;
    let rows = examples.len();
    let input = gather_inputs(data, examples.iter().copied());
    let mut bufs: Vec<Option<Vec<f32>>> = vec![None; g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        if plan.dependent[i] && !plan.boundary[i] {
            continue;
        }
        let mut out = vec![0.0; rows * node.shape.numel()];
        {
            let inputs: Vec<&[f32]> = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Input => input.as_slice(),
                    Source::Node(j) => bufs[j].as_deref().expect("shared inputs come first"),
                })
                .collect();
            ops::run(g, node, &inputs, rows, &mut out);
        }
        bufs[i] = Some(out);
        // Free shared values nobody needs any more.
        for s in &node.inputs {
            if let Source::Node(j) = *s {
                if plan.last_use[j] <= i && !plan.retained[j] {
                    bufs[j] = None;
                }
            }
        }
    }
    bufs.iter_mut()
        .enumerate()
        .filter(|(i, _)| !plan.retained[*i])
        .for_each(|(_, b)| *b = None);
    bufs
}

/// Per-channel logit contributions of rows of the (unmasked) player value:
/// `table[r][c][o] = W[o, block c] . (x_r[block c] - b_c)`.
fn suffix_table(plan: &Plan, x: &[f32]) -> Vec<f32> {
    let suffix = plan
        .linear_suffix
        .as_ref()
        .expect("called with a linear suffix");
    let layer = &plan.players.layers()[0];
    let Op::Linear(lin) = &plan.graph.nodes[suffix.linear_node].op else {
        unreachable!("checked by the plan")
    };
    let (channels, classes) = (layer.channels(), lin.out_features);
    let block = lin.in_features / channels;
    let mut table = vec![0.0f32; x.len() / lin.in_features * channels * classes];
    for (r, xr) in x.chunks_exact(lin.in_features).enumerate() {
        for c in 0..channels {
            let xs = &xr[c * block..(c + 1) * block];
            let b = layer.baseline[c];
            let t = &mut table[(r * channels + c) * classes..][..classes];
            for (o, to) in t.iter_mut().enumerate() {
                let w = &lin.weight[o * lin.in_features + c * block..][..block];
                *to = w.iter().zip(xs).map(|(w, x)| w * (x - b)).sum();
            }
        }
    }
    table
}

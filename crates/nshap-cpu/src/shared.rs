//! The shared stage: every node that does not depend on the coalition, once per example.

use crate::ops;
use crate::plan::Plan;
use crate::table::NodeTable;
use nshap_model::{EvalSet, Source};
use rayon::prelude::*;

/// Shared values of the retained nodes for a list of examples, row-major per node.
pub struct SharedCache {
    /// Eval-set index of each cache row.
    pub examples: Vec<u32>,
    pub values: Vec<Option<Vec<f32>>>,
    /// Per-example tables of the plan's table nodes, by node (see `table.rs`).
    pub tables: Vec<Option<NodeTable>>,
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
        let tables: Vec<Option<NodeTable>> = plan
            .tables
            .iter()
            .map(|spec| {
                spec.as_ref().map(|spec| {
                    let x = values[spec.player_node]
                        .as_deref()
                        .expect("the player's value is retained");
                    let baseline = &plan.players.layers()[spec.layer].baseline;
                    let addend = spec
                        .addend
                        .map(|a| values[a].as_deref().expect("a table's addend is retained"));
                    spec.compute(&plan.graph, x, baseline, addend)
                })
            })
            .collect();
        // A player value only the tables read is not needed any more.
        for (i, v) in values.iter_mut().enumerate() {
            if plan.unmaterialized[i] {
                *v = None;
            }
        }
        SharedCache {
            examples,
            values,
            tables,
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

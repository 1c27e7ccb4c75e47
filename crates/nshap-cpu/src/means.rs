//! Mean activations of channels over an eval set, for the `mean` removal baseline.

use nshap_model::{EvalSet, Graph};
use rayon::prelude::*;

/// Per-channel mean of each node in `nodes` over all examples (unmasked network), averaged over
/// examples and spatial positions.
pub fn activation_means(graph: &Graph, data: &EvalSet, nodes: &[usize]) -> Vec<Vec<f32>> {
    let partial: Vec<Vec<Vec<f64>>> = (0..data.len())
        .collect::<Vec<_>>()
        .par_chunks(16)
        .map(|chunk| {
            let rows = chunk.len();
            let mut input = Vec::with_capacity(rows * graph.input.numel());
            chunk
                .iter()
                .for_each(|&e| input.extend_from_slice(data.example(e)));
            let bufs = crate::grad::forward_all(graph, &input, rows);
            nodes
                .iter()
                .map(|&n| {
                    let shape = graph.nodes[n].shape;
                    let mut sums = vec![0.0f64; shape.channels()];
                    for (i, plane) in bufs[n].chunks_exact(shape.spatial()).enumerate() {
                        sums[i % shape.channels()] += plane.iter().map(|&v| v as f64).sum::<f64>();
                    }
                    sums
                })
                .collect()
        })
        .collect();
    nodes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let shape = graph.nodes[n].shape;
            let count = (data.len() * shape.spatial()) as f64;
            (0..shape.channels())
                .map(|c| (partial.iter().map(|p| p[k][c]).sum::<f64>() / count) as f32)
                .collect()
        })
        .collect()
}

/// The unmasked network's output at each node of `nodes` for every example of `inputs` (rows of
/// `graph.input.numel()` values), `[examples, numel]` per node.
pub fn node_activations(graph: &Graph, inputs: &[f32], nodes: &[usize]) -> Vec<Vec<f32>> {
    let numel = graph.input.numel();
    let parts: Vec<Vec<Vec<f32>>> = inputs
        .par_chunks(16 * numel)
        .map(|chunk| {
            let mut bufs = crate::grad::forward_all(graph, chunk, chunk.len() / numel);
            nodes
                .iter()
                .map(|&n| std::mem::take(&mut bufs[n]))
                .collect()
        })
        .collect();
    (0..nodes.len())
        .map(|k| parts.iter().flat_map(|p| p[k].iter().copied()).collect())
        .collect()
}

/// How a sequence node's mean removal value is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceMean {
    /// Each feature's mean over every example's positions up to its read position (the ones
    /// its metric can see; right padding after it is left out), the same at every position.
    Pooled,
    /// Each feature's mean at each position over the examples whose read position reaches it
    /// (0 where none does).
    PerPosition,
}

/// Mean removal values of a token model's sequence node (output `[C, H, T]`), one per element
/// of its output; `None` when the node is not a sequence of the model's `T` positions.
pub fn sequence_means(
    graph: &Graph,
    data: &EvalSet,
    activations: &[f32],
    node: usize,
    how: SequenceMean,
) -> Option<Vec<f32>> {
    let t_len = graph.tokens()?;
    let shape = graph.nodes[node].shape;
    let nshap_model::Shape::Image { w, .. } = shape else {
        return None;
    };
    if w != t_len {
        return None;
    }
    let numel = shape.numel();
    let rows = numel / t_len;
    let mut sums = vec![0.0f64; numel];
    let mut counts = vec![0usize; t_len];
    for (i, x) in activations.chunks_exact(numel).enumerate() {
        let read = data.example(i)[t_len] as usize;
        for t in 0..=read.min(t_len - 1) {
            counts[t] += 1;
            for r in 0..rows {
                sums[r * t_len + t] += f64::from(x[r * t_len + t]);
            }
        }
    }
    let mut out = vec![0.0f32; numel];
    match how {
        SequenceMean::PerPosition => {
            for (k, v) in out.iter_mut().enumerate() {
                let c = counts[k % t_len];
                if c > 0 {
                    *v = (sums[k] / c as f64) as f32;
                }
            }
        }
        SequenceMean::Pooled => {
            let total: usize = counts.iter().sum();
            for r in 0..rows {
                let mean = sums[r * t_len..(r + 1) * t_len].iter().sum::<f64>() / total as f64;
                out[r * t_len..(r + 1) * t_len].fill(mean as f32);
            }
        }
    }
    Some(out)
}

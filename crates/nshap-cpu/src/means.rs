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

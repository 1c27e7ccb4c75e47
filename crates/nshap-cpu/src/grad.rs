//! Reverse-mode differentiation of a [`Graph`] on the CPU: a forward pass that keeps every node's
//! output, and a backward pass from a cotangent at the logits to every node (and optionally the
//! input).
//!
//! Weights are constants: only gradients with respect to activations are computed. Every op's
//! vector-Jacobian product lives beside its forward in [`crate::ops`]. Gradients are *total*
//! derivatives through the whole downstream graph: a node read by several consumers (a residual
//! stem read by a conv and an `Add`) accumulates all their contributions, so the gradient at a node
//! equals what PyTorch autograd gives with `retain_grad()` on that node's output.

use crate::ops;
use nshap_model::{Graph, Source};

/// Run the unmasked network on `rows` examples (`input` holds `rows` examples row-major, each
/// `graph.input.numel()` values) and return every node's output, in node order: entry `i` holds
/// `rows * graph.nodes[i].shape.numel()` values, one example per row. The last entry is the logits.
pub fn forward_all(graph: &Graph, input: &[f32], rows: usize) -> Vec<Vec<f32>> {
    assert_eq!(
        input.len(),
        rows * graph.input.numel(),
        "forward_all: input holds {} values, {rows} rows of {} expected",
        input.len(),
        graph.input.numel()
    );
    let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let mut out = vec![0.0; rows * node.shape.numel()];
        let inputs: Vec<&[f32]> = node
            .inputs
            .iter()
            .map(|s| source_values(*s, input, &outputs))
            .collect();
        ops::run(graph, node, &inputs, rows, &mut out);
        outputs.push(out);
    }
    outputs
}

fn source_values<'a>(source: Source, input: &'a [f32], outputs: &'a [Vec<f32>]) -> &'a [f32] {
    match source {
        Source::Input => input,
        Source::Node(j) => &outputs[j],
    }
}

/// Gradients of `sum(seed * logits)` from [`backward`].
#[derive(Clone, Debug, Default)]
pub struct Gradients {
    /// With respect to the graph input (`rows * input.numel()` values); empty unless the backward
    /// pass was asked to go down to [`Source::Input`].
    pub input: Vec<f32>,
    /// With respect to each node's output (`rows * shape.numel()` values, laid out like the
    /// forward's outputs); empty for the nodes below `down_to`. A requested node that does not
    /// reach the output gets zeros.
    pub nodes: Vec<Vec<f32>>,
}

/// Backpropagate the cotangent `seed` (`rows * classes` values: one row per example, at the output
/// node) through the graph, given the forward's `outputs` (from [`forward_all`] on the same `input`
/// and `rows`).
///
/// Returns, for every node `i >= down_to` (all nodes and the input when `down_to` is
/// [`Source::Input`]), the vector-Jacobian product `d <seed, logits> / d output_i`, row by row:
/// since examples are independent, row `r` is the gradient of example `r`'s seeded logits with
/// respect to example `r`'s activations. Nodes below `down_to` are not visited, so asking only for
/// late nodes is cheap. Gradients accumulate over fan-out (a node read by several consumers).
pub fn backward(
    graph: &Graph,
    input: &[f32],
    outputs: &[Vec<f32>],
    rows: usize,
    seed: &[f32],
    down_to: Source,
) -> Gradients {
    let n = graph.nodes.len();
    assert_eq!(outputs.len(), n, "backward: one output per node expected");
    assert_eq!(
        seed.len(),
        rows * graph.num_classes(),
        "backward: the seed must hold rows x classes values"
    );
    let (lowest, want_input) = match down_to {
        Source::Input => (0, true),
        Source::Node(k) => (k.min(n), false),
    };
    let mut grads: Vec<Vec<f32>> = vec![Vec::new(); n];
    let mut grad_input: Vec<f32> = Vec::new();
    if n > 0 && lowest < n {
        grads[n - 1] = seed.to_vec();
    }
    for i in (lowest..n).rev() {
        let (below, rest) = grads.split_at_mut(i);
        let grad_out = &rest[0];
        if grad_out.is_empty() {
            continue; // does not reach the output: zero gradient, nothing to propagate
        }
        let node = &graph.nodes[i];
        let inputs: Vec<&[f32]> = node
            .inputs
            .iter()
            .map(|s| source_values(*s, input, outputs))
            .collect();
        for (k, &source) in node.inputs.iter().enumerate() {
            let target = match source {
                Source::Input if want_input => &mut grad_input,
                Source::Node(j) if j >= lowest => &mut below[j],
                _ => continue,
            };
            if target.is_empty() {
                *target = vec![0.0; rows * graph.shape_of(source).numel()];
            }
            ops::backward(graph, node, k, &inputs, &outputs[i], grad_out, rows, target);
        }
    }
    for (i, g) in grads.iter_mut().enumerate().skip(lowest) {
        if g.is_empty() {
            *g = vec![0.0; rows * graph.nodes[i].shape.numel()];
        }
    }
    if want_input && grad_input.is_empty() {
        grad_input = vec![0.0; rows * graph.input.numel()];
    }
    Gradients {
        input: grad_input,
        nodes: grads,
    }
}

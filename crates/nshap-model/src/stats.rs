//! Size and cost of a graph: parameters and FLOPs per example, for `nshap inspect` and benches.

use crate::graph::{Graph, Node, Op};

/// Learned parameters of a node, counted as PyTorch's `numel()` over `parameters()`:
/// weights and biases (when the spec named one),
/// batchnorm gamma and beta (running statistics are buffers, not parameters).
pub fn parameters(node: &Node) -> usize {
    if node.name == crate::build::PREPROCESS_NAME {
        // Input normalisation is not a learned parameter.
        return 0;
    }
    match &node.op {
        Op::Linear(l) => l.weight.len() + if l.has_bias { l.bias.len() } else { 0 },
        Op::Conv2d(c) => c.weight.len() + if c.has_bias { c.bias.len() } else { 0 },
        Op::BatchNorm(bn) => 2 * bn.scale.len(),
        Op::LayerNorm(ln) => ln.weight.len() + ln.bias.len(),
        Op::RmsNorm(n) => n.weight.len(),
        // A shared PReLU slope is expanded per channel at load; counted as stored here.
        Op::Prelu(w) | Op::Scale(w) => w.len(),
        // Position embeddings counted for the positions the model reads.
        Op::Embedding(e) => e.weight.len() + e.positions.as_ref().map_or(0, Vec::len),
        _ => 0,
    }
}

/// FLOPs of a node for one example, convention: 2 per multiply-add in conv/linear (bias adds not
/// counted), 1 per output element for batchnorm, activations, pooling windows' elements and adds.
pub fn flops(graph: &Graph, node: &Node) -> u64 {
    let out = node.shape.numel() as u64;
    match &node.op {
        Op::Linear(l) => 2 * (l.in_features * l.out_features) as u64,
        Op::Conv2d(c) => 2 * out * (c.in_channels / c.groups * c.kernel.0 * c.kernel.1) as u64,
        Op::MaxPool2d(p) | Op::AvgPool2d(p) => out * (p.kernel.0 * p.kernel.1) as u64,
        Op::GlobalAvgPool | Op::AdaptiveAvgPool2d => graph.shape_of(node.inputs[0]).numel() as u64,
        Op::BatchNorm(_) | Op::Activation(_) | Op::Prelu(_) | Op::Add | Op::Mul | Op::Scale(_) => {
            out
        }
        // Mean, variance, normalise and affine: about 5 per element.
        Op::LayerNorm(_) => 5 * out,
        Op::RmsNorm(_) => 4 * out,
        // q.k and p.v over the causal half: 2 multiply-adds per output element and key seen.
        // Query t sees t + 1 keys, (T + 1) / 2 on average, in q.k and in p.v.
        Op::Attention(_) => match node.shape {
            crate::shape::Shape::Image { w, .. } => 2 * out * (w as u64 + 1),
            _ => 0,
        },
        Op::Embedding(_) => out,
        Op::Flatten
        | Op::Identity
        | Op::Concat
        | Op::Slice { .. }
        | Op::ChannelShuffle { .. }
        | Op::MergeHeads
        | Op::SelectPosition => 0,
    }
}

/// Total FLOPs of a forward pass for one example.
pub fn total_flops(graph: &Graph) -> u64 {
    graph.nodes.iter().map(|n| flops(graph, n)).sum()
}

/// Total FLOPs in conv and linear layers only (the usual "2 x MACs" figure).
pub fn matmul_flops(graph: &Graph) -> u64 {
    graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Linear(_) | Op::Conv2d(_)))
        .map(|n| flops(graph, n))
        .sum()
}

/// Total parameters.
pub fn total_parameters(graph: &Graph) -> usize {
    graph.nodes.iter().map(parameters).sum()
}

/// Which nodes change with the coalition: the player nodes and everything downstream of them.
pub fn dependent_nodes(graph: &Graph, player_nodes: &[usize]) -> Vec<bool> {
    let mut dep = vec![false; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        dep[i] = player_nodes.contains(&i)
            || n.inputs
                .iter()
                .any(|s| matches!(s, crate::graph::Source::Node(j) if dep[*j]));
    }
    dep
}

/// FLOPs per example of the part shared by all coalitions, and per coalition-example of the
/// part that depends on the coalition.
pub fn split_flops(graph: &Graph, player_nodes: &[usize]) -> (u64, u64) {
    let dep = dependent_nodes(graph, player_nodes);
    graph
        .nodes
        .iter()
        .enumerate()
        .fold((0, 0), |(s, d), (i, n)| {
            if dep[i] {
                (s, d + flops(graph, n))
            } else {
                (s + flops(graph, n), d)
            }
        })
}

//! One file per op family. Every op works on a batch of `rows` examples laid out row-major,
//! one example's activation (`[C, H, W]` or `[F]`) per row.
//!
//! Row convention: input `k` may hold fewer rows than the output (a value shared by every
//! coalition, broadcast over them): output row `r` reads row `r % rows_k` of input `k`, where
//! `rows_k = inputs[k].len() / numel_k`. Only multi-input ops (`Add`, `Mul`, `Concat`) ever see
//! such an input: a single-input op in the dependent stage reads a dependent node. In the
//! backward pass the same rule holds for `grad_in`: a gradient buffer with fewer rows than the
//! output receives the sum over the output rows that read each of its rows.

pub mod channels;
pub mod conv;
pub mod elementwise;
pub mod fastmath;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod sequence;
pub mod winograd;

use nshap_model::{Graph, Node, Op};

/// Row `r` of `buf` (rows of `numel` values), wrapping around when `buf` holds fewer rows.
#[inline]
pub(crate) fn row(buf: &[f32], numel: usize, r: usize) -> &[f32] {
    let r = r % (buf.len() / numel).max(1);
    &buf[r * numel..(r + 1) * numel]
}

/// Mutable [`row`].
#[inline]
pub(crate) fn row_mut(buf: &mut [f32], numel: usize, r: usize) -> &mut [f32] {
    let r = r % (buf.len() / numel).max(1);
    &mut buf[r * numel..(r + 1) * numel]
}

/// Compute `node` for `rows` rows. `inputs[k]` holds `rows` rows of the node's k-th input, or
/// fewer (see the module's row convention).
pub fn run(graph: &Graph, node: &Node, inputs: &[&[f32]], rows: usize, out: &mut [f32]) {
    let in_shape = graph.shape_of(node.inputs[0]);
    debug_assert_eq!(out.len(), rows * node.shape.numel());
    match &node.op {
        Op::Linear(l) => linear::linear(l, inputs[0], rows, out),
        Op::Conv2d(c) => conv::conv2d(c, in_shape, node.shape, inputs[0], rows, out),
        Op::BatchNorm(bn) => {
            elementwise::affine(&bn.scale, &bn.shift, in_shape.spatial(), inputs[0], out)
        }
        Op::Activation(a) => elementwise::activation(*a, inputs[0], out),
        Op::Prelu(slopes) => elementwise::prelu(slopes, in_shape.spatial(), inputs[0], out),
        Op::Scale(w) => elementwise::scale(w, in_shape.spatial(), inputs[0], out),
        Op::MaxPool2d(p) => pool::max_pool(p, in_shape, node.shape, inputs[0], rows, out),
        Op::AvgPool2d(p) => pool::avg_pool(p, in_shape, node.shape, inputs[0], rows, out),
        Op::GlobalAvgPool => pool::global_avg_pool(in_shape, inputs[0], out),
        Op::AdaptiveAvgPool2d => {
            pool::adaptive_avg_pool(in_shape, node.shape, inputs[0], rows, out)
        }
        Op::Flatten | Op::Identity => out.copy_from_slice(inputs[0]),
        Op::Add => elementwise::add(inputs[0], inputs[1], node.shape.numel(), out),
        Op::Mul => {
            let b_shape = graph.shape_of(node.inputs[1]);
            elementwise::mul(
                [inputs[0], inputs[1]],
                [in_shape.spatial(), b_shape.spatial()],
                node.shape,
                out,
            )
        }
        Op::Concat => {
            let numels: Vec<usize> = node
                .inputs
                .iter()
                .map(|&s| graph.shape_of(s).numel())
                .collect();
            channels::concat(inputs, &numels, out)
        }
        Op::Slice { start, .. } => {
            channels::slice(*start, in_shape, node.shape, inputs[0], out);
        }
        Op::ChannelShuffle { groups } => {
            channels::channel_shuffle(*groups, in_shape, inputs[0], out)
        }
        Op::LayerNorm(ln) => norm::layer_norm(ln, in_shape, inputs[0], out),
        Op::RmsNorm(n) => norm::rms_norm(n, in_shape, inputs[0], out),
        Op::Embedding(e) => sequence::embedding(e, inputs[0], rows, out),
        Op::Attention(a) => sequence::attention(a, inputs, positions(node.shape), rows, out),
        Op::MergeHeads => out.copy_from_slice(inputs[0]),
        Op::SelectPosition => {
            let t = positions(in_shape);
            sequence::select_position(inputs[0], inputs[1], node.shape.numel(), t, rows, out)
        }
    }
}

/// `T` of a `[channels, ..., T]` sequence.
fn positions(shape: nshap_model::Shape) -> usize {
    match shape {
        nshap_model::Shape::Image { w, .. } => w,
        nshap_model::Shape::Features(_) => 1,
    }
}

/// Vector-Jacobian product of `node` with respect to its `k`-th input, for `rows` rows:
/// `grad_in += J_k^T grad_out`, accumulated (so a node read by several consumers, or twice by one
/// `Add`/`Mul`/`Concat`, sums its contributions). `inputs` and `output` are the forward's values
/// of this node (ReLU, max pooling, layer norm, `Mul` and the smooth activations read them);
/// weights are constants.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    graph: &Graph,
    node: &Node,
    k: usize,
    inputs: &[&[f32]],
    output: &[f32],
    grad_out: &[f32],
    rows: usize,
    grad_in: &mut [f32],
) {
    let in_shape = graph.shape_of(node.inputs[k]);
    debug_assert_eq!(grad_out.len(), rows * node.shape.numel());
    match &node.op {
        Op::Linear(l) => linear::linear_backward(l, grad_out, rows, grad_in),
        Op::Conv2d(c) => conv::conv2d_backward(c, in_shape, node.shape, grad_out, rows, grad_in),
        Op::BatchNorm(bn) => {
            elementwise::affine_backward(&bn.scale, in_shape.spatial(), grad_out, grad_in)
        }
        Op::Scale(w) => elementwise::affine_backward(w, in_shape.spatial(), grad_out, grad_in),
        Op::Activation(a) => {
            elementwise::activation_backward(*a, inputs[0], output, grad_out, grad_in)
        }
        Op::Prelu(slopes) => {
            elementwise::prelu_backward(slopes, in_shape.spatial(), inputs[0], grad_out, grad_in)
        }
        Op::MaxPool2d(p) => {
            pool::max_pool_backward(p, in_shape, node.shape, inputs[0], grad_out, rows, grad_in)
        }
        Op::AvgPool2d(p) => {
            pool::avg_pool_backward(p, in_shape, node.shape, grad_out, rows, grad_in)
        }
        Op::GlobalAvgPool => pool::global_avg_pool_backward(in_shape, grad_out, grad_in),
        Op::AdaptiveAvgPool2d => {
            pool::adaptive_avg_pool_backward(in_shape, node.shape, grad_out, rows, grad_in)
        }
        Op::Flatten | Op::Identity | Op::Add => {
            elementwise::add_backward(grad_out, in_shape.numel(), grad_in)
        }
        Op::Mul => {
            let other = graph.shape_of(node.inputs[1 - k]);
            elementwise::mul_backward(
                inputs[1 - k],
                [in_shape.spatial(), other.spatial()],
                node.shape,
                grad_out,
                grad_in,
            )
        }
        Op::Concat => {
            let offset: usize = node.inputs[..k]
                .iter()
                .map(|&s| graph.shape_of(s).numel())
                .sum();
            channels::concat_backward(
                offset,
                in_shape.numel(),
                node.shape.numel(),
                grad_out,
                grad_in,
            )
        }
        Op::Slice { start, .. } => {
            channels::slice_backward(*start, in_shape, node.shape, grad_out, grad_in)
        }
        Op::ChannelShuffle { groups } => {
            channels::channel_shuffle_backward(*groups, in_shape, grad_out, grad_in)
        }
        Op::LayerNorm(ln) => norm::layer_norm_backward(ln, in_shape, inputs[0], grad_out, grad_in),
        Op::RmsNorm(n) => norm::rms_norm_backward(n, in_shape, inputs[0], grad_out, grad_in),
        Op::Attention(a) => {
            let t = positions(node.shape);
            sequence::attention_backward(a, inputs, k, t, grad_out, grad_in)
        }
        Op::MergeHeads => elementwise::add_backward(grad_out, in_shape.numel(), grad_in),
        Op::SelectPosition if k == 0 => {
            let t = positions(in_shape);
            sequence::select_position_backward(inputs[1], node.shape.numel(), t, grad_out, grad_in)
        }
        // Token ids and the read position are not differentiable.
        Op::SelectPosition | Op::Embedding(_) => {}
    }
}

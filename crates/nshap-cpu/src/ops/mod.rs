//! One file per op family. Every op works on a batch of `rows` examples laid out row-major,
//! one example's activation (`[C, H, W]` or `[F]`) per row.

pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod pool;

use nshap_model::{Graph, Node, Op};

/// Compute `node` for `rows` rows. `inputs[k]` holds `rows` rows of the node's k-th input.
pub fn run(graph: &Graph, node: &Node, inputs: &[&[f32]], rows: usize, out: &mut [f32]) {
    let in_shape = graph.shape_of(node.inputs[0]);
    match &node.op {
        Op::Linear(l) => linear::linear(l, inputs[0], rows, out),
        Op::Conv2d(c) => conv::conv2d(c, in_shape, node.shape, inputs[0], rows, out),
        Op::BatchNorm(bn) => {
            elementwise::affine(&bn.scale, &bn.shift, in_shape.spatial(), inputs[0], out)
        }
        Op::Activation(a) => elementwise::activation(*a, inputs[0], out),
        Op::MaxPool2d(p) => pool::max_pool(p, in_shape, node.shape, inputs[0], rows, out),
        Op::AvgPool2d(p) => pool::avg_pool(p, in_shape, node.shape, inputs[0], rows, out),
        Op::GlobalAvgPool => pool::global_avg_pool(in_shape, inputs[0], out),
        Op::Flatten | Op::Identity => out.copy_from_slice(inputs[0]),
        Op::Add => elementwise::add(inputs[0], inputs[1], out),
    }
}

/// Vector-Jacobian product of `node` with respect to its `k`-th input, for `rows` rows:
/// `grad_in += J_k^T grad_out`, accumulated (so a node read by several consumers, or twice by one
/// `Add`, sums its contributions). `inputs` and `output` are the forward's values of this node
/// (ReLU, max pooling and the smooth activations read them); weights are constants.
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
    match &node.op {
        Op::Linear(l) => linear::linear_backward(l, grad_out, rows, grad_in),
        Op::Conv2d(c) => conv::conv2d_backward(c, in_shape, node.shape, grad_out, rows, grad_in),
        Op::BatchNorm(bn) => {
            elementwise::affine_backward(&bn.scale, in_shape.spatial(), grad_out, grad_in)
        }
        Op::Activation(a) => {
            elementwise::activation_backward(*a, inputs[0], output, grad_out, grad_in)
        }
        Op::MaxPool2d(p) => {
            pool::max_pool_backward(p, in_shape, node.shape, inputs[0], grad_out, rows, grad_in)
        }
        Op::AvgPool2d(p) => {
            pool::avg_pool_backward(p, in_shape, node.shape, grad_out, rows, grad_in)
        }
        Op::GlobalAvgPool => pool::global_avg_pool_backward(in_shape, grad_out, grad_in),
        Op::Flatten | Op::Identity | Op::Add => elementwise::add_backward(grad_out, grad_in),
    }
}

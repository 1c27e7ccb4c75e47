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

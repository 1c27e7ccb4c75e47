//! A plain forward pass (straightforward loops, no cleverness) with masking, to check kernels.
#![allow(clippy::needless_range_loop)] // plain index loops are the point of a reference

use nshap_model::{Graph, MaskBatch, Op, Players, Shape, Source};

fn chw(shape: Shape) -> (usize, usize, usize) {
    match shape {
        Shape::Features(f) => (f, 1, 1),
        Shape::Image { c, h, w } => (c, h, w),
    }
}

/// Output of every node for one example under coalition `row` of `masks`; returns the last.
pub fn forward(
    graph: &Graph,
    players: &Players,
    x: &[f32],
    masks: &MaskBatch,
    row: usize,
) -> Vec<f32> {
    let mut values: Vec<Vec<f32>> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let input = |k: usize| -> &[f32] {
            match node.inputs[k] {
                Source::Input => x,
                Source::Node(j) => &values[j],
            }
        };
        let in_shape = graph.shape_of(node.inputs[0]);
        let (ci, hi, wi) = chw(in_shape);
        let (co, ho, wo) = chw(node.shape);
        let mut out = vec![0.0f32; node.shape.numel()];
        match &node.op {
            Op::Linear(l) => {
                let a = input(0);
                for o in 0..l.out_features {
                    let mut s = l.bias[o] as f64;
                    for k in 0..l.in_features {
                        s += (l.weight[o * l.in_features + k] * a[k]) as f64;
                    }
                    out[o] = s as f32;
                }
            }
            Op::Conv2d(c) => {
                let a = input(0);
                let (cig, cog) = (c.in_channels / c.groups, c.out_channels / c.groups);
                for o in 0..co {
                    let g = o / cog;
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let mut s = c.bias[o] as f64;
                            for icg in 0..cig {
                                let ic = g * cig + icg;
                                for ky in 0..c.kernel.0 {
                                    for kx in 0..c.kernel.1 {
                                        let iy = (oy * c.stride.0 + ky * c.dilation.0) as isize
                                            - c.padding.0 as isize;
                                        let ix = (ox * c.stride.1 + kx * c.dilation.1) as isize
                                            - c.padding.1 as isize;
                                        if iy < 0
                                            || ix < 0
                                            || iy >= hi as isize
                                            || ix >= wi as isize
                                        {
                                            continue;
                                        }
                                        let w = c.weight
                                            [((o * cig + icg) * c.kernel.0 + ky) * c.kernel.1 + kx];
                                        s += (w * a[(ic * hi + iy as usize) * wi + ix as usize])
                                            as f64;
                                    }
                                }
                            }
                            out[(o * ho + oy) * wo + ox] = s as f32;
                        }
                    }
                }
            }
            Op::BatchNorm(bn) => {
                let a = input(0);
                let hw = ho * wo;
                for (k, v) in out.iter_mut().enumerate() {
                    let c = k / hw;
                    *v = bn.scale[c] * a[k] + bn.shift[c];
                }
            }
            Op::Activation(act) => {
                for (v, &a) in out.iter_mut().zip(input(0)) {
                    *v = act.apply(a);
                }
            }
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                let a = input(0);
                let is_max = matches!(node.op, Op::MaxPool2d(_));
                for c in 0..co {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let mut best = f32::NEG_INFINITY;
                            let mut sum = 0.0f32;
                            for ky in 0..p.kernel.0 {
                                for kx in 0..p.kernel.1 {
                                    let iy = (oy * p.stride.0 + ky) as isize - p.padding.0 as isize;
                                    let ix = (ox * p.stride.1 + kx) as isize - p.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy >= hi as isize || ix >= wi as isize {
                                        continue;
                                    }
                                    let v = a[(c * hi + iy as usize) * wi + ix as usize];
                                    best = best.max(v);
                                    sum += v;
                                }
                            }
                            out[(c * ho + oy) * wo + ox] = if is_max {
                                best
                            } else {
                                sum / (p.kernel.0 * p.kernel.1) as f32
                            };
                        }
                    }
                }
            }
            Op::GlobalAvgPool => {
                let a = input(0);
                for c in 0..ci {
                    out[c] =
                        a[c * hi * wi..(c + 1) * hi * wi].iter().sum::<f32>() / (hi * wi) as f32;
                }
            }
            Op::Flatten | Op::Identity => out.copy_from_slice(input(0)),
            Op::Add => {
                let (a, b) = (input(0), input(1));
                for k in 0..out.len() {
                    out[k] = a[k] + b[k];
                }
            }
        }
        if let Some(layer) = players.layer_of_node(i) {
            let offset = players.offset(layer);
            let hw = node.shape.spatial();
            for (c, &base) in players.layers()[layer].baseline.iter().enumerate() {
                if !masks.contains(row, offset + c) {
                    out[c * hw..(c + 1) * hw].fill(base);
                }
            }
        }
        values.push(out);
    }
    values.pop().unwrap_or_default()
}

/// Logits `[M, B, classes]` for every coalition and example of `inputs`.
pub fn logits(graph: &Graph, players: &Players, inputs: &[f32], masks: &MaskBatch) -> Vec<f32> {
    let n = graph.input.numel();
    let mut out = Vec::new();
    for m in 0..masks.len() {
        for x in inputs.chunks_exact(n) {
            out.extend(forward(graph, players, x, masks, m));
        }
    }
    out
}

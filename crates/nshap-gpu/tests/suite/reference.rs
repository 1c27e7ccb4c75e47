//! A plain forward pass (straightforward loops, no cleverness) with masking, to check kernels.
#![allow(clippy::needless_range_loop)] // plain index loops are the point of a reference

use nshap_model::{Activation, Graph, MaskBatch, Op, Players, Shape, Source};

fn chw(shape: Shape) -> (usize, usize, usize) {
    match shape {
        Shape::Features(f) => (f, 1, 1),
        Shape::Image { c, h, w } => (c, h, w),
    }
}

/// One activation value: the older four from `Activation::apply` (the model's reference), the
/// newer ones written out here from PyTorch's definitions, in f64.
pub fn activation(act: Activation, x: f32) -> f32 {
    let v = x as f64;
    let relu6 = |t: f64| t.clamp(0.0, 6.0);
    (match act {
        Activation::Relu | Activation::Gelu | Activation::Sigmoid | Activation::Tanh => {
            return act.apply(x)
        }
        Activation::Silu => v / (1.0 + (-v).exp()),
        Activation::GeluTanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
            0.5 * v * (1.0 + u.tanh())
        }
        Activation::Hardswish => v * relu6(v + 3.0) / 6.0,
        Activation::Hardsigmoid => relu6(v + 3.0) / 6.0,
        Activation::HardTanh { min, max } => v.max(min as f64).min(max as f64),
        Activation::LeakyRelu { slope } => {
            if v > 0.0 {
                v
            } else {
                slope as f64 * v
            }
        }
        Activation::Elu { alpha } => {
            if v > 0.0 {
                v
            } else {
                alpha as f64 * v.exp_m1()
            }
        }
    }) as f32
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
                    *v = activation(*act, a);
                }
            }
            Op::Prelu(slope) => {
                let a = input(0);
                let hw = ho * wo;
                for (k, v) in out.iter_mut().enumerate() {
                    *v = if a[k] > 0.0 {
                        a[k]
                    } else {
                        slope[k / hw] * a[k]
                    };
                }
            }
            Op::Scale(w) => {
                let a = input(0);
                let hw = ho * wo;
                for (k, v) in out.iter_mut().enumerate() {
                    *v = a[k] * w[k / hw];
                }
            }
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                let a = input(0);
                let is_max = matches!(node.op, Op::MaxPool2d(_));
                // Taps of window o along an axis: o*s - p + k*d for k < kernel, inside [0, n).
                let taps = |o: usize, k: usize, s: usize, pad: usize, d: usize, n: usize| {
                    (0..k)
                        .map(move |t| (o * s + t * d) as isize - pad as isize)
                        .filter(move |&i| i >= 0 && i < n as isize)
                        .map(|i| i as usize)
                };
                // The window clipped to the padded input [-p, n + p) (average: dilation 1).
                let padded = |o: usize, k: usize, s: usize, pad: usize, n: usize| {
                    let start = (o * s) as isize - pad as isize;
                    let end = (start + k as isize).min((n + pad) as isize);
                    (end - start) as usize
                };
                for c in 0..co {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let mut best = f32::NEG_INFINITY;
                            let mut sum = 0.0f64;
                            let mut count = 0usize;
                            for iy in
                                taps(oy, p.kernel.0, p.stride.0, p.padding.0, p.dilation.0, hi)
                            {
                                for ix in
                                    taps(ox, p.kernel.1, p.stride.1, p.padding.1, p.dilation.1, wi)
                                {
                                    let v = a[(c * hi + iy) * wi + ix];
                                    best = best.max(v);
                                    sum += v as f64;
                                    count += 1;
                                }
                            }
                            assert!(count > 0, "{}: empty pooling window", node.name);
                            let divisor = if p.count_include_pad {
                                padded(oy, p.kernel.0, p.stride.0, p.padding.0, hi)
                                    * padded(ox, p.kernel.1, p.stride.1, p.padding.1, wi)
                            } else {
                                count
                            };
                            out[(c * ho + oy) * wo + ox] = if is_max {
                                best
                            } else {
                                (sum / divisor as f64) as f32
                            };
                        }
                    }
                }
            }
            Op::AdaptiveAvgPool2d => {
                let a = input(0);
                // floor(o * n / out) .. ceil((o + 1) * n / out)
                let window = |o: usize, n: usize, m: usize| (o * n / m, ((o + 1) * n).div_ceil(m));
                for c in 0..co {
                    for oy in 0..ho {
                        let (y0, y1) = window(oy, hi, ho);
                        for ox in 0..wo {
                            let (x0, x1) = window(ox, wi, wo);
                            let mut sum = 0.0f64;
                            for iy in y0..y1 {
                                for ix in x0..x1 {
                                    sum += a[(c * hi + iy) * wi + ix] as f64;
                                }
                            }
                            out[(c * ho + oy) * wo + ox] =
                                (sum / ((y1 - y0) * (x1 - x0)) as f64) as f32;
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
            Op::Mul => {
                let (a, b) = (input(0), input(1));
                let hw = ho * wo;
                // An operand with one value per channel ([C, 1, 1] or [C]) is read at its channel.
                let at = |v: &[f32], k: usize| if v.len() == co { v[k / hw] } else { v[k] };
                for k in 0..out.len() {
                    out[k] = at(a, k) * at(b, k);
                }
            }
            Op::Concat => {
                let mut at = 0;
                for k in 0..node.inputs.len() {
                    let a = input(k);
                    out[at..at + a.len()].copy_from_slice(a);
                    at += a.len();
                }
                assert_eq!(at, out.len(), "{}: concat sizes", node.name);
            }
            Op::Slice { start, end } => {
                let hw = ho * wo;
                out.copy_from_slice(&input(0)[start * hw..end * hw]);
            }
            Op::ChannelShuffle { groups } => {
                // Output channel a * groups + g is input channel g * (C / groups) + a.
                let (a, hw, per) = (input(0), ho * wo, ci / groups);
                for g in 0..*groups {
                    for j in 0..per {
                        let (dst, src) = (j * groups + g, g * per + j);
                        out[dst * hw..(dst + 1) * hw].copy_from_slice(&a[src * hw..(src + 1) * hw]);
                    }
                }
            }
            Op::MergeHeads => out.copy_from_slice(input(0)),
            Op::Embedding(_) | Op::Attention(_) | Op::SelectPosition | Op::RmsNorm(_) => {
                panic!("the GPU backend has no kernels for language-model ops")
            }
            Op::LayerNorm(ln) => {
                let (a, hw) = (input(0), ho * wo);
                for s in 0..hw {
                    let mean = (0..co).map(|c| a[c * hw + s] as f64).sum::<f64>() / co as f64;
                    let var = (0..co)
                        .map(|c| (a[c * hw + s] as f64 - mean).powi(2))
                        .sum::<f64>()
                        / co as f64;
                    let inv = 1.0 / (var + ln.eps as f64).sqrt();
                    for c in 0..co {
                        let v = (a[c * hw + s] as f64 - mean) * inv;
                        out[c * hw + s] = (v * ln.weight[c] as f64 + ln.bias[c] as f64) as f32;
                    }
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

//! Per-dispatch parameters (the `Params` struct of `shaders/params.wgsl`) and workgroup counts.

use crate::plan::{Plan, Step, StepOp, TensorId};
use nshap_model::{Activation, Graph, Metric, Op, Shape};

/// Mirror of the WGSL `Params` struct: 36 four-byte words (u32, and f32 activation
/// parameters), 144 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub rows: u32,
    pub in_rows0: u32,
    pub in_rows1: u32,
    pub grid_x: u32,
    pub c_in: u32,
    pub h_in: u32,
    pub w_in: u32,
    pub c_out: u32,
    pub h_out: u32,
    pub w_out: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub s_h: u32,
    pub s_w: u32,
    pub p_h: u32,
    pub p_w: u32,
    pub d_h: u32,
    pub d_w: u32,
    pub groups: u32,
    pub act: u32,
    pub mask_offset: u32,
    pub mask_words: u32,
    pub mask_row0: u32,
    pub rows_per_coalition: u32,
    pub mode: u32,
    pub class_index: u32,
    pub out_offset: u32,
    pub label_offset: u32,
    pub total: u32,
    /// Fused activation parameters (hardtanh min and max, leaky_relu slope, elu alpha).
    pub act_a: f32,
    pub act_b: f32,
    /// channel_copy: first input channel read (the output channel offset is `out_offset`).
    pub in_channel0: u32,
    /// linear: features per output row (`c_out` is this part's width, `out_offset` its first).
    pub out_stride: u32,
    /// conv2d: how input reads are transformed (`plan::Read::mode_and_offset`); table_sum: unused.
    pub in_mode: u32,
    /// conv2d modes 1-3 and table_sum: the global index of the input layer's first player.
    pub in_mask_offset: u32,
    pub _pad2: u32,
}

const NO_MASK: u32 = u32::MAX;
const MAX_GROUPS: u64 = 65_535;
/// Coalitions per thread of table_sum.wgsl (its `TILE`).
const TABLE_TILE: u64 = 16;

/// The shape parameters of one conv-kernel launch.
struct ConvGeometry {
    kernel: (u32, u32),
    stride: (u32, u32),
    padding: (u32, u32),
    dilation: (u32, u32),
    groups: u32,
    c_out: u32,
}

fn conv_geometry(c: &nshap_model::Conv2d, groups: usize, c_out: usize) -> ConvGeometry {
    let pair = |(a, b): (usize, usize)| (a as u32, b as u32);
    ConvGeometry {
        kernel: pair(c.kernel),
        stride: pair(c.stride),
        padding: pair(c.padding),
        dilation: pair(c.dilation),
        groups: groups as u32,
        c_out: c_out as u32,
    }
}

/// Set a conv launch's shape parameters; its workgroup counts (conv2d.wgsl's grid).
fn conv_grid(p: &mut Params, g: ConvGeometry, rows: u32) -> [u32; 3] {
    (p.k_h, p.k_w) = g.kernel;
    (p.s_h, p.s_w) = g.stride;
    (p.p_h, p.p_w) = g.padding;
    (p.d_h, p.d_w) = g.dilation;
    p.groups = g.groups;
    p.c_out = g.c_out;
    let tiles = (u64::from(rows) * u64::from(p.h_out * p.w_out))
        .div_ceil(256)
        .max(1);
    let x = tiles.min(MAX_GROUPS);
    p.grid_x = x as u32;
    let oc_tiles = (g.c_out / g.groups).div_ceil(16);
    [x as u32, g.groups * oc_tiles, tiles.div_ceil(x) as u32]
}

/// One kernel launch: its parameters and workgroup counts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dispatch {
    pub params: Params,
    pub workgroups: [u32; 3],
}

/// The rows of one chunk: `examples` examples (the shared rows) and `coalitions` coalitions
/// starting at coalition `mask_row0` of the request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkRows {
    pub examples: u32,
    pub coalitions: u32,
    pub mask_row0: u32,
    pub mask_words: u32,
}

impl ChunkRows {
    fn of(&self, plan: &Plan, t: TensorId) -> u32 {
        if plan.tensors[t].shared {
            self.examples
        } else {
            self.examples * self.coalitions
        }
    }
}

fn dims(shape: Shape) -> (u32, u32, u32) {
    match shape {
        Shape::Features(f) => (f as u32, 1, 1),
        Shape::Image { c, h, w } => (c as u32, h as u32, w as u32),
    }
}

/// The epilogue's activation code and its two parameters (see `activate` in epilogue.wgsl).
fn act_code(act: Option<Activation>) -> (u32, f32, f32) {
    match act {
        None => (0, 0.0, 0.0),
        Some(Activation::Relu) => (1, 0.0, 0.0),
        Some(Activation::Gelu) => (2, 0.0, 0.0),
        Some(Activation::Sigmoid) => (3, 0.0, 0.0),
        Some(Activation::Tanh) => (4, 0.0, 0.0),
        Some(Activation::Silu) => (5, 0.0, 0.0),
        Some(Activation::Hardswish) => (6, 0.0, 0.0),
        Some(Activation::Hardsigmoid) => (7, 0.0, 0.0),
        Some(Activation::HardTanh { min, max }) => (8, min, max),
        Some(Activation::LeakyRelu { slope }) => (9, slope, 0.0),
        Some(Activation::Elu { alpha }) => (10, alpha, 0.0),
        Some(Activation::GeluTanh) => (11, 0.0, 0.0),
    }
}

/// Workgroup counts for `count` workgroups of a flat kernel, as a 2-D grid within 65,535 a side.
fn flat_grid(count: u64) -> (u32, [u32; 3]) {
    let count = count.max(1);
    let x = count.min(MAX_GROUPS);
    (x as u32, [x as u32, count.div_ceil(x) as u32, 1])
}

/// The dispatch of `step` for one chunk.
pub(crate) fn step_dispatch(graph: &Graph, plan: &Plan, step: &Step, chunk: ChunkRows) -> Dispatch {
    let out = &plan.tensors[step.output];
    let rows = chunk.of(plan, step.output);
    let (c_in, h_in, w_in) = dims(plan.tensors[step.inputs[0]].shape);
    let (c_out, h_out, w_out) = dims(out.shape);
    let (act, act_a, act_b) = act_code(step.act);
    let (in_mode, in_mask_offset) = step.read.mode_and_offset();
    let mut p = Params {
        in_mode,
        in_mask_offset,
        rows,
        in_rows0: chunk.of(plan, step.inputs[0]),
        in_rows1: step.inputs.get(1).map_or(1, |&t| chunk.of(plan, t)),
        c_in,
        h_in,
        w_in,
        c_out,
        h_out,
        w_out,
        k_h: 1,
        k_w: 1,
        s_h: 1,
        s_w: 1,
        d_h: 1,
        d_w: 1,
        groups: 1,
        act,
        act_a,
        act_b,
        mask_offset: step.mask.map_or(NO_MASK, |m| m as u32),
        mask_words: chunk.mask_words,
        mask_row0: chunk.mask_row0,
        rows_per_coalition: chunk.examples.max(1),
        total: rows * out.shape.numel() as u32,
        ..Params::default()
    };
    let flat = |p: &mut Params| {
        let (grid_x, workgroups) = flat_grid(u64::from(p.total).div_ceil(256));
        p.grid_x = grid_x;
        workgroups
    };
    let workgroups = match &step.op {
        StepOp::Linear { node, outputs } => {
            let Op::Linear(l) = &graph.nodes[*node].op else {
                unreachable!("plan maps linear nodes")
            };
            p.c_in = l.in_features as u32;
            p.c_out = outputs.len() as u32;
            p.out_offset = outputs.start as u32;
            p.out_stride = l.out_features as u32;
            [p.c_out.div_ceil(64), rows.div_ceil(64), 1]
        }
        StepOp::Conv2d { node } => {
            let Op::Conv2d(c) = &graph.nodes[*node].op else {
                unreachable!("plan maps conv nodes")
            };
            conv_grid(&mut p, conv_geometry(c, c.groups, c.out_channels), rows)
        }
        StepOp::TableBuild { node } | StepOp::TableBase { node } => {
            let build = matches!(step.op, StepOp::TableBuild { .. });
            let (c_out, h_out, w_out) = dims(graph.nodes[*node].shape);
            (p.h_out, p.w_out) = (h_out, w_out);
            let geometry = match &graph.nodes[*node].op {
                // One group per input channel: group c's outputs are T[c] (build).
                Op::Conv2d(c) if build => conv_geometry(
                    c,
                    c.in_channels,
                    c.in_channels * (c.out_channels / c.groups),
                ),
                Op::Conv2d(c) => conv_geometry(c, c.groups, c.out_channels),
                // A linear layer after a flatten of [C, H, W]: a conv whose kernel is the image,
                // with one output position.
                Op::Linear(l) => ConvGeometry {
                    kernel: (p.h_in, p.w_in),
                    stride: (1, 1),
                    padding: (0, 0),
                    dilation: (1, 1),
                    groups: if build { p.c_in } else { 1 },
                    c_out: if build {
                        p.c_in * l.out_features as u32
                    } else {
                        c_out
                    },
                },
                _ => unreachable!("tables are planned for conv and linear nodes"),
            };
            conv_grid(&mut p, geometry, rows)
        }
        StepOp::TableSum {
            channels,
            groups,
            block,
            ..
        } => {
            p.c_in = *channels as u32;
            p.groups = *groups as u32;
            p.out_stride = *block as u32;
            let j_tiles = u64::from(p.c_out * p.h_out * p.w_out).div_ceil(64);
            let examples = u64::from(chunk.examples.max(1));
            let tiles = u64::from(chunk.coalitions).div_ceil(TABLE_TILE);
            let (grid_x, workgroups) = flat_grid(j_tiles * examples * tiles);
            p.grid_x = grid_x;
            workgroups
        }
        StepOp::MaxPool(pool) | StepOp::AvgPool(pool) => {
            (p.k_h, p.k_w) = (pool.kernel.0 as u32, pool.kernel.1 as u32);
            (p.s_h, p.s_w) = (pool.stride.0 as u32, pool.stride.1 as u32);
            (p.p_h, p.p_w) = (pool.padding.0 as u32, pool.padding.1 as u32);
            (p.d_h, p.d_w) = (pool.dilation.0 as u32, pool.dilation.1 as u32);
            p.mode = match step.op {
                StepOp::MaxPool(_) => 0,
                _ if pool.count_include_pad => 1,
                _ => 2,
            };
            flat(&mut p)
        }
        StepOp::AdaptiveAvgPool => {
            p.mode = 3;
            flat(&mut p)
        }
        StepOp::Affine { node } => {
            p.mode = u32::from(matches!(graph.nodes[*node].op, Op::Prelu(_)));
            flat(&mut p)
        }
        StepOp::Mul { per_channel } => {
            p.mode = u32::from(per_channel[0]) | u32::from(per_channel[1]) << 1;
            flat(&mut p)
        }
        StepOp::ChannelCopy {
            in_channels,
            in_channel,
            out_channel,
            channels,
            groups,
        } => {
            // The graph's channel count: the input tensor may be a flattened [C, H, W] alias.
            p.c_in = *in_channels as u32;
            debug_assert_eq!(*channels as u32, p.c_in.min(p.c_out));
            p.in_channel0 = *in_channel as u32;
            p.out_offset = *out_channel as u32;
            p.groups = *groups as u32;
            p.total = rows * (*channels * out.shape.spatial()) as u32;
            flat(&mut p)
        }
        StepOp::LayerNorm { .. } => {
            // One thread per (row, position).
            p.total = rows * out.shape.spatial() as u32;
            flat(&mut p)
        }
        StepOp::Map | StepOp::Add | StepOp::GlobalAvgPool => flat(&mut p),
    };
    Dispatch {
        params: p,
        workgroups,
    }
}

/// The metric reduction of one chunk: sums land at `results[out_offset + m]`.
pub(crate) fn metric_dispatch(
    plan: &Plan,
    metric: &Metric,
    classes: usize,
    chunk: ChunkRows,
    out_offset: u32,
    label_offset: u32,
) -> Dispatch {
    let (mode, class_index) = match metric {
        Metric::NegLoss => (1, 0),
        Metric::ClassAccuracy(c) => (2, *c),
        _ => (0, 0),
    };
    let (grid_x, workgroups) = flat_grid(u64::from(chunk.coalitions));
    let params = Params {
        rows: chunk.coalitions,
        in_rows0: chunk.of(plan, plan.logits),
        grid_x,
        c_out: classes as u32,
        rows_per_coalition: chunk.examples,
        mode,
        class_index,
        out_offset,
        label_offset,
        mask_offset: NO_MASK,
        ..Params::default()
    };
    Dispatch { params, workgroups }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_mirror_the_wgsl_struct() {
        // Same size, and every WGSL member at the offset and with the kind of the Rust field.
        macro_rules! fields {
            ($($f:ident: $float:expr),* $(,)?) => {
                vec![$((stringify!($f), std::mem::offset_of!(Params, $f) as u32, $float)),*]
            };
        }
        let rust = fields![
            rows: false, in_rows0: false, in_rows1: false, grid_x: false, c_in: false,
            h_in: false, w_in: false, c_out: false, h_out: false, w_out: false, k_h: false,
            k_w: false, s_h: false, s_w: false, p_h: false, p_w: false, d_h: false, d_w: false,
            groups: false, act: false, mask_offset: false, mask_words: false, mask_row0: false,
            rows_per_coalition: false, mode: false, class_index: false, out_offset: false,
            label_offset: false, total: false, act_a: true, act_b: true, in_channel0: false,
            out_stride: false, in_mode: false, in_mask_offset: false, _pad2: false,
        ];
        assert_eq!(std::mem::size_of::<Params>(), 144);
        let source = include_str!("../../../shaders/params.wgsl");
        let module = naga::front::wgsl::parse_str(source).expect("params.wgsl parses");
        let ty = module
            .types
            .iter()
            .map(|(_, t)| t)
            .find(|t| t.name.as_deref() == Some("Params"))
            .expect("struct Params");
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("Params is a struct")
        };
        assert_eq!(*span, 144);
        let wgsl: Vec<(&str, u32, bool)> = members
            .iter()
            .map(|m| {
                let float = matches!(
                    module.types[m.ty].inner,
                    naga::TypeInner::Scalar(naga::Scalar {
                        kind: naga::ScalarKind::Float,
                        ..
                    })
                );
                (m.name.as_deref().unwrap_or(""), m.offset, float)
            })
            .collect();
        assert_eq!(wgsl, rust);
    }
}

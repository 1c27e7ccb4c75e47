//! Build a validated [`Graph`] from a spec and its tensors: resolve inputs, infer shapes, fetch and
//! check every weight.

use crate::error::ModelError;
use crate::graph::{
    pool_out_len, Activation, BatchNorm, Conv2d, Graph, LayerNorm, Linear, Node, Op, Pool2d, Source,
};
use crate::shape::Shape;
use crate::spec::{ModelSpec, NodeSpec, Pair, Preprocess};
use crate::tensors::TensorFile;
use std::collections::HashMap;

/// The spec name of the graph input.
pub const INPUT_NAME: &str = "input";

pub(crate) struct Ctx<'a> {
    pub(crate) spec: &'a NodeSpec,
    pub(crate) tensors: &'a TensorFile,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Node {
            node: self.spec.name.clone(),
            op: self.spec.op.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn field<T: Copy>(&self, value: Option<T>, field: &str) -> Result<T, ModelError> {
        value.ok_or_else(|| self.err(format!("missing field {field:?}")))
    }

    pub(crate) fn name<'b>(
        &self,
        value: &'b Option<String>,
        field: &str,
    ) -> Result<&'b str, ModelError> {
        value
            .as_deref()
            .ok_or_else(|| self.err(format!("missing field {field:?} (a tensor name)")))
    }

    fn image(&self, shape: Shape) -> Result<(usize, usize, usize), ModelError> {
        match shape {
            Shape::Image { c, h, w } => Ok((c, h, w)),
            other => Err(self.err(format!("expects a [C, H, W] input, found {other}"))),
        }
    }

    fn positive(&self, pair: (usize, usize), field: &str) -> Result<(usize, usize), ModelError> {
        if pair.0 == 0 || pair.1 == 0 {
            return Err(self.err(format!("field {field:?} must be positive, found {pair:?}")));
        }
        Ok(pair)
    }
}

/// Every op a spec may name, with the optional fields it reads (`inputs` is always allowed).
pub const OPS: &[(&str, &[&str])] = &[
    ("linear", &["weight", "bias"]),
    (
        "conv2d",
        &[
            "weight",
            "bias",
            "stride",
            "padding",
            "dilation",
            "groups",
            "transposed",
        ],
    ),
    ("batchnorm1d", BN_FIELDS),
    ("batchnorm2d", BN_FIELDS),
    ("layernorm", &["prefix", "weight", "bias", "eps"]),
    ("rmsnorm", &["weight", "eps"]),
    ("relu", &[]),
    ("relu6", &[]),
    ("gelu", &[]),
    ("gelu_tanh", &[]),
    ("sigmoid", &[]),
    ("tanh", &[]),
    ("silu", &[]),
    ("hardswish", &[]),
    ("hardsigmoid", &[]),
    ("hardtanh", &["min_val", "max_val"]),
    ("leaky_relu", &["negative_slope"]),
    ("elu", &["alpha"]),
    ("prelu", &["weight"]),
    ("identity", &[]),
    (
        "maxpool2d",
        &["kernel", "stride", "padding", "dilation", "ceil_mode"],
    ),
    (
        "avgpool2d",
        &[
            "kernel",
            "stride",
            "padding",
            "ceil_mode",
            "count_include_pad",
        ],
    ),
    ("global_avgpool", &[]),
    ("adaptive_avgpool2d", &["output_size"]),
    ("flatten", &[]),
    ("add", &[]),
    ("mul", &["weight"]),
    ("concat", &[]),
    ("slice", &["start", "end"]),
    ("channel_shuffle", &["groups"]),
    ("embedding", &["weight", "position_weight"]),
    (
        "attention",
        &["heads", "kv_heads", "rope_theta", "rope_scaling"],
    ),
    ("merge_heads", &[]),
    ("select_position", &[]),
];

const BN_FIELDS: &[&str] = &[
    "prefix",
    "weight",
    "bias",
    "running_mean",
    "running_var",
    "eps",
];

/// Unknown ops and fields an op does not read, for every node at once.
fn check_ops_and_fields(spec: &ModelSpec) -> Vec<ModelError> {
    let mut problems = Vec::new();
    for ns in &spec.nodes {
        let err = |message: String| ModelError::Node {
            node: ns.name.clone(),
            op: ns.op.clone(),
            message,
        };
        let Some((_, allowed)) = OPS.iter().find(|(op, _)| *op == ns.op) else {
            let names: Vec<&str> = OPS.iter().map(|(op, _)| *op).collect();
            problems.push(err(format!(
                "unknown op {:?}; supported: {}",
                ns.op,
                names.join(", ")
            )));
            continue;
        };
        let extra: Vec<&str> = ns
            .present_fields()
            .into_iter()
            .filter(|f| *f != "inputs" && !allowed.contains(f))
            .collect();
        if !extra.is_empty() {
            let takes = if allowed.is_empty() {
                "no fields".to_string()
            } else {
                allowed.join(", ")
            };
            problems.push(err(format!(
                "field(s) {} not used by {} (it takes {takes})",
                extra.join(", "),
                ns.op
            )));
        }
    }
    problems
}

/// One error, or all of them.
fn collect(mut problems: Vec<ModelError>) -> Result<(), ModelError> {
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        _ => Err(ModelError::Many(problems)),
    }
}

/// How many inputs a node of this op reads.
fn input_count_ok(ns: &NodeSpec, count: usize) -> Result<(), String> {
    let (ok, want) = match ns.op.as_str() {
        "add" => (count == 2, "2"),
        "mul" if ns.weight.is_some() => (count == 1, "1 (with \"weight\")"),
        "mul" => (count == 2, "2 (or 1 with \"weight\")"),
        "concat" => (count >= 1, "at least 1"),
        "attention" => (count == 1 || count == 3, "1 (fused q, k, v) or 3 (q, k, v)"),
        "select_position" => (count == 2, "2 (the sequence and \"input\")"),
        _ => (count == 1, "1"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expects {want} input(s), found {count}"))
    }
}

/// Build the graph. Unused tensors in the file are ignored (a state_dict holds buffers too).
///
/// Unknown ops and misplaced fields are reported for every node at once; shape and tensor
/// problems for every node whose inputs could be resolved.
pub fn build_graph(spec: &ModelSpec, tensors: &TensorFile) -> Result<Graph, ModelError> {
    let spec_err = |message: String| ModelError::Spec {
        path: tensors.path().to_owned(),
        message,
    };
    let input = graph_input(spec).map_err(spec_err)?;
    if spec.nodes.is_empty() {
        return Err(spec_err("field \"nodes\": the model has no nodes".into()));
    }
    collect(check_ops_and_fields(spec))?;
    if let Some(pre) = &spec.preprocess {
        let c = input.channels();
        if pre.mean.len() != c || pre.std.len() != c {
            return Err(spec_err(format!(
                "field \"preprocess\": expected {c} means and stds (one per input channel), found {} and {}",
                pre.mean.len(),
                pre.std.len()
            )));
        }
        if let Some(s) = pre.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(spec_err(format!(
                "field \"preprocess\": every std must be positive, found {s}"
            )));
        }
    }
    let mut nodes: Vec<Node> = Vec::with_capacity(spec.nodes.len());
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, ns) in spec.nodes.iter().enumerate() {
        let ctx = Ctx { spec: ns, tensors };
        if ns.name.is_empty() || ns.name == INPUT_NAME {
            return Err(ctx.err(format!(
                "invalid node name {:?} (empty or reserved)",
                ns.name
            )));
        }
        if index.contains_key(ns.name.as_str()) {
            return Err(ctx.err("duplicate node name"));
        }
        let inputs: Vec<Source> = match &ns.inputs {
            None if i == 0 => vec![Source::Input],
            None => vec![Source::Node(i - 1)],
            Some(names) => names
                .iter()
                .map(|n| match n.as_str() {
                    INPUT_NAME => Ok(Source::Input),
                    other => index.get(other).map(|&j| Source::Node(j)).ok_or_else(|| {
                        ctx.err(format!("input {other:?} is not an earlier node (nodes must be listed in order)"))
                    }),
                })
                .collect::<Result<_, _>>()?,
        };
        input_count_ok(ns, inputs.len()).map_err(|m| ctx.err(m))?;
        let in_shape = match inputs[0] {
            Source::Input => input,
            Source::Node(j) => nodes[j].shape,
        };
        let (op, shape) = build_op(&ctx, in_shape, &inputs, &nodes, input)?;
        index.insert(&ns.name, i);
        nodes.push(Node {
            name: ns.name.clone(),
            op,
            inputs,
            shape,
        });
    }
    let last = nodes.last().expect("nodes is non-empty");
    if !matches!(last.shape, Shape::Features(_)) {
        return Err(ModelError::Node {
            node: last.name.clone(),
            op: last.op.kind().into(),
            message: format!(
                "the last node must output [classes] logits, found {} (add a flatten?)",
                last.shape
            ),
        });
    }
    if last.shape.numel() < 2 {
        return Err(ModelError::Node {
            node: last.name.clone(),
            op: last.op.kind().into(),
            message: format!(
                "the last node must output at least 2 logits, found {}",
                last.shape
            ),
        });
    }
    if let Some(pre) = &spec.preprocess {
        if index.contains_key(PREPROCESS_NAME) {
            return Err(spec_err(format!(
                "a node is named {PREPROCESS_NAME:?}, the name of the \"preprocess\" step; rename it"
            )));
        }
        nodes = prepend_preprocess(pre, input, nodes);
    }
    Ok(Graph { input, nodes })
}

/// The shape of one example: the spec's `input`, or for a language model (`tokens: T`) its `T`
/// token ids followed by the position the metric reads, as floats (exact below 2^24).
fn graph_input(spec: &ModelSpec) -> Result<Shape, String> {
    match (spec.tokens, spec.input.is_empty()) {
        (Some(_), false) => Err(format!(
            "fields \"input\" and \"tokens\" are both set ({:?} and {:?}): a language model sets only \"tokens\"",
            spec.input, spec.tokens
        )),
        (Some(0), true) => Err("field \"tokens\" must be positive".into()),
        (Some(t), true) => Ok(Shape::Features(t + 1)),
        (None, _) => Shape::from_dims(&spec.input).ok_or_else(|| {
            format!(
                "field \"input\": expected [features] or [C, H, W] with positive sizes, found {:?}",
                spec.input
            )
        }),
    }
}

/// The name of the node that applies the spec's `preprocess` normalisation.
pub const PREPROCESS_NAME: &str = "preprocess";

/// Put the normalisation first, as a per-channel affine map of the input that every node which
/// read the input now reads instead. It depends on no player, so backends compute it once per
/// example.
fn prepend_preprocess(pre: &Preprocess, input: Shape, nodes: Vec<Node>) -> Vec<Node> {
    let scale: Vec<f32> = pre.std.iter().map(|s| 1.0 / s).collect();
    let shift: Vec<f32> = pre.mean.iter().zip(&pre.std).map(|(m, s)| -m / s).collect();
    let first = Node {
        name: PREPROCESS_NAME.into(),
        op: Op::BatchNorm(BatchNorm {
            scale,
            beta: shift.clone(),
            shift,
            running_mean: pre.mean.clone(),
        }),
        inputs: vec![Source::Input],
        shape: input,
    };
    std::iter::once(first)
        .chain(nodes.into_iter().map(|mut n| {
            for s in &mut n.inputs {
                *s = match *s {
                    Source::Input => Source::Node(0),
                    Source::Node(j) => Source::Node(j + 1),
                };
            }
            n
        }))
        .collect()
}

fn build_op(
    ctx: &Ctx<'_>,
    in_shape: Shape,
    inputs: &[Source],
    nodes: &[Node],
    graph_input: Shape,
) -> Result<(Op, Shape), ModelError> {
    let ns = ctx.spec;
    Ok(match ns.op.as_str() {
        "linear" => {
            let Shape::Features(inf) = in_shape else {
                return Err(ctx.err(format!(
                    "expects a [features] input, found {in_shape} (add a flatten?)"
                )));
            };
            let wname = ctx.name(&ns.weight, "weight")?;
            let wshape = ctx.tensors.shape(wname)?;
            if wshape.len() != 2 || wshape[1] != inf {
                return Err(ctx.err(format!(
                    "weight {wname:?}: expected shape [out, {inf}], found {wshape:?}"
                )));
            }
            let out = wshape[0];
            let (weight, _) = ctx.tensors.f32(wname, Some(&[out, inf]))?;
            let bias = bias(ctx, out)?;
            let has_bias = ns.bias.is_some();
            (
                Op::Linear(Linear {
                    in_features: inf,
                    out_features: out,
                    weight,
                    bias,
                    has_bias,
                }),
                Shape::Features(out),
            )
        }
        "conv2d" => {
            let (c, h, w) = ctx.image(in_shape)?;
            let wname = ctx.name(&ns.weight, "weight")?;
            let wshape = ctx.tensors.shape(wname)?;
            let groups = ns.groups.unwrap_or(1);
            if groups == 0 || c % groups != 0 {
                return Err(ctx.err(format!(
                    "groups = {groups} must divide the {c} input channels"
                )));
            }
            // A Linear's `[out, in]` weight applied at every position is a 1x1 convolution
            // (ConvNeXt's channels-last MLP): same memory layout, so the tensor is used as is.
            let transposed = ns.transposed.unwrap_or(false);
            if transposed && wshape.len() != 2 {
                return Err(ctx.err(format!(
                    "\"transposed\" applies to a 2-D [in, out] weight, found {wname:?} of shape {wshape:?}"
                )));
            }
            let as_4d = match wshape[..] {
                [i, o] if transposed => vec![o, i, 1, 1],
                [o, i] => vec![o, i, 1, 1],
                _ => wshape.clone(),
            };
            if as_4d.len() != 4 || as_4d[1] * groups != c || as_4d[0] % groups != 0 {
                return Err(ctx.err(format!(
                    "weight {wname:?}: expected shape [out, {}, kh, kw] (or [out, {}] for a 1x1 conv) with out divisible by {groups}, found {wshape:?}",
                    c / groups,
                    c / groups
                )));
            }
            let (out, kernel) = (as_4d[0], (as_4d[2], as_4d[3]));
            let stride = ctx.positive(ns.stride.map_or((1, 1), Pair::get), "stride")?;
            let dilation = ctx.positive(ns.dilation.map_or((1, 1), Pair::get), "dilation")?;
            let padding = ns.padding.map_or((0, 0), Pair::get);
            let oh = out_size(h, kernel.0, stride.0, padding.0, dilation.0);
            let ow = out_size(w, kernel.1, stride.1, padding.1, dilation.1);
            let (Some(oh), Some(ow)) = (oh, ow) else {
                return Err(ctx.err(format!(
                    "kernel {kernel:?} with dilation {dilation:?} does not fit the padded input {in_shape}"
                )));
            };
            let (mut weight, _) = ctx.tensors.f32(wname, Some(&wshape))?;
            if transposed {
                weight = transpose(&weight, wshape[0], wshape[1]);
            }
            let bias = bias(ctx, out)?;
            let conv = Conv2d {
                in_channels: c,
                out_channels: out,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                weight,
                bias,
                has_bias: ns.bias.is_some(),
            };
            (
                Op::Conv2d(conv),
                Shape::Image {
                    c: out,
                    h: oh,
                    w: ow,
                },
            )
        }
        "batchnorm1d" | "batchnorm2d" => {
            let channels = match (ns.op.as_str(), in_shape) {
                ("batchnorm1d", Shape::Features(f)) => f,
                ("batchnorm2d", Shape::Image { c, .. }) => c,
                (op, s) => {
                    let want = if op == "batchnorm1d" {
                        "[features]"
                    } else {
                        "[C, H, W]"
                    };
                    return Err(ctx.err(format!("expects a {want} input, found {s}")));
                }
            };
            (Op::BatchNorm(batchnorm(ctx, channels)?), in_shape)
        }
        "relu" => (Op::Activation(Activation::Relu), in_shape),
        "gelu" => (Op::Activation(Activation::Gelu), in_shape),
        "gelu_tanh" => (Op::Activation(Activation::GeluTanh), in_shape),
        "embedding" => crate::sequence::embedding(ctx, inputs, graph_input)?,
        "attention" => crate::sequence::attention(ctx, inputs, nodes, graph_input)?,
        "merge_heads" => crate::sequence::merge_heads(ctx, in_shape)?,
        "select_position" => crate::sequence::select_position(ctx, inputs, in_shape)?,
        "sigmoid" => (Op::Activation(Activation::Sigmoid), in_shape),
        "tanh" => (Op::Activation(Activation::Tanh), in_shape),
        "silu" => (Op::Activation(Activation::Silu), in_shape),
        "hardswish" => (Op::Activation(Activation::Hardswish), in_shape),
        "hardsigmoid" => (Op::Activation(Activation::Hardsigmoid), in_shape),
        "relu6" => (
            Op::Activation(Activation::HardTanh { min: 0.0, max: 6.0 }),
            in_shape,
        ),
        "hardtanh" => {
            let min = finite(ctx, ns.min_val.unwrap_or(-1.0), "min_val")?;
            let max = finite(ctx, ns.max_val.unwrap_or(1.0), "max_val")?;
            if min > max {
                return Err(ctx.err(format!("min_val {min} is above max_val {max}")));
            }
            (Op::Activation(Activation::HardTanh { min, max }), in_shape)
        }
        "leaky_relu" => {
            let slope = finite(ctx, ns.negative_slope.unwrap_or(0.01), "negative_slope")?;
            (Op::Activation(Activation::LeakyRelu { slope }), in_shape)
        }
        "elu" => {
            let alpha = finite(ctx, ns.alpha.unwrap_or(1.0), "alpha")?;
            (Op::Activation(Activation::Elu { alpha }), in_shape)
        }
        "prelu" => {
            let c = in_shape.channels();
            let wname = ctx.name(&ns.weight, "weight")?;
            let wshape = ctx.tensors.shape(wname)?;
            let n: usize = wshape.iter().product();
            if n != 1 && n != c {
                return Err(ctx.err(format!(
                    "weight {wname:?}: expected [{c}] or [1] slopes, found {wshape:?}"
                )));
            }
            let (w, _) = ctx.tensors.f32(wname, Some(&wshape))?;
            let slopes = if n == 1 { vec![w[0]; c] } else { w };
            (Op::Prelu(slopes), in_shape)
        }
        "identity" => (Op::Identity, in_shape),
        "maxpool2d" | "avgpool2d" => {
            let (c, h, w) = ctx.image(in_shape)?;
            let kernel = ctx.positive(ctx.field(ns.kernel, "kernel")?.get(), "kernel")?;
            let stride = ctx.positive(ns.stride.map_or(kernel, Pair::get), "stride")?;
            let dilation = ctx.positive(ns.dilation.map_or((1, 1), Pair::get), "dilation")?;
            let padding = ns.padding.map_or((0, 0), Pair::get);
            let span = |k: usize, d: usize| d * (k - 1) + 1;
            if padding.0 * 2 > span(kernel.0, dilation.0)
                || padding.1 * 2 > span(kernel.1, dilation.1)
            {
                return Err(ctx.err(format!(
                    "padding {padding:?} must be at most half the kernel {kernel:?} (as in PyTorch)"
                )));
            }
            let pool = Pool2d {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode: ns.ceil_mode.unwrap_or(false),
                count_include_pad: ns.count_include_pad.unwrap_or(true),
            };
            let (Some(oh), Some(ow)) = (pool.out_len(h, 0), pool.out_len(w, 1)) else {
                return Err(ctx.err(format!(
                    "kernel {kernel:?} does not fit the padded input {in_shape}"
                )));
            };
            let op = if ns.op == "maxpool2d" {
                Op::MaxPool2d(pool)
            } else {
                Op::AvgPool2d(pool)
            };
            (op, Shape::Image { c, h: oh, w: ow })
        }
        "global_avgpool" => {
            let (c, _, _) = ctx.image(in_shape)?;
            (Op::GlobalAvgPool, Shape::Image { c, h: 1, w: 1 })
        }
        "adaptive_avgpool2d" => {
            let (c, _, _) = ctx.image(in_shape)?;
            let (oh, ow) = ctx.positive(
                ctx.field(ns.output_size, "output_size")?.get(),
                "output_size",
            )?;
            (Op::AdaptiveAvgPool2d, Shape::Image { c, h: oh, w: ow })
        }
        "flatten" => (Op::Flatten, Shape::Features(in_shape.numel())),
        "add" => {
            let other = shape_of(inputs[1], nodes, graph_input);
            if other != in_shape {
                return Err(ctx.err(format!(
                    "inputs have different shapes: {in_shape} and {other}"
                )));
            }
            (Op::Add, in_shape)
        }
        "mul" if ns.weight.is_some() => {
            let c = in_shape.channels();
            let wname = ctx.name(&ns.weight, "weight")?;
            let wshape = ctx.tensors.shape(wname)?;
            let n: usize = wshape.iter().product();
            let per_channel = wshape.iter().skip(1).all(|&d| d == 1) && wshape.first() == Some(&c);
            if !(n == 1 || per_channel) {
                return Err(ctx.err(format!(
                    "weight {wname:?}: expected [{c}], [{c}, 1, 1] or [1] to scale a {in_shape} input, found {wshape:?}"
                )));
            }
            let (w, _) = ctx.tensors.f32(wname, Some(&wshape))?;
            let scale = if n == 1 { vec![w[0]; c] } else { w };
            (Op::Scale(scale), in_shape)
        }
        "mul" => {
            let other = shape_of(inputs[1], nodes, graph_input);
            let out = if other == in_shape || broadcasts_over(other, in_shape) {
                in_shape
            } else if broadcasts_over(in_shape, other) {
                other
            } else {
                return Err(ctx.err(format!(
                    "inputs {in_shape} and {other} must have the same shape, or one must be [C, 1, 1] over the other's [C, H, W]"
                )));
            };
            (Op::Mul, out)
        }
        "concat" => {
            let shapes: Vec<Shape> = inputs
                .iter()
                .map(|&s| shape_of(s, nodes, graph_input))
                .collect();
            let channels: usize = shapes.iter().map(Shape::channels).sum();
            let out = match in_shape {
                Shape::Features(_) if shapes.iter().all(|s| matches!(s, Shape::Features(_))) => {
                    Shape::Features(channels)
                }
                Shape::Image { h, w, .. }
                    if shapes.iter().all(
                        |s| matches!(*s, Shape::Image { h: sh, w: sw, .. } if (sh, sw) == (h, w)),
                    ) =>
                {
                    Shape::Image { c: channels, h, w }
                }
                _ => {
                    let list: Vec<String> = shapes.iter().map(|s| s.to_string()).collect();
                    return Err(ctx.err(format!(
                        "inputs must agree in every dimension but channels, found {}",
                        list.join(", ")
                    )));
                }
            };
            (Op::Concat, out)
        }
        "slice" => {
            let c = in_shape.channels();
            let start = ctx.field(ns.start, "start")?;
            let end = ctx.field(ns.end, "end")?;
            if start >= end || end > c {
                return Err(ctx.err(format!(
                    "channel range {start}..{end} must be non-empty and within the input's {c} channels"
                )));
            }
            let out = match in_shape {
                Shape::Features(_) => Shape::Features(end - start),
                Shape::Image { h, w, .. } => Shape::Image {
                    c: end - start,
                    h,
                    w,
                },
            };
            (Op::Slice { start, end }, out)
        }
        "channel_shuffle" => {
            let c = in_shape.channels();
            let groups = ctx.field(ns.groups, "groups")?;
            if groups == 0 || c % groups != 0 {
                return Err(ctx.err(format!(
                    "groups = {groups} must divide the {c} input channels"
                )));
            }
            (Op::ChannelShuffle { groups }, in_shape)
        }
        "layernorm" => {
            let c = in_shape.channels();
            let named =
                |explicit: &Option<String>, suffix: &str, field: &str| match (explicit, &ns.prefix)
                {
                    (Some(n), _) => Ok(n.clone()),
                    (None, Some(p)) => Ok(format!("{p}.{suffix}")),
                    (None, None) => {
                        Err(ctx.err(format!("missing field {field:?} (or \"prefix\")")))
                    }
                };
            let weight = ctx
                .tensors
                .f32(&named(&ns.weight, "weight", "weight")?, Some(&[c]))?
                .0;
            let bias = ctx
                .tensors
                .f32(&named(&ns.bias, "bias", "bias")?, Some(&[c]))?
                .0;
            let eps = ns.eps.unwrap_or(1e-5);
            if !(eps > 0.0 && eps.is_finite()) {
                return Err(ctx.err(format!(
                    "field \"eps\" must be a positive number, found {eps}"
                )));
            }
            (
                Op::LayerNorm(LayerNorm {
                    weight,
                    bias,
                    eps: eps as f32,
                }),
                in_shape,
            )
        }
        "rmsnorm" => {
            let c = in_shape.channels();
            let wname = ctx.name(&ns.weight, "weight")?;
            let weight = ctx.tensors.f32(wname, Some(&[c]))?.0;
            let eps = ns.eps.unwrap_or(1e-6);
            if !(eps > 0.0 && eps.is_finite()) {
                return Err(ctx.err(format!(
                    "field \"eps\" must be a positive number, found {eps}"
                )));
            }
            (
                Op::RmsNorm(crate::graph::RmsNorm {
                    weight,
                    eps: eps as f32,
                }),
                in_shape,
            )
        }
        other => return Err(ctx.err(format!("unknown op {other:?}"))),
    })
}

/// A `[rows, cols]` row-major matrix as `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

pub(crate) fn shape_of(source: Source, nodes: &[Node], graph_input: Shape) -> Shape {
    match source {
        Source::Input => graph_input,
        Source::Node(j) => nodes[j].shape,
    }
}

/// Whether `small` (`[C, 1, 1]` or `[C]`) broadcasts over `big` (`[C, H, W]`).
fn broadcasts_over(small: Shape, big: Shape) -> bool {
    small.spatial() == 1 && small.channels() == big.channels() && matches!(big, Shape::Image { .. })
}

fn finite(ctx: &Ctx<'_>, v: f64, field: &str) -> Result<f32, ModelError> {
    if v.is_finite() {
        Ok(v as f32)
    } else {
        Err(ctx.err(format!(
            "field {field:?} must be a finite number, found {v}"
        )))
    }
}

/// PyTorch's output size formula (floor mode); `None` when the window does not fit.
fn out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    pool_out_len(input, kernel, stride, padding, dilation, false)
}

fn bias(ctx: &Ctx<'_>, out: usize) -> Result<Vec<f32>, ModelError> {
    match &ctx.spec.bias {
        Some(name) => Ok(ctx.tensors.f32(name, Some(&[out]))?.0),
        None => Ok(vec![0.0; out]),
    }
}

fn batchnorm(ctx: &Ctx<'_>, channels: usize) -> Result<BatchNorm, ModelError> {
    let ns = ctx.spec;
    let named =
        |explicit: &Option<String>, suffix: &str, field: &str| -> Result<String, ModelError> {
            match (explicit, &ns.prefix) {
                (Some(n), _) => Ok(n.clone()),
                (None, Some(p)) => Ok(format!("{p}.{suffix}")),
                (None, None) => Err(ctx.err(format!("missing field {field:?} (or \"prefix\")"))),
            }
        };
    let get = |name: String| ctx.tensors.f32(&name, Some(&[channels])).map(|(v, _)| v);
    let gamma = get(named(&ns.weight, "weight", "weight")?)?;
    let beta = get(named(&ns.bias, "bias", "bias")?)?;
    let running_mean = get(named(&ns.running_mean, "running_mean", "running_mean")?)?;
    let running_var = get(named(&ns.running_var, "running_var", "running_var")?)?;
    let eps = ns.eps.unwrap_or(1e-5);
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(ctx.err(format!(
            "field \"eps\" must be a non-negative number, found {eps}"
        )));
    }
    if let Some(c) = running_var.iter().position(|&v| v < 0.0) {
        return Err(ctx.err(format!(
            "running_var of channel {c} is negative ({})",
            running_var[c]
        )));
    }
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&running_var)
        .map(|(&g, &v)| (g as f64 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    if let Some(c) = scale.iter().position(|s| !s.is_finite()) {
        return Err(ctx.err(format!(
            "channel {c} has zero variance and eps 0: its scale is not finite"
        )));
    }
    let shift = (0..channels)
        .map(|c| beta[c] - running_mean[c] * scale[c])
        .collect();
    Ok(BatchNorm {
        scale,
        shift,
        beta,
        running_mean,
    })
}

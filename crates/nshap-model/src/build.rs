//! Build a validated [`Graph`] from a spec and its tensors: resolve inputs, infer shapes, fetch and
//! check every weight.

use crate::error::ModelError;
use crate::graph::{Activation, BatchNorm, Conv2d, Graph, Linear, Node, Op, Pool2d, Source};
use crate::shape::Shape;
use crate::spec::{ModelSpec, NodeSpec, Pair};
use crate::tensors::TensorFile;
use std::collections::HashMap;

/// The spec name of the graph input.
pub const INPUT_NAME: &str = "input";

struct Ctx<'a> {
    spec: &'a NodeSpec,
    tensors: &'a TensorFile,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Node {
            node: self.spec.name.clone(),
            op: self.spec.op.clone(),
            message: message.into(),
        }
    }

    fn field<T: Copy>(&self, value: Option<T>, field: &str) -> Result<T, ModelError> {
        value.ok_or_else(|| self.err(format!("missing field {field:?}")))
    }

    fn name<'b>(&self, value: &'b Option<String>, field: &str) -> Result<&'b str, ModelError> {
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

/// Build the graph. Unused tensors in the file are ignored (a state_dict holds buffers too).
pub fn build_graph(spec: &ModelSpec, tensors: &TensorFile) -> Result<Graph, ModelError> {
    let spec_err = |message: String| ModelError::Spec {
        path: tensors.path().to_owned(),
        message,
    };
    let input = Shape::from_dims(&spec.input).ok_or_else(|| {
        spec_err(format!(
            "field \"input\": expected [features] or [C, H, W] with positive sizes, found {:?}",
            spec.input
        ))
    })?;
    if spec.nodes.is_empty() {
        return Err(spec_err("field \"nodes\": the model has no nodes".into()));
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
        let want = if ns.op == "add" { 2 } else { 1 };
        if inputs.len() != want {
            return Err(ctx.err(format!("expects {want} input(s), found {}", inputs.len())));
        }
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
    Ok(Graph { input, nodes })
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
                return Err(ctx.err(format!("expects a [features] input, found {in_shape} (add a flatten?)")));
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
            (Op::Linear(Linear { in_features: inf, out_features: out, weight, bias, has_bias }), Shape::Features(out))
        }
        "conv2d" => {
            let (c, h, w) = ctx.image(in_shape)?;
            let wname = ctx.name(&ns.weight, "weight")?;
            let wshape = ctx.tensors.shape(wname)?;
            let groups = ns.groups.unwrap_or(1);
            if groups == 0 || c % groups != 0 {
                return Err(ctx.err(format!("groups = {groups} must divide the {c} input channels")));
            }
            if wshape.len() != 4 || wshape[1] * groups != c || wshape[0] % groups != 0 {
                return Err(ctx.err(format!(
                    "weight {wname:?}: expected shape [out, {}, kh, kw] with out divisible by {groups}, found {wshape:?}",
                    c / groups
                )));
            }
            let (out, kernel) = (wshape[0], (wshape[2], wshape[3]));
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
            let (weight, _) = ctx.tensors.f32(wname, Some(&wshape))?;
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
            (Op::Conv2d(conv), Shape::Image { c: out, h: oh, w: ow })
        }
        "batchnorm1d" | "batchnorm2d" => {
            let channels = match (ns.op.as_str(), in_shape) {
                ("batchnorm1d", Shape::Features(f)) => f,
                ("batchnorm2d", Shape::Image { c, .. }) => c,
                (op, s) => {
                    let want = if op == "batchnorm1d" { "[features]" } else { "[C, H, W]" };
                    return Err(ctx.err(format!("expects a {want} input, found {s}")));
                }
            };
            (Op::BatchNorm(batchnorm(ctx, channels)?), in_shape)
        }
        "relu" => (Op::Activation(Activation::Relu), in_shape),
        "gelu" => (Op::Activation(Activation::Gelu), in_shape),
        "sigmoid" => (Op::Activation(Activation::Sigmoid), in_shape),
        "tanh" => (Op::Activation(Activation::Tanh), in_shape),
        "identity" => (Op::Identity, in_shape),
        "maxpool2d" | "avgpool2d" => {
            let (c, h, w) = ctx.image(in_shape)?;
            let kernel = ctx.positive(ctx.field(ns.kernel, "kernel")?.get(), "kernel")?;
            let stride = ctx.positive(ns.stride.map_or(kernel, Pair::get), "stride")?;
            let padding = ns.padding.map_or((0, 0), Pair::get);
            if padding.0 * 2 > kernel.0 || padding.1 * 2 > kernel.1 {
                return Err(ctx.err(format!(
                    "padding {padding:?} must be at most half the kernel {kernel:?} (as in PyTorch)"
                )));
            }
            let (Some(oh), Some(ow)) =
                (out_size(h, kernel.0, stride.0, padding.0, 1), out_size(w, kernel.1, stride.1, padding.1, 1))
            else {
                return Err(ctx.err(format!("kernel {kernel:?} does not fit the padded input {in_shape}")));
            };
            let pool = Pool2d { kernel, stride, padding };
            let op = if ns.op == "maxpool2d" { Op::MaxPool2d(pool) } else { Op::AvgPool2d(pool) };
            (op, Shape::Image { c, h: oh, w: ow })
        }
        "global_avgpool" => {
            let (c, _, _) = ctx.image(in_shape)?;
            (Op::GlobalAvgPool, Shape::Image { c, h: 1, w: 1 })
        }
        "flatten" => (Op::Flatten, Shape::Features(in_shape.numel())),
        "add" => {
            let other = match inputs[1] {
                Source::Input => graph_input,
                Source::Node(j) => nodes[j].shape,
            };
            if other != in_shape {
                return Err(ctx.err(format!("inputs have different shapes: {in_shape} and {other}")));
            }
            (Op::Add, in_shape)
        }
        other => {
            return Err(ctx.err(format!(
                "unknown op {other:?}; supported: linear, conv2d, batchnorm1d, batchnorm2d, relu, gelu, \
                 sigmoid, tanh, maxpool2d, avgpool2d, global_avgpool, flatten, add, identity"
            )))
        }
    })
}

/// PyTorch's output size formula (floor mode); `None` when the window does not fit.
fn out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + 2 * padding;
    (padded >= span).then(|| (padded - span) / stride + 1)
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

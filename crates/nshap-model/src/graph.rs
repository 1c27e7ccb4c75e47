//! The resolved model graph: what every backend executes.
//!
//! A [`Graph`] is built from a spec and its tensors (see [`crate::load`]); shapes are inferred and
//! checked once, weights are f32 in PyTorch layouts, and nodes are in topological order (a node only
//! reads the graph input or earlier nodes). Backends walk `nodes` in order.

use crate::shape::Shape;

/// Where a node reads one of its inputs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The example itself (spec name `"input"`).
    Input,
    /// The output of an earlier node (index into [`Graph::nodes`]).
    Node(usize),
}

/// A fully connected layer: `y = W x + b`, `W` is `[out, in]` row-major (PyTorch `nn.Linear`).
#[derive(Clone, Debug)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub weight: Vec<f32>,
    /// Always `out_features` long (zeros when the spec gave no bias).
    pub bias: Vec<f32>,
    /// Whether the spec named a bias tensor (for parameter counts; `bias` is always usable).
    pub has_bias: bool,
}

/// A 2-D convolution in PyTorch's layout: weight `[out, in/groups, kh, kw]`, NCHW activations.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub weight: Vec<f32>,
    /// Always `out_channels` long (zeros when the spec gave no bias).
    pub bias: Vec<f32>,
    /// Whether the spec named a bias tensor (for parameter counts; `bias` is always usable).
    pub has_bias: bool,
}

/// Eval-mode batch normalisation reduced to a per-channel affine map `y = scale * x + shift`,
/// with `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`.
///
/// `beta` and `running_mean` are kept because the reference removal baseline needs them.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub beta: Vec<f32>,
    pub running_mean: Vec<f32>,
}

/// Max or average pooling window, with PyTorch's options.
///
/// Window `o` along an axis starts at `o * stride - padding` and spans `kernel` taps spaced
/// `dilation` apart (max pooling only; average pooling has dilation 1); taps outside the input
/// are skipped. Average pooling divides by the window's size clipped to the padded input when
/// `count_include_pad`, otherwise by the number of taps inside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    /// Output size rounded up (the last window may hang over the padded input).
    pub ceil_mode: bool,
    /// Average pooling: padding counts in the divisor (PyTorch's default).
    pub count_include_pad: bool,
}

impl Pool2d {
    /// A floor-mode window without dilation that counts padding (PyTorch's defaults).
    pub fn new(kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize)) -> Pool2d {
        Pool2d {
            kernel,
            stride,
            padding,
            dilation: (1, 1),
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Output length along one axis (`axis` 0 = height, 1 = width), PyTorch's formula including
    /// ceil mode's rule that the last window starts inside the input or its left padding.
    pub fn out_len(&self, input: usize, axis: usize) -> Option<usize> {
        let pick = |p: (usize, usize)| if axis == 0 { p.0 } else { p.1 };
        let (k, s, p, d) = (
            pick(self.kernel),
            pick(self.stride),
            pick(self.padding),
            pick(self.dilation),
        );
        pool_out_len(input, k, s, p, d, self.ceil_mode)
    }

    /// The divisor of average-pooling window `(oy, ox)` of an `h x w` input.
    pub fn avg_divisor(&self, h: usize, w: usize, oy: usize, ox: usize) -> usize {
        let axis = |o: usize, k: usize, s: usize, p: usize, n: usize| {
            let start = (o * s) as isize - p as isize;
            let end = (start + k as isize).min((n + p) as isize);
            let padded = (end - start) as usize;
            let inside = (end.min(n as isize) - start.max(0)).max(0) as usize;
            (padded, inside)
        };
        let (ph, ih) = axis(oy, self.kernel.0, self.stride.0, self.padding.0, h);
        let (pw, iw) = axis(ox, self.kernel.1, self.stride.1, self.padding.1, w);
        if self.count_include_pad {
            ph * pw
        } else {
            ih * iw
        }
    }
}

/// PyTorch's pooling/convolution output length; `None` when no window fits.
pub fn pool_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + 2 * padding;
    if padded < span {
        return None;
    }
    let room = padded - span;
    let mut out = if ceil_mode {
        room.div_ceil(stride) + 1
    } else {
        room / stride + 1
    };
    // Ceil mode: the last window must start inside the input or its left padding.
    if ceil_mode && (out - 1) * stride >= input + padding {
        out -= 1;
    }
    Some(out)
}

/// Adaptive average pooling window along one axis: PyTorch's `floor(o*n/out) .. ceil((o+1)*n/out)`.
pub fn adaptive_window(o: usize, input: usize, output: usize) -> (usize, usize) {
    let start = o * input / output;
    let end = ((o + 1) * input).div_ceil(output);
    (start, end)
}

/// `sqrt(2 / pi)`, the tanh GELU's constant.
pub const GELU_TANH_C: f32 = 0.797_884_6;

/// Elementwise activation functions (PyTorch's definitions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    /// Exact (erf) GELU, PyTorch's default.
    Gelu,
    /// The tanh approximation of GELU (GPT-2's `gelu_new`, `approximate="tanh"`).
    GeluTanh,
    Sigmoid,
    Tanh,
    /// `x * sigmoid(x)`.
    Silu,
    /// `x * relu6(x + 3) / 6`.
    Hardswish,
    /// `relu6(x + 3) / 6`.
    Hardsigmoid,
    /// `clamp(x, min, max)`; ReLU6 is `HardTanh { min: 0, max: 6 }`.
    HardTanh {
        min: f32,
        max: f32,
    },
    /// `x` for `x > 0`, else `slope * x`.
    LeakyRelu {
        slope: f32,
    },
    /// `x` for `x > 0`, else `alpha * (exp(x) - 1)`.
    Elu {
        alpha: f32,
    },
}

impl Activation {
    /// Apply to one value (the CPU reference; GPU kernels mirror it).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            // 0.5 x (1 + tanh u) = x sigmoid(2u): one exp instead of a (much slower) tanh.
            Activation::GeluTanh => {
                let u = GELU_TANH_C * (x + 0.044715 * x * x * x);
                x / (1.0 + (-2.0 * u).exp())
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::Hardsigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::HardTanh { min, max } => x.clamp(min, max),
            Activation::LeakyRelu { slope } => {
                if x > 0.0 {
                    x
                } else {
                    slope * x
                }
            }
            Activation::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x.exp_m1()
                }
            }
        }
    }

    /// The op's name as written in a spec.
    pub fn kind(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Silu => "silu",
            Activation::Hardswish => "hardswish",
            Activation::Hardsigmoid => "hardsigmoid",
            Activation::HardTanh { .. } => "hardtanh",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
        }
    }
}

/// Layer normalisation over the channels at every position (ConvNeXt's `LayerNorm2d`; on a
/// `[F]` activation, over the features): `y = (x - mean_c) / sqrt(var_c + eps) * weight + bias`,
/// with the biased variance, as PyTorch.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f32,
}

/// RMS normalisation over the channels at every position (Llama's `RMSNorm`):
/// `y = x / sqrt(mean_c(x^2) + eps) * weight`.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    pub weight: Vec<f32>,
    pub eps: f32,
}

/// Token (and learned position) embedding of a language model's input: token ids `[T]` become a
/// `[D, 1, T]` sequence, channel-major like every activation (a channel is one of the `D`
/// features, at every position), so per-position linear layers are 1x1 convolutions and a
/// player removes a feature at every position.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub vocab: usize,
    pub dim: usize,
    /// Positions per example.
    pub tokens: usize,
    /// `[vocab, dim]` row-major (`nn.Embedding.weight`).
    pub weight: Vec<f32>,
    /// Learned position embeddings `[>= tokens, dim]` (GPT-2's `wpe`), added to the tokens'.
    pub positions: Option<Vec<f32>>,
}

/// Causal multi-head self-attention over a `[channels, 1, T]` sequence, from projected queries,
/// keys and values: `softmax(q k^T / sqrt(d_head) + causal) v` per head, with grouped-query
/// heads (query head `h` reads key/value head `h / (heads / kv_heads)`).
///
/// The output is `[heads, d_head, T]`: one channel per head, so the heads are the players of
/// this node and removing one replaces its whole `d_head x T` slice (what a head mask does).
/// In memory it is the `[heads * d_head, 1, T]` merged output, which [`Op::MergeHeads`] names.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub heads: usize,
    pub kv_heads: usize,
    pub d_head: usize,
    /// Rotary position embedding's base (`rope_theta`), applied to queries and keys.
    pub rope_theta: Option<f32>,
    /// Llama 3's frequency-dependent scaling of the rotary embedding (`rope_type: "llama3"`).
    pub rope_scaling: Option<RopeScaling>,
}

/// Llama 3's rotary scaling: frequencies whose wavelength exceeds
/// `original_max_position_embeddings / low_freq_factor` are divided by `factor`, those below
/// `... / high_freq_factor` kept, and the ones between interpolated smoothly.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

impl Attention {
    /// The rotary inverse frequency of pair `i` (of `d_head / 2`): `theta^(-2i / d_head)`, with
    /// Llama 3's scaling applied when set (as Hugging Face's `_compute_llama3_parameters`).
    pub fn inv_freq(&self, i: usize) -> f32 {
        let theta = f64::from(self.rope_theta.unwrap_or(10_000.0));
        let f = 1.0 / theta.powf((2 * i) as f64 / self.d_head as f64);
        let Some(s) = self.rope_scaling else {
            return f as f32;
        };
        let wavelen = 2.0 * std::f64::consts::PI / f;
        let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
        let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
        let scaled = if wavelen < high_wavelen {
            f
        } else if wavelen > low_wavelen {
            f / s.factor
        } else {
            let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                / (s.high_freq_factor - s.low_freq_factor);
            (1.0 - smooth) * f / s.factor + smooth * f
        };
        scaled as f32
    }
}

/// What a node computes.
#[derive(Clone, Debug)]
pub enum Op {
    Linear(Linear),
    Conv2d(Conv2d),
    BatchNorm(BatchNorm),
    Activation(Activation),
    /// Per-channel negative slope (`nn.PReLU`; a single shared slope is expanded to every channel).
    Prelu(Vec<f32>),
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    /// Adaptive average pooling to 1x1: `[C, H, W] -> [C, 1, 1]`.
    GlobalAvgPool,
    /// Adaptive average pooling to the node's output size (windows from [`adaptive_window`]).
    AdaptiveAvgPool2d,
    /// `[C, H, W] -> [C * H * W]` (a no-op on memory).
    Flatten,
    /// Elementwise sum of two inputs of the same shape (residual connections).
    Add,
    /// Elementwise product of two inputs: same shape, or one with spatial size 1 (`[C, 1, 1]` or
    /// `[C]`) broadcast over the other's positions (squeeze-and-excitation).
    Mul,
    /// Multiply every channel by a constant (`x * parameter`, ConvNeXt's layer scale).
    Scale(Vec<f32>),
    /// Channel concatenation of all inputs in order (`torch.cat(dim=1)`).
    Concat,
    /// Channels `start..end` of the input (`chunk`/`split` on the channel axis).
    Slice {
        start: usize,
        end: usize,
    },
    /// ShuffleNet's channel shuffle: output channel `a * groups + g` is input channel
    /// `g * (C / groups) + a`.
    ChannelShuffle {
        groups: usize,
    },
    LayerNorm(LayerNorm),
    RmsNorm(RmsNorm),
    Identity,
    /// Token ids to a `[D, 1, T]` sequence (see [`Embedding`]).
    Embedding(Embedding),
    /// Causal self-attention; inputs: one fused `q, k, v` tensor or three (see [`Attention`]).
    Attention(Attention),
    /// `[heads, d_head, T] -> [heads * d_head, 1, T]` (a no-op on memory).
    MergeHeads,
    /// `[D, 1, T] -> [D]`: the position each example's metric reads (the input's last value).
    SelectPosition,
}

impl Op {
    /// The op's name as written in a spec (`"conv2d"`, `"relu"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear(_) => "linear",
            Op::Conv2d(_) => "conv2d",
            Op::BatchNorm(_) => "batchnorm",
            Op::Activation(a) => a.kind(),
            Op::Prelu(_) => "prelu",
            Op::MaxPool2d(_) => "maxpool2d",
            Op::AvgPool2d(_) => "avgpool2d",
            Op::GlobalAvgPool => "global_avgpool",
            Op::AdaptiveAvgPool2d => "adaptive_avgpool2d",
            Op::Flatten => "flatten",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Scale(_) => "mul",
            Op::Concat => "concat",
            Op::Slice { .. } => "slice",
            Op::ChannelShuffle { .. } => "channel_shuffle",
            Op::LayerNorm(_) => "layernorm",
            Op::RmsNorm(_) => "rmsnorm",
            Op::Identity => "identity",
            Op::Embedding(_) => "embedding",
            Op::Attention(_) => "attention",
            Op::MergeHeads => "merge_heads",
            Op::SelectPosition => "select_position",
        }
    }

    /// The input channel that output channel `c` reads, for the ops that reorder or select whole
    /// channels (`Slice`, `ChannelShuffle`); `None` for every other op.
    pub fn channel_source(&self, c: usize, channels_in: usize) -> Option<usize> {
        match *self {
            Op::Slice { start, .. } => Some(start + c),
            Op::ChannelShuffle { groups } => {
                let per = channels_in / groups;
                Some((c % groups) * per + c / groups)
            }
            _ => None,
        }
    }
}

/// One node of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// The spec's name: how users name player layers.
    pub name: String,
    pub op: Op,
    /// One source for most ops; two for `Add` and `Mul`, two or more for `Concat`.
    pub inputs: Vec<Source>,
    /// Output shape of one example.
    pub shape: Shape,
}

/// A validated network: input shape, nodes in topological order, logits at the last node.
#[derive(Clone, Debug)]
pub struct Graph {
    pub input: Shape,
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Index of the node called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Positions per example of a language model (the `[T]` token ids its embedding reads);
    /// `None` for other models.
    pub fn tokens(&self) -> Option<usize> {
        self.nodes.iter().find_map(|n| match &n.op {
            Op::Embedding(e) if n.inputs == [Source::Input] => Some(e.tokens),
            _ => None,
        })
    }

    /// Number of classes: the length of the last node's output.
    pub fn num_classes(&self) -> usize {
        self.nodes.last().map(|n| n.shape.numel()).unwrap_or(0)
    }

    /// Shape of a source.
    pub fn shape_of(&self, source: Source) -> Shape {
        match source {
            Source::Input => self.input,
            Source::Node(i) => self.nodes[i].shape,
        }
    }

    /// Indices of the nodes that read node `index`.
    pub fn consumers(&self, index: usize) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.contains(&Source::Node(index)))
            .map(|(i, _)| i)
            .collect()
    }
}

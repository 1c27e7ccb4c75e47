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

/// Max or average pooling window (PyTorch floor mode; average pooling counts padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

/// Elementwise activation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// Exact (erf) GELU, PyTorch's default.
    Gelu,
    Sigmoid,
    Tanh,
}

impl Activation {
    /// Apply to one value (the CPU reference; GPU kernels mirror it).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// What a node computes.
#[derive(Clone, Debug)]
pub enum Op {
    Linear(Linear),
    Conv2d(Conv2d),
    BatchNorm(BatchNorm),
    Activation(Activation),
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    /// Adaptive average pooling to 1x1: `[C, H, W] -> [C, 1, 1]`.
    GlobalAvgPool,
    /// `[C, H, W] -> [C * H * W]` (a no-op on memory).
    Flatten,
    /// Elementwise sum of two inputs of the same shape (residual connections).
    Add,
    Identity,
}

impl Op {
    /// The op's name as written in a spec (`"conv2d"`, `"relu"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear(_) => "linear",
            Op::Conv2d(_) => "conv2d",
            Op::BatchNorm(_) => "batchnorm",
            Op::Activation(Activation::Relu) => "relu",
            Op::Activation(Activation::Gelu) => "gelu",
            Op::Activation(Activation::Sigmoid) => "sigmoid",
            Op::Activation(Activation::Tanh) => "tanh",
            Op::MaxPool2d(_) => "maxpool2d",
            Op::AvgPool2d(_) => "avgpool2d",
            Op::GlobalAvgPool => "global_avgpool",
            Op::Flatten => "flatten",
            Op::Add => "add",
            Op::Identity => "identity",
        }
    }
}

/// One node of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// The spec's name: how users name player layers.
    pub name: String,
    pub op: Op,
    /// One source for every op but `Add` (two).
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

//! The `nshap.model.v1` spec: a JSON list of nodes naming their PyTorch `state_dict` tensors.
//! See `docs/model-format.md`.

use crate::error::ModelError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The only format string this version reads.
pub const FORMAT_V1: &str = "nshap.model.v1";

/// A whole spec file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub format: String,
    /// Shape of one example without the batch dimension: `[features]` or `[C, H, W]`; empty
    /// for a language model, which sets `tokens` instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<usize>,
    /// A language model's input: `T` token ids per example (right-padded), plus the position its
    /// metric reads (see `docs/model-format.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    /// Optional normalisation of the eval inputs (see [`Preprocess`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
    pub nodes: Vec<NodeSpec>,
}

/// An int or an `[h, w]` pair, as PyTorch accepts for conv and pool arguments.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Pair {
    One(usize),
    Two([usize; 2]),
}

impl Pair {
    pub fn get(self) -> (usize, usize) {
        match self {
            Pair::One(v) => (v, v),
            Pair::Two([h, w]) => (h, w),
        }
    }
}

/// One node. Which fields apply depends on `op`; unknown fields are rejected so typos surface.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub op: String,
    /// Node names read by this node (`"input"` is the example); default: the previous node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<String>,
    /// Batchnorm shorthand: `p` means `p.weight`, `p.bias`, `p.running_mean`, `p.running_var`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_mean: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_var: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Pair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<Pair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<Pair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dilation: Option<Pair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    /// Pooling: round the output size up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceil_mode: Option<bool>,
    /// Average pooling: count padding in the divisor (default true, as PyTorch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_include_pad: Option<bool>,
    /// Adaptive pooling: the output `[h, w]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_size: Option<Pair>,
    /// `slice`: the channel range `start..end`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<usize>,
    /// `hardtanh`: the clamp range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_val: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_val: Option<f64>,
    /// `leaky_relu`: the slope for negative inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_slope: Option<f64>,
    /// `elu`: the scale of the negative branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// `embedding`: the learned position embeddings (GPT-2's `wpe.weight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_weight: Option<String>,
    /// `attention`: query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// `attention`: key/value heads (grouped-query attention; default `heads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
    /// `attention`: rotary position embedding base; no rotary embedding when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// `attention`: Llama 3's scaling of the rotary embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<crate::graph::RopeScaling>,
    /// `conv2d` with a 2-D weight: the weight is stored `[in, out]` (GPT-2's `Conv1D`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transposed: Option<bool>,
}

impl NodeSpec {
    /// The optional fields this node sets (besides `name` and `op`), by their spec names.
    pub fn present_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut note = |set: bool, name: &'static str| {
            if set {
                out.push(name)
            }
        };
        note(self.inputs.is_some(), "inputs");
        note(self.weight.is_some(), "weight");
        note(self.bias.is_some(), "bias");
        note(self.prefix.is_some(), "prefix");
        note(self.running_mean.is_some(), "running_mean");
        note(self.running_var.is_some(), "running_var");
        note(self.eps.is_some(), "eps");
        note(self.kernel.is_some(), "kernel");
        note(self.stride.is_some(), "stride");
        note(self.padding.is_some(), "padding");
        note(self.dilation.is_some(), "dilation");
        note(self.groups.is_some(), "groups");
        note(self.ceil_mode.is_some(), "ceil_mode");
        note(self.count_include_pad.is_some(), "count_include_pad");
        note(self.output_size.is_some(), "output_size");
        note(self.start.is_some(), "start");
        note(self.end.is_some(), "end");
        note(self.min_val.is_some(), "min_val");
        note(self.max_val.is_some(), "max_val");
        note(self.negative_slope.is_some(), "negative_slope");
        note(self.alpha.is_some(), "alpha");
        note(self.position_weight.is_some(), "position_weight");
        note(self.heads.is_some(), "heads");
        note(self.kv_heads.is_some(), "kv_heads");
        note(self.rope_theta.is_some(), "rope_theta");
        note(self.rope_scaling.is_some(), "rope_scaling");
        note(self.transposed.is_some(), "transposed");
        out
    }
}

/// Per-channel input normalisation applied to the eval data before the first node:
/// `x' = (x - mean[c]) / std[c]` (torchvision's `Normalize`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl NodeSpec {
    /// A node with just a name and an op (builders fill in the rest).
    pub fn new(name: impl Into<String>, op: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            op: op.into(),
            ..NodeSpec::default()
        }
    }
}

impl ModelSpec {
    /// Parse spec text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<ModelSpec, ModelError> {
        let spec: ModelSpec = serde_json::from_str(text).map_err(|e| ModelError::Spec {
            path: path.to_owned(),
            message: format!("invalid spec JSON: {e}"),
        })?;
        if spec.format != FORMAT_V1 {
            return Err(ModelError::Spec {
                path: path.to_owned(),
                message: format!(
                    "field \"format\": expected {FORMAT_V1:?}, found {:?}",
                    spec.format
                ),
            });
        }
        Ok(spec)
    }

    /// Read and parse a spec file.
    pub fn read(path: &Path) -> Result<ModelSpec, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        ModelSpec::parse(&text, path)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

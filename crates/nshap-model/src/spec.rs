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
    /// Shape of one example without the batch dimension: `[features]` or `[C, H, W]`.
    pub input: Vec<usize>,
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

//! Errors of loading and validating models and data. Every message names the file, tensor or
//! node, what was expected and what was found.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spec file is not valid JSON or not a valid nshap.model.v1 document.
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
    /// A node is inconsistent with its tensors or its inputs.
    #[error("node {node:?} ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    /// A tensor is missing, has the wrong shape or dtype, or holds NaN/Inf.
    #[error("{path}: tensor {tensor:?}: {message}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    /// The safetensors file itself is unreadable.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A path that is not what was expected: a directory, or a file in another format (a
    /// PyTorch pickle given as safetensors). The message says what to do instead.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// Several independent problems found in one pass (each on its own line).
    #[error("{} problems:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ModelError>),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Players(String),
}

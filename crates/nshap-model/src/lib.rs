//! # nshap-model
//!
//! The model side of nshap: the `nshap.model.v1` spec format, safetensors loading (f32, f16, bf16),
//! graph validation and shape inference, player layers and their removal baselines, metrics, and
//! the [`Backend`]/[`Evaluator`] seam that the CPU and GPU backends implement.

pub mod backend;
pub mod data;
pub mod error;
pub mod graph;
pub mod hf;
pub mod metric;
pub mod players;
pub mod pushdown;
pub mod shape;

pub use backend::{Backend, BackendError, BackendInfo, EvalJob, Evaluator, Examples, MaskBatch};
pub use data::EvalSet;
pub use error::ModelError;
pub use graph::{
    Activation, Attention, BatchNorm, Conv2d, Embedding, Graph, LayerNorm, Linear, Node, Op,
    Pool2d, RmsNorm, RopeScaling, Source,
};
pub use metric::{CustomMetric, Metric};
pub use players::{Baseline, BaselineValues, PlayerLayer, Players};
pub use shape::Shape;

pub mod build;
pub mod fold;
pub mod load;
pub mod resnet;
pub mod sequence;
pub mod spec;
pub mod stats;
pub mod tensors;

pub use load::{load_arch, load_eval_set, load_hf, load_model, DataOptions};
pub use spec::ModelSpec;

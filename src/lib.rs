//! # nshap — Neuron Shapley, fast
//!
//! How much does each neuron of a trained network contribute to what the network does?
//! nshap estimates each neuron's Shapley value for a metric (accuracy, loss, one class's
//! accuracy) by evaluating thousands of masked sub-networks at once on the CPU or a GPU.
//!
//! This crate is the facade: it re-exports the parts and joins them.
//! - [`model`]: the `nshap.model.v1` spec, safetensors loading, graph, metrics, the backend trait;
//! - [`cpu`] and [`gpu`]: the two backends;
//! - [`estimate`]: games and estimators (exact, permutation, TMAB, CMCS, leave-one-out);
//! - [`NetworkGame`]: a network + a backend + an eval set as a game.
//!
//! ```no_run
//! use nshap::model::{load_model, load_eval_set, DataOptions, EvalJob, Metric, Baseline};
//! use std::sync::Arc;
//! # fn main() -> anyhow::Result<()> {
//! let graph = load_model("assets/digits-cnn/model.json".as_ref(), "assets/digits-cnn/weights.safetensors".as_ref())?;
//! let data = load_eval_set("assets/digits-cnn/eval.safetensors".as_ref(), &graph, &DataOptions::default())?;
//! let players = nshap::resolve_players(&graph, &data, &["relu2".to_string()], Baseline::Zero)?;
//! let backend = nshap::make_backend(nshap::BackendChoice::Cpu)?;
//! let job = EvalJob { graph: Arc::new(graph), players, data: Arc::new(data), metric: Metric::Accuracy };
//! let mut evaluator = backend.prepare(job)?;
//! # Ok(()) }
//! ```

pub use nshap_cpu as cpu;
pub use nshap_estimate as estimate;
pub use nshap_gpu as gpu;
pub use nshap_model as model;

pub mod ablation;
mod game;
mod gpu_glue;
pub mod measures;
pub mod rank;
mod setup;

pub use game::{to_mask_batch, NetworkGame};
pub use gpu_glue::list_adapters;
pub use setup::{make_backend, make_backend_with, resolve_players, BackendChoice};

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
//! - [`NetworkGame`]: a network + a backend + an eval set as a game; [`network_logits`]: the
//!   unmasked network's logits for every example (to compare with PyTorch);
//! - beyond single values: interactions between neurons ([`estimate::interactions`]: Harsanyi
//!   dividends and the Shapley interaction index, exact or sampled), per-neuron
//!   [`measures`] (class selectivity, Jacobian sensitivity, Taylor estimate, leave-one-out),
//!   [`rank`] agreement between rankings and [`ablation`] curves (`docs/measures.md`).
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
//!
//! Which neurons work together, and does Shapley value agree with cheaper measures? On the
//! shipped MLP (16 players: one exact enumeration of 2^16 coalitions serves Shapley values and
//! every interaction):
//!
//! ```
//! use nshap::estimate::interactions::ValueTable;
//! use nshap::model::{load_eval_set, load_model, Baseline, DataOptions, EvalJob, Metric};
//! use nshap::{make_backend, resolve_players, BackendChoice, NetworkGame};
//! use std::sync::Arc;
//! # fn main() -> anyhow::Result<()> {
//! let dir = std::path::Path::new("assets/digits-mlp");
//! let graph = Arc::new(load_model(&dir.join("model.json"), &dir.join("weights.safetensors"))?);
//! let data = Arc::new(load_eval_set(&dir.join("eval.safetensors"), &graph, &DataOptions::default())?);
//! let players = resolve_players(&graph, &data, &["relu2".to_string()], Baseline::Zero)?;
//! let job = EvalJob { graph: graph.clone(), players: players.clone(), data: data.clone(), metric: Metric::NegLoss };
//! let mut evaluator = make_backend(BackendChoice::Cpu)?.prepare(job)?;
//!
//! // Per-neuron measures: gradients on the CPU, leave-one-out on the evaluator's backend.
//! let measures = nshap::measures::neuron_measures(&graph, &data, &players, evaluator.as_mut())?;
//!
//! // All 2^16 coalition values once; Shapley values and pairwise SII both come from them.
//! let mut game = NetworkGame::new(evaluator, players.len(), data.len(), None, 0);
//! let table = ValueTable::enumerate(&mut game, 4096, |_done, _total| {})
//!     .map_err(|e| anyhow::anyhow!(e))?;
//! let shapley = table.shapley();
//! let mut pairs = table.sii(2, None);
//! pairs.sort_by(|a, b| b.value.abs().total_cmp(&a.value.abs()));
//! println!("strongest pair: {:?} ({:.4})", pairs[0].players, pairs[0].value);
//!
//! // Does leave-one-out rank the neurons as Shapley value does?
//! let loo: Vec<f64> = measures.iter().map(|m| m.loo).collect();
//! let rho = nshap::rank::spearman(&shapley, &loo);
//! println!("Spearman(Shapley, LOO) = {rho:?}");
//! assert_eq!(pairs.len(), 16 * 15 / 2);
//! # Ok(()) }
//! ```

pub use nshap_cpu as cpu;
pub use nshap_estimate as estimate;
pub use nshap_gpu as gpu;
pub use nshap_model as model;

pub mod ablation;
mod game;
mod gpu_glue;
pub mod logits;
pub mod measures;
pub mod rank;
mod setup;

pub use game::{to_mask_batch, NetworkGame};
pub use gpu_glue::list_adapters;
pub use logits::network_logits;
pub use setup::{make_backend, make_backend_with, resolve_players, BackendChoice};

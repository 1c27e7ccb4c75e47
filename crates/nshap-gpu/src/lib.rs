//! # nshap-gpu
//!
//! The GPU backend of nshap: evaluates thousands of masked sub-networks ("coalitions") of a
//! model with hand-written WGSL kernels on wgpu (Vulkan, Metal, DX12; lavapipe in CI).
//!
//! How it works, in one paragraph: the graph is folded (batchnorm into conv/linear) and planned
//! into kernel steps ([`plan`]); everything before the first player node is computed once per
//! example chunk and *broadcast* to all coalitions; the coalition batch is a real batch dimension
//! (rows = coalitions x examples); the mask that removes players is an epilogue fused into the
//! kernel producing a player node; the metric is reduced on the device so one float per coalition
//! is read back. Work is chunked to the device's limits and a memory budget ([`chunk`]).
//! See `docs/gpu.md`.

mod backend;
mod buffers;
pub mod chunk;
pub mod cost;
mod device;
mod error;
mod evaluator;
pub mod kernels;
mod options;
mod params;
pub mod plan;

pub use backend::GpuBackend;
pub use cost::{
    cost_per_coalition_example, cost_per_coalition_example_with, flops_per_coalition_example,
    StepCost,
};
pub use device::{list_adapters, AdapterSummary};
pub use error::GpuError;
pub use options::{GpuOptions, Precision};

//! # nshap-cpu
//!
//! The CPU backend of nshap: evaluates batches of coalitions (sub-networks with some channels
//! replaced by a baseline) on batches of examples and reduces each to one metric value.
//!
//! Work that no coalition changes is done once: every node that does not depend on the mask
//! (the prefix up to the first player layer, and side branches) is computed once per example and
//! cached; each (coalitions x examples) work item runs only the dependent nodes, in parallel
//! with rayon, with conv as im2col + GEMM (`matrixmultiply`). A conv or linear layer that reads
//! a player node directly is computed from per-example tables instead (`table.rs`): linear in the
//! mask, so a coalition costs a few table adds, and one per step along a permutation walk.

mod dependent;
mod evaluator;
#[cfg(test)]
mod fast_path_tests;
pub mod grad;
pub mod means;
pub mod measures;
pub mod ops;
mod plan;
mod pool;
mod shared;
mod subsets;
mod table;

pub use evaluator::{CpuEvaluator, CpuOptions};
pub use means::activation_means;
pub use measures::{neuron_measures, LayerMeasures};

use nshap_model::{Backend, BackendError, EvalJob, Evaluator};

/// The CPU backend.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    pub options: CpuOptions,
}

impl CpuBackend {
    pub fn new(options: CpuOptions) -> CpuBackend {
        CpuBackend { options }
    }
}

impl Backend for CpuBackend {
    fn prepare(&self, job: EvalJob) -> Result<Box<dyn Evaluator>, BackendError> {
        Ok(Box::new(CpuEvaluator::new(job, self.options.clone())?))
    }
}

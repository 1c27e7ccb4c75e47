//! The public entry point: a device and its pipeline cache, implementing `nshap_model::Backend`.

use crate::device::{self, AdapterSummary, GpuContext};
use crate::error::GpuError;
use crate::evaluator::GpuEvaluator;
use crate::kernels::Pipelines;
use crate::options::{GpuOptions, Precision};
use nshap_model::{Backend, BackendError, EvalJob, Evaluator, Metric};
use std::sync::Arc;

/// An open GPU device. Cheap to share: evaluators prepared from it reuse its pipelines.
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    pipelines: Arc<Pipelines>,
    options: GpuOptions,
}

impl GpuBackend {
    /// Select an adapter (see [`GpuOptions::adapter`] and `NSHAP_ADAPTER`) and open a device.
    pub fn new(options: GpuOptions) -> Result<GpuBackend, GpuError> {
        let ctx = Arc::new(device::open(&options)?);
        let pipelines = Arc::new(Pipelines::new(&ctx.device));
        Ok(GpuBackend {
            ctx,
            pipelines,
            options,
        })
    }

    /// The adapter in use.
    pub fn adapter_info(&self) -> &AdapterSummary {
        &self.ctx.summary
    }

    /// True for a software adapter such as lavapipe: `--backend auto` should then prefer the CPU
    /// backend, which is faster on the same cores.
    pub fn is_cpu_adapter(&self) -> bool {
        self.ctx.summary.is_cpu
    }

    /// Another handle on the same device and pipeline cache with different options (memory
    /// budget, precision); `options.adapter` is ignored. Cheaper than [`GpuBackend::new`]: no new
    /// device, no pipeline recompilation.
    pub fn with_options(&self, options: GpuOptions) -> Result<GpuBackend, GpuError> {
        if options.precision == Precision::F16 && !self.ctx.summary.shader_f16 {
            return Err(GpuError::Unsupported {
                adapter: self.ctx.summary.name.clone(),
                what: "f16 storage (feature SHADER_F16), needed by Precision::F16".into(),
            });
        }
        Ok(GpuBackend {
            ctx: self.ctx.clone(),
            pipelines: self.pipelines.clone(),
            options,
        })
    }

    pub fn options(&self) -> &GpuOptions {
        &self.options
    }
}

impl Backend for GpuBackend {
    fn prepare(&self, job: EvalJob) -> Result<Box<dyn Evaluator>, BackendError> {
        if let Metric::Custom(m) = &job.metric {
            return Err(BackendError::Unsupported {
                backend: "gpu",
                what: format!(
                    "custom metric {:?} (the GPU reduces built-in metrics on the device)",
                    m.name()
                ),
            });
        }
        if job.metric.needs_distractors() {
            return Err(BackendError::Unsupported {
                backend: "gpu",
                what: format!(
                    "metric {} (language models run on the CPU backend for now)",
                    job.metric.name()
                ),
            });
        }
        let evaluator =
            GpuEvaluator::new(self.ctx.clone(), self.pipelines.clone(), &self.options, job)?;
        Ok(Box::new(evaluator))
    }
}

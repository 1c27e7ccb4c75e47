//! One bind group layout for every kernel and a lazily filled pipeline cache.
//!
//! All kernels share the layout below, so a step's bind group only depends on which buffers it
//! reads and writes; each shader uses the subset of bindings it needs.
//!   0 params (uniform, dynamic offset)   1 input 0        2 weights / input 1
//!   3 f32 constants (bias; scale+shift; slope; layernorm weight+bias+eps) or labels (u32)
//!   4 output (read-write)
//!   5 coalition masks (u32)              6 player baselines (f32)

use super::Kernel;
use crate::error::GpuError;
use crate::options::Precision;
use crate::params::Params;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) const BINDINGS: u32 = 7;

/// Pipelines for one device, built on first use and shared by every evaluator of a backend
/// (pipeline compilation is the slowest part of preparing a job on software adapters).
pub(crate) struct Pipelines {
    pub layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    cache: Mutex<HashMap<(Kernel, Precision), Arc<wgpu::ComputePipeline>>>,
}

impl Pipelines {
    pub fn new(device: &wgpu::Device) -> Pipelines {
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<Params>() as u64),
            },
            count: None,
        }];
        entries.extend((1..BINDINGS).map(|b| storage(b, b != 4)));
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("nshap.kernel"),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("nshap.kernel"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        Pipelines {
            layout,
            pipeline_layout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The pipeline of `kernel`, compiling it on first use.
    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        precision: Precision,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| GpuError::Device("pipeline cache poisoned".into()))?;
        if let Some(p) = cache.get(&(kernel, precision)) {
            return Ok(p.clone());
        }
        let source = kernel.source(precision);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name()),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = Arc::new(
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name()),
                layout: Some(&self.pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            }),
        );
        cache.insert((kernel, precision), pipeline.clone());
        Ok(pipeline)
    }
}

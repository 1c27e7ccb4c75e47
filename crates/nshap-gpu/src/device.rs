//! Headless adapter selection and device creation.
//!
//! Order of choice: `GpuOptions::adapter`, else the `NSHAP_ADAPTER` environment variable (a
//! case-insensitive substring of the adapter name), else wgpu's high-performance adapter. wgpu's
//! own `WGPU_BACKEND` (e.g. `vulkan`) restricts the backends searched. The device is opened with
//! the adapter's own limits, so chunking can use all the memory it offers.

use crate::error::GpuError;
use crate::options::{GpuOptions, Precision};
use std::fmt;
use std::sync::{Arc, Mutex};

/// One adapter as `nshap devices` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    pub name: String,
    /// `Vulkan`, `Metal`, `Dx12`, `Gl`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu`, `Other`.
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// f16 storage available (`Precision::F16`).
    pub shader_f16: bool,
    /// A software adapter (e.g. lavapipe): correct but slower than the CPU backend.
    pub is_cpu: bool,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1 << 20;
        write!(
            f,
            "{} [{} {}] driver {} {}; max buffer {} MiB, max storage binding {} MiB, \
             workgroup storage {} KiB, {} invocations, subgroup {}..{}, f16 {}",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.driver_info,
            self.max_buffer_size / MIB,
            self.max_storage_buffer_binding_size / MIB,
            self.max_compute_workgroup_storage_size / 1024,
            self.max_compute_invocations_per_workgroup,
            self.subgroup_min_size,
            self.subgroup_max_size,
            if self.shader_f16 { "yes" } else { "no" },
        )
    }
}

fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        max_buffer_size: limits.max_buffer_size,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        subgroup_min_size: info.subgroup_min_size,
        subgroup_max_size: info.subgroup_max_size,
        shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
        is_cpu: info.device_type == wgpu::DeviceType::Cpu,
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu can see (honours `WGPU_BACKEND`); empty when there is none.
pub fn list_adapters() -> Vec<AdapterSummary> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(summarize)
        .collect()
}

/// An open device and what the backend needs to know about it.
pub(crate) struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    pub limits: wgpu::Limits,
    /// The first uncaptured device error (validation, out of memory) or device loss, if any:
    /// wgpu reports those through callbacks, the evaluator turns them into errors.
    pub failure: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// The recorded device failure, if any.
    pub fn check(&self) -> Result<(), GpuError> {
        match self.failure.lock().map(|f| f.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(message)) => Err(GpuError::Device(message)),
            Err(_) => Err(GpuError::Device("device error state poisoned".into())),
        }
    }
}

fn select_adapter(
    instance: &wgpu::Instance,
    options: &GpuOptions,
) -> Result<wgpu::Adapter, GpuError> {
    let wanted = options
        .adapter
        .clone()
        .or_else(|| std::env::var("NSHAP_ADAPTER").ok())
        .filter(|w| !w.trim().is_empty());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    if adapters.is_empty() {
        let backend = std::env::var("WGPU_BACKEND")
            .map(|b| format!(" (WGPU_BACKEND={b})"))
            .unwrap_or_default();
        return Err(GpuError::NoAdapter {
            hint: format!(
                "{backend}: install a GPU driver, or Mesa's lavapipe for a software Vulkan device \
                 (Debian: apt-get install mesa-vulkan-drivers)"
            ),
        });
    }
    if let Some(wanted) = wanted {
        let needle = wanted.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&needle))
            .ok_or_else(|| GpuError::AdapterNotFound {
                wanted,
                available: names.join(", "),
            });
    }
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    match pollster::block_on(instance.request_adapter(&options)) {
        Ok(adapter) => Ok(adapter),
        // request_adapter can refuse where enumeration found something (e.g. only a fallback
        // adapter): take the first one rather than fail.
        Err(_) => Ok(adapters.into_iter().next().expect("checked non-empty")),
    }
}

/// Select an adapter and open a device with its own limits.
pub(crate) fn open(options: &GpuOptions) -> Result<GpuContext, GpuError> {
    let instance = instance();
    let adapter = select_adapter(&instance, options)?;
    let summary = summarize(&adapter);
    if options.precision == Precision::F16 && !summary.shader_f16 {
        return Err(GpuError::Unsupported {
            adapter: summary.name,
            what: "f16 storage (feature SHADER_F16), needed by Precision::F16".into(),
        });
    }
    // f16 is enabled whenever the adapter has it, so handles made by `GpuBackend::with_options`
    // can switch precision on the same device.
    let features = if summary.shader_f16 {
        wgpu::Features::SHADER_F16
    } else {
        wgpu::Features::empty()
    };
    let limits = adapter.limits();
    let descriptor = wgpu::DeviceDescriptor {
        label: Some("nshap"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&descriptor)).map_err(|e| {
        GpuError::RequestDevice {
            adapter: summary.name.clone(),
            message: e.to_string(),
        }
    })?;
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let sink = failure.clone();
    device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
        if let Ok(mut slot) = sink.lock() {
            slot.get_or_insert_with(|| error.to_string());
        }
    }));
    let sink = failure.clone();
    device.set_device_lost_callback(move |reason, message| {
        if let Ok(mut slot) = sink.lock() {
            slot.get_or_insert_with(|| format!("device lost ({reason:?}): {message}"));
        }
    });
    Ok(GpuContext {
        device,
        queue,
        summary,
        limits,
        failure,
    })
}

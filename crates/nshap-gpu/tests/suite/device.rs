//! Adapter listing and selection.

use crate::common::*;
use nshap_gpu::{list_adapters, GpuBackend, GpuOptions};

#[test]
fn the_backend_adapter_is_listed_and_selectable_by_name() {
    let Some(gpu) = gpu() else { return };
    let info = gpu.adapter_info();
    let all = list_adapters();
    assert!(
        all.iter().any(|a| a.name == info.name),
        "{info} not in {all:?}"
    );
    assert_eq!(gpu.is_cpu_adapter(), info.device_type == "Cpu");
    assert!(info.max_storage_buffer_binding_size >= 128 << 20, "{info}");
    // Case-insensitive substring selection opens the same adapter.
    let needle = info.name.to_uppercase();
    let chosen = GpuBackend::new(GpuOptions {
        adapter: Some(needle),
        ..GpuOptions::default()
    })
    .unwrap();
    assert_eq!(chosen.adapter_info().name, info.name);
}

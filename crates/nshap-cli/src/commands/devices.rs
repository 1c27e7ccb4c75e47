//! `nshap devices`: the GPU adapters wgpu can see.

use anyhow::Result;

pub fn execute() -> Result<()> {
    let adapters = nshap::list_adapters();
    if adapters.is_empty() {
        println!("no GPU adapter found (install a Vulkan/Metal/DX12 driver, or Mesa's lavapipe for software Vulkan); the CPU backend is used");
        return Ok(());
    }
    for a in adapters {
        println!("{a}");
    }
    Ok(())
}

//! Print the per-kernel FLOPs and bytes per coalition-example of the GPU plan for a model, and a
//! roofline bound for named GPUs. No device needed.
//!
//! ```text
//! cargo run -p nshap-gpu --example costs -- assets/digits-cnn relu2
//! ```

use nshap_gpu::cost_per_coalition_example;
use nshap_model::{PlayerLayer, Players};
use std::path::PathBuf;

/// (name, fp32 FLOP/s, bytes/s)
const GPUS: [(&str, f64, f64); 2] = [
    ("H100 SXM", 67e12, 3.35e12),
    ("RTX 4090", 82.6e12, 1.008e12),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map_or("assets/digits-cnn", String::as_str));
    let names: Vec<&str> = if args.len() > 2 {
        args[2..].iter().map(String::as_str).collect()
    } else {
        vec!["relu2"]
    };
    let graph = nshap_model::load_model(&dir.join("model.json"), &dir.join("weights.safetensors"))?;
    let layers = names
        .iter()
        .map(|name| {
            let node = graph.find(name).ok_or(format!("unknown node {name}"))?;
            let c = graph.nodes[node].shape.channels();
            Ok(PlayerLayer {
                node,
                name: name.to_string(),
                baseline: vec![0.0; c],
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let players = Players::new(layers)?;
    let costs = cost_per_coalition_example(&graph, &players);
    println!("| step | kernel | runs | FLOPs | bytes (f32) |\n|---|---|---|---:|---:|");
    for c in &costs {
        let runs = if c.shared {
            "per example"
        } else {
            "per coalition-example"
        };
        println!(
            "| {} | {} | {runs} | {} | {} |",
            c.label, c.kernel, c.flops, c.bytes
        );
    }
    let (flops, bytes) = costs
        .iter()
        .filter(|c| !c.shared)
        .fold((0, 0), |(f, b), c| (f + c.flops, b + c.bytes));
    println!("\nper coalition-example (suffix + metric): {flops} FLOPs, {bytes} bytes (f32), {} bytes (f16)", bytes / 2);
    println!(
        "arithmetic intensity: {:.2} FLOP/byte (f32)",
        flops as f64 / bytes as f64
    );
    for (name, peak, bw) in GPUS {
        let t = (flops as f64 / peak).max(bytes as f64 / bw);
        let t16 = (flops as f64 / peak).max(bytes as f64 / 2.0 / bw);
        println!(
            "{name}: roofline bound {:.0} M coalition-examples/s (f32), {:.0} M (f16 storage); {}",
            1e-6 / t,
            1e-6 / t16,
            if bytes as f64 / bw > flops as f64 / peak {
                "memory-bound"
            } else {
                "compute-bound"
            }
        );
    }
    Ok(())
}

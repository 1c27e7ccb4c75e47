//! Print the per-kernel FLOPs and bytes per coalition-example of the GPU plan for a model, and a
//! roofline bound for named GPUs. No device needed.
//!
//! ```text
//! cargo run -p nshap-gpu --example costs -- assets/digits-cnn relu2
//! cargo run -p nshap-gpu --example costs -- --plain assets/digits-cnn relu2
//! cargo run -p nshap-gpu --example costs -- --summary NAME assets/digits-cnn relu2
//! ```
//!
//! `--plain` costs the plan without fast paths (every op as written). `--summary NAME` prints
//! one markdown row comparing the plain plan with the fast one, for random coalitions and along
//! permutation walks (the table of docs/gpu.md).

use nshap_gpu::plan::PlanOptions;
use nshap_gpu::{cost_per_coalition_example_with, StepCost};
use nshap_model::{Graph, PlayerLayer, Players};
use std::path::PathBuf;

/// (name, fp32 FLOP/s, bytes/s)
const GPUS: [(&str, f64, f64); 3] = [
    ("H200 SXM", 67e12, 4.8e12),
    ("H100 SXM", 67e12, 3.35e12),
    ("RTX 4090", 82.6e12, 1.008e12),
];

/// Per coalition-example work of the steps that run per coalition (suffix and metric): FLOPs
/// and bytes for random coalitions, then along walks.
fn totals(costs: &[StepCost]) -> (u64, u64, u64, u64) {
    costs
        .iter()
        .filter(|c| !c.shared)
        .fold((0, 0, 0, 0), |t, c| {
            (
                t.0 + c.flops,
                t.1 + c.bytes,
                t.2 + c.walk_flops,
                t.3 + c.walk_bytes,
            )
        })
}

/// Roofline bound in coalition-examples per second.
fn bound(flops: u64, bytes: u64, peak: f64, bandwidth: f64) -> f64 {
    1.0 / (flops as f64 / peak).max(bytes as f64 / bandwidth)
}

fn options(fast: bool) -> PlanOptions {
    PlanOptions {
        fast_paths: fast,
        ..PlanOptions::default()
    }
}

fn players_of(graph: &Graph, names: &[String]) -> Result<Players, Box<dyn std::error::Error>> {
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
    Ok(Players::new(layers)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let plain = args.first().is_some_and(|a| a == "--plain");
    if plain {
        args.remove(0);
    }
    let summary = match args.first().map(String::as_str) {
        Some("--summary") if args.len() > 1 => {
            let name = args[1].clone();
            args.drain(..2);
            Some(name)
        }
        _ => None,
    };
    let dir = PathBuf::from(args.first().map_or("assets/digits-cnn", String::as_str));
    let names: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec!["relu2".to_string()]
    };
    let graph = nshap_model::load_model(&dir.join("model.json"), &dir.join("weights.safetensors"))?;
    let players = players_of(&graph, &names)?;

    if let Some(name) = summary {
        let (_, peak, bw) = GPUS[0];
        let (pf, pb, _, _) = totals(&cost_per_coalition_example_with(
            &graph,
            &players,
            options(false),
        ));
        let (ff, fb, wf, wb) = totals(&cost_per_coalition_example_with(
            &graph,
            &players,
            options(true),
        ));
        let m = |x: f64| format!("{:.1}", x / 1e6);
        println!(
            "| {name} | {pf} / {pb} | {ff} / {fb} | {wf} / {wb} | {} | {} | {} |",
            m(bound(pf, pb, peak, bw)),
            m(bound(ff, fb, peak, bw)),
            m(bound(wf, wb, peak, bw)),
        );
        return Ok(());
    }

    let costs = cost_per_coalition_example_with(&graph, &players, options(!plain));
    println!(
        "| step | kernel | runs | FLOPs | bytes (f32) | FLOPs, walks | bytes, walks |\n\
         |---|---|---|---:|---:|---:|---:|"
    );
    for c in &costs {
        let runs = if c.shared {
            "per example"
        } else {
            "per coalition-example"
        };
        println!(
            "| {} | {} | {runs} | {} | {} | {} | {} |",
            c.label, c.kernel, c.flops, c.bytes, c.walk_flops, c.walk_bytes
        );
    }
    let (flops, bytes, walk_flops, walk_bytes) = totals(&costs);
    for (what, flops, bytes) in [
        ("random coalitions", flops, bytes),
        ("permutation walks", walk_flops, walk_bytes),
    ] {
        println!(
            "\nper coalition-example, {what} (suffix + metric): {flops} FLOPs, {bytes} bytes \
             (f32), {} bytes (f16); {:.2} FLOP/byte",
            bytes / 2,
            flops as f64 / bytes as f64
        );
        for (name, peak, bw) in GPUS {
            println!(
                "{name}: roofline bound {:.1} M coalition-examples/s (f32), {:.1} M (f16 storage); {}",
                bound(flops, bytes, peak, bw) / 1e6,
                bound(flops, bytes / 2, peak, bw) / 1e6,
                if bytes as f64 / bw > flops as f64 / peak {
                    "memory-bound"
                } else {
                    "compute-bound"
                }
            );
        }
    }
    Ok(())
}

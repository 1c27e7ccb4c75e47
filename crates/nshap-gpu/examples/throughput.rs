//! Measure GPU evaluation throughput on a model: coalition-examples per second.
//!
//! ```text
//! cargo run --release -p nshap-gpu --example throughput -- assets/digits-cnn relu2 1000 500 [f16]
//! ```
//! Arguments: model folder (model.json, weights.safetensors, eval.safetensors), player node,
//! coalitions, examples, and optionally `f16`. Prints the adapter, the plan's FLOPs per
//! coalition-example, the wall time (device sync inside the timed region) and the rate.

use nshap_gpu::{flops_per_coalition_example, GpuBackend, GpuOptions, Precision};
use nshap_model::{Backend, EvalJob, Examples, MaskBatch, Metric, PlayerLayer, Players};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map_or("assets/digits-cnn", String::as_str));
    let player = args.get(2).map_or("relu2", String::as_str);
    let coalitions: usize = args.get(3).map_or(Ok(1000), |s| s.parse())?;
    let examples: usize = args.get(4).map_or(Ok(500), |s| s.parse())?;
    let precision = if args.get(5).map(String::as_str) == Some("f16") {
        Precision::F16
    } else {
        Precision::F32
    };

    let graph = nshap_model::load_model(&dir.join("model.json"), &dir.join("weights.safetensors"))?;
    let data =
        nshap_model::load_eval_set(&dir.join("eval.safetensors"), &graph, &Default::default())?
            .head(examples);
    let node = graph.find(player).ok_or("unknown player node")?;
    let n = graph.nodes[node].shape.channels();
    let players = Players::new(vec![PlayerLayer {
        node,
        name: player.into(),
        baseline: vec![0.0; n],
    }])?;
    let backend = GpuBackend::new(GpuOptions {
        precision,
        ..GpuOptions::default()
    })?;
    println!("adapter: {}", backend.adapter_info());
    let flops = flops_per_coalition_example(&graph, &players);
    println!("per-coalition FLOPs per coalition-example: {flops}");

    // Deterministic pseudo-random coalitions.
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut masks = MaskBatch::new(n);
    for _ in 0..coalitions {
        let row: Vec<bool> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state & 1 == 1
            })
            .collect();
        masks.push_bools(&row);
    }
    let job = EvalJob {
        graph: Arc::new(graph),
        players,
        data: Arc::new(data),
        metric: Metric::Accuracy,
    };
    let mut ev = backend.prepare(job)?;
    let _ = ev.evaluate(Examples::All, &masks.slice(0..masks.len().min(8)))?; // warm-up
    let runs = 3;
    let start = Instant::now();
    for _ in 0..runs {
        let values = ev.evaluate(Examples::All, &masks)?; // returns after the read-back: synced
        assert_eq!(values.len(), coalitions);
    }
    let secs = start.elapsed().as_secs_f64() / runs as f64;
    let rate = (coalitions * examples) as f64 / secs;
    println!(
        "{coalitions} coalitions x {examples} examples ({precision:?}): {:.3} s per call, {:.3} M coalition-examples/s, {:.2} GFLOP/s",
        secs,
        rate / 1e6,
        rate * flops as f64 / 1e9
    );
    Ok(())
}

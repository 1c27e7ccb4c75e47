//! `nshap inspect`: nodes, shapes, players, parameters, FLOPs, and the full network's metrics.

use crate::model_args::{DataArgs, ModelArgs};
use anyhow::Result;
use clap::Args;
use nshap::cpu::CpuBackend;
use nshap::model::stats::{flops, parameters, total_flops, total_parameters};
use nshap::model::{
    Backend, EvalJob, Examples, Graph, MaskBatch, Metric, PlayerLayer, Players, Source,
};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the model spec as JSON (useful with --arch to start a hand-written spec).
    #[arg(long)]
    pub emit_spec: bool,
}

fn source_name(g: &Graph, s: Source) -> &str {
    match s {
        Source::Input => "input",
        Source::Node(i) => &g.nodes[i].name,
    }
}

pub fn execute(args: InspectArgs) -> Result<()> {
    let model = args.model.load()?;
    let g = &model.graph;
    if args.emit_spec {
        if let (Some(arch), Some(w)) = (&args.model.arch, &args.model.weights) {
            let (_, spec) = nshap::model::load_arch(arch, w, args.model.input_dims()?)?;
            println!("{}", spec.to_json_pretty());
            return Ok(());
        }
    }
    println!("model: {}", model.description);
    println!("input: {}   classes: {}", g.input, g.num_classes());
    println!(
        "{:<24} {:<15} {:<26} {:<16} {:>8} {:>10} {:>14}",
        "node", "op", "inputs", "output", "players", "params", "FLOPs/example"
    );
    for node in &g.nodes {
        let inputs: Vec<&str> = node.inputs.iter().map(|&s| source_name(g, s)).collect();
        println!(
            "{:<24} {:<15} {:<26} {:<16} {:>8} {:>10} {:>14}",
            node.name,
            node.op.kind(),
            inputs.join(","),
            node.shape.to_string(),
            node.shape.channels(),
            parameters(node),
            flops(g, node)
        );
    }
    println!(
        "total: {} nodes, {} parameters, {} FLOPs per example ({:.3} GFLOPs; 2 per multiply-add)",
        g.nodes.len(),
        total_parameters(g),
        total_flops(g),
        total_flops(g) as f64 / 1e9
    );
    if args.data.data.is_some() {
        let (data, _) = args.data.load(g)?;
        let graph = Arc::new(model.graph.clone());
        let data = Arc::new(data);
        // Any node serves as the player layer: the full coalition is the unmasked network.
        let layer = PlayerLayer {
            node: 0,
            name: graph.nodes[0].name.clone(),
            baseline: vec![0.0; graph.nodes[0].shape.channels()],
        };
        let players = Players::new(vec![layer])?;
        let mut full = MaskBatch::new(players.len());
        full.push_full();
        for metric in [Metric::Accuracy, Metric::NegLoss] {
            let job = EvalJob {
                graph: graph.clone(),
                players: players.clone(),
                data: data.clone(),
                metric: metric.clone(),
            };
            let mut ev = CpuBackend::default().prepare(job)?;
            let v = ev.evaluate(Examples::All, &full)?;
            println!(
                "full network on {} examples: {} = {:.4}",
                data.len(),
                metric.name(),
                v[0]
            );
        }
    }
    Ok(())
}

//! `nshap inspect`: nodes, shapes, players, parameters, FLOPs, and the full network's metrics.

use crate::model_args::{DataArgs, ModelArgs};
use anyhow::Result;
use clap::Args;
use nshap::cpu::CpuBackend;
use nshap::model::players::find_player_nodes;
use nshap::model::stats::{flops, parameters, total_flops, total_parameters};
use nshap::model::{
    Backend, Baseline, EvalJob, EvalSet, Examples, Graph, MaskBatch, Metric, PlayerLayer, Players,
    Source,
};
use nshap::resolve_players;
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
    /// Show what a --players list selects: nodes, op, shape and players per node, and the total.
    #[arg(long, value_delimiter = ',', value_name = "NODE|PATTERN[,...]")]
    pub players: Vec<String>,
}

fn source_name(g: &Graph, s: Source) -> &str {
    match s {
        Source::Input => "input",
        Source::Node(i) => &g.nodes[i].name,
    }
}

pub fn execute(args: InspectArgs) -> Result<()> {
    let model = args.model.load(&args.data)?;
    let g = &model.graph;
    // A bad --players list is an error before anything is printed.
    if !args.players.is_empty() {
        find_player_nodes(g, &args.players)?;
    }
    if args.emit_spec {
        println!("{}", model.spec.to_json_pretty());
        return Ok(());
    }
    println!("model: {}", model.description);
    println!("input: {}   classes: {}", g.input, g.num_classes());
    let w = name_width(g.nodes.iter().map(|n| n.name.as_str()));
    println!(
        "{:<w$} {:<15} {:<26} {:<16} {:>8} {:>10} {:>14}",
        "node", "op", "inputs", "output", "players", "params", "FLOPs/example"
    );
    for node in &g.nodes {
        let inputs: Vec<&str> = node.inputs.iter().map(|&s| source_name(g, s)).collect();
        let mut inputs = inputs.join(",");
        if inputs.len() > 26 {
            // A concat of many branches: the count, not every name.
            inputs = format!("{} inputs", node.inputs.len());
        }
        println!(
            "{:<w$} {:<15} {:<26} {:<16} {:>8} {:>10} {:>14}",
            node.name,
            node.op.kind(),
            inputs,
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
    if !args.players.is_empty() {
        print_selection(g, &args.players)?;
        let data = match &args.data.data {
            Some(_) => Some(args.data.load(g)?.0),
            None => None,
        };
        print_cpu_plan(g, data, &args.players)?;
    }
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

/// Column width for node names: the longest, within 16..48.
fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(0).clamp(16, 48)
}

/// How the CPU backend will compute the layers after the players (tables or plain), which
/// depends on the eval set's size: without --data, for one example.
fn print_cpu_plan(g: &Graph, data: Option<EvalSet>, items: &[String]) -> Result<()> {
    let sized = data.is_some();
    let data = match data {
        Some(d) => d,
        None => EvalSet::new(
            g.input,
            vec![0.0; g.input.numel()],
            vec![0],
            g.num_classes(),
        )?,
    };
    let players = resolve_players(g, &data, items, Baseline::Zero)?;
    let job = EvalJob {
        graph: Arc::new(g.clone()),
        players,
        data: Arc::new(data),
        metric: Metric::Accuracy,
    };
    // The GPU plan needs no device; only its table memory limit depends on one.
    let (folded, folded_players) = nshap::model::fold::fold_batchnorm(&job.graph, &job.players);
    let gpu = nshap::gpu::plan::Plan::build(&folded, &folded_players).choices;
    let plan = CpuBackend::default().prepare(job)?.info().plan;
    if !plan.is_empty() {
        println!(
            "\nCPU backend, layers reading the players{}:",
            if sized {
                ""
            } else {
                " (for one example; with --data, for the eval set)"
            }
        );
        for line in plan {
            println!("  {line}");
        }
    }
    if g.tokens().is_some() {
        println!("\nGPU backend: no kernels for language models yet (they run on the CPU)");
    } else if !gpu.is_empty() {
        println!("\nGPU backend, fast paths (before the device's memory limit on tables):");
        for line in gpu {
            println!("  {line}");
        }
    }
    Ok(())
}

/// What a --players list selects, node by node, and in total.
fn print_selection(g: &Graph, items: &[String]) -> Result<()> {
    let nodes = find_player_nodes(g, items)?;
    let output = g.nodes.len() - 1;
    let w = name_width(nodes.iter().map(|&i| g.nodes[i].name.as_str()));
    println!("\n--players {} selects:", items.join(","));
    println!(
        "{:<w$} {:<15} {:<16} {:>8}",
        "node", "op", "output", "players"
    );
    let mut total = 0;
    for &i in &nodes {
        let n = &g.nodes[i];
        total += n.shape.channels();
        println!(
            "{:<w$} {:<15} {:<16} {:>8}{}",
            n.name,
            n.op.kind(),
            n.shape.to_string(),
            n.shape.channels(),
            if i == output {
                "  (the output node: not a valid player layer)"
            } else {
                ""
            }
        );
    }
    println!(
        "total: {total} players in {} layer{}",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

//! `nshap bench`: masked forward throughput on the shipped models and torchvision-shaped
//! ResNet-18s, CPU and GPU side by side in one run.

use crate::model_args::{demo_dir, DataArgs, ModelArgs};
use anyhow::{Context, Result};
use clap::Args;
use nshap::model::stats::split_flops;
use nshap::model::{
    load_arch, load_eval_set, load_model, Baseline, DataOptions, EvalJob, EvalSet, Examples, Graph,
    MaskBatch, Metric,
};
use nshap::{make_backend, make_backend_with, resolve_players, BackendChoice};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Backends to compare: cpu, gpu or both.
    #[arg(long, default_value = "both")]
    pub backend: String,
    /// Models: comma-separated from digits-mlp, digits-cnn, digits-resnet, resnet18-32, resnet18-224.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "digits-mlp,digits-cnn,digits-resnet,resnet18-32,resnet18-224"
    )]
    pub models: Vec<String>,
    /// Coalitions per batch (default: sized so each batch is a few GFLOPs).
    #[arg(long)]
    pub coalitions: Option<usize>,
    /// Examples per batch (default: sized with the coalitions).
    #[arg(long)]
    pub examples: Option<usize>,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Print one JSON object per measurement instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Coalitions as permutation walks (each one player fewer than the one before, from the
    /// full coalition down, as permutation sampling sends them) instead of random ones.
    #[arg(long)]
    pub walks: bool,

    /// Run each backend without its fast paths (the CPU without tables, the GPU without
    /// pushdown, tables and the mask on read), to measure what they gain; shown as `cpu-plain`
    /// and `gpu-plain`.
    #[arg(long)]
    pub plain: bool,
    /// Your own model instead of --models (with --weights, --data and --players).
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Player layers for --model (node names or patterns, as for `nshap run`).
    #[arg(long, value_delimiter = ',', value_name = "NODE|PATTERN[,...]")]
    pub players: Vec<String>,
    /// Name shown for --model in the table.
    #[arg(long, default_value = "model")]
    pub name: String,
}

/// A model to measure.
pub struct Case {
    pub name: String,
    pub graph: Graph,
    pub data: EvalSet,
    pub players: Vec<String>,
}

fn random_data(graph: &Graph, n: usize, seed: u64) -> Result<EvalSet> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let inputs = (0..n * graph.input.numel())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let labels = (0..n)
        .map(|_| rng.random_range(0..graph.num_classes() as u32))
        .collect();
    Ok(EvalSet::new(
        graph.input,
        inputs,
        labels,
        graph.num_classes(),
    )?)
}

/// Load a benchmark case by name.
pub fn case(name: &str) -> Result<Case> {
    match name {
        "digits-mlp" | "digits-cnn" | "digits-resnet" => {
            let dir = demo_dir()?.join("..").join(name);
            let graph = load_model(&dir.join("model.json"), &dir.join("weights.safetensors"))?;
            let data = load_eval_set(
                &dir.join("eval.safetensors"),
                &graph,
                &DataOptions::default(),
            )?;
            let player = ["relu2", "layer1.0.relu2", "layer2.0.relu2"]
                .into_iter()
                .find(|p| graph.find(p).is_some())
                .context("no known player node in the shipped model")?;
            Ok(Case {
                name: name.into(),
                graph,
                data,
                players: vec![player.into()],
            })
        }
        "resnet18-32" | "resnet18-224" => {
            let size = if name.ends_with("224") { 224 } else { 32 };
            let bytes = nshap::model::resnet::synthetic_state_dict("resnet18", 1, 1000, 7)
                .context("building resnet18")?;
            let path = std::env::temp_dir().join(format!(
                "nshap-bench-resnet18-{}.safetensors",
                std::process::id()
            ));
            std::fs::write(&path, bytes)?;
            let loaded = load_arch("resnet18", &path, [3, size, size]);
            let _ = std::fs::remove_file(&path);
            let (graph, _) = loaded?;
            let data = random_data(&graph, 64, 1)?;
            Ok(Case {
                name: name.into(),
                graph,
                data,
                players: vec!["layer1.0.relu2".into()],
            })
        }
        other => anyhow::bail!("unknown bench model {other:?}"),
    }
}

/// One measurement.
#[derive(serde::Serialize)]
pub struct Measurement {
    pub model: String,
    pub backend: String,
    pub device: String,
    pub coalitions: usize,
    pub examples: usize,
    pub median_seconds: f64,
    pub coalition_examples_per_second: f64,
    /// Dense-equivalent rate: the FLOPs a plain masked forward pass would need (the shared
    /// prefix once per example, the layers after the first player per coalition-example) divided
    /// by the time. Backends that skip work (the CPU's linear-suffix path) exceed their hardware
    /// FLOP rate on this measure; it is a throughput figure, not a hardware utilisation one.
    pub dense_equivalent_gflops_per_second: f64,
}

/// The user's own model (`--model/--arch`, `--weights`, `--data`, `--players`).
fn own_case(args: &BenchArgs) -> Result<Case> {
    if args.players.is_empty() {
        anyhow::bail!("--players is required with --model (the player layers to mask)");
    }
    let model = args.model.load(&args.data)?;
    let (data, _) = args.data.load(&model.graph)?;
    Ok(Case {
        name: args.name.clone(),
        graph: model.graph,
        data,
        players: args.players.clone(),
    })
}

/// `count` coalitions of `n` players: random (each present with probability 1/2) or
/// permutation walks from the full coalition down, one player fewer per row.
pub fn coalitions(n: usize, count: usize, walks: bool, seed: u64) -> MaskBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut masks = MaskBatch::new(n);
    let mut row = vec![true; n];
    let mut order: Vec<usize> = Vec::new();
    while masks.len() < count {
        if !walks {
            let row: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
            masks.push_bools(&row);
            continue;
        }
        if order.is_empty() {
            order = (0..n).collect();
            order.shuffle(&mut rng);
            row = vec![true; n];
            masks.push_bools(&row);
            continue;
        }
        let p = order.pop().expect("not empty");
        row[p] = false;
        masks.push_bools(&row);
    }
    masks
}

pub fn measure(
    case: &Case,
    backend: BackendChoice,
    m: Option<usize>,
    b: Option<usize>,
    reps: usize,
    walks: bool,
    plain: bool,
) -> Result<Measurement> {
    let players = resolve_players(&case.graph, &case.data, &case.players, Baseline::Zero)?;
    let nodes: Vec<usize> = players.layers().iter().map(|l| l.node).collect();
    let (shared, dependent) = split_flops(&case.graph, &nodes);
    // Default size: about 2 GFLOPs of dependent work per batch.
    let budget = (2e9 / dependent.max(1) as f64).max(1.0) as usize;
    let examples = b
        .unwrap_or_else(|| budget.clamp(1, 128))
        .min(case.data.len());
    let coalitions = m.unwrap_or_else(|| (budget / examples).clamp(1, 1000));
    let masks = self::coalitions(players.len(), coalitions, walks, 3);
    let subset: Vec<u32> = (0..examples as u32).collect();
    let job = EvalJob {
        graph: Arc::new(case.graph.clone()),
        players,
        data: Arc::new(case.data.clone()),
        metric: Metric::Accuracy,
    };
    let backend = if plain {
        match backend {
            BackendChoice::Cpu => Box::new(nshap::cpu::CpuBackend::new(nshap::cpu::CpuOptions {
                tables: false,
                ..nshap::cpu::CpuOptions::default()
            })),
            choice => make_backend_with(
                choice,
                nshap::gpu::GpuOptions {
                    fast_paths: false,
                    ..nshap::gpu::GpuOptions::default()
                },
            )?,
        }
    } else {
        make_backend(backend)?
    };
    let mut ev = backend.prepare(job)?;
    let mut info = ev.info();
    if plain {
        info.backend.push_str("-plain");
    }
    for line in &info.plan {
        eprintln!("{} on {}: {line}", case.name, info.backend);
    }
    ev.evaluate(Examples::Subset(&subset), &masks)?; // warm-up: caches, pipelines
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        ev.evaluate(Examples::Subset(&subset), &masks)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let ce = (coalitions * examples) as f64;
    let flops = shared as f64 * examples as f64 + dependent as f64 * ce;
    Ok(Measurement {
        model: case.name.clone(),
        backend: info.backend,
        device: info.device,
        coalitions,
        examples,
        median_seconds: median,
        coalition_examples_per_second: ce / median,
        dense_equivalent_gflops_per_second: flops / median / 1e9,
    })
}

pub fn execute(args: BenchArgs) -> Result<()> {
    let backends: Vec<BackendChoice> = match args.backend.as_str() {
        "both" => vec![BackendChoice::Cpu, BackendChoice::Gpu],
        other => vec![other.parse().map_err(anyhow::Error::msg)?],
    };
    if !args.json {
        println!(
            "{:<14} {:<9} {:<34} {:>6} {:>5} {:>10} {:>14} {:>9}",
            "model", "back", "device", "M", "B", "median s", "coal-ex/s", "GFLOP/s*"
        );
    }
    if !args.json {
        println!("* dense-equivalent: FLOPs of a plain masked forward pass / time (see docs/benchmarks.md)");
    }
    let cases: Vec<Result<Case>> = if args.model.is_empty() {
        args.models.iter().map(|name| case(name)).collect()
    } else {
        vec![own_case(&args)]
    };
    for case in cases {
        let case = case?;
        let name = &case.name;
        for &backend in &backends {
            match measure(
                &case,
                backend,
                args.coalitions,
                args.examples,
                args.reps,
                args.walks,
                args.plain,
            ) {
                Ok(r) if args.json => println!("{}", serde_json::to_string(&r)?),
                Ok(r) => println!(
                    "{:<14} {:<9} {:<34} {:>6} {:>5} {:>10.4} {:>14.0} {:>9.2}",
                    r.model,
                    r.backend,
                    r.device.chars().take(34).collect::<String>(),
                    r.coalitions,
                    r.examples,
                    r.median_seconds,
                    r.coalition_examples_per_second,
                    r.dense_equivalent_gflops_per_second
                ),
                Err(e) => println!(
                    "{:<14} {:<9} unavailable: {e:#}",
                    name,
                    format!("{backend:?}").to_lowercase()
                ),
            }
        }
    }
    Ok(())
}

//! Turning user choices into a prepared job: backend selection and player resolution.

use anyhow::{bail, Context, Result};
use nshap_cpu::{activation_means, CpuBackend};
use nshap_model::players::{find_player_nodes, reference_baseline};
use nshap_model::{Backend, Baseline, EvalSet, Graph, PlayerLayer, Players};
use std::str::FromStr;

/// Which backend evaluates coalitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// A hardware GPU when one exists, else the CPU (a software adapter such as lavapipe is
    /// slower than the CPU backend, so `auto` does not pick it).
    Auto,
    Cpu,
    Gpu,
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<BackendChoice, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "gpu" => Ok(BackendChoice::Gpu),
            _ => Err(format!("unknown backend {s:?}: expected auto, cpu or gpu")),
        }
    }
}

/// Build the chosen backend with default options.
pub fn make_backend(choice: BackendChoice) -> Result<Box<dyn Backend>> {
    make_backend_with(choice, nshap_gpu::GpuOptions::default())
}

/// Build the chosen backend; `gpu` options apply when a GPU is used (the CPU computes in f32).
pub fn make_backend_with(
    choice: BackendChoice,
    gpu: nshap_gpu::GpuOptions,
) -> Result<Box<dyn Backend>> {
    match choice {
        BackendChoice::Cpu => Ok(Box::new(CpuBackend::default())),
        BackendChoice::Gpu => crate::gpu_glue::gpu_backend(false, gpu).context("--backend gpu"),
        BackendChoice::Auto => Ok(crate::gpu_glue::gpu_backend(true, gpu)
            .unwrap_or_else(|_| Box::new(CpuBackend::default()))),
    }
}

/// Resolve a `--players` list (node names and patterns: `layer3.*.relu2`, `conv:*`,
/// `filters`, `all`; see [`find_player_nodes`]) and the players' baselines (`mean` runs the
/// unmasked network once).
pub fn resolve_players(
    graph: &Graph,
    data: &EvalSet,
    names: &[String],
    baseline: Baseline,
) -> Result<Players> {
    let nodes = find_player_nodes(graph, names)?;
    if let Some(&node) = nodes.iter().find(|&&n| n + 1 == graph.nodes.len()) {
        bail!(
            "node {:?} is the output layer; choose a hidden layer as players",
            graph.nodes[node].name
        );
    }
    let means = match baseline {
        Baseline::Mean => Some(activation_means(graph, data, &nodes)),
        _ => None,
    };
    let mut layers = Vec::new();
    for (k, &node) in nodes.iter().enumerate() {
        let channels = graph.nodes[node].shape.channels();
        let values = match baseline {
            Baseline::Zero => vec![0.0; channels],
            Baseline::Mean => means.as_ref().map(|m| m[k].clone()).unwrap_or_default(),
            Baseline::Reference => reference_baseline(graph, node)?,
        };
        layers.push(PlayerLayer {
            node,
            name: graph.nodes[node].name.clone(),
            baseline: values,
        });
    }
    Ok(Players::new(layers)?)
}

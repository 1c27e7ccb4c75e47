//! Turning user choices into a prepared job: backend selection and player resolution.

use anyhow::{bail, Context, Result};
use nshap_cpu::means::{node_activations, sequence_means, SequenceMean};
use nshap_cpu::{activation_means, CpuBackend};
use nshap_model::players::{find_player_nodes, reference_baseline};
use nshap_model::{Backend, Baseline, BaselineValues, EvalSet, Graph, PlayerLayer, Players};
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
        BackendChoice::Auto => Ok(match crate::gpu_glue::gpu_backend(true, gpu) {
            Ok(gpu) => Box::new(GpuOrCpu { gpu }),
            Err(_) => Box::new(CpuBackend::default()),
        }),
    }
}

/// `auto` with a GPU: jobs the GPU cannot run (a language model, a custom metric) run on the
/// CPU instead of failing; the report's backend line says which ran.
struct GpuOrCpu {
    gpu: Box<dyn Backend>,
}

impl Backend for GpuOrCpu {
    fn prepare(
        &self,
        job: nshap_model::EvalJob,
    ) -> Result<Box<dyn nshap_model::Evaluator>, nshap_model::BackendError> {
        match self.gpu.prepare(job.clone()) {
            Err(nshap_model::BackendError::Unsupported { .. }) => {
                CpuBackend::default().prepare(job)
            }
            other => other,
        }
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
    if graph.tokens().is_some() {
        return sequence_players(graph, data, &nodes, baseline);
    }
    if matches!(baseline, Baseline::MeanPosition | Baseline::Resample) {
        bail!(
            "--baseline {} applies to language models (a --hf model or a spec with \"tokens\")",
            baseline.name()
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
            Baseline::Mean => means.as_ref().map(|m| m[k].clone()).unwrap_or_default(),
            Baseline::Reference => reference_baseline(graph, node)?,
            _ => vec![0.0; channels],
        };
        layers.push(PlayerLayer {
            node,
            name: graph.nodes[node].name.clone(),
            baseline: values,
        });
    }
    Ok(Players::new(layers)?)
}

/// Players of a language model: a removed head or neuron takes 0, its mean per feature (pooled
/// over the positions the metric can see, or per position), or its value on the example's
/// corrupted prompt (`resample`), at every position.
fn sequence_players(
    graph: &Graph,
    data: &EvalSet,
    nodes: &[usize],
    baseline: Baseline,
) -> Result<Players> {
    let inputs = match baseline {
        Baseline::Zero => None,
        Baseline::Mean | Baseline::MeanPosition => Some(data.inputs.as_slice()),
        Baseline::Resample => Some(data.corrupted.as_deref().context(
            "--baseline resample needs each example's corrupted prompt: a `corrupted` [N, T] tensor of token ids in the eval set (see docs/transformers.md)",
        )?),
        Baseline::Reference => bail!(
            "--baseline reference is the published Neuron Shapley code's batchnorm rule; a language model has no batchnorm (use zero, mean, mean_position or resample)"
        ),
    };
    let acts = inputs.map(|x| node_activations(graph, x, nodes));
    let mut layers = Vec::new();
    let mut values = Vec::new();
    for (k, &node) in nodes.iter().enumerate() {
        let shape = graph.nodes[node].shape;
        let (channels, block) = (shape.channels(), shape.spatial());
        let v = match (&acts, baseline) {
            (None, _) => None,
            (Some(a), Baseline::Resample) => Some(BaselineValues::PerExample(a[k].clone())),
            (Some(a), how) => {
                let how = if how == Baseline::Mean {
                    SequenceMean::Pooled
                } else {
                    SequenceMean::PerPosition
                };
                let means = sequence_means(graph, data, &a[k], node, how).with_context(|| {
                    format!(
                        "--baseline {}: node {:?} is not a sequence of the model's positions ({shape})",
                        baseline.name(),
                        graph.nodes[node].name
                    )
                })?;
                Some(BaselineValues::Shared(means))
            }
        };
        // One constant per channel too (reports and fast paths that need one): the block's
        // mean, 0 for zero ablation.
        let constant = match &v {
            Some(BaselineValues::Shared(m)) => m
                .chunks_exact(block)
                .map(|b| b.iter().sum::<f32>() / block as f32)
                .collect(),
            _ => vec![0.0; channels],
        };
        layers.push(PlayerLayer {
            node,
            name: graph.nodes[node].name.clone(),
            baseline: constant,
        });
        values.push(v);
    }
    let mut players = Players::new(layers)?;
    for (k, v) in values.into_iter().enumerate() {
        if let Some(v) = v {
            players = players.with_values(k, v);
        }
    }
    Ok(players)
}

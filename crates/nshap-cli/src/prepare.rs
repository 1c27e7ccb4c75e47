//! From run arguments to a ready game: load, validate, resolve players, pick the backend.

use crate::model_args::{demo_dir, DataArgs, ModelArgs};
use anyhow::{bail, Context, Result};
use nshap::estimate::{CommonOptions, Method};
use nshap::model::{BackendInfo, Baseline, EvalJob, EvalSet, Graph, Metric, Players};
use nshap::{make_backend_with, resolve_players, BackendChoice, NetworkGame};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a run is: everything needed to redo it (stored as run.json).
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunSpec {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Player layers, comma-separated: node names or patterns: a glob (`layer3.*.relu2`; `*`
    /// crosses dots), `KIND:GLOB` (`conv:*`, `linear:*`, `relu:layer4.*`, `bn:*`), `filters`
    /// (every conv but classifier convs) or `all` (every conv and linear but the output).
    /// Their channels/features are the players.
    #[arg(long, value_delimiter = ',', value_name = "NODE|PATTERN[,...]")]
    pub players: Vec<String>,
    /// What a removed player outputs: zero, mean (its mean activation), or reference (the
    /// published code's removal: a BN channel outputs beta).
    #[arg(long, default_value = "zero")]
    pub baseline: String,
    /// Estimator: exact, permutation, tmab, cmcs, loo.
    #[arg(long, default_value = "tmab")]
    pub method: String,
    /// Metric: accuracy, neg_loss, class_accuracy:<c>.
    #[arg(long, default_value = "accuracy")]
    pub metric: String,
    /// How many top players to identify.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Most coalition evaluations to spend.
    #[arg(long, default_value_t = 200_000)]
    pub budget: u64,
    /// Evaluate each coalition on a fresh random subset of this many examples (the same subset
    /// for both sides of a marginal contribution). Default: all examples.
    #[arg(long)]
    pub examples_per_eval: Option<usize>,
    /// auto, cpu or gpu.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Failure probability of the top-k stopping rules.
    #[arg(long, default_value_t = 0.2)]
    pub delta: f64,
    /// Tolerance at the top-k boundary.
    #[arg(long, default_value_t = 0.0)]
    pub epsilon: f64,
    /// Truncation: a permutation walk stops after more than 5 steps within this of chance level.
    #[arg(long, default_value_t = 0.2)]
    pub truncation_tolerance: f64,
    /// Coalitions per game call.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// GPU storage precision: f32, or f16 (weights and activations stored in f16, f32
    /// accumulation; needs SHADER_F16). The CPU backend always computes in f32.
    #[arg(long, default_value = "f32")]
    #[serde(default = "default_precision")]
    pub precision: String,
}

fn default_precision() -> String {
    "f32".into()
}

/// A run ready to go.
pub struct Prepared {
    pub graph: Arc<Graph>,
    pub data: Arc<EvalSet>,
    pub players: Players,
    pub metric: Metric,
    pub method: Method,
    pub options: CommonOptions,
    pub game: NetworkGame,
    pub info: BackendInfo,
    pub model_digest: String,
    pub data_digest: String,
    pub model_description: String,
}

impl RunSpec {
    /// A spec that only describes a game (model, data, players, baseline, metric, backend), for
    /// commands that evaluate coalitions without running an estimator.
    pub fn for_game(
        model: ModelArgs,
        data: DataArgs,
        players: Vec<String>,
        baseline: String,
        metric: String,
        backend: String,
    ) -> RunSpec {
        RunSpec {
            model,
            data,
            players,
            baseline,
            method: "permutation".into(),
            metric,
            top_k: 1,
            budget: 1,
            examples_per_eval: None,
            backend,
            seed: 0,
            delta: 0.2,
            epsilon: 0.0,
            truncation_tolerance: 0.2,
            batch_size: 1024,
            precision: default_precision(),
        }
    }

    /// Fill in the shipped demo when no model was given. Returns true if it did.
    pub fn apply_demo_defaults(&mut self) -> Result<bool> {
        if !self.model.is_empty() || self.data.data.is_some() {
            return Ok(false);
        }
        let dir = demo_dir()?;
        self.model.model = Some(dir.join("model.json"));
        self.model.weights = Some(dir.join("weights.safetensors"));
        self.data.data = Some(dir.join("eval.safetensors"));
        if self.players.is_empty() {
            self.players = vec!["relu2".into()];
        }
        Ok(true)
    }

    /// Make file paths absolute so the run can be resumed or ablated from any directory.
    pub fn absolutize(&mut self) {
        for p in [
            &mut self.model.model,
            &mut self.model.weights,
            &mut self.data.data,
        ]
        .into_iter()
        .flatten()
        {
            if let Ok(abs) = std::path::absolute(&*p) {
                *p = abs;
            }
        }
    }

    pub fn prepare(&self) -> Result<Prepared> {
        let model = self.model.load(&self.data)?;
        let (data, data_digest) = self.data.load(&model.graph)?;
        let graph = model.graph;
        if self.players.is_empty() {
            bail!("--players is required: nodes or patterns, e.g. --players relu2, layer3.*.relu2, conv:* or filters");
        }
        let baseline: Baseline = self.baseline.parse().map_err(anyhow::Error::msg)?;
        let metric =
            Metric::parse(&self.metric, graph.num_classes()).map_err(anyhow::Error::msg)?;
        if let Metric::ClassAccuracy(c) = metric {
            if !data.labels.contains(&c) {
                bail!(
                    "--metric {}: the eval set has no example of class {c}",
                    self.metric
                );
            }
        }
        let method: Method = self
            .method
            .parse()
            .map_err(|e| anyhow::anyhow!("--method: {e}"))?;
        let backend: BackendChoice = self.backend.parse().map_err(anyhow::Error::msg)?;
        let players = resolve_players(&graph, &data, &self.players, baseline)?;
        let n = players.len();
        if self.top_k == 0 || self.top_k > n {
            bail!(
                "--top-k {} must be between 1 and the number of players ({n})",
                self.top_k
            );
        }
        if let Some(0) = self.examples_per_eval {
            bail!("--examples-per-eval must be positive");
        }
        let options = CommonOptions {
            top_k: self.top_k,
            budget: self.budget,
            chance_level: Some(metric.chance_level(graph.num_classes())),
            truncation_tolerance: self.truncation_tolerance,
            value_range: metric.value_range(graph.num_classes()),
            delta: self.delta,
            epsilon: self.epsilon,
            batch_size: self.batch_size,
            ..CommonOptions::default()
        };
        let graph = Arc::new(graph);
        let data = Arc::new(data);
        let job = EvalJob {
            graph: graph.clone(),
            players: players.clone(),
            data: data.clone(),
            metric: metric.clone(),
        };
        let precision = match self.precision.as_str() {
            "f32" => nshap::gpu::Precision::F32,
            "f16" => nshap::gpu::Precision::F16,
            other => bail!("unknown --precision {other:?}: expected f32 or f16"),
        };
        if precision == nshap::gpu::Precision::F16 && backend == BackendChoice::Cpu {
            bail!("--precision f16 applies to the GPU backend; the CPU backend computes in f32");
        }
        let gpu_options = nshap::gpu::GpuOptions {
            precision,
            ..Default::default()
        };
        let evaluator = make_backend_with(backend, gpu_options)?
            .prepare(job)
            .context("preparing the backend")?;
        let info = evaluator.info();
        let game = NetworkGame::new(evaluator, n, data.len(), self.examples_per_eval, self.seed);
        Ok(Prepared {
            graph,
            data,
            players,
            metric,
            method,
            options,
            game,
            info,
            model_digest: model.digest,
            data_digest,
            model_description: model.description,
        })
    }
}

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
    /// Estimator: auto (exact when 2^n evaluations are cheaper than sampling, else certified
    /// top-k, else regression when no --top-k is asked), exact, certified, regression,
    /// permutation, tmab, cmcs, loo. See docs/choosing.md.
    #[arg(long, default_value = "auto")]
    pub method: String,
    /// Metric: accuracy, neg_loss, class_accuracy:<c>.
    #[arg(long, default_value = "accuracy")]
    pub metric: String,
    /// How many top players to identify.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Most coalition evaluations to spend (the demo: 1000000). It must give every player at
    /// least one sample (checked before any work). With --resume: the run's new budget.
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
    /// Failure probability of the top-k stopping rules. Default: 0.05 for certified (all
    /// players, all times), 0.2 for tmab and cmcs (the reference's value).
    #[arg(long)]
    #[serde(default)]
    pub delta: Option<f64>,
    /// Whether a top-k was asked for (`--top-k` given, or the demo): `auto` then certifies a
    /// top-k; otherwise it estimates all values. Set by `nshap run`, recorded in run.json.
    #[arg(skip = true)]
    #[serde(default = "asked_by_default")]
    pub top_k_asked: bool,
    /// Tolerance at the top-k boundary.
    #[arg(long, default_value_t = 0.0)]
    pub epsilon: f64,
    /// Truncation of permutation walks (permutation, tmab): `none` (default: unbiased), or a
    /// tolerance TOL: a walk stops after more than 5 consecutive steps with the metric within
    /// TOL of chance level, and the players it did not reach get marginal 0. Cheaper on networks
    /// whose value collapses early, but the values are then those of the truncated game (biased;
    /// the efficiency residual in report.json shows by how much).
    #[arg(long, default_value = "none", value_name = "none|TOL", value_parser = parse_truncation)]
    #[serde(default)]
    pub truncation: Truncation,
    /// Old spelling of `--truncation TOL` (and what run.json files from before `--truncation`
    /// hold: those runs always truncated; `normalize` moves it into `truncation`).
    #[arg(long, hide = true, value_name = "TOL", conflicts_with = "truncation", value_parser = parse_tolerance)]
    #[serde(default, skip_serializing)]
    pub truncation_tolerance: Option<f64>,
    /// R: the range of one marginal contribution, used by the bounds of tmab and certified
    /// (certified requires every marginal to lie in [-R, R]). Default: the metric's (1 for
    /// accuracy).
    #[arg(long, value_name = "R", value_parser = parse_value_range)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_range: Option<f64>,
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

/// `--truncation`: `None` = off; `Some(tol)` = a walk stops once the metric stays within `tol`
/// of chance level. Stored in run.json as `null` or the tolerance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Truncation(pub Option<f64>);

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(t) => write!(f, "{t}"),
        }
    }
}

/// A clap value parser for `--truncation none|TOL`.
fn parse_truncation(text: &str) -> Result<Truncation, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Truncation(None));
    }
    parse_tolerance(text)
        .map(|t| Truncation(Some(t)))
        .map_err(|_| format!("expected none or a tolerance >= 0 (e.g. 0.2), found {text:?}"))
}

/// A truncation tolerance: finite and not negative.
fn parse_tolerance(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!(
            "expected a tolerance >= 0 (e.g. 0.2), found {text:?}"
        )),
    }
}

/// A clap value parser for `--value-range R`: finite and positive.
fn parse_value_range(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "expected a finite number > 0 (the range of one marginal contribution, e.g. 1 for accuracy), found {text:?}"
        )),
    }
}

/// A run ready to go.
pub struct Prepared {
    pub graph: Arc<Graph>,
    pub data: Arc<EvalSet>,
    pub players: Players,
    pub metric: Metric,
    pub method: Method,
    /// What `--method auto` chose and why (None when a method was named).
    pub method_choice: Option<nshap::estimate::AutoChoice>,
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
            delta: None,
            top_k_asked: true,
            epsilon: 0.0,
            truncation: Truncation(None),
            truncation_tolerance: None,
            value_range: None,
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
        // The demo shows the paper's TMAB (README); its top-10 has near-ties that a certified
        // top-k at eps = 0 cannot separate within the demo's budget.
        if self.method.trim().eq_ignore_ascii_case("auto") {
            self.method = "tmab".into();
        }
        Ok(true)
    }

    /// The estimator to build for `n` players: the named one, or `auto`'s choice and reason.
    fn resolve_method(&self, n: usize) -> Result<(Method, Option<nshap::estimate::AutoChoice>)> {
        if self.method.trim().eq_ignore_ascii_case("auto") {
            let top_k = Some(self.top_k).filter(|_| self.top_k_asked);
            let choice = nshap::estimate::choose_method_for(
                n,
                top_k,
                self.budget,
                self.truncation.0.is_some(),
            );
            return Ok((choice.method, Some(choice)));
        }
        let method: Method = self
            .method
            .parse()
            .map_err(|e| anyhow::anyhow!("--method: {e}"))?;
        Ok((method, None))
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

    /// Load, validate and prepare the backend, for commands that only evaluate the game.
    pub fn prepare(&self) -> Result<Prepared> {
        self.prepare_with(false)
    }

    /// As `prepare`, for a new run: first checks that the budget gives every player a value
    /// (before the backend is set up).
    pub fn prepare_run(&self) -> Result<Prepared> {
        self.prepare_with(true)
    }

    /// Moves the hidden `--truncation-tolerance TOL` into `--truncation TOL`.
    pub fn normalize(&mut self) {
        if let Some(t) = self.truncation_tolerance.take() {
            self.truncation = Truncation(Some(t));
        }
    }

    fn prepare_with(&self, check_budget: bool) -> Result<Prepared> {
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
        let backend: BackendChoice = self.backend.parse().map_err(anyhow::Error::msg)?;
        let players = resolve_players(&graph, &data, &self.players, baseline)?;
        let n = players.len();
        let (method, method_choice) = self.resolve_method(n)?;
        if self.top_k == 0 || self.top_k > n {
            bail!(
                "--top-k {} must be between 1 and the number of players ({n})",
                self.top_k
            );
        }
        if let Some(0) = self.examples_per_eval {
            bail!("--examples-per-eval must be positive");
        }
        let defaults = CommonOptions::default();
        let options = CommonOptions {
            top_k: self.top_k,
            budget: self.budget,
            chance_level: self
                .truncation
                .0
                .map(|_| metric.chance_level(graph.num_classes())),
            truncation_tolerance: self.truncation.0.unwrap_or(defaults.truncation_tolerance),
            value_range: self
                .value_range
                .unwrap_or_else(|| metric.value_range(graph.num_classes())),
            delta: self.delta.unwrap_or(if method == Method::Certified {
                0.05
            } else {
                0.2
            }),
            epsilon: self.epsilon,
            batch_size: self.batch_size,
            ..defaults.clone()
        };
        if check_budget {
            crate::budget::check(
                method,
                &options,
                n,
                self.examples_per_eval.is_none(),
                self.seed,
            )?;
        }
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
            method_choice,
            options,
            game,
            info,
            model_digest: model.digest,
            data_digest,
            model_description: model.description,
        })
    }
}

fn asked_by_default() -> bool {
    true
}

//! The game arguments shared by `interactions` and `measures`: a model, an eval set, players,
//! baseline and metric given as flags, or taken from an earlier run with `--from DIR`.

use crate::commands::run::{read_record, RunRecord};
use crate::model_args::{DataArgs, ModelArgs};
use crate::output::{read_values, ValueRow};
use crate::prepare::RunSpec;
use anyhow::{bail, Context, Result};
use nshap::model::Players;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct GameArgs {
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
    /// What a removed player outputs: zero, mean or reference; for language models also
    /// mean_position and resample. Default: zero (or the run's).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Metric: accuracy, neg_loss, class_accuracy:<c>; for language models logit_diff,
    /// next_token_loss, next_token_accuracy. Default: accuracy (or the run's).
    #[arg(long)]
    pub metric: Option<String>,
    /// auto, cpu or gpu. Default: auto (or the run's).
    #[arg(long)]
    pub backend: Option<String>,
    /// An earlier `nshap run` directory: the model, data, players, baseline and metric are the
    /// run's.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
}

/// A resolved game description, and the run it came from (if any).
pub struct GameSource {
    pub spec: RunSpec,
    pub run: Option<(PathBuf, RunRecord)>,
    /// True when no model was given and the shipped demo is used.
    pub demo: bool,
}

impl GameArgs {
    pub fn resolve(&self) -> Result<GameSource> {
        if let Some(dir) = &self.from {
            let given: Vec<&str> = [
                (!self.model.is_empty(), "--model/--arch/--weights"),
                (self.data.data.is_some(), "--data"),
                (!self.players.is_empty(), "--players"),
                (self.baseline.is_some(), "--baseline"),
                (self.metric.is_some(), "--metric"),
            ]
            .into_iter()
            .filter_map(|(set, name)| set.then_some(name))
            .collect();
            if !given.is_empty() {
                bail!(
                    "--from {} takes the model, data, players, baseline and metric from that run; drop {}",
                    dir.display(),
                    given.join(", ")
                );
            }
            let record = read_record(dir)?;
            let mut spec = record.spec.clone();
            if let Some(b) = &self.backend {
                spec.backend = b.clone();
            }
            return Ok(GameSource {
                spec,
                run: Some((dir.clone(), record)),
                demo: false,
            });
        }
        let mut spec = RunSpec::for_game(
            self.model.clone(),
            self.data.clone(),
            self.players.clone(),
            self.baseline.clone().unwrap_or_else(|| "zero".into()),
            self.metric.clone().unwrap_or_else(|| "accuracy".into()),
            self.backend.clone().unwrap_or_else(|| "auto".into()),
        );
        let demo = spec.apply_demo_defaults()?;
        spec.absolutize();
        Ok(GameSource {
            spec,
            run: None,
            demo,
        })
    }
}

/// Global player index of a `(node, channel)` label.
pub fn player_index(players: &Players, node: &str, index: usize) -> Result<usize> {
    let layer = players
        .layers()
        .iter()
        .position(|l| l.name == node)
        .with_context(|| format!("unknown player node {node:?}"))?;
    if index >= players.layers()[layer].channels() {
        bail!(
            "player {node}:{index} is out of range: {node} has {} channels",
            players.layers()[layer].channels()
        );
    }
    Ok(players.offset(layer) + index)
}

/// `node:index` label of a global player index.
pub fn player_label(players: &Players, player: usize) -> String {
    let (node, c) = players.label(player);
    format!("{node}:{c}")
}

/// A finished run's values, as a vector indexed by global player (errors when the run is not
/// finished or does not match the players).
pub fn run_values(dir: &Path, players: &Players) -> Result<(Vec<ValueRow>, Vec<f64>)> {
    let rows = read_values(&dir.join("values.csv"))
        .with_context(|| format!("{} has no finished run (values.csv)", dir.display()))?;
    if rows.len() != players.len() {
        bail!(
            "{}: values.csv has {} rows but the run has {} players",
            dir.display(),
            rows.len(),
            players.len()
        );
    }
    let mut values = vec![f64::NAN; players.len()];
    for r in &rows {
        values[player_index(players, &r.node, r.index)?] = r.value;
    }
    Ok((rows, values))
}

//! Per-neuron measures to set beside Shapley values: class selectivity, Jacobian sensitivity,
//! first-order Taylor estimate of removal, and leave-one-out.
//!
//! The first three need gradients and come from the CPU backend's backward pass
//! ([`nshap_cpu::neuron_measures`]); leave-one-out is a masked evaluation and runs on whichever
//! backend evaluates the game, with the game's metric and baseline. Definitions and sources are
//! in `docs/measures.md`.

use anyhow::{Context, Result};
use nshap_model::{EvalSet, Evaluator, Graph, Players};
use serde::{Deserialize, Serialize};

/// The measures of one player (one channel or feature of a player node).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronMeasures {
    /// Player node name.
    pub node: String,
    /// Channel (or feature) index in that node.
    pub index: usize,
    /// Leavitt & Morcos class selectivity of the unmasked activation.
    pub selectivity: f64,
    /// Mean over examples of sum over positions of |d z_y / d a|.
    pub sensitivity: f64,
    /// First-order estimate of the rise of the mean cross-entropy when the unit is zeroed.
    pub taylor: f64,
    /// Metric drop when this player alone is removed (the game's baseline), exact.
    pub loo: f64,
}

/// Header of `measures.csv`, one row per player in player order.
pub const MEASURES_HEADER: &str = "node,index,selectivity,sensitivity,taylor,loo";

/// Every measure of every player, in player order (global player index = position).
///
/// `evaluator` must be prepared for the same graph, players and eval set (it supplies
/// leave-one-out with its metric and baseline); the gradient measures use the CPU.
pub fn neuron_measures(
    graph: &Graph,
    data: &EvalSet,
    players: &Players,
    evaluator: &mut dyn Evaluator,
) -> Result<Vec<NeuronMeasures>> {
    let nodes: Vec<usize> = players.layers().iter().map(|l| l.node).collect();
    let layers = nshap_cpu::neuron_measures(graph, data, &nodes)
        .context("gradient measures (CPU backward pass)")?;
    let (_, loo) =
        crate::ablation::leave_one_out(evaluator, players.len()).context("leave-one-out")?;
    let mut out = Vec::with_capacity(players.len());
    for (layer, m) in players.layers().iter().zip(&layers) {
        for c in 0..layer.channels() {
            out.push(NeuronMeasures {
                node: layer.name.clone(),
                index: c,
                selectivity: m.selectivity[c],
                sensitivity: m.sensitivity[c],
                taylor: m.taylor[c],
                loo: loo[out.len()],
            });
        }
    }
    Ok(out)
}

/// `measures.csv` text.
pub fn measures_csv(rows: &[NeuronMeasures]) -> String {
    let mut out = String::from(MEASURES_HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            r.node, r.index, r.selectivity, r.sensitivity, r.taylor, r.loo
        ));
    }
    out
}

/// Parse `measures.csv` text; errors name the line.
pub fn parse_measures_csv(text: &str) -> Result<Vec<NeuronMeasures>> {
    let mut lines = text.lines();
    anyhow::ensure!(
        lines.next() == Some(MEASURES_HEADER),
        "expected the header {MEASURES_HEADER:?}"
    );
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let bad = || anyhow::anyhow!("line {} is malformed: {line:?}", i + 2);
            anyhow::ensure!(f.len() == 6, bad());
            let num = |k: usize| f[k].parse::<f64>().map_err(|_| bad());
            Ok(NeuronMeasures {
                node: f[0].to_owned(),
                index: f[1].parse().map_err(|_| bad())?,
                selectivity: num(2)?,
                sensitivity: num(3)?,
                taylor: num(4)?,
                loo: num(5)?,
            })
        })
        .collect()
}

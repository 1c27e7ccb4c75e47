//! report.json for a run, and `nshap report DIR`: a terminal summary and a per-layer figure.

use crate::commands::run::read_record;
use crate::output::write_atomic;
use crate::output::{interval_label, read_values_with_stem, ValueRow};
use crate::plot;
use crate::prepare::{Prepared, RunSpec};
use anyhow::Result;
use clap::Args;
use nshap::estimate::{Estimates, Status};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Whether a run's top-k came out resolved, and what a rerun would need if not.
#[derive(Clone, Debug, PartialEq)]
pub struct TopKVerdict {
    /// `None` for methods without a top-k rule; `Some(false)`: stopped on its budget.
    pub resolved: Option<bool>,
    /// Players the rule left unresolved (status `unresolved` in values.csv).
    pub unresolved: usize,
    /// The estimator's rough count of further evaluations, when it has one (never 0).
    pub evaluations_needed: Option<u64>,
    /// A budget to resume with: spent + needed, rounded up (twice the budget if unknown).
    pub suggested_budget: Option<u64>,
}

impl TopKVerdict {
    pub fn of(estimates: &Estimates, budget: u64) -> TopKVerdict {
        let d = &estimates.diagnostics;
        let unresolved = estimates
            .players
            .iter()
            .filter(|p| p.status == Status::Active)
            .count();
        let needed = d.evaluations_needed.filter(|&n| n > 0);
        let suggested = (d.top_k_resolved == Some(false)).then(|| match needed {
            Some(n) => round_up(d.evaluations.saturating_add(n)).max(budget + 1),
            None => budget.saturating_mul(2).max(d.evaluations + 1),
        });
        TopKVerdict {
            resolved: d.top_k_resolved,
            unresolved,
            evaluations_needed: needed,
            suggested_budget: suggested,
        }
    }

    /// True when a top-k method stopped without resolving its top-k (exit status 3).
    pub fn unresolved_top_k(&self) -> bool {
        self.resolved == Some(false)
    }

    /// "top-10 not certified: 37 players unresolved; about N more evaluations needed (nshap run
    /// --resume DIR --budget M)", or `None` when there is nothing to say.
    pub fn message(&self, k: usize, dir: &std::path::Path) -> Option<String> {
        if !self.unresolved_top_k() {
            return None;
        }
        let need = match self.evaluations_needed {
            Some(n) => format!("about {n} more evaluations needed"),
            None => "the estimator has no estimate of the evaluations still needed".into(),
        };
        let players = if self.unresolved == 1 {
            "player"
        } else {
            "players"
        };
        Some(format!(
            "top-{k} not certified: {} {players} unresolved; {need} (nshap run --resume {} --budget {})",
            self.unresolved,
            dir.display(),
            self.suggested_budget.unwrap_or_default()
        ))
    }
}

/// `x` rounded up to two significant digits (325974 -> 330000).
fn round_up(x: u64) -> u64 {
    let mut unit = 1u64;
    while x / unit >= 100 {
        unit *= 10;
    }
    x.div_ceil(unit).saturating_mul(unit)
}

pub fn build_report(spec: &RunSpec, p: &Prepared, estimates: &Estimates, wall: Duration) -> Value {
    let verdict = TopKVerdict::of(estimates, spec.budget);
    let interval = &estimates.diagnostics.interval;
    let stem = interval.column_stem();
    let top: Vec<Value> = estimates
        .top_k(spec.top_k)
        .into_iter()
        .map(|i| {
            let (node, channel) = p.players.label(i);
            json!({"node": node, "index": channel, "value": estimates.players[i].value})
        })
        .collect();
    json!({
        "config": spec,
        "model": {"description": p.model_description, "digest": p.model_digest,
                  "nodes": p.graph.nodes.len(), "classes": p.graph.num_classes()},
        "data": {"examples": p.data.len(), "digest": p.data_digest},
        "players": p.players.len(),
        "method": p.method.name(),
        "method_choice": p.method_choice.as_ref().map(|c| json!({"method": c.method.name(), "reason": c.reason})),
        "delta": p.options.delta,
        "layers": p.players.layers().iter().map(|l| json!({"node": l.name, "players": l.channels()})).collect::<Vec<_>>(),
        "backend": p.info,
        "evaluations": estimates.diagnostics.evaluations,
        "coalition_examples": p.game.coalition_examples,
        "wall_seconds": wall.as_secs_f64(),
        "diagnostics": estimates.diagnostics,
        "interval": interval.describe(),
        "interval_columns": [format!("{stem}_low"), format!("{stem}_high")],
        "top_k_resolved": verdict.resolved,
        "unresolved": verdict.unresolved,
        "evaluations_needed": verdict.evaluations_needed,
        "suggested_budget": verdict.suggested_budget,
        "truncation": p.options.chance_level.map(|c| json!({
            "chance_level": c,
            "tolerance": p.options.truncation_tolerance,
            "patience": p.options.truncation_patience,
        })),
        "value_range": p.options.value_range,
        "top_k": top,
    })
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory (from nshap run).
    pub dir: PathBuf,
    /// How many top players to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

pub fn execute(args: ReportArgs) -> Result<()> {
    let record = read_record(&args.dir)?;
    let (rows, stem) = read_values_with_stem(&args.dir.join("values.csv"))?;
    println!(
        "run {}: method {}, metric {}, players {} ({}), seed {}",
        args.dir.display(),
        record.spec.method,
        record.spec.metric,
        short(&record.spec.players.join(","), 80),
        rows.len(),
        record.spec.seed
    );
    let report: Option<Value> = std::fs::read_to_string(args.dir.join("report.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if let Some(r) = &report {
        println!(
            "evaluations {}, wall {:.1}s, backend {}, efficiency residual {}",
            r["evaluations"],
            r["wall_seconds"].as_f64().unwrap_or(0.0),
            r["backend"]["backend"],
            r["diagnostics"]["efficiency_residual"]
        );
        if r["top_k_resolved"] == json!(false) {
            println!(
                "top-{} not certified: {} players unresolved (values.csv status \"unresolved\"); {}",
                record.spec.top_k,
                r["unresolved"],
                r["interval"].as_str().unwrap_or("")
            );
        }
    }
    println!("\ntop {} players:", args.top.min(rows.len()));
    println!(
        "{:>4}  {:<18} {:>9} {:>8}  {:>21}  {:>8}  status",
        "rank",
        "player",
        "value",
        "stderr",
        interval_label(&stem),
        "samples"
    );
    for (rank, r) in rows.iter().take(args.top).enumerate() {
        println!(
            "{:>4}  {:<18} {:>9.4} {:>8.4}  [{:>8.4}, {:>8.4}]  {:>8}  {}",
            rank + 1,
            format!("{}#{}", r.node, r.index),
            r.value,
            r.stderr,
            r.ci_low,
            r.ci_high,
            r.samples,
            r.status
        );
    }
    let layers = layer_stats(&rows, layer_order(&report));
    write_atomic(&args.dir.join("layers.csv"), layers_csv(&layers).as_bytes())?;
    let w = layers
        .iter()
        .map(|l| l.node.len())
        .max()
        .unwrap_or(0)
        .clamp(18, 48);
    // Many layers: the ones carrying the most value; the full table is layers.csv.
    let mut shown: Vec<&LayerStat> = layers.iter().collect();
    if layers.len() > LAYER_ROWS {
        shown.sort_by(|a, b| b.total.total_cmp(&a.total));
        shown.truncate(LAYER_ROWS);
        println!(
            "\nper layer: {} layers; the {LAYER_ROWS} with the largest total (all in layers.csv):",
            layers.len()
        );
    } else {
        println!("\nper layer:");
    }
    println!(
        "{:<w$} {:>8} {:>10} {:>10}",
        "node", "players", "total", "max"
    );
    for l in shown {
        println!(
            "{:<w$} {:>8} {:>10.4} {:>10.4}",
            l.node, l.players, l.total, l.max
        );
    }
    let figure = args.dir.join("layers.svg");
    plot::layer_bars(&rows, &layers, &figure)?;
    println!("\nwrote {} and .png", figure.display());
    Ok(())
}

/// Most rows of the per-layer table printed; every layer is in layers.csv.
const LAYER_ROWS: usize = 30;

/// One player layer's values.
pub struct LayerStat {
    pub node: String,
    pub players: usize,
    pub total: f64,
    pub max: f64,
    pub min: f64,
}

/// The run's player layers in player order (report.json's `layers`), if recorded.
fn layer_order(report: &Option<Value>) -> Vec<String> {
    report
        .as_ref()
        .and_then(|r| r["layers"].as_array())
        .map(|layers| {
            layers
                .iter()
                .filter_map(|l| l["node"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Per-layer totals, in `order` (then any other layer by name).
pub fn layer_stats(rows: &[ValueRow], order: Vec<String>) -> Vec<LayerStat> {
    let mut names = order;
    let mut rest: Vec<&str> = rows.iter().map(|r| r.node.as_str()).collect();
    rest.sort_unstable();
    rest.dedup();
    for node in rest {
        if !names.iter().any(|n| n == node) {
            names.push(node.to_owned());
        }
    }
    let at: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut stats: Vec<LayerStat> = names
        .iter()
        .map(|n| LayerStat {
            node: n.clone(),
            players: 0,
            total: 0.0,
            max: f64::NEG_INFINITY,
            min: f64::INFINITY,
        })
        .collect();
    for r in rows {
        let l = &mut stats[at[r.node.as_str()]];
        l.players += 1;
        l.total += r.value;
        l.max = l.max.max(r.value);
        l.min = l.min.min(r.value);
    }
    stats.retain(|l| l.players > 0);
    stats
}

fn layers_csv(layers: &[LayerStat]) -> String {
    let mut out = String::from("node,players,total,mean,max,min\n");
    for l in layers {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            l.node,
            l.players,
            l.total,
            l.total / l.players as f64,
            l.max,
            l.min
        ));
    }
    out
}

/// `text` cut to `max` characters with "...".
fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::round_up;

    #[test]
    fn suggested_budgets_are_round() {
        assert_eq!(round_up(325_974), 330_000);
        assert_eq!(round_up(200_000), 200_000);
        assert_eq!(round_up(99), 99);
        assert_eq!(round_up(101), 110);
    }
}

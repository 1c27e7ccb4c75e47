//! report.json for a run, and `nshap report DIR`: a terminal summary and a per-layer figure.

use crate::commands::run::read_record;
use crate::output::read_values;
use crate::plot;
use crate::prepare::{Prepared, RunSpec};
use anyhow::Result;
use clap::Args;
use nshap::estimate::Estimates;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub fn build_report(spec: &RunSpec, p: &Prepared, estimates: &Estimates, wall: Duration) -> Value {
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
        "backend": p.info,
        "evaluations": estimates.diagnostics.evaluations,
        "coalition_examples": p.game.coalition_examples,
        "wall_seconds": wall.as_secs_f64(),
        "diagnostics": estimates.diagnostics,
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
    let rows = read_values(&args.dir.join("values.csv"))?;
    println!(
        "run {}: method {}, metric {}, players {} ({}), seed {}",
        args.dir.display(),
        record.spec.method,
        record.spec.metric,
        record.spec.players.join(","),
        rows.len(),
        record.spec.seed
    );
    if let Ok(text) = std::fs::read_to_string(args.dir.join("report.json")) {
        if let Ok(r) = serde_json::from_str::<Value>(&text) {
            println!(
                "evaluations {}, wall {:.1}s, backend {}, efficiency residual {}",
                r["evaluations"],
                r["wall_seconds"].as_f64().unwrap_or(0.0),
                r["backend"]["backend"],
                r["diagnostics"]["efficiency_residual"]
            );
        }
    }
    println!("\ntop {} players:", args.top.min(rows.len()));
    println!(
        "{:>4}  {:<18} {:>9} {:>8}  {:>21}  {:>8}  status",
        "rank", "player", "value", "stderr", "95% interval", "samples"
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
    let mut layers: BTreeMap<&str, (f64, usize, f64)> = BTreeMap::new();
    for r in &rows {
        let e = layers.entry(&r.node).or_insert((0.0, 0, f64::NEG_INFINITY));
        e.0 += r.value;
        e.1 += 1;
        e.2 = e.2.max(r.value);
    }
    println!("\nper layer:");
    println!(
        "{:<18} {:>8} {:>10} {:>10}",
        "node", "players", "total", "max"
    );
    for (node, (total, count, max)) in &layers {
        println!("{node:<18} {count:>8} {total:>10.4} {max:>10.4}");
    }
    let figure = args.dir.join("layers.svg");
    plot::layer_bars(&rows, &figure)?;
    println!("\nwrote {} and .png", figure.display());
    Ok(())
}

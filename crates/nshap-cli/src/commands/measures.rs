//! `nshap measures`: per-neuron class selectivity, Jacobian sensitivity, first-order Taylor
//! estimate and leave-one-out, to set beside Shapley values (docs/measures.md).

use crate::game_args::GameArgs;
use crate::output::write_atomic;
use crate::prepare::Prepared;
use anyhow::{Context, Result};
use clap::Args;
use nshap::measures::{measures_csv, neuron_measures, NeuronMeasures};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct MeasuresArgs {
    #[command(flatten)]
    pub game: GameArgs,
    /// Output directory (default: the --from run directory, else nshap-measures).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Compute every measure of a prepared game and write `dir/measures.csv`.
pub fn compute_and_write(prepared: &mut Prepared, dir: &Path) -> Result<Vec<NeuronMeasures>> {
    let started = Instant::now();
    eprintln!(
        "measures of {} players: gradients on the CPU, leave-one-out on {} ({})",
        prepared.players.len(),
        prepared.info.backend,
        prepared.info.device
    );
    let rows = neuron_measures(
        &prepared.graph,
        &prepared.data,
        &prepared.players,
        prepared.game.evaluator_mut(),
    )?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join("measures.csv"), measures_csv(&rows).as_bytes())?;
    eprintln!(
        "measures done in {:.1} s; wrote {}/measures.csv",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(rows)
}

pub fn execute(args: MeasuresArgs) -> Result<()> {
    let source = args.game.resolve()?;
    if source.demo {
        eprintln!(
            "no model given: using the shipped digits CNN (assets/digits-cnn), players {}",
            source.spec.players.join(",")
        );
    }
    let mut prepared = source.spec.prepare()?;
    let out = args
        .out
        .clone()
        .or_else(|| source.run.as_ref().map(|(d, _)| d.clone()))
        .unwrap_or_else(|| PathBuf::from("nshap-measures"));
    let rows = compute_and_write(&mut prepared, &out)?;
    let loo_title = format!("leave-one-out ({} drop)", prepared.metric.name());
    type Column<'a> = (&'a str, fn(&NeuronMeasures) -> f64);
    let columns: [Column<'_>; 4] = [
        ("selectivity", |r| r.selectivity),
        ("sensitivity", |r| r.sensitivity),
        ("taylor", |r| r.taylor),
        (&loo_title, |r| r.loo),
    ];
    for (title, score) in columns {
        let values: Vec<f64> = rows.iter().map(score).collect();
        let top: Vec<String> = nshap::estimate::top_k_indices(&values, 5)
            .into_iter()
            .map(|i| format!("{}:{} ({:.4})", rows[i].node, rows[i].index, values[i]))
            .collect();
        println!("top by {title}: {}", top.join(", "));
    }
    Ok(())
}

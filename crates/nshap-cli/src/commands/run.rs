//! `nshap run`: estimate Shapley values, with progress, checkpoints and resume.

use crate::coalition_table::{self, TableKey};
use crate::output::{values_csv, write_atomic};
use crate::prepare::{Prepared, RunSpec};
use crate::progress::Reporter;
use anyhow::{bail, Context, Result};
use clap::Args;
use nshap::estimate::{AnyEstimator, Estimator};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: RunSpec,
    /// Output directory (values.csv, report.json, checkpoints).
    #[arg(long, default_value = "nshap-out")]
    pub out: PathBuf,
    /// Continue the run saved in this directory (its run.json fixes every other option).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Replace a run already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Seconds between checkpoints (also saved on Ctrl-C and at the end).
    #[arg(long, default_value_t = 2.0, value_parser = crate::model_args::seconds)]
    pub checkpoint_secs: f64,
}

/// run.json: the run's spec and the digests of what it read.
#[derive(Serialize, Deserialize)]
pub struct RunRecord {
    pub spec: RunSpec,
    pub model_digest: String,
    pub data_digest: String,
}

pub const RUN_FILE: &str = "run.json";
pub const STATE_FILE: &str = "state.json";
pub const PROGRESS_FILE: &str = "progress.json";

pub fn read_record(dir: &Path) -> Result<RunRecord> {
    let path = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} is not a run directory (no {RUN_FILE})", dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: malformed", path.display()))
}

pub fn execute(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let (spec, out, state) = match &args.resume {
        Some(dir) => {
            let record = read_record(dir)?;
            let state = std::fs::read(dir.join(STATE_FILE)).with_context(|| {
                format!(
                    "{}: no checkpoint to resume from",
                    dir.join(STATE_FILE).display()
                )
            })?;
            (
                record.spec,
                dir.clone(),
                Some((state, record.model_digest, record.data_digest)),
            )
        }
        None => {
            let mut spec = args.spec.clone();
            let demo = spec.apply_demo_defaults()?;
            spec.absolutize();
            if demo {
                eprintln!("no model given: running the demo on the shipped digits CNN (assets/digits-cnn), players {}", spec.players.join(","));
            }
            if args.out.join(STATE_FILE).exists() && !(args.overwrite || demo) {
                bail!(
                    "{} already holds a run; continue it with --resume {0}, or pass --overwrite",
                    args.out.display()
                );
            }
            (spec, args.out.clone(), None)
        }
    };
    let mut prepared = spec.prepare()?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut estimator = match state {
        Some((bytes, model_digest, data_digest)) => {
            if model_digest != prepared.model_digest || data_digest != prepared.data_digest {
                bail!(
                    "the model or data files changed since the run in {} started; cannot resume",
                    out.display()
                );
            }
            AnyEstimator::from_state(&bytes).context("reading the checkpoint")?
        }
        None => {
            let record = RunRecord {
                spec: spec.clone(),
                model_digest: prepared.model_digest.clone(),
                data_digest: prepared.data_digest.clone(),
            };
            write_atomic(
                &out.join(RUN_FILE),
                serde_json::to_string_pretty(&record)?.as_bytes(),
            )?;
            let _ = std::fs::remove_file(out.join("values.csv"));
            AnyEstimator::new(
                prepared.method,
                &prepared.options,
                prepared.players.len(),
                spec.seed,
            )?
        }
    };
    eprintln!(
        "{}: {}, {} examples, method {}, metric {}, backend {} ({})",
        prepared.model_description,
        players_summary(&spec.players, &prepared.players),
        prepared.data.len(),
        prepared.method,
        prepared.metric.name(),
        prepared.info.backend,
        prepared.info.device
    );
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl-C while saving would be ignored; kill -9 is covered by the checkpoints.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let mut reporter = Reporter::new(spec.budget, &prepared.players);
    let mut last_save = Instant::now();
    let labels: Vec<String> = (0..prepared.players.len())
        .map(|i| {
            let (node, channel) = prepared.players.label(i);
            format!("{node}#{channel}")
        })
        .collect();
    // progress.json: what a watcher (nshap serve) shows; state.json: what --resume reads.
    let save = |est: &AnyEstimator| -> Result<()> {
        let p = est.progress();
        let progress = serde_json::json!({
            "evaluations": p.evaluations,
            "budget": p.budget,
            "active": p.active,
            "top_k": p.top_k.iter().map(|&i| labels[i].clone()).collect::<Vec<_>>(),
            "done": p.done,
            "elapsed_seconds": started.elapsed().as_secs_f64(),
        });
        write_atomic(&out.join(STATE_FILE), &est.save_state())?;
        write_atomic(&out.join(PROGRESS_FILE), progress.to_string().as_bytes())
    };
    while !estimator.is_done() {
        let progress = estimator
            .step(&mut prepared.game)
            .map_err(|e| anyhow::anyhow!("evaluation failed: {e}"))?;
        reporter.update(&progress);
        if interrupted.load(Ordering::SeqCst) {
            save(&estimator)?;
            reporter.finish();
            bail!(
                "interrupted: state saved; continue with: nshap run --resume {}",
                out.display()
            );
        }
        if last_save.elapsed() >= Duration::from_secs_f64(args.checkpoint_secs) {
            save(&estimator)?;
            last_save = Instant::now();
        }
    }
    save(&estimator)?;
    reporter.finish();
    if let AnyEstimator::Exact(exact) = &estimator {
        // Keep the enumeration: `nshap interactions --from` computes every index from it.
        if let Some(table) = exact.value_table() {
            coalition_table::save(&out, &TableKey::new(&spec, &prepared), &table)?;
        }
    }
    let estimates = estimator.result();
    write_atomic(
        &out.join("values.csv"),
        values_csv(&estimates, &prepared.players).as_bytes(),
    )?;
    let report =
        crate::commands::report::build_report(&spec, &prepared, &estimates, started.elapsed());
    write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    print_top(&prepared, &estimates, spec.top_k);
    eprintln!("wrote {}/values.csv and report.json", out.display());
    Ok(())
}

fn print_top(prepared: &Prepared, estimates: &nshap::estimate::Estimates, k: usize) {
    let d = &estimates.diagnostics;
    println!(
        "{} evaluations, v(all) = {}, v(none) = {}",
        d.evaluations,
        d.grand_value.map_or("-".into(), |v| format!("{v:.4}")),
        d.empty_value.map_or("-".into(), |v| format!("{v:.4}"))
    );
    println!(
        "top {k} players by Shapley value ({}):",
        prepared.metric.name()
    );
    let top = estimates.top_k(k);
    let shown = &top[..top.len().min(TABLE_ROWS)];
    let labels: Vec<String> = shown
        .iter()
        .map(|&i| {
            let (node, ch) = prepared.players.label(i);
            format!("{node}#{ch}")
        })
        .collect();
    let w = labels.iter().map(String::len).max().unwrap_or(0).max(16);
    println!(
        "{:>4}  {:<w$} {:>9} {:>9}  {:>21}",
        "rank", "player", "value", "stderr", "95% interval"
    );
    for (rank, (&i, label)) in shown.iter().zip(&labels).enumerate() {
        let p = &estimates.players[i];
        println!(
            "{:>4}  {:<w$} {:>9.4} {:>9.4}  [{:>8.4}, {:>8.4}]",
            rank + 1,
            label,
            p.value,
            p.stderr,
            p.ci_low,
            p.ci_high
        );
    }
    if top.len() > shown.len() {
        println!(
            "  ... {} more of the top {k} in values.csv (sorted by value)",
            top.len() - shown.len()
        );
    }
}

/// Most rows of the final table; the rest are in values.csv.
const TABLE_ROWS: usize = 25;

/// "32 players in relu2", or "17216 players in 94 layers (filters)" for many layers.
pub fn players_summary(items: &[String], players: &nshap::model::Players) -> String {
    let layers = players.layers();
    let mut given = items.join(",");
    if given.len() > 80 {
        let cut = (0..=77)
            .rev()
            .find(|&i| given.is_char_boundary(i))
            .unwrap_or(0);
        given.truncate(cut);
        given.push_str("...");
    }
    match layers {
        [one] if items.len() == 1 && items[0] == one.name => {
            format!("{} players in {}", players.len(), one.name)
        }
        _ => format!(
            "{} players in {} layer{} ({given})",
            players.len(),
            layers.len(),
            if layers.len() == 1 { "" } else { "s" }
        ),
    }
}

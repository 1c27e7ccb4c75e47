//! `nshap run`: estimate Shapley values, with progress, checkpoints and resume.

use crate::coalition_table::{self, TableKey};
use crate::commands::report::TopKVerdict;
use crate::output::{interval_label, values_csv, write_atomic};
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
    /// Continue the run saved in this directory. Its run.json fixes every option; `--budget N`
    /// gives it a new budget (a run that stopped on its budget continues), other options must
    /// match run.json or be left out.
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
    let mut record: RunRecord =
        serde_json::from_str(&text).with_context(|| format!("{}: malformed", path.display()))?;
    record.spec.normalize();
    Ok(record)
}

/// Budget of the demo (no model given) when `--budget` is not: enough for TMAB to resolve the
/// demo's top-10 (it stops at about 500,000), so the README's command exits 0.
pub const DEMO_BUDGET: u64 = 1_000_000;

/// Options that may be given with `--resume` besides those equal to run.json's.
const RESUME_OPTIONS: [&str; 3] = ["resume", "budget", "checkpoint_secs"];

/// Runs (or resumes) an estimation; returns the exit status: 0, or 3 when a top-k method
/// stopped on its budget without resolving its top-k. `given` are the ids of the options given
/// on the command line (to tell `--budget 200000` from the default).
pub fn execute(args: RunArgs, given: &[String]) -> Result<i32> {
    let started = Instant::now();
    let passed = |id: &str| given.iter().any(|g| g == id);
    let mut new_budget = None;
    let (mut spec, out, state) = match &args.resume {
        Some(dir) => {
            let record = read_record(dir)?;
            check_resume_options(dir, &args, given, &record.spec)?;
            if passed("budget") {
                new_budget = Some(args.spec.budget);
            }
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
            spec.normalize();
            let demo = spec.apply_demo_defaults()?;
            // The demo asks for the top-10; otherwise only an explicit --top-k is a top-k
            // question (what `--method auto` answers with a certified top-k).
            spec.top_k_asked = demo || passed("top_k");
            spec.absolutize();
            if demo {
                if !passed("budget") {
                    spec.budget = DEMO_BUDGET;
                }
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
    let mut prepared = if state.is_some() {
        spec.prepare()?
    } else {
        warn_unused_options(&spec);
        spec.prepare_run()?
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut estimator = match state {
        Some((bytes, model_digest, data_digest)) => {
            if model_digest != prepared.model_digest || data_digest != prepared.data_digest {
                bail!(
                    "the model or data files changed since the run in {} started; cannot resume",
                    out.display()
                );
            }
            let mut est = AnyEstimator::from_state(&bytes).context("reading the checkpoint")?;
            if let Some(budget) = new_budget.filter(|&b| b != spec.budget) {
                let spent = est.progress().evaluations;
                eprintln!("{}", budget_change(spec.budget, budget, spent));
                est.set_budget(budget);
                spec.budget = budget;
                let record = RunRecord {
                    spec: spec.clone(),
                    model_digest,
                    data_digest,
                };
                write_atomic(
                    &out.join(RUN_FILE),
                    serde_json::to_string_pretty(&record)?.as_bytes(),
                )?;
            }
            est
        }
        None => {
            if let Some(choice) = &prepared.method_choice {
                eprintln!("method auto: {}", choice.reason);
                // run.json records the method chosen, so --resume rebuilds the same one.
                spec.method = choice.method.name().into();
            }
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
    let mut last_save_took = Duration::ZERO;
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
        // A state that takes long to write (the regression estimator keeps its coalitions)
        // is written less often: checkpoints cost at most ~5% of the run.
        let interval = Duration::from_secs_f64(args.checkpoint_secs).max(20 * last_save_took);
        if last_save.elapsed() >= interval {
            let t = Instant::now();
            save(&estimator)?;
            last_save_took = t.elapsed();
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
    let verdict = TopKVerdict::of(&estimates, spec.budget);
    if let Some(message) = verdict.message(spec.top_k, &out) {
        println!("{message}");
    }
    eprintln!("wrote {}/values.csv and report.json", out.display());
    Ok(if verdict.unresolved_top_k() {
        EXIT_UNRESOLVED
    } else {
        0
    })
}

/// Exit status of a run that wrote its results but did not resolve its top-k.
pub const EXIT_UNRESOLVED: i32 = 3;

/// "budget raised from A to B", with what that means for the run.
fn budget_change(old: u64, new: u64, spent: u64) -> String {
    if new > old {
        format!("budget raised from {old} to {new} ({spent} already spent)")
    } else if new > spent {
        format!("budget lowered from {old} to {new} ({spent} already spent)")
    } else {
        format!("budget lowered from {old} to {new}: {spent} already spent, the run stops here")
    }
}

/// With `--resume`, the run's options are those of its run.json: an option given again with the
/// same value is fine, one with another value is an error (only `--budget` may change).
fn check_resume_options(
    dir: &Path,
    args: &RunArgs,
    given: &[String],
    recorded: &RunSpec,
) -> Result<()> {
    let mut user = args.spec.clone();
    user.normalize();
    user.absolutize();
    let user = serde_json::to_value(&user)?;
    let recorded = serde_json::to_value(recorded)?;
    let same_dir = |p: &Path| std::path::absolute(p).ok() == std::path::absolute(dir).ok();
    let mut conflicts = Vec::new();
    for id in given
        .iter()
        .filter(|id| !RESUME_OPTIONS.contains(&id.as_str()))
    {
        let flag = format!("--{}", id.replace('_', "-"));
        match id.as_str() {
            "overwrite" => conflicts.push("--overwrite (a resumed run replaces nothing)".into()),
            "out" if !same_dir(&args.out) => conflicts.push(format!(
                "--out {} (a resumed run writes into {})",
                args.out.display(),
                dir.display()
            )),
            "out" => {}
            _ => {
                let key = if id == "truncation_tolerance" {
                    "truncation"
                } else {
                    id.as_str()
                };
                let (mine, theirs) = (spec_field(&user, key), spec_field(&recorded, key));
                if mine != theirs {
                    conflicts.push(format!(
                        "{flag} {} (run.json: {})",
                        show(mine),
                        show(theirs)
                    ));
                }
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    bail!(
        "--resume {}: a resumed run keeps the options in its run.json (only --budget may change), and these differ: {}; drop them, or start a new run with --out",
        dir.display(),
        conflicts.join(", ")
    )
}

/// A RunSpec field in its JSON form by option id: inside the flattened model/data arguments
/// first (`--model` is `model.model`), then at the top level.
fn spec_field<'a>(spec: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    let nested = spec
        .as_object()?
        .values()
        .filter_map(|v| v.as_object())
        .find_map(|o| o.get(key));
    nested.or_else(|| spec.get(key))
}

/// A JSON option value as a user would type it.
fn show(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "none".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| show(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// Warnings for options the chosen method does not use.
fn warn_unused_options(spec: &RunSpec) {
    let method = spec.method.trim().to_ascii_lowercase();
    if spec.truncation.0.is_some()
        && ["cmcs", "loo", "leave-one-out", "exact"].contains(&method.as_str())
    {
        eprintln!(
            "warning: --truncation applies to permutation walks (permutation, tmab); {method} ignores it"
        );
    }
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
        "rank",
        "player",
        "value",
        "stderr",
        interval_label(&d.interval.column_stem())
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

//! `nshap interactions`: which neurons work together. Harsanyi (Möbius) dividends and the
//! Shapley interaction index, exact over all 2^n coalitions (n <= 20) or, for pairs, sampled
//! with standard errors on games of any size.

use crate::coalition_table::{self, TableKey};
use crate::game_args::{player_label, run_values, GameArgs};
use crate::output::write_atomic;
use crate::plot;
use crate::progress::Counter;
use anyhow::{bail, Context, Result};
use clap::Args;
use nshap::estimate::interactions::{
    Interaction, InteractionIndex, SampledSii, SampledSiiConfig, ValueTable,
};
use nshap::estimate::MAX_EXACT_PLAYERS;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct InteractionsArgs {
    #[command(flatten)]
    pub game: GameArgs,
    /// Only interactions among the top K players of the --from run (by Shapley value). The game
    /// still has all the run's players.
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// moebius (Harsanyi dividends) or sii (Shapley interaction index).
    #[arg(long, default_value = "sii")]
    pub index: String,
    /// Largest interaction order written (moebius: orders 1..=K, default every order; sii:
    /// orders 2..=K, default 2).
    #[arg(long, value_name = "K")]
    pub order: Option<usize>,
    /// exact (all 2^n coalitions, n <= 20), sampled (pairwise SII, any n), or auto (exact when
    /// n <= 20).
    #[arg(long, default_value = "auto")]
    pub method: String,
    /// Most coalition evaluations for --method sampled.
    #[arg(long, default_value_t = 100_000)]
    pub budget: u64,
    /// Seed of the sampled estimator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Coalitions per backend call.
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    /// Output directory (default: the --from run directory, else nshap-interactions).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds between checkpoints of a sampled run (also saved on Ctrl-C). Running the same
    /// command again continues from the checkpoint.
    #[arg(long, default_value_t = 2.0, value_parser = crate::model_args::seconds)]
    pub checkpoint_secs: f64,
}

/// A sampled run's checkpoint: the estimator's state and everything that must match to resume.
#[derive(Serialize, Deserialize)]
struct SampledCheckpoint {
    key: TableKey,
    selection: Vec<usize>,
    budget: u64,
    seed: u64,
    batch_size: usize,
    state: SampledSii,
}

const STATE_FILE: &str = "interactions-state.json";
#[derive(Clone, Copy, PartialEq, Debug)]
enum Method {
    Exact,
    Sampled,
}

/// Checks every argument that can be checked before loading anything heavy; `n` is the game's
/// player count and `selected` how many players interactions are reported for.
fn choose_method(
    args: &InteractionsArgs,
    index: InteractionIndex,
    n: usize,
    selected: usize,
) -> Result<(Method, usize)> {
    let method = match args.method.as_str() {
        "exact" => Method::Exact,
        "sampled" => Method::Sampled,
        "auto" if n <= MAX_EXACT_PLAYERS || index == InteractionIndex::Moebius => Method::Exact,
        "auto" => Method::Sampled,
        other => bail!("unknown --method {other:?}: expected exact, sampled or auto"),
    };
    if method == Method::Exact && n > MAX_EXACT_PLAYERS {
        bail!(
            "exact interactions enumerate all 2^n coalitions of the game's players: {n} players is \
             more than {MAX_EXACT_PLAYERS}; use --index sii --method sampled (with --top K for pairs \
             among the top K), or fewer players"
        );
    }
    if method == Method::Sampled && index == InteractionIndex::Moebius {
        bail!("--index moebius is computed exactly only (n <= {MAX_EXACT_PLAYERS}); use --index sii for --method sampled");
    }
    let min_order = match index {
        InteractionIndex::Moebius => 1,
        InteractionIndex::Sii => 2,
    };
    let order = match (args.order, index) {
        (Some(k), _) => k,
        (None, InteractionIndex::Moebius) => selected,
        (None, InteractionIndex::Sii) => 2,
    };
    if order < min_order || order > selected {
        bail!("--order {order} must be between {min_order} and the {selected} players selected",);
    }
    if method == Method::Sampled && order != 2 {
        bail!("--method sampled estimates pairwise interactions only: use --order 2");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    Ok((method, order))
}

pub fn execute(args: InteractionsArgs) -> Result<()> {
    let started = Instant::now();
    let index: InteractionIndex = args
        .index
        .parse()
        .map_err(|e| anyhow::anyhow!("--index {:?}: {e}", args.index))?;
    if args.top.is_some() && args.game.from.is_none() {
        bail!("--top K needs --from DIR: the finished run whose top K players to use");
    }
    let source = args.game.resolve()?;
    if source.demo {
        eprintln!(
            "no model given: using the shipped digits CNN (assets/digits-cnn), players {}",
            source.spec.players.join(",")
        );
    }
    let spec = source.spec;
    let mut prepared = spec.prepare()?;
    let players = prepared.players.clone();
    let n = players.len();
    let selection: Vec<usize> = match (args.top, &source.run) {
        (Some(k), Some((dir, _))) => {
            if k < 2 || k > n {
                bail!("--top {k} must be between 2 and the number of players ({n})");
            }
            let (_, values) = run_values(dir, &players)?;
            nshap::estimate::top_k_indices(&values, k)
        }
        _ => (0..n).collect(),
    };
    let (method, order) = choose_method(&args, index, n, selection.len())?;
    let out = args
        .out
        .clone()
        .or_else(|| source.run.as_ref().map(|(d, _)| d.clone()))
        .unwrap_or_else(|| PathBuf::from("nshap-interactions"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    eprintln!(
        "{}: {}, {} examples, {} interactions among {} players ({}), metric {}, backend {} ({})",
        prepared.model_description,
        crate::commands::run::players_summary(&spec.players, &players),
        prepared.data.len(),
        args.index,
        selection.len(),
        if method == Method::Exact {
            "exact"
        } else {
            "sampled"
        },
        prepared.metric.name(),
        prepared.info.backend,
        prepared.info.device
    );

    let key = TableKey::new(&spec, &prepared);
    let mut evaluations = 0u64;
    let mut reused_table = false;
    let mut shapley: Option<Vec<f64>> = None;
    let mut rows: Vec<Interaction> = match method {
        Method::Exact => {
            let table = match coalition_table::load(&out, &key) {
                Some(t) => {
                    reused_table = true;
                    eprintln!("reusing the 2^{n} coalition values in {}", out.display());
                    t
                }
                None => {
                    let mut counter = Counter::new(1u64 << n, "coalitions");
                    let table =
                        ValueTable::enumerate(&mut prepared.game, args.batch_size, |done, _| {
                            counter.set(done)
                        })
                        .map_err(|e| anyhow::anyhow!("enumerating coalitions: {e}"))?;
                    counter.finish();
                    coalition_table::save(&out, &key, &table)?;
                    evaluations = table.evaluations();
                    table
                }
            };
            shapley = Some(table.shapley());
            match index {
                InteractionIndex::Moebius => table.moebius(order, Some(&selection)),
                InteractionIndex::Sii => table.sii(order, Some(&selection)),
            }
        }
        Method::Sampled => {
            let (r, e) = sample_pairs(&args, &mut prepared.game, key, &selection, n, &out)?;
            evaluations = e;
            r
        }
    };
    rows.sort_by(|a, b| {
        b.value
            .abs()
            .total_cmp(&a.value.abs())
            .then_with(|| a.players.cmp(&b.players))
    });

    let label = |p: usize| player_label(&players, p);
    let mut csv = String::from("players,order,value,stderr\n");
    for r in &rows {
        let names: Vec<String> = r.players.iter().map(|&p| label(p)).collect();
        let _ = writeln!(
            csv,
            "{},{},{},{}",
            names.join(";"),
            r.players.len(),
            r.value,
            r.stderr
        );
    }
    write_atomic(&out.join("interactions.csv"), csv.as_bytes())?;

    // The pairwise matrix over the selection (at most 64 players drawn).
    let shown: Vec<usize> = selection.iter().copied().take(64).collect();
    let mut matrix = vec![vec![f64::NAN; shown.len()]; shown.len()];
    for r in rows.iter().filter(|r| r.players.len() == 2) {
        let (a, b) = (r.players[0], r.players[1]);
        if let (Some(x), Some(y)) = (
            shown.iter().position(|&p| p == a),
            shown.iter().position(|&p| p == b),
        ) {
            matrix[x][y] = r.value;
            matrix[y][x] = r.value;
        }
    }
    let labels: Vec<String> = shown.iter().map(|&p| label(p)).collect();
    let title = format!(
        "{} ({}), metric {}",
        match index {
            InteractionIndex::Moebius => "pairwise Harsanyi dividends",
            InteractionIndex::Sii => "pairwise Shapley interaction index",
        },
        if method == Method::Exact {
            "exact"
        } else {
            "sampled"
        },
        prepared.metric.name()
    );
    plot::heatmap(&out.join("interactions.svg"), &title, &labels, &matrix)?;

    let report = serde_json::json!({
        "index": args.index,
        "method": if method == Method::Exact { "exact" } else { "sampled" },
        "order": order,
        "game_players": n,
        "player_layers": spec.players,
        "selected": selection.iter().map(|&p| label(p)).collect::<Vec<_>>(),
        "from": source.run.as_ref().map(|(d, _)| d.display().to_string()),
        "top": args.top,
        "metric": prepared.metric.name(),
        "baseline": spec.baseline,
        "budget": (method == Method::Sampled).then_some(args.budget),
        "seed": args.seed,
        "evaluations": evaluations,
        "reused_coalition_table": reused_table,
        "interactions": rows.len(),
        "shapley_of_selected": shapley.as_ref().map(|s| selection.iter().map(|&p| (label(p), s[p])).collect::<Vec<_>>()),
        "model_digest": prepared.model_digest,
        "data_digest": prepared.data_digest,
        "backend": prepared.info,
        "wall_seconds": started.elapsed().as_secs_f64(),
    });
    write_atomic(
        &out.join("interactions.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;

    println!(
        "strongest interactions ({} of {}):",
        rows.len().min(10),
        rows.len()
    );
    for r in rows.iter().take(10) {
        let names: Vec<String> = r.players.iter().map(|&p| label(p)).collect();
        if method == Method::Exact {
            println!("  {:>12.6}  {}", r.value, names.join(" + "));
        } else {
            println!(
                "  {:>12.6} ± {:.6}  {}",
                r.value,
                r.stderr,
                names.join(" + ")
            );
        }
    }
    println!(
        "{evaluations} coalition evaluations in {:.1} s; wrote {}/interactions.csv, interactions.json, interactions.svg, interactions.png",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// Sampled pairwise SII among `selection`, checkpointed to `out` every `--checkpoint-secs` and
/// on Ctrl-C; a checkpoint of the same job is continued (bit for bit) instead of restarted.
fn sample_pairs(
    args: &InteractionsArgs,
    game: &mut nshap::NetworkGame,
    key: TableKey,
    selection: &[usize],
    n: usize,
    out: &Path,
) -> Result<(Vec<Interaction>, u64)> {
    let mut pairs = Vec::new();
    for (a, &i) in selection.iter().enumerate() {
        for &j in &selection[a + 1..] {
            pairs.push((i.min(j), i.max(j)));
        }
    }
    let state_path = out.join(STATE_FILE);
    let resumed = std::fs::read_to_string(&state_path)
        .ok()
        .and_then(|text| serde_json::from_str::<SampledCheckpoint>(&text).ok())
        .filter(|c| {
            c.key == key
                && c.selection == selection
                && c.budget == args.budget
                && c.seed == args.seed
                && c.batch_size == args.batch_size
        });
    let mut estimator = match resumed {
        Some(c) => {
            eprintln!(
                "continuing the sampled run checkpointed in {} ({} evaluations done)",
                state_path.display(),
                c.state.progress().evaluations
            );
            c.state
        }
        None => {
            let config = SampledSiiConfig {
                budget: args.budget,
                batch_size: args.batch_size,
                seed: args.seed,
            };
            SampledSii::new(config, n, pairs).context("--method sampled")?
        }
    };
    let mut checkpoint = SampledCheckpoint {
        key,
        selection: selection.to_vec(),
        budget: args.budget,
        seed: args.seed,
        batch_size: args.batch_size,
        state: estimator.clone(),
    };
    let mut save = |estimator: &SampledSii| -> Result<()> {
        checkpoint.state = estimator.clone();
        write_atomic(&state_path, serde_json::to_string(&checkpoint)?.as_bytes())
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let mut counter = Counter::new(args.budget, "evaluations");
    let mut last_save = Instant::now();
    while !estimator.is_done() {
        let p = estimator
            .step(game)
            .map_err(|e| anyhow::anyhow!("sampling interactions: {e}"))?;
        counter.set(p.evaluations);
        if interrupted.load(Ordering::SeqCst) {
            counter.finish();
            save(&estimator)?;
            bail!(
                "interrupted after {} evaluations: state saved in {}; run the same command again to continue",
                p.evaluations,
                state_path.display()
            );
        }
        if last_save.elapsed() >= Duration::from_secs_f64(args.checkpoint_secs) {
            save(&estimator)?;
            last_save = Instant::now();
        }
    }
    counter.finish();
    let _ = std::fs::remove_file(&state_path);
    Ok((estimator.result(), estimator.progress().evaluations))
}

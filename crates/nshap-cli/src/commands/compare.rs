//! `nshap compare`: does Shapley value say something the cheap measures miss? Rank correlations
//! and top-k overlap of Shapley value with selectivity, sensitivity, Taylor and leave-one-out,
//! their scatter plots, and ablation curves ordered by each.

use crate::commands::measures::compute_and_write;
use crate::game_args::run_values;
use crate::output::write_atomic;
use crate::plot::{self, Curve, Scatter};
use anyhow::{Context, Result};
use clap::Args;
use nshap::ablation::{ablation_curves, order_by, random_orders, Band};
use nshap::measures::{parse_measures_csv, NeuronMeasures};
use nshap::rank::{kendall_tau_b, spearman, top_k_overlap};
use plotters::style::RGBColor;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// A finished run directory (from nshap run); measures.csv is computed there if missing.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Remove up to this many players in the ablation curves (default: twice the run's top-k,
    /// at least 10, at most all players).
    #[arg(long)]
    pub k: Option<usize>,
    /// Random orders for the random ablation band.
    #[arg(long, default_value_t = 10)]
    pub random_seeds: u64,
    /// Override the run's backend (auto, cpu, gpu).
    #[arg(long)]
    pub backend: Option<String>,
}

/// measures.csv of `dir` if it is there and describes exactly these players, in order.
fn existing_measures(dir: &Path, labels: &[(String, usize)]) -> Option<Vec<NeuronMeasures>> {
    let text = std::fs::read_to_string(dir.join("measures.csv")).ok()?;
    let rows = parse_measures_csv(&text).ok()?;
    let same = rows.len() == labels.len()
        && rows
            .iter()
            .zip(labels)
            .all(|(r, (node, c))| &r.node == node && r.index == *c);
    same.then_some(rows)
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "nan".into(), |v| format!("{v:.6}"))
}

pub fn execute(args: CompareArgs) -> Result<()> {
    let record = crate::commands::run::read_record(&args.from)?;
    let mut spec = record.spec.clone();
    if let Some(b) = &args.backend {
        spec.backend = b.clone();
    }
    let mut prepared = spec.prepare()?;
    let players = prepared.players.clone();
    let n = players.len();
    let (_, shapley) = run_values(&args.from, &players)?;
    let labels: Vec<(String, usize)> = (0..n)
        .map(|p| {
            let (node, c) = players.label(p);
            (node.to_owned(), c)
        })
        .collect();
    let measures = match existing_measures(&args.from, &labels) {
        Some(rows) => {
            eprintln!("using {}/measures.csv", args.from.display());
            rows
        }
        None => compute_and_write(&mut prepared, &args.from)?,
    };
    let column = |f: fn(&NeuronMeasures) -> f64| measures.iter().map(f).collect::<Vec<f64>>();
    let named: Vec<(&str, Vec<f64>)> = vec![
        ("selectivity", column(|m| m.selectivity)),
        ("sensitivity", column(|m| m.sensitivity)),
        ("taylor", column(|m| m.taylor)),
        ("loo", column(|m| m.loo)),
    ];
    let k = spec.top_k.min(n);
    let mut csv = String::from("measure,spearman,kendall,top_k_overlap,k\n");
    println!("Shapley value vs each measure over {n} players (top-k overlap with k = {k}):");
    println!(
        "  {:<12} {:>9} {:>9} {:>9}",
        "measure", "spearman", "kendall", "overlap"
    );
    for (name, values) in &named {
        let rho = spearman(&shapley, values);
        let tau = kendall_tau_b(&shapley, values);
        let overlap = top_k_overlap(&shapley, values, k);
        let _ = writeln!(
            csv,
            "{name},{},{},{overlap},{k}",
            fmt_opt(rho),
            fmt_opt(tau)
        );
        println!(
            "  {name:<12} {:>9} {:>9} {:>9.2}",
            fmt_opt(rho),
            fmt_opt(tau),
            overlap
        );
    }
    write_atomic(&args.from.join("compare.csv"), csv.as_bytes())?;

    // Ablation: remove the top-k players by each ranking.
    let k_max = args.k.unwrap_or((2 * spec.top_k).max(10)).min(n);
    let measure = |name: &str| &named.iter().find(|(m, _)| *m == name).expect("measure").1;
    let mut orders = vec![
        order_by(&shapley),
        order_by(measure("loo")),
        order_by(measure("selectivity")),
        order_by(measure("taylor")),
    ];
    orders.extend(random_orders(n, args.random_seeds, spec.seed));
    let curves = ablation_curves(prepared.game.evaluator_mut(), n, &orders, k_max)
        .context("ablation curves")?;
    let band = Band::of(&curves[4..]);
    // One row per k: shapley, loo, selectivity, taylor, random mean/min/max.
    let table: Vec<[f64; 7]> = (0..=k_max)
        .map(|kk| {
            let (m, lo, hi) = band.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |b| {
                (b.mean[kk], b.low[kk], b.high[kk])
            });
            [
                curves[0][kk],
                curves[1][kk],
                curves[2][kk],
                curves[3][kk],
                m,
                lo,
                hi,
            ]
        })
        .collect();
    let mut acsv =
        String::from("k,shapley,loo,selectivity,taylor,random_mean,random_min,random_max\n");
    for (kk, row) in table.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(f64::to_string).collect();
        let _ = writeln!(acsv, "{kk},{}", cells.join(","));
    }
    write_atomic(&args.from.join("compare_ablation.csv"), acsv.as_bytes())?;

    let metric = prepared.metric.name();
    let mut lines = vec![
        Curve {
            label: "top-k by Shapley",
            color: RGBColor(200, 30, 30),
            values: &curves[0],
            band: None,
        },
        Curve {
            label: "top-k by leave-one-out",
            color: RGBColor(30, 90, 200),
            values: &curves[1],
            band: None,
        },
        Curve {
            label: "top-k by selectivity",
            color: RGBColor(150, 60, 170),
            values: &curves[2],
            band: None,
        },
        Curve {
            label: "top-k by Taylor",
            color: RGBColor(230, 140, 20),
            values: &curves[3],
            band: None,
        },
    ];
    if let Some(b) = &band {
        lines.push(Curve {
            label: "random order (mean, min-max band)",
            color: RGBColor(110, 110, 110),
            values: &b.mean,
            band: Some((&b.low, &b.high)),
        });
    }
    let scatters: Vec<Scatter<'_>> = named
        .iter()
        .map(|(name, values)| Scatter {
            x_label: name,
            x: values,
            y: &shapley,
            rho: spearman(&shapley, values),
        })
        .collect();
    plot::compare(&args.from.join("compare.svg"), &metric, &scatters, &lines)?;
    println!("{metric} after removing the top k players:");
    println!(
        "{:>3} {:>9} {:>9} {:>11} {:>9} {:>9}",
        "k", "shapley", "loo", "selectivity", "taylor", "random"
    );
    for (kk, r) in table.iter().enumerate() {
        println!(
            "{kk:>3} {:>9.4} {:>9.4} {:>11.4} {:>9.4} {:>9.4}",
            r[0], r[1], r[2], r[3], r[4]
        );
    }
    println!(
        "wrote {0}/compare.csv, compare_ablation.csv, compare.svg, compare.png",
        args.from.display()
    );
    Ok(())
}

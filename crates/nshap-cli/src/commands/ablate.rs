//! `nshap ablate`: the metric after removing the top-k players, beside leave-one-out order,
//! random order and the bottom-k. The figure that tells whether the values mean something.

use crate::commands::run::read_record;
use crate::game_args::{player_index, run_values};
use crate::output::write_atomic;
use crate::plot::{self, Curve};
use anyhow::Result;
use clap::Args;
use nshap::ablation::{ablation_curves, leave_one_out, order_by, random_orders, Band};
use plotters::style::RGBColor;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AblateArgs {
    /// A finished run directory (from nshap run).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Remove up to this many players (default: twice the run's top-k, at most all players).
    #[arg(long)]
    pub k: Option<usize>,
    /// Random orders to average for the random curve.
    #[arg(long, default_value_t = 10)]
    pub random_seeds: u64,
    /// Override the run's backend (auto, cpu, gpu).
    #[arg(long)]
    pub backend: Option<String>,
}

pub fn execute(args: AblateArgs) -> Result<()> {
    let record = read_record(&args.from)?;
    let mut spec = record.spec.clone();
    if let Some(b) = &args.backend {
        spec.backend = b.clone();
    }
    let mut prepared = spec.prepare()?;
    let players = prepared.players.clone();
    let n = players.len();
    let (rows, _) = run_values(&args.from, &players)?;
    let k_max = args.k.unwrap_or((2 * spec.top_k).max(10)).min(n);
    // Global player index of each values.csv row, in Shapley order (descending).
    let shapley_order: Vec<usize> = rows
        .iter()
        .map(|r| player_index(&players, &r.node, r.index))
        .collect::<Result<_>>()?;
    let bottom_order: Vec<usize> = shapley_order.iter().rev().copied().collect();

    let evaluator = prepared.game.evaluator_mut();
    let (_, loo_drop) = leave_one_out(evaluator, n)?;
    let mut orders = vec![shapley_order, order_by(&loo_drop), bottom_order];
    orders.extend(random_orders(n, args.random_seeds, spec.seed));
    let curves = ablation_curves(evaluator, n, &orders, k_max)?;
    let (shapley, loo, bottom) = (&curves[0], &curves[1], &curves[2]);
    let randoms = &curves[3..];
    let band = Band::of(randoms);
    let nan = vec![f64::NAN; k_max + 1];
    let (r_mean, r_low, r_high) = band
        .as_ref()
        .map_or((&nan, &nan, &nan), |b| (&b.mean, &b.low, &b.high));

    let mut csv =
        String::from("k,shapley_top,loo_top,random_mean,random_min,random_max,shapley_bottom\n");
    for k in 0..=k_max {
        let _ = writeln!(
            csv,
            "{k},{},{},{},{},{},{}",
            shapley[k], loo[k], r_mean[k], r_low[k], r_high[k], bottom[k]
        );
    }
    write_atomic(&args.from.join("ablation.csv"), csv.as_bytes())?;
    let metric = prepared.metric.name();
    let has_random = !randoms.is_empty();
    let mut curves = vec![
        Curve {
            label: "top-k by Shapley",
            color: RGBColor(200, 30, 30),
            values: shapley,
            band: None,
        },
        Curve {
            label: "top-k by leave-one-out",
            color: RGBColor(30, 90, 200),
            values: loo,
            band: None,
        },
        Curve {
            label: "bottom-k by Shapley",
            color: RGBColor(30, 150, 60),
            values: bottom,
            band: None,
        },
    ];
    if has_random {
        curves.push(Curve {
            label: "random order (mean, min-max band)",
            color: RGBColor(110, 110, 110),
            values: r_mean,
            band: Some((r_low, r_high)),
        });
    }
    let figure = args.from.join("ablation.svg");
    plot::ablation(&figure, &metric, &curves)?;
    println!("{metric} after removing k players (k = 0..{k_max}):");
    println!(
        "{:>3} {:>10} {:>10} {:>10} {:>10}",
        "k", "shapley", "loo", "random", "bottom"
    );
    for k in 0..=k_max {
        println!(
            "{k:>3} {:>10.4} {:>10.4} {:>10.4} {:>10.4}",
            shapley[k], loo[k], r_mean[k], bottom[k]
        );
    }
    println!(
        "wrote {}/ablation.csv, ablation.svg, ablation.png",
        args.from.display()
    );
    Ok(())
}

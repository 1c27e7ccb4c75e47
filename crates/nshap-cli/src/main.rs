//! The `nshap` command.

mod budget;
mod coalition_table;
mod commands;
mod game_args;
mod model_args;
mod output;
mod plot;
mod prepare;
mod progress;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Neuron Shapley: which neurons of a trained network carry its performance.
#[derive(Parser, Debug)]
#[command(name = "nshap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe a model: nodes, shapes, players, parameters, FLOPs, full-network metrics.
    Inspect(commands::inspect::InspectArgs),
    /// Estimate Shapley values of neurons (with no model arguments: the shipped demo).
    Run(Box<commands::run::RunArgs>),
    /// Metric after removing the top-k players, vs leave-one-out, random and bottom-k orders.
    Ablate(commands::ablate::AblateArgs),
    /// Summarise a run directory and draw per-layer values.
    Report(commands::report::ReportArgs),
    /// Interactions between neurons: Harsanyi dividends or Shapley interaction index.
    Interactions(Box<commands::interactions::InteractionsArgs>),
    /// Write the unmasked network's logits for every example (safetensors `logits` [N, classes]).
    Logits(Box<commands::logits::LogitsArgs>),
    /// Per-neuron class selectivity, gradient sensitivity, Taylor estimate and leave-one-out.
    Measures(Box<commands::measures::MeasuresArgs>),
    /// Compare a run's Shapley values with the other measures: correlations, scatter, ablation.
    Compare(commands::compare::CompareArgs),
    /// List GPU adapters.
    Devices,
    /// Masked forward throughput, CPU and GPU side by side.
    Bench(commands::bench::BenchArgs),
    /// Headless job server: HTTP JSON API, job queue, results (docs/server.md).
    Serve(nshap_server::ServeArgs),
}

fn main() {
    // The Vulkan loader complains on every start when this is unset (headless machines).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let done = |r: anyhow::Result<()>| r.map(|()| 0);
    let result = match cli.command {
        Command::Inspect(a) => done(commands::inspect::execute(a)),
        Command::Run(a) => {
            let given = matches
                .subcommand_matches("run")
                .map(given_options)
                .unwrap_or_default();
            commands::run::execute(*a, &given)
        }
        Command::Ablate(a) => done(commands::ablate::execute(a)),
        Command::Report(a) => done(commands::report::execute(a)),
        Command::Interactions(a) => done(commands::interactions::execute(*a)),
        Command::Measures(a) => done(commands::measures::execute(*a)),
        Command::Logits(a) => done(commands::logits::execute(*a)),
        Command::Compare(a) => done(commands::compare::execute(a)),
        Command::Devices => done(commands::devices::execute()),
        Command::Bench(a) => done(commands::bench::execute(a)),
        Command::Serve(a) => done(nshap_server::main(a)),
    };
    match result {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One line: the error and its causes, never a backtrace.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            std::process::exit(2);
        }
    }
}

/// Ids of the options given on the command line (not defaults), e.g. `budget`, `top_k`.
fn given_options(m: &ArgMatches) -> Vec<String> {
    m.ids()
        .filter(|id| {
            matches!(m.try_get_raw(id.as_str()), Ok(Some(_)))
                && m.value_source(id.as_str()) == Some(ValueSource::CommandLine)
        })
        .map(|id| id.as_str().to_owned())
        .collect()
}

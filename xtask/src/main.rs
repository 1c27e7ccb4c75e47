//! Developer tasks: `cargo xtask ci | bench | assets | fixtures`.

use anyhow::{bail, Context, Result};
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    eprintln!("+ {cmd} {}", args.join(" "));
    let status = Command::new(cmd)
        .args(args)
        .status()
        .with_context(|| format!("starting {cmd}"))?;
    if !status.success() {
        bail!("{cmd} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn main() {
    if let Err(e) = run_task() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run_task() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        // What CI checks, without installing system packages (see .ci/run for that).
        "ci" => {
            run("cargo", &["fmt", "--all", "--", "--check"])?;
            run(
                "cargo",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            )?;
            run("cargo", &["test", "--workspace"])
        }
        // Criterion benches, then the CLI's side-by-side table and the PyTorch baseline.
        "bench" => {
            run("cargo", &["bench", "--bench", "masked_eval"])?;
            run(
                "cargo",
                &["run", "--release", "-p", "nshap-cli", "--", "bench"],
            )?;
            run("python3", &["benches/pytorch/masked_cnn.py"])
        }
        // Retrain and re-export the shipped models (needs PyTorch and scikit-learn).
        "assets" => run("python3", &["assets/make_assets.py"]),
        // Regenerate the PyTorch fixtures (needs PyTorch).
        "fixtures" => {
            run("python3", &["tests/fixtures/make_fixtures.py"])?;
            run("python3", &["tests/fixtures/make_measures.py"])?;
            run("python3", &["tests/fixtures/make_interactions.py"])
        }
        _ => bail!("usage: cargo xtask <ci|bench|assets|fixtures>"),
    }
}

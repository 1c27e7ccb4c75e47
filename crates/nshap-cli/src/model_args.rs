//! The model and data arguments every command shares, and loading them with clear errors.

use anyhow::{bail, Context, Result};
use clap::Args;
use nshap::model::{load_arch, load_eval_set, load_model, DataOptions, EvalSet, Graph};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where a model comes from.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelArgs {
    /// Model spec (nshap.model.v1 JSON); see docs/model-format.md.
    #[arg(long, value_name = "SPEC", conflicts_with = "arch")]
    pub model: Option<PathBuf>,
    /// Build the spec from a torchvision state_dict instead: resnet18 or resnet34.
    #[arg(long)]
    pub arch: Option<String>,
    /// Input shape for --arch, as C,H,W.
    #[arg(long, value_name = "C,H,W", default_value = "3,224,224")]
    pub input: String,
    /// Weights: a safetensors state_dict (f32, f16 or bf16).
    #[arg(long, value_name = "W")]
    pub weights: Option<PathBuf>,
}

/// Where the eval set comes from.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DataArgs {
    /// Eval set: safetensors with `inputs` and `labels`.
    #[arg(long, value_name = "D")]
    pub data: Option<PathBuf>,
    /// Name of the inputs tensor in --data.
    #[arg(long, default_value = "inputs")]
    pub inputs_name: String,
    /// Name of the labels tensor in --data.
    #[arg(long, default_value = "labels")]
    pub labels_name: String,
}

pub fn parse_dims(text: &str) -> Result<Vec<usize>, String> {
    let dims: Result<Vec<usize>, _> = text.split(',').map(|d| d.trim().parse::<usize>()).collect();
    match dims {
        Ok(d) if d.len() == 3 && d.iter().all(|&x| x > 0) => Ok(d),
        _ => Err(format!(
            "expected C,H,W with three positive integers, found {text:?}"
        )),
    }
}

/// A duration in seconds: finite and not negative (a clap value parser).
pub fn seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("expected a number of seconds >= 0, found {text:?}")),
    }
}

/// A loaded model and where it came from.
pub struct LoadedModel {
    pub graph: Graph,
    /// sha256 over the spec (or arch name) and the weights file.
    pub digest: String,
    pub description: String,
}

impl ModelArgs {
    /// The --input shape for --arch.
    pub fn input_dims(&self) -> Result<[usize; 3]> {
        let d = parse_dims(&self.input).map_err(|e| anyhow::anyhow!("--input: {e}"))?;
        Ok([d[0], d[1], d[2]])
    }

    pub fn is_empty(&self) -> bool {
        self.model.is_none() && self.arch.is_none() && self.weights.is_none()
    }

    pub fn load(&self) -> Result<LoadedModel> {
        let Some(weights) = &self.weights else {
            bail!("--weights is required (a safetensors state_dict)");
        };
        match (&self.model, &self.arch) {
            (Some(spec), None) => {
                let graph = load_model(spec, weights)?;
                let digest = digest_files(&[spec, weights])?;
                Ok(LoadedModel {
                    graph,
                    digest,
                    description: format!("{} + {}", spec.display(), weights.display()),
                })
            }
            (None, Some(arch)) => {
                let input = self.input_dims()?;
                let (graph, _) = load_arch(arch, weights, input)?;
                let mut digest = Sha256::new();
                digest.update(format!("{arch}:{input:?}"));
                digest.update(digest_files(&[weights])?);
                Ok(LoadedModel {
                    graph,
                    digest: hex(&digest.finalize()),
                    description: format!(
                        "--arch {arch} {} (input {})",
                        weights.display(),
                        self.input
                    ),
                })
            }
            (None, None) => bail!("give --model SPEC (or --arch resnet18|resnet34) with --weights"),
            (Some(_), Some(_)) => bail!("give either --model or --arch, not both"),
        }
    }
}

impl DataArgs {
    pub fn load(&self, graph: &Graph) -> Result<(EvalSet, String)> {
        let Some(path) = &self.data else {
            bail!("--data is required (a safetensors eval set)")
        };
        let options = DataOptions {
            inputs: self.inputs_name.clone(),
            labels: self.labels_name.clone(),
            ..DataOptions::default()
        };
        let data = load_eval_set(path, graph, &options)?;
        Ok((data, digest_files(&[path])?))
    }
}

/// sha256 of the concatenated contents of files.
pub fn digest_files(paths: &[&PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    for p in paths {
        let mut f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
        std::io::copy(&mut f, &mut h).with_context(|| format!("{}", p.display()))?;
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The shipped demo: the digits CNN, found next to the working directory or the source tree.
pub fn demo_dir() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("assets/digits-cnn"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/digits-cnn"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("model.json").exists())
        .context("the demo assets (assets/digits-cnn) were not found; run from the repository root")
}

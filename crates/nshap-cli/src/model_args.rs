//! The model and data arguments every command shares, and loading them with clear errors.

use anyhow::{bail, Context, Result};
use clap::Args;
use nshap::model::hf::{max_positions, HfFolder, HF_ARCHS};
use nshap::model::load::{
    data_input_shape, data_token_positions, load_arch_with, load_hf, load_spec_with, read_spec,
    LoadOptions,
};
use nshap::model::spec::{ModelSpec, Preprocess};
use nshap::model::{load_eval_set, DataOptions, EvalSet, Graph};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where a model comes from.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelArgs {
    /// Model spec (nshap.model.v1 JSON); see docs/model-format.md.
    #[arg(long, value_name = "SPEC", conflicts_with = "arch")]
    pub model: Option<PathBuf>,
    /// Build the spec from a torchvision state_dict instead: resnet18 or resnet34; or from a
    /// Hugging Face folder given with --hf: gpt2, llama (default: the folder's model_type).
    #[arg(long)]
    pub arch: Option<String>,
    /// A saved Hugging Face model folder (config.json + model.safetensors), read directly;
    /// the eval set is then token ids (docs/transformers.md).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["model", "weights"])]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf: Option<PathBuf>,
    /// Input shape for --arch, as C,H,W (default: the eval data's, else 3,224,224).
    #[arg(long, value_name = "C,H,W")]
    #[serde(default)]
    pub input: Option<String>,
    /// Weights: a safetensors state_dict (f32, f16 or bf16).
    #[arg(long, value_name = "W")]
    pub weights: Option<PathBuf>,
    /// Normalise the inputs first, per channel: MEAN/STD as comma lists
    /// (0.485,0.456,0.406/0.229,0.224,0.225), one value for every channel (0.5/0.5), or
    /// `imagenet`. Replaces the spec's "preprocess"; u8 data is scaled to 0..1 before.
    #[arg(long, value_name = "MEAN/STD|imagenet")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<String>,
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

/// torchvision's ImageNet normalisation.
pub const IMAGENET: ([f32; 3], [f32; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);

/// `--normalize`: `MEAN/STD` with comma-separated per-channel lists, or `imagenet`.
pub fn parse_normalize(text: &str) -> Result<Preprocess, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("imagenet") {
        return Ok(Preprocess {
            mean: IMAGENET.0.to_vec(),
            std: IMAGENET.1.to_vec(),
        });
    }
    let bad = || {
        format!(
            "expected MEAN/STD with comma-separated numbers per channel (0.485,0.456,0.406/0.229,0.224,0.225) or imagenet, found {text:?}"
        )
    };
    let (mean, std) = text.split_once('/').ok_or_else(bad)?;
    let list = |part: &str| -> Result<Vec<f32>, String> {
        part.split(',')
            .map(|v| v.trim().parse::<f32>().map_err(|_| bad()))
            .collect()
    };
    Ok(Preprocess {
        mean: list(mean)?,
        std: list(std)?,
    })
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
    /// The spec it was built from (for --arch: the one built from the tensor names).
    pub spec: ModelSpec,
    /// sha256 over the spec (or arch name) and the weights file.
    pub digest: String,
    pub description: String,
}

/// Refuse a directory given to a file flag, saying which files in it to pass.
fn not_a_directory(flag: &str, path: &Path) -> Result<()> {
    if !path.is_dir() {
        return Ok(());
    }
    let has = |f: &str| path.join(f).is_file();
    let show = |f: &str| path.join(f).display().to_string();
    let mut flags = Vec::new();
    if has("model.json") {
        flags.push(format!("--model {}", show("model.json")));
    }
    if has("weights.safetensors") {
        flags.push(format!("--weights {}", show("weights.safetensors")));
    }
    if has("eval.safetensors") {
        flags.push(format!("--data {}", show("eval.safetensors")));
    }
    if flags.is_empty() {
        bail!(
            "{flag} {} is a directory; give the file itself",
            path.display()
        );
    }
    bail!(
        "{flag} {} is a directory; pass the files in it: {}",
        path.display(),
        flags.join(" ")
    )
}

impl ModelArgs {
    /// The --input shape for --arch, when given.
    pub fn input_dims(&self) -> Result<Option<[usize; 3]>> {
        let Some(text) = &self.input else {
            return Ok(None);
        };
        let d = parse_dims(text).map_err(|e| anyhow::anyhow!("--input: {e}"))?;
        Ok(Some([d[0], d[1], d[2]]))
    }

    pub fn is_empty(&self) -> bool {
        self.model.is_none() && self.arch.is_none() && self.weights.is_none() && self.hf.is_none()
    }

    fn options(&self) -> Result<LoadOptions> {
        let preprocess = match &self.normalize {
            Some(text) => {
                Some(parse_normalize(text).map_err(|e| anyhow::anyhow!("--normalize: {e}"))?)
            }
            None => None,
        };
        Ok(LoadOptions { preprocess })
    }

    /// `--input` for `--arch`, or the eval data's example shape, or 3x224x224.
    fn arch_input(&self, data: &DataArgs) -> Result<([usize; 3], &'static str)> {
        if let Some(dims) = self.input_dims()? {
            return Ok((dims, ""));
        }
        let Some(path) = &data.data else {
            return Ok(([3, 224, 224], ""));
        };
        not_a_directory("--data", path)?;
        let dims = data_input_shape(path, &data.inputs_name)?;
        match dims[..] {
            [c, h, w] if (c == 1 || c == 3) || !(w == 1 || w == 3) => {
                Ok(([c, h, w], " from the eval data"))
            }
            [h, w, c] => bail!(
                "{}: inputs are [N, {h}, {w}, {c}], channels-last images; save x.permute(0, 3, 1, 2) (or give --input C,H,W)",
                path.display()
            ),
            _ => bail!(
                "{}: --arch takes [N, C, H, W] images, the inputs are [N, {}]; give --input C,H,W",
                path.display(),
                dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Load the model; `data` sizes an `--arch` model when `--input` is not given. Warnings
    /// (tensors the spec never reads, a DataParallel prefix) go to stderr.
    pub fn load(&self, data: &DataArgs) -> Result<LoadedModel> {
        if let Some(dir) = &self.hf {
            return self.load_hf(dir, data);
        }
        let Some(weights) = &self.weights else {
            bail!("--weights is required (a safetensors state_dict)");
        };
        not_a_directory("--weights", weights)?;
        let options = self.options()?;
        let normalize = |e: nshap::model::ModelError| -> anyhow::Error {
            match (&self.normalize, &e) {
                (Some(text), nshap::model::ModelError::Data(_)) => {
                    anyhow::anyhow!("--normalize {text}: {e}")
                }
                _ => e.into(),
            }
        };
        let (loaded, mut digest, description) = match (&self.model, &self.arch) {
            (Some(spec), None) => {
                not_a_directory("--model", spec)?;
                let parsed = read_spec(spec)?;
                let loaded = load_spec_with(parsed, weights, &options).map_err(normalize)?;
                let mut digest = Sha256::new();
                digest_into(&mut digest, &[spec, weights])?;
                let description = format!("{} + {}", spec.display(), weights.display());
                (loaded, digest, description)
            }
            (None, Some(arch)) => {
                let (input, from) = self.arch_input(data)?;
                let loaded = load_arch_with(arch, weights, input, &options).map_err(normalize)?;
                let mut digest = Sha256::new();
                digest.update(format!("{arch}:{input:?}"));
                digest.update(digest_files(&[weights])?);
                let [c, h, w] = input;
                let description = format!(
                    "--arch {arch} {} (input {c},{h},{w}{from})",
                    weights.display()
                );
                (loaded, digest, description)
            }
            (None, None) => bail!("give --model SPEC (or --arch resnet18|resnet34) with --weights"),
            (Some(_), Some(_)) => bail!("give either --model or --arch, not both"),
        };
        if let Some(text) = &self.normalize {
            digest.update(format!("normalize:{text}"));
        }
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        Ok(LoadedModel {
            graph: loaded.graph,
            spec: loaded.spec,
            digest: hex(&digest.finalize()),
            description,
        })
    }
}

impl ModelArgs {
    /// `--hf DIR`: a Hugging Face folder, as `--arch` or its config's `model_type`, sized by
    /// the eval set's token positions (else the model's longest).
    fn load_hf(&self, dir: &Path, data: &DataArgs) -> Result<LoadedModel> {
        if self.normalize.is_some() {
            bail!("--normalize applies to images; a --hf language model reads token ids");
        }
        let folder = HfFolder::open(dir)?;
        let arch = match (&self.arch, folder.model_type()) {
            (Some(a), _) => a.clone(),
            (None, _) if folder.arch().is_some() => folder.arch().unwrap_or_default().to_string(),
            (None, t) => bail!(
                "{}: config.json's model_type is {t:?}; give --arch ({})",
                dir.display(),
                HF_ARCHS.join(", ")
            ),
        };
        let (tokens, from) = match &data.data {
            Some(path) => {
                not_a_directory("--data", path)?;
                match data_token_positions(path)? {
                    Some(t) => (t, "from the eval data"),
                    None => bail!(
                        "{}: a language model's eval set holds token ids as `tokens` [N, T] (with `labels`, and optionally `positions` and `distractors`); see docs/transformers.md",
                        path.display()
                    ),
                }
            }
            None => (
                max_positions(&folder).with_context(|| {
                    format!("{}: config.json gives no n_positions", dir.display())
                })?,
                "the model's longest",
            ),
        };
        let loaded = load_hf(&arch, dir, tokens)?;
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        let mut digest = Sha256::new();
        digest.update(format!("hf:{arch}:{tokens}"));
        let mut files = vec![dir.join("config.json")];
        files.extend(folder.weight_files());
        digest_into(&mut digest, &files.iter().collect::<Vec<_>>())?;
        Ok(LoadedModel {
            graph: loaded.graph,
            spec: loaded.spec,
            digest: hex(&digest.finalize()),
            description: format!(
                "--arch {arch} --hf {} ({tokens} positions, {from})",
                dir.display()
            ),
        })
    }
}

impl DataArgs {
    pub fn load(&self, graph: &Graph) -> Result<(EvalSet, String)> {
        self.load_with(graph, false)
    }

    /// `labels_optional`: a file without labels loads with every label 0 (for `nshap logits`).
    pub fn load_with(&self, graph: &Graph, labels_optional: bool) -> Result<(EvalSet, String)> {
        let Some(path) = &self.data else {
            bail!("--data is required (a safetensors eval set)")
        };
        not_a_directory("--data", path)?;
        let options = DataOptions {
            inputs: self.inputs_name.clone(),
            labels: self.labels_name.clone(),
            labels_optional,
            ..DataOptions::default()
        };
        let data = load_eval_set(path, graph, &options)?;
        let normalises = graph
            .nodes
            .first()
            .is_some_and(|n| n.name == nshap::model::build::PREPROCESS_NAME);
        if normalises {
            let min = data.inputs.iter().copied().fold(f32::INFINITY, f32::min);
            if min < 0.0 {
                eprintln!(
                    "warning: the model normalises its inputs (--normalize or the spec's preprocess), but {} already has negative inputs (min {min:.3}): normalised twice?",
                    path.display()
                );
            }
        }
        Ok((data, digest_files(&[path])?))
    }
}

fn digest_into(h: &mut Sha256, paths: &[&PathBuf]) -> Result<()> {
    for p in paths {
        let mut f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
        std::io::copy(&mut f, h).with_context(|| format!("{}", p.display()))?;
    }
    Ok(())
}

/// sha256 of the concatenated contents of files.
pub fn digest_files(paths: &[&PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    digest_into(&mut h, paths)?;
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

//! `nshap logits`: the unmasked network's logits for every example, as safetensors, to compare
//! with PyTorch.

use crate::model_args::{DataArgs, ModelArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use nshap::model::tensors::serialize_f32;
use nshap::{make_backend, network_logits, BackendChoice};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to write the logits: safetensors with `logits`, f32 [N, classes].
    #[arg(long, value_name = "L.safetensors")]
    pub out: PathBuf,
    /// auto, cpu or gpu.
    #[arg(long, default_value = "auto")]
    pub backend: String,
}

pub fn execute(args: LogitsArgs) -> Result<()> {
    if args.model.is_empty() {
        bail!("give --model SPEC (or --arch resnet18|resnet34) with --weights, and --data");
    }
    let backend: BackendChoice = args.backend.parse().map_err(anyhow::Error::msg)?;
    let model = args.model.load(&args.data)?;
    // Labels are not needed for logits: a file of inputs alone will do.
    let (data, _) = args.data.load_with(&model.graph, true)?;
    let graph = Arc::new(model.graph);
    let classes = graph.num_classes();
    let n = data.len();
    let backend = make_backend(backend)?;
    let (logits, info) = network_logits(backend.as_ref(), graph, Arc::new(data))?;
    let file = serialize_f32(&[("logits", vec![n, classes], &logits)])
        .map_err(|e| anyhow::anyhow!("writing the logits: {e}"))?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::output::write_atomic(&args.out, &file)?;
    eprintln!(
        "{}: logits [{n}, {classes}] written to {} (backend {}, {})",
        model.description,
        args.out.display(),
        info.backend,
        info.device
    );
    Ok(())
}

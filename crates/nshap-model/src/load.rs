//! Entry points: load a model (spec or `--arch`) and an eval set from files.

use crate::build::build_graph;
use crate::data::EvalSet;
use crate::error::ModelError;
use crate::graph::Graph;
use crate::resnet;
use crate::spec::{ModelSpec, Preprocess};
use crate::tensors::{directory_hint, float_values, TensorFile};
use safetensors::Dtype;
use std::path::Path;

/// Load a model from a spec file and a safetensors state_dict.
///
/// A DataParallel state_dict (every name starting with `module.`) loads as if the prefix were
/// not there; [`load_model_with`] also reports that, and the tensors the spec never reads.
pub fn load_model(spec: &Path, weights: &Path) -> Result<Graph, ModelError> {
    Ok(load_model_with(spec, weights, &LoadOptions::default())?.graph)
}

/// Load a torchvision-style architecture (`resnet18`, `resnet34`) from its state_dict alone.
/// `input` is `[C, H, W]` of one example.
pub fn load_arch(
    arch: &str,
    weights: &Path,
    input: [usize; 3],
) -> Result<(Graph, ModelSpec), ModelError> {
    let loaded = load_arch_with(arch, weights, input, &LoadOptions::default())?;
    Ok((loaded.graph, loaded.spec))
}

/// What a model load may change beyond its files.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Per-channel input normalisation to apply instead of the spec's `preprocess` (the CLI's
    /// `--normalize`). One mean and std are used for every channel.
    pub preprocess: Option<Preprocess>,
}

/// A loaded model: its graph, the spec it was built from (after [`LoadOptions`]), and what the
/// user should know about the files (one line each).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub graph: Graph,
    pub spec: ModelSpec,
    pub warnings: Vec<String>,
}

/// Read a spec file, saying so when the path is a directory.
pub fn read_spec(path: &Path) -> Result<ModelSpec, ModelError> {
    if path.is_dir() {
        return Err(ModelError::File {
            path: path.to_owned(),
            message: directory_hint(path),
        });
    }
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80) {
        return Err(ModelError::File {
            path: path.to_owned(),
            message: "this is a PyTorch pickle (torch.save), not an nshap.model.v1 JSON spec: the spec describes the wiring (docs/model-format.md); the weights go to --weights as safetensors".into(),
        });
    }
    if looks_like_safetensors(head) {
        return Err(ModelError::File {
            path: path.to_owned(),
            message: "this is a safetensors file, not a JSON spec: pass it as --weights (or --data), and the spec as --model".into(),
        });
    }
    ModelSpec::read(path)
}

/// A safetensors header: an 8-byte little-endian length, then JSON.
fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() >= 10 && head[8] == b'{' && head[4..8] == [0, 0, 0, 0]
}

/// [`load_model`] with options, and the warnings.
pub fn load_model_with(
    spec: &Path,
    weights: &Path,
    options: &LoadOptions,
) -> Result<Loaded, ModelError> {
    let parsed = read_spec(spec)?;
    load_spec_with(parsed, weights, options)
}

/// Build a model from a parsed spec and a safetensors state_dict.
pub fn load_spec_with(
    mut spec: ModelSpec,
    weights: &Path,
    options: &LoadOptions,
) -> Result<Loaded, ModelError> {
    let mut warnings = Vec::new();
    if let Some(pre) = &options.preprocess {
        if spec.preprocess.as_ref().is_some_and(|p| p != pre) {
            warnings.push(
                "the given input normalisation replaces the spec's \"preprocess\"".to_string(),
            );
        }
        spec.preprocess = Some(fit_preprocess(pre, &spec.input)?);
    }
    let tensors = TensorFile::open(weights)?;
    let graph = build_graph(&spec, &tensors)?;
    warnings.extend(weight_warnings(&spec, &tensors));
    Ok(Loaded {
        graph,
        spec,
        warnings,
    })
}

/// [`load_arch`] with options, and the warnings.
pub fn load_arch_with(
    arch: &str,
    weights: &Path,
    input: [usize; 3],
    options: &LoadOptions,
) -> Result<Loaded, ModelError> {
    let tensors = TensorFile::open(weights)?;
    let mut spec = resnet::resnet_spec(arch, &tensors, input)?;
    if let Some(pre) = &options.preprocess {
        spec.preprocess = Some(fit_preprocess(pre, &spec.input)?);
    }
    let graph = build_graph(&spec, &tensors)?;
    let warnings = weight_warnings(&spec, &tensors);
    Ok(Loaded {
        graph,
        spec,
        warnings,
    })
}

/// Load a Hugging Face model folder (`config.json`, `model.safetensors`) as `arch` (see
/// [`crate::hf`]), for eval sets of `tokens` positions per example.
pub fn load_hf(arch: &str, dir: &Path, tokens: usize) -> Result<Loaded, ModelError> {
    let folder = crate::hf::HfFolder::open(dir)?;
    let tensors = folder.tensors()?;
    let spec = crate::hf::hf_spec(arch, &folder, &tensors, tokens)?;
    let graph = build_graph(&spec, &tensors)?;
    let warnings = weight_warnings(&spec, &tensors);
    Ok(Loaded {
        graph,
        spec,
        warnings,
    })
}

/// Positions per example of a language model's eval set (`tokens` `[N, T]`), to size a model
/// read with [`load_hf`]; `None` when the file has no `tokens` tensor.
pub fn data_token_positions(path: &Path) -> Result<Option<usize>, ModelError> {
    let file = TensorFile::open(path)?;
    if !file.contains(TOKENS) {
        return Ok(None);
    }
    match file.shape(TOKENS)?[..] {
        [_, t] if t > 0 => Ok(Some(t)),
        ref other => Err(ModelError::Tensor {
            path: path.to_owned(),
            tensor: TOKENS.into(),
            message: format!("expected [N, T] token ids, found shape {other:?}"),
        }),
    }
}

/// The tensors of a language model's eval set.
const TOKENS: &str = "tokens";
const POSITIONS: &str = "positions";
const DISTRACTORS: &str = "distractors";
const CORRUPTED: &str = "corrupted";

/// Little-endian integer bytes of an I64, I32 or U8 tensor as i64; `None` for other dtypes.
fn int_values(dtype: Dtype, bytes: &[u8]) -> Option<Vec<i64>> {
    Some(match dtype {
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::I32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i64)
            .collect(),
        Dtype::U8 => bytes.iter().map(|&b| b as i64).collect(),
        _ => return None,
    })
}

/// Integer values of a tensor (I64, I32 or U8), each checked to be non-negative and below 2^31.
fn int_tensor(file: &TensorFile, name: &str) -> Result<(Vec<usize>, Vec<u32>), ModelError> {
    let (dtype, shape, bytes) = file.raw(name)?;
    let err = |message: String| ModelError::Tensor {
        path: file.path().to_owned(),
        tensor: name.to_owned(),
        message,
    };
    let values = int_values(dtype, &bytes).ok_or_else(|| {
        err(format!(
            "unsupported dtype {dtype:?}: expected I64, I32 or U8"
        ))
    })?;
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, &v)| !(0..1 << 31).contains(&v))
    {
        return Err(err(format!(
            "value {v} at index {i} is negative or too large"
        )));
    }
    Ok((shape, values.into_iter().map(|v| v as u32).collect()))
}

/// A language model's eval set: `tokens` `[N, T]`, `labels` `[N]` (the correct next token),
/// optional `positions` `[N]` (the position whose logits the metric reads; default `T - 1`) and
/// `distractors` `[N]` (for `logit_diff`).
fn load_token_set(
    file: &TensorFile,
    graph: &Graph,
    t_len: usize,
    options: &DataOptions,
) -> Result<EvalSet, ModelError> {
    let path = file.path();
    let err = |tensor: &str, message: String| ModelError::Tensor {
        path: path.to_owned(),
        tensor: tensor.to_owned(),
        message,
    };
    let labels_missing = !file.contains(&options.labels);
    if !file.contains(TOKENS) || (labels_missing && !options.labels_optional) {
        let name = if file.contains(TOKENS) {
            &options.labels
        } else {
            TOKENS
        };
        return Err(missing_data_tensor(file, name));
    }
    let (shape, tokens) = int_tensor(file, TOKENS)?;
    let n = match shape[..] {
        [n, t] if t == t_len => n,
        _ => {
            return Err(err(
                TOKENS,
                format!("shape mismatch: the model reads [N, {t_len}] token ids, found {shape:?}"),
            ))
        }
    };
    let per_example = |name: &str| -> Result<Option<Vec<u32>>, ModelError> {
        if !file.contains(name) {
            return Ok(None);
        }
        let (shape, values) = int_tensor(file, name)?;
        if shape != [n] {
            return Err(err(
                name,
                format!("shape mismatch: expected [{n}] (one per example), found {shape:?}"),
            ));
        }
        Ok(Some(values))
    };
    // Without labels (allowed for tools that only need logits) every label is token 0.
    let labels = per_example(&options.labels)?.unwrap_or_else(|| vec![0; n]);
    let positions = per_example(POSITIONS)?.unwrap_or_else(|| vec![t_len as u32 - 1; n]);
    let distractors = per_example(DISTRACTORS)?;
    let in_file = |e: ModelError| ModelError::Data(format!("{}: {e}", path.display()));
    let set = EvalSet::tokens(
        &tokens,
        t_len,
        &positions,
        labels,
        distractors,
        graph.num_classes(),
    )
    .map_err(in_file)?;
    if !file.contains(CORRUPTED) {
        return Ok(set);
    }
    let (shape, corrupted) = int_tensor(file, CORRUPTED)?;
    if shape != [n, t_len] {
        return Err(err(
            CORRUPTED,
            format!("shape mismatch: expected [{n}, {t_len}] like `tokens`, found {shape:?}"),
        ));
    }
    set.with_corrupted(&corrupted, graph.num_classes())
        .map_err(in_file)
}

/// A normalisation checked against the input's channels; a single mean/std serves every
/// channel (as torchvision's `Normalize` broadcasts it).
pub fn fit_preprocess(pre: &Preprocess, input: &[usize]) -> Result<Preprocess, ModelError> {
    let channels = match input {
        [c, _, _] => *c,
        [f] => *f,
        _ => 0,
    };
    let (m, s) = (pre.mean.len(), pre.std.len());
    let shape = format!("[{}]", join(input));
    if m != s {
        return Err(ModelError::Data(format!(
            "input normalisation: {m} mean(s) but {s} std(s); give one of each per input channel ({channels} for the model's {shape} input)"
        )));
    }
    if m != channels && m != 1 {
        return Err(ModelError::Data(format!(
            "input normalisation: {m} means and stds, but the model's {shape} input has {channels} channel(s); give {channels} of each (or one for every channel)"
        )));
    }
    if let Some(bad) = pre.std.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(ModelError::Data(format!(
            "input normalisation: every std must be positive, found {bad}"
        )));
    }
    if let Some(bad) = pre.mean.iter().find(|v| !v.is_finite()) {
        return Err(ModelError::Data(format!(
            "input normalisation: every mean must be a finite number, found {bad}"
        )));
    }
    if m == 1 && channels > 1 {
        return Ok(Preprocess {
            mean: vec![pre.mean[0]; channels],
            std: vec![pre.std[0]; channels],
        });
    }
    Ok(pre.clone())
}

/// How many unread tensor names a warning lists before it only counts.
const UNREAD_SHOWN: usize = 5;

/// The state_dict's wrapper prefix, and tensors the spec never read.
fn weight_warnings(spec: &ModelSpec, tensors: &TensorFile) -> Vec<String> {
    let file = tensors.path().display();
    let mut out = Vec::new();
    if let Some(p) = tensors.wrapper_prefix() {
        out.push(format!(
            "{file}: every tensor name starts with {p:?} (a state_dict of a DataParallel or compiled module); reading the names without it (to store them without: save_file({{k.removeprefix('{p}'): v for k, v in sd.items()}}, ...))"
        ));
    }
    let unread = tensors.unread();
    if unread.is_empty() {
        return out;
    }
    let strip = |n: &str| -> String {
        match tensors.wrapper_prefix() {
            Some(p) => n.strip_prefix(p).unwrap_or(n).to_owned(),
            None => n.to_owned(),
        }
    };
    let mut shown: Vec<String> = unread.iter().take(UNREAD_SHOWN).map(|n| strip(n)).collect();
    if unread.len() > UNREAD_SHOWN {
        shown.push(format!("... ({} more)", unread.len() - UNREAD_SHOWN));
    }
    // A node that names a weight but no bias while the file has the bias: a forgotten field.
    let forgotten: Vec<String> = spec
        .nodes
        .iter()
        .filter(|n| n.bias.is_none() && matches!(n.op.as_str(), "linear" | "conv2d"))
        .filter_map(|n| {
            let bias = n.weight.as_deref()?.strip_suffix(".weight")?.to_owned() + ".bias";
            unread.iter().any(|u| strip(u) == bias).then(|| {
                format!(
                    "node {:?} has no \"bias\" but {bias} is in the file",
                    n.name
                )
            })
        })
        .collect();
    let hint = if forgotten.is_empty() {
        String::new()
    } else {
        format!(" (a forgotten bias? {})", forgotten.join("; "))
    };
    out.push(format!(
        "{file}: {} tensor(s) the spec never reads: {}{hint}",
        unread.len(),
        shown.join(", ")
    ));
    out
}

/// The shape of one example in an eval set file (the `inputs` tensor without its first
/// dimension), to size a model (`--arch` without `--input`).
pub fn data_input_shape(path: &Path, inputs: &str) -> Result<Vec<usize>, ModelError> {
    let file = TensorFile::open(path)?;
    if !file.contains(inputs) {
        return Err(missing_data_tensor(&file, inputs));
    }
    let shape = file.shape(inputs)?;
    if shape.len() < 2 {
        return Err(ModelError::Tensor {
            path: path.to_owned(),
            tensor: inputs.to_owned(),
            message: format!("expected [N, ...] examples, found shape {shape:?}"),
        });
    }
    Ok(shape[1..].to_vec())
}

fn missing_data_tensor(file: &TensorFile, name: &str) -> ModelError {
    ModelError::Tensor {
        path: file.path().to_owned(),
        tensor: name.to_owned(),
        message: format!(
            "missing; the file has {} (name yours with --inputs-name/--labels-name)",
            file.describe(12)
        ),
    }
}

/// Names and scaling of the tensors in an eval set file.
#[derive(Clone, Debug)]
pub struct DataOptions {
    pub inputs: String,
    pub labels: String,
    /// u8 inputs are multiplied by this (default 1/255, mapping 0..255 to 0..1).
    pub u8_scale: f32,
    /// A file without the labels tensor loads with every label 0 (for tools that only need the
    /// inputs, such as writing the network's logits). Default false: labels are required.
    pub labels_optional: bool,
}

impl Default for DataOptions {
    fn default() -> DataOptions {
        DataOptions {
            inputs: "inputs".into(),
            labels: "labels".into(),
            u8_scale: 1.0 / 255.0,
            labels_optional: false,
        }
    }
}

/// Load an eval set and check it against the model (input shape, labels within classes).
pub fn load_eval_set(
    path: &Path,
    graph: &Graph,
    options: &DataOptions,
) -> Result<EvalSet, ModelError> {
    let file = TensorFile::open(path)?;
    if let Some(t_len) = graph.tokens() {
        return load_token_set(&file, graph, t_len, options);
    }
    let tensor_err = |tensor: &str, message: String| ModelError::Tensor {
        path: path.to_owned(),
        tensor: tensor.to_owned(),
        message,
    };
    let optional = |name: &String| options.labels_optional && name == &options.labels;
    for name in [&options.inputs, &options.labels] {
        if !file.contains(name) && !optional(name) {
            return Err(missing_data_tensor(&file, name));
        }
    }
    let (dtype, shape, bytes) = file.raw(&options.inputs)?;
    let want = graph.input.dims();
    if shape.len() != want.len() + 1 || shape[1..] != want[..] {
        // [N, H, W, C] for a [C, H, W] model: images saved channels-last.
        let channels_last =
            want.len() == 3 && shape.len() == 4 && shape[1..] == [want[1], want[2], want[0]];
        let hint = if channels_last {
            " (channels-last images: save x.permute(0, 3, 1, 2) instead)"
        } else {
            ""
        };
        return Err(tensor_err(
            &options.inputs,
            format!(
                "shape mismatch: the model takes [N, {}], found {shape:?}{hint}",
                join(&want)
            ),
        ));
    }
    let inputs = match dtype {
        Dtype::U8 => bytes.iter().map(|&b| b as f32 * options.u8_scale).collect(),
        other => float_values(other, &bytes).ok_or_else(|| {
            tensor_err(
                &options.inputs,
                format!("unsupported dtype {other:?}: expected F32, F16, BF16 or U8"),
            )
        })?,
    };
    if !file.contains(&options.labels) {
        // labels_optional (checked above): every label 0.
        let n = shape[0];
        return EvalSet::new(graph.input, inputs, vec![0; n], graph.num_classes())
            .map_err(|e| ModelError::Data(format!("{}: {e}", path.display())));
    }
    let (ldtype, lshape, lbytes) = file.raw(&options.labels)?;
    if lshape.len() != 1 || lshape[0] != shape[0] {
        return Err(tensor_err(
            &options.labels,
            format!(
                "shape mismatch: expected [{}] (one label per input), found {lshape:?}",
                shape[0]
            ),
        ));
    }
    let labels = int_values(ldtype, &lbytes).ok_or_else(|| {
        tensor_err(
            &options.labels,
            format!("unsupported dtype {ldtype:?}: expected I64, I32 or U8"),
        )
    })?;
    let classes = graph.num_classes();
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 0 || l as usize >= classes)
    {
        return Err(tensor_err(
            &options.labels,
            format!(
                "label {l} of example {i} is out of range: the model has {classes} classes (0..{})",
                classes - 1
            ),
        ));
    }
    let labels = labels.into_iter().map(|l| l as u32).collect();
    EvalSet::new(graph.input, inputs, labels, classes)
        .map_err(|e| ModelError::Data(format!("{}: {e}", path.display())))
}

fn join(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

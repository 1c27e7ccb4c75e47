//! Entry points: load a model (spec or `--arch`) and an eval set from files.

use crate::build::build_graph;
use crate::data::EvalSet;
use crate::error::ModelError;
use crate::graph::Graph;
use crate::resnet;
use crate::spec::ModelSpec;
use crate::tensors::{float_values, TensorFile};
use safetensors::Dtype;
use std::path::Path;

/// Load a model from a spec file and a safetensors state_dict.
pub fn load_model(spec: &Path, weights: &Path) -> Result<Graph, ModelError> {
    let spec = ModelSpec::read(spec)?;
    let tensors = TensorFile::open(weights)?;
    build_graph(&spec, &tensors)
}

/// Load a torchvision-style architecture (`resnet18`, `resnet34`) from its state_dict alone.
/// `input` is `[C, H, W]` of one example.
pub fn load_arch(
    arch: &str,
    weights: &Path,
    input: [usize; 3],
) -> Result<(Graph, ModelSpec), ModelError> {
    let tensors = TensorFile::open(weights)?;
    let spec = resnet::resnet_spec(arch, &tensors, input)?;
    let graph = build_graph(&spec, &tensors)?;
    Ok((graph, spec))
}

/// Names and scaling of the tensors in an eval set file.
#[derive(Clone, Debug)]
pub struct DataOptions {
    pub inputs: String,
    pub labels: String,
    /// u8 inputs are multiplied by this (default 1/255, mapping 0..255 to 0..1).
    pub u8_scale: f32,
}

impl Default for DataOptions {
    fn default() -> DataOptions {
        DataOptions {
            inputs: "inputs".into(),
            labels: "labels".into(),
            u8_scale: 1.0 / 255.0,
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
    let tensor_err = |tensor: &str, message: String| ModelError::Tensor {
        path: path.to_owned(),
        tensor: tensor.to_owned(),
        message,
    };
    let (dtype, shape, bytes) = file.raw(&options.inputs)?;
    let want = graph.input.dims();
    if shape.len() != want.len() + 1 || shape[1..] != want[..] {
        return Err(tensor_err(
            &options.inputs,
            format!(
                "shape mismatch: the model takes [N, {}], found {shape:?}",
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
    let labels: Vec<i64> = match ldtype {
        Dtype::I64 => lbytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::I32 => lbytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i64)
            .collect(),
        Dtype::U8 => lbytes.iter().map(|&b| b as i64).collect(),
        other => {
            return Err(tensor_err(
                &options.labels,
                format!("unsupported dtype {other:?}: expected I64, I32 or U8"),
            ))
        }
    };
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

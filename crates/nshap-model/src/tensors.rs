//! Memory-mapped safetensors files, with conversion of f16/bf16 to f32 and checks on every tensor.

use crate::error::ModelError;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::fs::File;
use std::path::{Path, PathBuf};

/// An open safetensors file. The header is validated at open; tensors are read on demand.
pub struct TensorFile {
    path: PathBuf,
    map: Mmap,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<TensorFile, ModelError> {
        let file = File::open(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: the map is read-only; a file truncated under us by another process is the one
        // case memmap cannot guard against, as with every mmap-based loader.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        let tf = TensorFile {
            path: path.to_owned(),
            map,
        };
        tf.view()?;
        Ok(tf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn view(&self) -> Result<SafeTensors<'_>, ModelError> {
        SafeTensors::deserialize(&self.map).map_err(|e| ModelError::Safetensors {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    fn err(&self, tensor: &str, message: String) -> ModelError {
        ModelError::Tensor {
            path: self.path.clone(),
            tensor: tensor.to_owned(),
            message,
        }
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .view()
            .map(|v| v.names().into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.view().map(|v| v.tensor(name).is_ok()).unwrap_or(false)
    }

    /// Shape of a tensor, or a "missing tensor" error.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, ModelError> {
        let view = self.view()?;
        let t = view.tensor(name).map_err(|_| self.missing(name, &view))?;
        Ok(t.shape().to_vec())
    }

    fn missing(&self, name: &str, view: &SafeTensors<'_>) -> ModelError {
        let mut names: Vec<&str> = view.names();
        names.sort();
        // Suggest names that share the last component (e.g. "weight") to help fix typos.
        let tail = name.rsplit('.').next().unwrap_or(name);
        let close: Vec<&str> = names
            .iter()
            .filter(|n| n.ends_with(tail))
            .take(8)
            .copied()
            .collect();
        let hint = if close.is_empty() {
            format!("the file has {} tensors", names.len())
        } else {
            format!("tensors with a similar name: {}", close.join(", "))
        };
        self.err(name, format!("missing ({hint})"))
    }

    /// A float tensor converted to f32, checked against `expected` (if given) and for NaN/Inf.
    pub fn f32(
        &self,
        name: &str,
        expected: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let view = self.view()?;
        let t = view.tensor(name).map_err(|_| self.missing(name, &view))?;
        if let Some(expected) = expected {
            if t.shape() != expected {
                return Err(self.err(
                    name,
                    format!(
                        "shape mismatch: expected {expected:?}, found {:?}",
                        t.shape()
                    ),
                ));
            }
        }
        let values = float_values(t.dtype(), t.data()).ok_or_else(|| {
            self.err(
                name,
                format!(
                    "unsupported dtype {:?}: expected F32, F16 or BF16",
                    t.dtype()
                ),
            )
        })?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.err(
                name,
                format!("value {} at flat index {i} is not finite", values[i]),
            ));
        }
        Ok((values, t.shape().to_vec()))
    }

    /// Raw access for the data loader: dtype, shape and bytes.
    pub fn raw(&self, name: &str) -> Result<(Dtype, Vec<usize>, Vec<u8>), ModelError> {
        let view = self.view()?;
        let t = view.tensor(name).map_err(|_| self.missing(name, &view))?;
        Ok((t.dtype(), t.shape().to_vec(), t.data().to_vec()))
    }
}

/// Decode little-endian float bytes of a supported dtype into f32.
pub fn float_values(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        _ => None,
    }
}

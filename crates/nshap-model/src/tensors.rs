//! Memory-mapped safetensors files, with conversion of f16/bf16 to f32 and checks on every tensor.

use crate::error::ModelError;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Prefixes that wrap every name of a state_dict saved from a wrapped module:
/// `nn.DataParallel`/`DistributedDataParallel` (`module.`) and `torch.compile` (`_orig_mod.`).
pub const WRAPPER_PREFIXES: &[&str] = &["module.", "_orig_mod."];

/// An open safetensors file. The header is validated at open; tensors are read on demand.
///
/// When every tensor name starts with one of [`WRAPPER_PREFIXES`], a name that is not in the
/// file is looked up with that prefix too ([`TensorFile::wrapper_prefix`] says so), so a
/// DataParallel state_dict loads with the module's own names. The names read so far are recorded
/// ([`TensorFile::unread`]).
pub struct TensorFile {
    path: PathBuf,
    map: Mmap,
    prefix: Option<&'static str>,
    read: Mutex<BTreeSet<String>>,
}

/// Why `path` is not a safetensors file, when it is recognisably something else.
fn foreign_format(path: &Path, head: &[u8]) -> Option<String> {
    if head.first() == Some(&b'{') {
        return Some(
            "this is JSON, not safetensors (a spec? it goes to --model; the weights are the state_dict saved with safetensors.torch.save_file)".into(),
        );
    }
    let pickle = head.first() == Some(&0x80);
    let zip = head.starts_with(b"PK\x03\x04");
    if !(pickle || zip) {
        return None;
    }
    let what = if zip {
        "a PyTorch pickle (torch.save's zip format, .pt/.pth)"
    } else {
        "a PyTorch pickle (torch.save's legacy format, .pt/.pth)"
    };
    let shown = path.display().to_string();
    let target = path.with_extension("safetensors").display().to_string();
    Some(format!(
        "this is {what}, not safetensors; convert it once with: python -c \"import torch; from safetensors.torch import save_file; save_file(torch.load('{shown}', map_location='cpu'), '{target}')\" (if it holds a whole module rather than a state_dict, save model.state_dict() instead)"
    ))
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<TensorFile, ModelError> {
        if path.is_dir() {
            return Err(ModelError::File {
                path: path.to_owned(),
                message: directory_hint(path),
            });
        }
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
        let mut tf = TensorFile {
            path: path.to_owned(),
            map,
            prefix: None,
            read: Mutex::new(BTreeSet::new()),
        };
        if let Err(e) = tf.view() {
            if let Some(message) = foreign_format(path, &tf.map[..tf.map.len().min(8)]) {
                return Err(ModelError::File {
                    path: path.to_owned(),
                    message,
                });
            }
            return Err(e);
        }
        let names = tf.names();
        tf.prefix = WRAPPER_PREFIXES
            .iter()
            .find(|p| !names.is_empty() && names.iter().all(|n| n.starts_with(*p)))
            .copied();
        Ok(tf)
    }

    /// A file made in memory from safetensors `bytes` (merged checkpoint shards); `path` names it
    /// in messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<TensorFile, ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_owned(),
            source,
        };
        let mut anon = memmap2::MmapMut::map_anon(bytes.len().max(1)).map_err(io)?;
        anon[..bytes.len()].copy_from_slice(bytes);
        let map = anon.make_read_only().map_err(io)?;
        let tf = TensorFile {
            path: path.to_owned(),
            map,
            prefix: None,
            read: Mutex::new(BTreeSet::new()),
        };
        tf.view()?;
        Ok(tf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wrapper prefix (`module.`) every tensor name has, when it has one; names without it
    /// are then found too.
    pub fn wrapper_prefix(&self) -> Option<&'static str> {
        self.prefix
    }

    /// The file's name for `name`: itself, or with the wrapper prefix.
    fn resolve(&self, view: &SafeTensors<'_>, name: &str) -> Option<String> {
        if view.tensor(name).is_ok() {
            return Some(name.to_owned());
        }
        let p = self.prefix?;
        let wrapped = format!("{p}{name}");
        view.tensor(&wrapped).is_ok().then_some(wrapped)
    }

    fn mark_read(&self, actual: &str) {
        if let Ok(mut read) = self.read.lock() {
            read.insert(actual.to_owned());
        }
    }

    /// Tensors nothing has read (shape, values or raw bytes) so far, sorted, leaving out
    /// BatchNorm's `num_batches_tracked` counters.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.lock().map(|r| r.clone()).unwrap_or_default();
        self.names()
            .into_iter()
            .filter(|n| !read.contains(n) && !n.ends_with("num_batches_tracked"))
            .collect()
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
        self.view()
            .map(|v| self.resolve(&v, name).is_some())
            .unwrap_or(false)
    }

    /// The tensor `name` (through a DataParallel prefix if the file has one), marked as read, or a
    /// "missing tensor" error.
    fn lookup<'v>(
        &self,
        view: &'v SafeTensors<'_>,
        name: &str,
    ) -> Result<safetensors::tensor::TensorView<'v>, ModelError> {
        let actual = self
            .resolve(view, name)
            .ok_or_else(|| self.missing(name, view))?;
        self.mark_read(&actual);
        view.tensor(&actual).map_err(|_| self.missing(name, view))
    }

    /// Shape of a tensor, or a "missing tensor" error.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, ModelError> {
        let view = self.view()?;
        let t = self.lookup(&view, name)?;
        Ok(t.shape().to_vec())
    }

    /// Dtype and shape of every tensor, `name dtype [shape]`, for messages (at most `limit`).
    pub fn describe(&self, limit: usize) -> String {
        let Ok(view) = self.view() else {
            return String::new();
        };
        let names = self.names();
        let mut parts: Vec<String> = names
            .iter()
            .take(limit)
            .filter_map(|n| {
                let t = view.tensor(n).ok()?;
                Some(format!("{n} {:?} {:?}", t.dtype(), t.shape()))
            })
            .collect();
        if names.len() > limit {
            parts.push(format!("... ({} tensors)", names.len()));
        }
        parts.join(", ")
    }

    fn missing(&self, name: &str, view: &SafeTensors<'_>) -> ModelError {
        let mut names: Vec<&str> = view.names();
        names.sort();
        let wrapped = names
            .iter()
            .find_map(|n| n.split_once('.').filter(|(_, rest)| *rest == name))
            .map(|(p, _)| p.to_owned());
        if let Some(p) = wrapped {
            return self.err(
                name,
                format!(
                    "missing, but the file has \"{p}.{name}\" (a \"{p}.\" prefix on the names? strip it when saving: save_file({{k.removeprefix('{p}.'): v for k, v in sd.items()}}, ...))"
                ),
            );
        }
        if let Some(p) = WRAPPER_PREFIXES
            .iter()
            .find(|p| names.iter().filter(|n| n.starts_with(*p)).count() * 2 > names.len())
        {
            if self.prefix.is_none() {
                return self.err(
                    name,
                    format!(
                        "missing; most tensor names start with {p:?} (a DataParallel/compiled module's state_dict): save the inner module's state_dict, or strip the prefix: save_file({{k.removeprefix('{p}'): v for k, v in sd.items()}}, ...)"
                    ),
                );
            }
        }
        let hint = if names.len() <= 12 {
            format!("the file has: {}", self.describe(12))
        } else {
            // Suggest names that share the last component (e.g. "weight") to help fix typos.
            let tail = name.rsplit('.').next().unwrap_or(name);
            let close: Vec<&str> = names
                .iter()
                .filter(|n| n.ends_with(tail))
                .take(8)
                .copied()
                .collect();
            if close.is_empty() {
                format!(
                    "the file has {} tensors: {}, ...",
                    names.len(),
                    names[..8].join(", ")
                )
            } else {
                format!(
                    "the file has {} tensors; with a similar name: {}",
                    names.len(),
                    close.join(", ")
                )
            }
        };
        let hint = match self.prefix {
            Some(p) => format!("{hint}; also looked for {p}{name}"),
            None => hint,
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
        let t = self.lookup(&view, name)?;
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
        let t = self.lookup(&view, name)?;
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

/// What to say about a directory given where a file was expected.
pub fn directory_hint(dir: &Path) -> String {
    let has: Vec<&str> = ["model.json", "weights.safetensors", "eval.safetensors"]
        .into_iter()
        .filter(|f| dir.join(f).is_file())
        .collect();
    if has.is_empty() {
        "is a directory, not a file".to_string()
    } else {
        format!(
            "is a directory, not a file; it holds {}",
            has.iter()
                .map(|f| dir.join(f).display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Safetensors bytes holding f32 tensors `(name, shape, values)`.
pub fn serialize_f32(tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<Vec<u8>, String> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| format!("tensor {name:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

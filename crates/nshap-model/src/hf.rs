//! Hugging Face checkpoints read directly: a saved model folder (`config.json` and
//! `model.safetensors`) becomes a spec whose node names are the module paths a user knows
//! (`transformer.h.3.attn.heads`, `transformer.h.3.mlp.act`), reading the tensors by their
//! `state_dict` names, unchanged.
//!
//! Sharded checkpoints (`model.safetensors.index.json`) are merged in memory.
//!
//! Architectures: `gpt2` (`GPT2LMHeadModel`; `Conv1D` weights stored `[in, out]`, the fused
//! `c_attn`, the LM head tied to the token embedding) and `llama` (`LlamaForCausalLM` and the
//! models that share its layout: grouped-query attention, rotary embeddings, RMSNorm, a SwiGLU
//! MLP; Qwen2's q/k/v biases and SmolLM's tied head are read where the file has them).

use crate::error::ModelError;
use crate::graph::RopeScaling;
use crate::spec::{ModelSpec, NodeSpec, FORMAT_V1};
use crate::tensors::TensorFile;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The architectures `--arch` reads from a Hugging Face folder.
pub const HF_ARCHS: &[&str] = &["gpt2", "llama"];

/// The index of a sharded checkpoint.
const INDEX: &str = "model.safetensors.index.json";

/// `model_type`s read as `llama` (the same module layout and names).
const LLAMA_LIKE: &[&str] = &["llama", "qwen2", "mistral"];

/// A saved Hugging Face model folder.
pub struct HfFolder {
    pub dir: PathBuf,
    pub config: Value,
}

impl HfFolder {
    /// Read `DIR/config.json`; the weights are `DIR/model.safetensors`.
    pub fn open(dir: &Path) -> Result<HfFolder, ModelError> {
        let file = |message: String| ModelError::File {
            path: dir.to_owned(),
            message,
        };
        if !dir.is_dir() {
            return Err(file(
                "--hf takes a saved model folder (what save_pretrained writes: config.json and model.safetensors)".into(),
            ));
        }
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| ModelError::Io {
            path: config_path.clone(),
            source,
        })?;
        let config: Value = serde_json::from_str(&text).map_err(|e| ModelError::Spec {
            path: config_path.clone(),
            message: format!("invalid JSON: {e}"),
        })?;
        let sharded = dir.join(INDEX).is_file();
        if !sharded && !dir.join("model.safetensors").is_file() {
            let pickle = dir.join("pytorch_model.bin").is_file();
            return Err(file(format!(
                "no model.safetensors in the folder{}",
                if pickle {
                    " (it has pytorch_model.bin, a pickle: re-save with save_pretrained(dir, safe_serialization=True))"
                } else {
                    ""
                }
            )));
        }
        Ok(HfFolder {
            dir: dir.to_owned(),
            config,
        })
    }

    /// The weights file: `model.safetensors`, or the shards' index when the checkpoint is
    /// sharded (see [`HfFolder::tensors`]).
    pub fn weights(&self) -> PathBuf {
        let single = self.dir.join("model.safetensors");
        if single.is_file() {
            single
        } else {
            self.dir.join(INDEX)
        }
    }

    /// Every file the weights are read from (the single file, or the index and its shards, in
    /// name order), for digests.
    pub fn weight_files(&self) -> Vec<PathBuf> {
        let weights = self.weights();
        if !weights.ends_with(INDEX) {
            return vec![weights];
        }
        let shards: std::collections::BTreeSet<String> = std::fs::read_to_string(&weights)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| {
                let map = v.get("weight_map")?.as_object()?.clone();
                Some(
                    map.values()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect(),
                )
            })
            .unwrap_or_default();
        std::iter::once(weights)
            .chain(shards.into_iter().map(|s| self.dir.join(s)))
            .collect()
    }

    /// The checkpoint's tensors: `model.safetensors`, or every shard named by
    /// `model.safetensors.index.json` merged into one file in memory (each tensor from the shard
    /// the index names for it).
    pub fn tensors(&self) -> Result<TensorFile, ModelError> {
        let single = self.dir.join("model.safetensors");
        if single.is_file() {
            return TensorFile::open(&single);
        }
        let index_path = self.dir.join(INDEX);
        let text = std::fs::read_to_string(&index_path).map_err(|source| ModelError::Io {
            path: index_path.clone(),
            source,
        })?;
        let bad = |message: String| ModelError::Spec {
            path: index_path.clone(),
            message,
        };
        let index: Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no \"weight_map\" object".into()))?;
        let mut by_shard: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (name, shard) in map {
            let shard = shard
                .as_str()
                .ok_or_else(|| bad(format!("tensor {name:?}: the shard is not a file name")))?;
            by_shard.entry(shard).or_default().push(name);
        }
        let mut tensors = Vec::new();
        for (shard, names) in by_shard {
            let file = TensorFile::open(&self.dir.join(shard))?;
            for name in names {
                let (dtype, shape, bytes) = file.raw(name)?;
                tensors.push((name.to_string(), dtype, shape, bytes));
            }
        }
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| bad(format!("tensor {name:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let merged = safetensors::serialize(views, None).map_err(|e| bad(e.to_string()))?;
        TensorFile::from_bytes(&index_path, &merged)
    }

    fn path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// A positive integer field of the config.
    fn usize(&self, key: &str) -> Result<usize, ModelError> {
        match self.config.get(key).and_then(Value::as_u64) {
            Some(v) if v > 0 => Ok(v as usize),
            _ => Err(ModelError::Spec {
                path: self.path(),
                message: format!(
                    "field {key:?}: expected a positive integer, found {}",
                    self.config
                        .get(key)
                        .map_or("nothing".into(), |v| v.to_string())
                ),
            }),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> f64 {
        self.config
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(default)
    }

    fn str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
    }

    fn bool_or(&self, key: &str, default: bool) -> bool {
        self.config
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// The config's `model_type` (`gpt2`, `llama`, ...), if it says.
    pub fn model_type(&self) -> Option<&str> {
        self.config.get("model_type").and_then(Value::as_str)
    }

    /// The `--arch` a folder's `model_type` is read as.
    pub fn arch(&self) -> Option<&'static str> {
        match self.model_type()? {
            "gpt2" => Some("gpt2"),
            t if LLAMA_LIKE.contains(&t) => Some("llama"),
            _ => None,
        }
    }
}

/// The spec of `arch` for the folder's checkpoint, reading `tokens` positions per example.
pub fn hf_spec(
    arch: &str,
    folder: &HfFolder,
    tensors: &TensorFile,
    tokens: usize,
) -> Result<ModelSpec, ModelError> {
    if let Some(kind) = folder.model_type() {
        let same = kind == arch || (arch == "llama" && LLAMA_LIKE.contains(&kind));
        if !same {
            return Err(ModelError::Spec {
                path: folder.path(),
                message: format!(
                    "--arch {arch}, but the config's model_type is {kind:?} (supported: {})",
                    HF_ARCHS.join(", ")
                ),
            });
        }
    }
    match arch {
        "gpt2" => gpt2_spec(folder, tensors, tokens),
        "llama" => llama_spec(folder, tensors, tokens),
        other => Err(ModelError::Spec {
            path: folder.path(),
            message: format!(
                "unknown Hugging Face architecture {other:?}; supported: {}",
                HF_ARCHS.join(", ")
            ),
        }),
    }
}

/// Longest sequence the checkpoint's position embedding covers (GPT-2's `n_positions`).
pub fn max_positions(folder: &HfFolder) -> Option<usize> {
    folder
        .config
        .get("n_positions")
        .or_else(|| folder.config.get("max_position_embeddings"))
        .filter(|v| !v.is_null())
        .and_then(Value::as_u64)
        .map(|v| v as usize)
}

/// The spec's op for a Hugging Face `activation_function`.
fn activation(folder: &HfFolder, name: &str) -> Result<&'static str, ModelError> {
    Ok(match name {
        "gelu_new" | "gelu_pytorch_tanh" => "gelu_tanh",
        "gelu" => "gelu",
        "relu" => "relu",
        "silu" | "swish" => "silu",
        "tanh" => "tanh",
        other => {
            return Err(ModelError::Spec {
                path: folder.path(),
                message: format!(
                    "field \"activation_function\": {other:?} is not supported (gelu_new, gelu_pytorch_tanh, gelu, relu, silu, tanh are)"
                ),
            })
        }
    })
}

fn node(name: impl Into<String>, op: &str) -> NodeSpec {
    NodeSpec::new(name, op)
}

/// A language model's spec from its blocks: the read position of the last residual, the final
/// norm, and the LM head (`lm_head.weight`, or the token embedding `tied` when the file has no
/// head of its own).
fn lm_spec(
    mut nodes: Vec<NodeSpec>,
    residual: String,
    final_norm: NodeSpec,
    tensors: &TensorFile,
    tied: &str,
    tokens: usize,
) -> ModelSpec {
    nodes.push(NodeSpec {
        inputs: Some(vec![residual, "input".into()]),
        ..node("select_position", "select_position")
    });
    nodes.push(final_norm);
    let head = if tensors.contains("lm_head.weight") {
        "lm_head.weight"
    } else {
        tied
    };
    nodes.push(NodeSpec {
        weight: Some(head.into()),
        ..node("lm_head", "linear")
    });
    ModelSpec {
        format: FORMAT_V1.into(),
        input: Vec::new(),
        tokens: Some(tokens),
        preprocess: None,
        nodes,
    }
}

/// GPT2LMHeadModel. Per block `transformer.h.{i}`: `ln_1`, `attn.c_attn` (fused q, k, v),
/// `attn.heads` (the attention; its channels are the heads), `attn.merge`, `attn.c_proj`,
/// `add_1` (residual), `ln_2`, `mlp.c_fc`, `mlp.act` (the MLP neurons), `mlp.c_proj`, `add_2`;
/// then `select_position`, `transformer.ln_f` and `lm_head` (tied to `wte` when the file has
/// no `lm_head.weight`).
fn gpt2_spec(
    folder: &HfFolder,
    tensors: &TensorFile,
    tokens: usize,
) -> Result<ModelSpec, ModelError> {
    let layers = folder.usize("n_layer")?;
    let heads = folder.usize("n_head")?;
    let positions = folder.usize("n_positions")?;
    let eps = folder.f64_or("layer_norm_epsilon", 1e-5);
    let act = activation(folder, folder.str_or("activation_function", "gelu_new"))?;
    let refuse = |message: String| ModelError::Spec {
        path: folder.path(),
        message,
    };
    if !folder.bool_or("scale_attn_weights", true)
        || folder.bool_or("scale_attn_by_inverse_layer_idx", false)
    {
        return Err(refuse(
            "only the standard attention scale 1/sqrt(d_head) is supported (scale_attn_weights true, scale_attn_by_inverse_layer_idx false)".into(),
        ));
    }
    if tokens > positions {
        return Err(refuse(format!(
            "the eval set has {tokens} positions per example, more than the model's n_positions = {positions}"
        )));
    }
    // GPT2LMHeadModel saves `transformer.*`; a bare GPT2Model saves the same names without it.
    let p = if tensors.contains("transformer.wte.weight") {
        "transformer."
    } else if tensors.contains("wte.weight") {
        ""
    } else {
        return Err(ModelError::Tensor {
            path: tensors.path().to_owned(),
            tensor: "transformer.wte.weight".into(),
            message: format!(
                "missing: this is not a GPT-2 checkpoint? The file has {}",
                tensors.describe(8)
            ),
        });
    };
    let t = |name: &str| Some(format!("{p}{name}"));
    let mut nodes = vec![NodeSpec {
        inputs: Some(vec!["input".into()]),
        weight: t("wte.weight"),
        position_weight: t("wpe.weight"),
        ..node(format!("{p}wte"), "embedding")
    }];
    let mut residual = format!("{p}wte");
    let linear = |name: String| NodeSpec {
        weight: Some(format!("{name}.weight")),
        bias: Some(format!("{name}.bias")),
        transposed: Some(true),
        ..node(name, "conv2d")
    };
    for i in 0..layers {
        let b = format!("{p}h.{i}");
        nodes.push(NodeSpec {
            inputs: Some(vec![residual.clone()]),
            prefix: Some(format!("{b}.ln_1")),
            eps: Some(eps),
            ..node(format!("{b}.ln_1"), "layernorm")
        });
        nodes.push(linear(format!("{b}.attn.c_attn")));
        nodes.push(NodeSpec {
            heads: Some(heads),
            ..node(format!("{b}.attn.heads"), "attention")
        });
        nodes.push(node(format!("{b}.attn.merge"), "merge_heads"));
        nodes.push(linear(format!("{b}.attn.c_proj")));
        nodes.push(NodeSpec {
            inputs: Some(vec![format!("{b}.attn.c_proj"), residual.clone()]),
            ..node(format!("{b}.add_1"), "add")
        });
        nodes.push(NodeSpec {
            prefix: Some(format!("{b}.ln_2")),
            eps: Some(eps),
            ..node(format!("{b}.ln_2"), "layernorm")
        });
        nodes.push(linear(format!("{b}.mlp.c_fc")));
        nodes.push(node(format!("{b}.mlp.act"), act));
        nodes.push(linear(format!("{b}.mlp.c_proj")));
        nodes.push(NodeSpec {
            inputs: Some(vec![format!("{b}.mlp.c_proj"), format!("{b}.add_1")]),
            ..node(format!("{b}.add_2"), "add")
        });
        residual = format!("{b}.add_2");
    }
    let final_norm = NodeSpec {
        prefix: Some(format!("{p}ln_f")),
        eps: Some(eps),
        ..node(format!("{p}ln_f"), "layernorm")
    };
    Ok(lm_spec(
        nodes,
        residual,
        final_norm,
        tensors,
        &format!("{p}wte.weight"),
        tokens,
    ))
}

/// The rotary embedding: `rope_theta` and, for Llama 3, its scaling, at the top level
/// (transformers 4: `rope_theta`, `rope_scaling`) or in `rope_parameters` (transformers 5).
/// Other scaled variants (`yarn`, `linear`, `dynamic`, `longrope`) are refused rather than
/// computed wrongly.
fn rope(folder: &HfFolder) -> Result<(f64, Option<RopeScaling>), ModelError> {
    let refuse = |message: String| ModelError::Spec {
        path: folder.path(),
        message,
    };
    let params = folder
        .config
        .get("rope_parameters")
        .filter(|v| !v.is_null());
    let scaling = folder.config.get("rope_scaling").filter(|v| !v.is_null());
    let mut scaled = None;
    for p in [params, scaling].into_iter().flatten() {
        let kind = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        match kind {
            "default" => {}
            "llama3" => {
                let field = |k: &str| {
                    p.get(k).and_then(Value::as_f64).ok_or_else(|| {
                        refuse(format!("rope scaling \"llama3\": missing number {k:?}"))
                    })
                };
                scaled = Some(RopeScaling {
                    factor: field("factor")?,
                    low_freq_factor: field("low_freq_factor")?,
                    high_freq_factor: field("high_freq_factor")?,
                    original_max_position_embeddings: field("original_max_position_embeddings")?,
                });
            }
            other => {
                return Err(refuse(format!(
                    "rotary embedding type {other:?} is not supported yet (\"default\" and \"llama3\" are)"
                )))
            }
        }
    }
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .or_else(|| folder.config.get("rope_theta"))
        .and_then(Value::as_f64)
        .unwrap_or(10_000.0);
    Ok((theta, scaled))
}

/// LlamaForCausalLM. Per layer `model.layers.{i}`: `input_layernorm`, `self_attn.q_proj`,
/// `k_proj`, `v_proj`, `self_attn.heads` (grouped-query attention with rotary embeddings; its
/// channels are the query heads), `self_attn.merge`, `self_attn.o_proj`, `add_1`,
/// `post_attention_layernorm`, `mlp.gate_proj`, `mlp.act_fn`, `mlp.up_proj`, `mlp.mul` (the MLP
/// neurons: the input of `down_proj`), `mlp.down_proj`, `add_2`; then `select_position`,
/// `model.norm` and `lm_head` (the token embedding when tied).
fn llama_spec(
    folder: &HfFolder,
    tensors: &TensorFile,
    tokens: usize,
) -> Result<ModelSpec, ModelError> {
    let layers = folder.usize("num_hidden_layers")?;
    let heads = folder.usize("num_attention_heads")?;
    let kv_heads = match folder.config.get("num_key_value_heads") {
        Some(v) if !v.is_null() => folder.usize("num_key_value_heads")?,
        _ => heads,
    };
    let eps = folder.f64_or("rms_norm_eps", 1e-6);
    let act = activation(folder, folder.str_or("hidden_act", "silu"))?;
    let (theta, rope_scaling) = rope(folder)?;
    let refuse = |message: String| ModelError::Spec {
        path: folder.path(),
        message,
    };
    if folder.bool_or("use_sliding_window", false) {
        return Err(refuse(
            "sliding-window attention is not supported (use_sliding_window is true)".into(),
        ));
    }
    if let Some(positions) = max_positions(folder) {
        if tokens > positions {
            return Err(refuse(format!(
                "the eval set has {tokens} positions per example, more than the model's max_position_embeddings = {positions}"
            )));
        }
    }
    if !tensors.contains("model.embed_tokens.weight") {
        return Err(ModelError::Tensor {
            path: tensors.path().to_owned(),
            tensor: "model.embed_tokens.weight".into(),
            message: format!(
                "missing: this is not a Llama-style checkpoint? The file has {}",
                tensors.describe(8)
            ),
        });
    }
    let mut nodes = vec![NodeSpec {
        inputs: Some(vec!["input".into()]),
        weight: Some("model.embed_tokens.weight".into()),
        ..node("model.embed_tokens", "embedding")
    }];
    let linear = |name: String, input: Option<String>| {
        let bias = format!("{name}.bias");
        NodeSpec {
            inputs: input.map(|i| vec![i]),
            weight: Some(format!("{name}.weight")),
            bias: tensors.contains(&bias).then_some(bias),
            ..node(name, "conv2d")
        }
    };
    let norm = |name: String, input: Option<String>| NodeSpec {
        inputs: input.map(|i| vec![i]),
        weight: Some(format!("{name}.weight")),
        eps: Some(eps),
        ..node(name, "rmsnorm")
    };
    let mut residual = "model.embed_tokens".to_string();
    for i in 0..layers {
        let b = format!("model.layers.{i}");
        let a = format!("{b}.self_attn");
        let normed = format!("{b}.input_layernorm");
        nodes.push(norm(normed.clone(), Some(residual.clone())));
        for proj in ["q_proj", "k_proj", "v_proj"] {
            nodes.push(linear(format!("{a}.{proj}"), Some(normed.clone())));
        }
        nodes.push(NodeSpec {
            inputs: Some(vec![
                format!("{a}.q_proj"),
                format!("{a}.k_proj"),
                format!("{a}.v_proj"),
            ]),
            heads: Some(heads),
            kv_heads: Some(kv_heads),
            rope_theta: Some(theta),
            rope_scaling,
            ..node(format!("{a}.heads"), "attention")
        });
        nodes.push(node(format!("{a}.merge"), "merge_heads"));
        nodes.push(linear(format!("{a}.o_proj"), None));
        nodes.push(NodeSpec {
            inputs: Some(vec![format!("{a}.o_proj"), residual.clone()]),
            ..node(format!("{b}.add_1"), "add")
        });
        let normed = format!("{b}.post_attention_layernorm");
        nodes.push(norm(normed.clone(), None));
        let m = format!("{b}.mlp");
        nodes.push(linear(format!("{m}.gate_proj"), Some(normed.clone())));
        nodes.push(node(format!("{m}.act_fn"), act));
        nodes.push(linear(format!("{m}.up_proj"), Some(normed)));
        nodes.push(NodeSpec {
            inputs: Some(vec![format!("{m}.act_fn"), format!("{m}.up_proj")]),
            ..node(format!("{m}.mul"), "mul")
        });
        nodes.push(linear(format!("{m}.down_proj"), None));
        nodes.push(NodeSpec {
            inputs: Some(vec![format!("{m}.down_proj"), format!("{b}.add_1")]),
            ..node(format!("{b}.add_2"), "add")
        });
        residual = format!("{b}.add_2");
    }
    let final_norm = norm("model.norm".into(), None);
    Ok(lm_spec(
        nodes,
        residual,
        final_norm,
        tensors,
        "model.embed_tokens.weight",
        tokens,
    ))
}

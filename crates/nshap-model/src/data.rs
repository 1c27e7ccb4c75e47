//! Eval sets: the examples and labels a metric is computed on.

use crate::error::ModelError;
use crate::shape::Shape;

/// Examples (f32, one example = `shape.numel()` values in the model's input layout) and labels.
#[derive(Clone, Debug)]
pub struct EvalSet {
    pub shape: Shape,
    pub inputs: Vec<f32>,
    pub labels: Vec<u32>,
    /// Per example, a competing token whose logit `logit_diff` subtracts (language models).
    pub distractors: Option<Vec<u32>>,
    /// Per example, a paired corrupted input in the layout of `inputs` (language models: the
    /// prompt whose activations the `resample` baseline patches in).
    pub corrupted: Option<Vec<f32>>,
}

/// Examples of a token model: each row's ids, then its read position, as floats.
fn token_rows(tokens: &[u32], t_len: usize, positions: &[u32]) -> Vec<f32> {
    let mut inputs = Vec::with_capacity(positions.len() * (t_len + 1));
    for (row, &p) in tokens.chunks_exact(t_len).zip(positions) {
        inputs.extend(row.iter().map(|&t| t as f32));
        inputs.push(p as f32);
    }
    inputs
}

impl EvalSet {
    /// Check sizes, labels against `num_classes`, and that inputs are finite.
    pub fn new(
        shape: Shape,
        inputs: Vec<f32>,
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<EvalSet, ModelError> {
        let what = "eval set";
        if inputs.len() != labels.len() * shape.numel() {
            return Err(ModelError::Data(format!(
                "{what}: {} labels need {} input values of shape {shape}, found {}",
                labels.len(),
                labels.len() * shape.numel(),
                inputs.len()
            )));
        }
        if labels.is_empty() {
            return Err(ModelError::Data(format!("{what}: no examples")));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(ModelError::Data(format!(
                "{what}: label {l} of example {i} is out of range: the model has {num_classes} classes"
            )));
        }
        if let Some(i) = inputs.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::Data(format!(
                "{what}: input value of example {} is not finite ({})",
                i / shape.numel(),
                inputs[i]
            )));
        }
        Ok(EvalSet {
            shape,
            inputs,
            labels,
            distractors: None,
            corrupted: None,
        })
    }

    /// A language model's eval set: token ids `[N, T]` (right-padded), the position whose
    /// next-token logits each example's metric reads, the correct next token (the label) and
    /// optionally a distractor token. Ids, positions and tokens are checked against the
    /// vocabulary and `T`.
    pub fn tokens(
        tokens: &[u32],
        t_len: usize,
        positions: &[u32],
        labels: Vec<u32>,
        distractors: Option<Vec<u32>>,
        vocab: usize,
    ) -> Result<EvalSet, ModelError> {
        let n = labels.len();
        let what = "eval set";
        let fail = |m: String| Err(ModelError::Data(format!("{what}: {m}")));
        if tokens.len() != n * t_len || positions.len() != n {
            return fail(format!(
                "{n} labels need [{n}, {t_len}] tokens and {n} positions, found {} token ids and {} positions",
                tokens.len(),
                positions.len()
            ));
        }
        if let Some(d) = &distractors {
            if d.len() != n {
                return fail(format!(
                    "{n} labels need {n} distractors, found {}",
                    d.len()
                ));
            }
        }
        if let Some(i) = tokens.iter().position(|&t| t as usize >= vocab) {
            return fail(format!(
                "token id {} of example {} (position {}) is outside the vocabulary of {vocab}",
                tokens[i],
                i / t_len,
                i % t_len
            ));
        }
        if let Some(i) = positions.iter().position(|&p| p as usize >= t_len) {
            return fail(format!(
                "read position {} of example {i} is outside the {t_len} positions",
                positions[i]
            ));
        }
        let named = labels.iter().chain(distractors.iter().flatten());
        if let Some(&bad) = named.clone().find(|&&t| t as usize >= vocab) {
            return fail(format!(
                "label or distractor token {bad} is outside the vocabulary of {vocab}"
            ));
        }
        if let Some(d) = &distractors {
            if let Some(i) = (0..n).find(|&i| d[i] == labels[i]) {
                return fail(format!(
                    "example {i}: the distractor is the correct token ({}), so its logit difference is always 0",
                    d[i]
                ));
            }
        }
        let mut set = EvalSet::new(
            Shape::Features(t_len + 1),
            token_rows(tokens, t_len, positions),
            labels,
            vocab,
        )?;
        set.distractors = distractors;
        Ok(set)
    }

    /// Add paired corrupted prompts `[N, T]` (same read positions) for the `resample` baseline.
    pub fn with_corrupted(mut self, tokens: &[u32], vocab: usize) -> Result<EvalSet, ModelError> {
        let t_len = self.shape.numel() - 1;
        if tokens.len() != self.len() * t_len {
            return Err(ModelError::Data(format!(
                "corrupted prompts: expected [{}, {t_len}] token ids, found {}",
                self.len(),
                tokens.len()
            )));
        }
        if let Some(i) = tokens.iter().position(|&t| t as usize >= vocab) {
            return Err(ModelError::Data(format!(
                "corrupted token id {} of example {} is outside the vocabulary of {vocab}",
                tokens[i],
                i / t_len
            )));
        }
        let positions: Vec<u32> = (0..self.len())
            .map(|i| self.example(i)[t_len] as u32)
            .collect();
        self.corrupted = Some(token_rows(tokens, t_len, &positions));
        Ok(self)
    }

    /// The corrupted input of example `i`, if the set has them.
    pub fn corrupted_example(&self, i: usize) -> Option<&[f32]> {
        let n = self.shape.numel();
        Some(&self.corrupted.as_ref()?[i * n..(i + 1) * n])
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The input values of example `i`.
    pub fn example(&self, i: usize) -> &[f32] {
        let n = self.shape.numel();
        &self.inputs[i * n..(i + 1) * n]
    }

    /// The first `n` examples (for quick runs and benches).
    pub fn head(&self, n: usize) -> EvalSet {
        let n = n.min(self.len());
        EvalSet {
            shape: self.shape,
            inputs: self.inputs[..n * self.shape.numel()].to_vec(),
            labels: self.labels[..n].to_vec(),
            distractors: self.distractors.as_ref().map(|d| d[..n].to_vec()),
            corrupted: self
                .corrupted
                .as_ref()
                .map(|c| c[..n * self.shape.numel()].to_vec()),
        }
    }
}

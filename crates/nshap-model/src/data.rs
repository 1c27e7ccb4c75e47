//! Eval sets: the examples and labels a metric is computed on.

use crate::error::ModelError;
use crate::shape::Shape;

/// Examples (f32, one example = `shape.numel()` values in the model's input layout) and labels.
#[derive(Clone, Debug)]
pub struct EvalSet {
    pub shape: Shape,
    pub inputs: Vec<f32>,
    pub labels: Vec<u32>,
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
        })
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
        }
    }
}

//! Metrics: how a coalition's sub-network is scored on a batch of examples.
//!
//! Every metric is a mean of per-example scores over the examples it counts, so backends can
//! reduce on the device (sum and count) and read back one number per coalition.

use crate::data::EvalSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A user-defined metric for library callers (CPU backend only).
pub trait CustomMetric: Send + Sync {
    /// Name shown in reports.
    fn name(&self) -> String;
    /// Score of one example from its logits; `None` leaves the example out of the mean.
    fn score(&self, logits: &[f32], label: u32) -> Option<f64>;
    /// The value of an uninformed network (used for truncation); 0 by default.
    fn chance_level(&self, _num_classes: usize) -> f64 {
        0.0
    }
}

/// The performance measure a Shapley value distributes.
#[derive(Clone)]
pub enum Metric {
    /// Fraction of examples whose argmax (first index on ties) is the label.
    Accuracy,
    /// Minus the mean cross-entropy of the softmax of the logits.
    NegLoss,
    /// Accuracy over the examples whose label is this class.
    ClassAccuracy(u32),
    /// `logit(label) - logit(distractor)`, the eval set's (correct, distractor) pair of each
    /// example (the indirect-object-identification metric of circuit work).
    LogitDiff,
    Custom(Arc<dyn CustomMetric>),
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Metric {
    /// The name as written on the command line (`accuracy`, `neg_loss`, `class_accuracy:3`).
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::NegLoss => "neg_loss".into(),
            Metric::ClassAccuracy(c) => format!("class_accuracy:{c}"),
            Metric::LogitDiff => "logit_diff".into(),
            Metric::Custom(m) => m.name(),
        }
    }

    /// Score of example `i` of `data` from its logits (what backends call: `logit_diff` reads
    /// the example's distractor).
    pub fn score_example(&self, logits: &[f32], data: &EvalSet, i: usize) -> Option<f64> {
        match self {
            Metric::LogitDiff => {
                let other = *data.distractors.as_ref()?.get(i)?;
                let label = data.labels[i] as usize;
                Some(f64::from(logits[label]) - f64::from(logits[other as usize]))
            }
            _ => self.score(logits, data.labels[i]),
        }
    }

    /// Whether the metric needs each example's distractor token (`EvalSet::distractors`).
    pub fn needs_distractors(&self) -> bool {
        matches!(self, Metric::LogitDiff)
    }

    /// Score of one example; `None` when the metric does not count it.
    pub fn score(&self, logits: &[f32], label: u32) -> Option<f64> {
        match self {
            Metric::Accuracy => Some(f64::from(u8::from(argmax(logits) == label as usize))),
            Metric::NegLoss => Some(-cross_entropy(logits, label)),
            Metric::ClassAccuracy(c) => {
                (label == *c).then(|| f64::from(u8::from(argmax(logits) == label as usize)))
            }
            // Needs the example's distractor: see `score_example`.
            Metric::LogitDiff => None,
            Metric::Custom(m) => m.score(logits, label),
        }
    }

    /// Turn a sum of scores over `count` counted examples into the metric value (0 when none).
    pub fn finish(sum: f64, count: usize) -> f64 {
        if count == 0 {
            0.0
        } else {
            sum / count as f64
        }
    }

    /// The value of a network that knows nothing: 1/classes for accuracies, -ln(classes) for the
    /// log-likelihood. Permutation truncation compares against it.
    pub fn chance_level(&self, num_classes: usize) -> f64 {
        let k = num_classes.max(1) as f64;
        match self {
            Metric::Accuracy | Metric::ClassAccuracy(_) => 1.0 / k,
            Metric::NegLoss => -k.ln(),
            Metric::LogitDiff => 0.0,
            Metric::Custom(m) => m.chance_level(num_classes),
        }
    }

    /// A bound on the range of one marginal contribution (the bandit's `R`): 1 for accuracies,
    /// ln(classes) * 2 for the log-likelihood (reference uses ln(1000) for ImageNet).
    pub fn value_range(&self, num_classes: usize) -> f64 {
        match self {
            Metric::NegLoss => (num_classes.max(2) as f64).ln() * 2.0,
            _ => 1.0,
        }
    }

    /// Parse a command-line metric name and check it against the number of classes.
    pub fn parse(text: &str, num_classes: usize) -> Result<Metric, String> {
        let metric: Metric = text.parse()?;
        if let Metric::ClassAccuracy(c) = metric {
            if c as usize >= num_classes {
                return Err(format!(
                    "metric {text}: class {c} is out of range, the model has {num_classes} classes (0..{})",
                    num_classes.saturating_sub(1)
                ));
            }
        }
        Ok(metric)
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(text: &str) -> Result<Metric, String> {
        match text {
            "accuracy" => Ok(Metric::Accuracy),
            // Language models: the loss and accuracy of the next token (the label).
            "neg_loss" | "next_token_loss" => Ok(Metric::NegLoss),
            "next_token_accuracy" => Ok(Metric::Accuracy),
            "logit_diff" => Ok(Metric::LogitDiff),
            _ => match text.strip_prefix("class_accuracy:") {
                Some(c) => c.parse().map(Metric::ClassAccuracy).map_err(|_| {
                    format!("metric {text}: expected class_accuracy:<class index>, e.g. class_accuracy:3")
                }),
                None => Err(format!(
                    "unknown metric {text:?}: expected accuracy, neg_loss, class_accuracy:<c>, or for language models next_token_loss (= neg_loss), next_token_accuracy (= accuracy), logit_diff"
                )),
            },
        }
    }
}

/// Index of the largest logit, the first one on ties (as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// Cross-entropy of softmax(logits) against `label`, in f64 with the log-sum-exp trick.
pub fn cross_entropy(logits: &[f32], label: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln() - logits[label as usize] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 0.0]), 1);
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_classes() {
        let ce = cross_entropy(&[0.5; 10], 3);
        assert!((ce - 10f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn parse_rejects_unknown_and_out_of_range() {
        assert!(Metric::parse("top5", 10)
            .unwrap_err()
            .contains("unknown metric"));
        assert!(Metric::parse("class_accuracy:10", 10)
            .unwrap_err()
            .contains("out of range"));
        assert!(matches!(
            Metric::parse("class_accuracy:9", 10),
            Ok(Metric::ClassAccuracy(9))
        ));
    }

    #[test]
    fn class_accuracy_counts_only_its_class() {
        let m = Metric::ClassAccuracy(2);
        assert_eq!(m.score(&[0.0, 0.0, 1.0], 2), Some(1.0));
        assert_eq!(m.score(&[0.0, 0.0, 1.0], 1), None);
    }
}

//! The backend seam: evaluate a batch of coalitions of one model on a batch of examples and get
//! one metric value per coalition. Implemented by `nshap-cpu` and `nshap-gpu`.

use crate::data::EvalSet;
use crate::graph::Graph;
use crate::metric::Metric;
use crate::players::Players;
use std::sync::Arc;

/// M coalitions as packed bit rows: bit `p % 32` of word `p / 32` is 1 when player `p` is present.
///
/// u32 words so the GPU can read the rows as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskBatch {
    n_players: usize,
    words_per_row: usize,
    words: Vec<u32>,
}

impl MaskBatch {
    pub fn new(n_players: usize) -> MaskBatch {
        MaskBatch {
            n_players,
            words_per_row: n_players.div_ceil(32).max(1),
            words: Vec::new(),
        }
    }

    /// Append a coalition given as one bool per player.
    pub fn push_bools(&mut self, present: &[bool]) {
        assert_eq!(
            present.len(),
            self.n_players,
            "coalition length must equal the player count"
        );
        let start = self.words.len();
        self.words.resize(start + self.words_per_row, 0);
        for (p, _) in present.iter().enumerate().filter(|(_, &b)| b) {
            self.words[start + p / 32] |= 1 << (p % 32);
        }
    }

    /// Append a coalition given as packed words (extra high bits are ignored).
    pub fn push_words(&mut self, row: &[u32]) {
        assert_eq!(
            row.len(),
            self.words_per_row,
            "row must have words_per_row words"
        );
        self.words.extend_from_slice(row);
    }

    /// The coalition with every player present.
    pub fn push_full(&mut self) {
        self.push_bools(&vec![true; self.n_players]);
    }

    pub fn len(&self) -> usize {
        self.words.len() / self.words_per_row
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn n_players(&self) -> usize {
        self.n_players
    }

    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// All rows, row-major.
    pub fn words(&self) -> &[u32] {
        &self.words
    }

    pub fn row(&self, r: usize) -> &[u32] {
        &self.words[r * self.words_per_row..(r + 1) * self.words_per_row]
    }

    pub fn contains(&self, r: usize, player: usize) -> bool {
        self.row(r)[player / 32] >> (player % 32) & 1 == 1
    }

    /// Rows `range` as a new batch (for chunking).
    pub fn slice(&self, range: std::ops::Range<usize>) -> MaskBatch {
        MaskBatch {
            n_players: self.n_players,
            words_per_row: self.words_per_row,
            words: self.words[range.start * self.words_per_row..range.end * self.words_per_row]
                .to_vec(),
        }
    }
}

/// Which eval examples a call uses.
#[derive(Clone, Copy, Debug)]
pub enum Examples<'a> {
    All,
    /// Indices into the eval set (a random subset drawn by the game).
    Subset(&'a [u32]),
}

impl Examples<'_> {
    pub fn len(&self, data: &EvalSet) -> usize {
        match self {
            Examples::All => data.len(),
            Examples::Subset(s) => s.len(),
        }
    }
}

/// Everything a backend needs to prepare for a run.
#[derive(Clone, Debug)]
pub struct EvalJob {
    pub graph: Arc<Graph>,
    pub players: Players,
    pub data: Arc<EvalSet>,
    pub metric: Metric,
}

/// Errors a backend reports.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("not supported by the {backend} backend: {what}")]
    Unsupported { backend: &'static str, what: String },
    #[error("GPU device error: {0}")]
    Device(String),
}

/// What ran a job (written into reports).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackendInfo {
    /// `cpu` or `gpu`.
    pub backend: String,
    /// Adapter name and driver for the GPU, thread count for the CPU.
    pub device: String,
    /// How each layer after a player node is computed, where the backend chooses (the CPU's
    /// per-example tables vs the plain layer), one line per layer with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
}

/// A backend: something that can prepare an [`Evaluator`] for a job.
pub trait Backend {
    fn prepare(&self, job: EvalJob) -> Result<Box<dyn Evaluator>, BackendError>;
}

/// A prepared job: model, players, eval set and metric are fixed; coalitions and examples vary.
pub trait Evaluator: Send {
    fn info(&self) -> BackendInfo;

    /// One metric value per row of `masks`, each computed on the same `examples`.
    fn evaluate(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
    ) -> Result<Vec<f64>, BackendError>;

    /// Logits `[M, B, classes]` (row-major) for each coalition and example: for tests and tools.
    fn logits(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
    ) -> Result<Vec<f32>, BackendError>;
}

/// Check a request against a job before running it (shared by both backends).
pub fn check_request(
    job: &EvalJob,
    examples: Examples<'_>,
    masks: &MaskBatch,
) -> Result<(), BackendError> {
    if masks.n_players() != job.players.len() {
        return Err(BackendError::Invalid(format!(
            "coalitions have {} players, the job has {}",
            masks.n_players(),
            job.players.len()
        )));
    }
    if let Examples::Subset(indices) = examples {
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= job.data.len()) {
            return Err(BackendError::Invalid(format!(
                "example index {bad} is out of range: the eval set has {} examples",
                job.data.len()
            )));
        }
    }
    Ok(())
}

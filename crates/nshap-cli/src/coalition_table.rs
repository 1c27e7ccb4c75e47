//! The 2^n coalition values of an exact enumeration, kept in an output directory so that one
//! enumeration serves exact Shapley values (`nshap run --method exact`) and every interaction
//! index (`nshap interactions`) of the same game.

use crate::output::write_atomic;
use crate::prepare::{Prepared, RunSpec};
use anyhow::Result;
use nshap::estimate::interactions::ValueTable;
use serde::{Deserialize, Serialize};
use std::path::Path;

const TABLE_FILE: &str = "coalition-values.f64";
const KEY_FILE: &str = "coalition-values.json";

/// What identifies a game's coalition values: a stored table is reused only when all of it
/// matches.
#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
pub struct TableKey {
    model_digest: String,
    data_digest: String,
    players: Vec<String>,
    pub n_players: usize,
    baseline: String,
    metric: String,
    examples_per_eval: Option<usize>,
    seed: u64,
}

impl TableKey {
    pub fn new(spec: &RunSpec, prepared: &Prepared) -> TableKey {
        TableKey {
            model_digest: prepared.model_digest.clone(),
            data_digest: prepared.data_digest.clone(),
            players: spec.players.clone(),
            n_players: prepared.players.len(),
            baseline: spec.baseline.clone(),
            metric: prepared.metric.name(),
            examples_per_eval: spec.examples_per_eval,
            seed: spec.seed,
        }
    }
}

/// The table stored in `dir` for exactly this game, if any (anything unreadable is `None`).
pub fn load(dir: &Path, key: &TableKey) -> Option<ValueTable> {
    let stored: TableKey =
        serde_json::from_str(&std::fs::read_to_string(dir.join(KEY_FILE)).ok()?).ok()?;
    if &stored != key {
        return None;
    }
    let bytes = std::fs::read(dir.join(TABLE_FILE)).ok()?;
    let values: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    ValueTable::from_values(key.n_players, values).ok()
}

/// Store `table` in `dir` (little-endian f64 values, and the key beside them), atomically.
pub fn save(dir: &Path, key: &TableKey, table: &ValueTable) -> Result<()> {
    let bytes: Vec<u8> = table
        .values()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write_atomic(&dir.join(TABLE_FILE), &bytes)?;
    write_atomic(
        &dir.join(KEY_FILE),
        serde_json::to_string_pretty(key)?.as_bytes(),
    )
}

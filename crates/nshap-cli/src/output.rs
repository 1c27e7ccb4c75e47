//! Files a run writes and reads back: values.csv, run.json, state.json, report.json.
//! Every write is atomic (temp file + rename) so a crash never leaves a half-written file.

use anyhow::{bail, Context, Result};
use nshap::estimate::{Estimates, Status};
use nshap::model::Players;
use std::fmt::Write as _;
use std::path::Path;

pub const VALUES_HEADER: &str = "node,index,value,stderr,ci_low,ci_high,samples,status";

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Active => "active",
        Status::SettledIn => "in_top_k",
        Status::SettledOut => "out",
    }
}

/// values.csv: one row per player, sorted by value descending (player order on ties).
pub fn values_csv(estimates: &Estimates, players: &Players) -> String {
    let mut order: Vec<usize> = (0..estimates.players.len()).collect();
    order.sort_by(|&a, &b| {
        estimates.players[b]
            .value
            .total_cmp(&estimates.players[a].value)
            .then(a.cmp(&b))
    });
    let mut out = String::from(VALUES_HEADER);
    out.push('\n');
    for i in order {
        let p = &estimates.players[i];
        let (node, channel) = players.label(i);
        let _ = writeln!(
            out,
            "{node},{channel},{},{},{},{},{},{}",
            p.value,
            p.stderr,
            p.ci_low,
            p.ci_high,
            p.samples,
            status_name(p.status)
        );
    }
    out
}

/// One parsed row of values.csv.
#[derive(Clone, Debug)]
pub struct ValueRow {
    pub node: String,
    pub index: usize,
    pub value: f64,
    pub stderr: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub samples: u64,
    pub status: String,
}

pub fn read_values(path: &Path) -> Result<Vec<ValueRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some(VALUES_HEADER) {
        bail!("{}: expected the header {VALUES_HEADER:?}", path.display());
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let bad =
                || anyhow::anyhow!("{}: line {} is malformed: {line:?}", path.display(), i + 2);
            if f.len() != 8 {
                return Err(bad());
            }
            Ok(ValueRow {
                node: f[0].to_owned(),
                index: f[1].parse().map_err(|_| bad())?,
                value: f[2].parse().map_err(|_| bad())?,
                stderr: f[3].parse().map_err(|_| bad())?,
                ci_low: f[4].parse().map_err(|_| bad())?,
                ci_high: f[5].parse().map_err(|_| bad())?,
                samples: f[6].parse().map_err(|_| bad())?,
                status: f[7].to_owned(),
            })
        })
        .collect()
}

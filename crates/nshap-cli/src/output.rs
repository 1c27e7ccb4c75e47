//! Files a run writes and reads back: values.csv, run.json, state.json, report.json.
//! Every write is atomic (temp file + rename) so a crash never leaves a half-written file.

use anyhow::{bail, Context, Result};
use nshap::estimate::{Estimates, Status};
use nshap::model::Players;
use std::fmt::Write as _;
use std::path::Path;

/// values.csv's columns; `{stem}` is the interval's column stem (`ci95`, `eb80`, `pac80`, ...).
pub const VALUES_COLUMNS: &str = "node,index,value,stderr,{stem}_low,{stem}_high,samples,status";

/// The header of values.csv for intervals of this stem.
pub fn values_header(stem: &str) -> String {
    VALUES_COLUMNS.replace("{stem}", stem)
}

/// The interval's stem from a values.csv header (`ci` in files written before intervals were
/// named), or `None` if the header is not values.csv's.
pub fn stem_of_header(header: &str) -> Option<String> {
    let f: Vec<&str> = header.split(',').collect();
    let fixed = [
        "node", "index", "value", "stderr", "", "", "samples", "status",
    ];
    if f.len() != fixed.len() || (0..8).any(|i| !fixed[i].is_empty() && f[i] != fixed[i]) {
        return None;
    }
    let stem = f[4].strip_suffix("_low")?;
    (!stem.is_empty() && f[5].strip_suffix("_high") == Some(stem)).then(|| stem.to_owned())
}

/// What a column stem means, for table headers: `ci95` -> "95% CI", `eb80` -> "80% EB bound",
/// `pac80` -> "80% PAC interval", `cs95` -> "95% CS"; anything else as it is.
pub fn interval_label(stem: &str) -> String {
    let kinds = [
        ("ci", "CI"),
        ("eb", "EB bound"),
        ("pac", "PAC interval"),
        ("cs", "CS"),
    ];
    for (prefix, name) in kinds {
        if let Some(pct) = stem.strip_prefix(prefix) {
            if !pct.is_empty() && pct.chars().all(|c| c.is_ascii_digit() || c == '_') {
                return format!("{}% {name}", pct.replace('_', "."));
            }
        }
    }
    match stem {
        "ci" => "interval".into(),
        other => other.into(),
    }
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// A player's status as values.csv writes it (after the run: an `Active` player is one the
/// stopping rule did not resolve).
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Active => "unresolved",
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
    let mut out = values_header(&estimates.diagnostics.interval.column_stem());
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

/// One parsed row of values.csv (`ci_low`/`ci_high`: the interval, whatever its kind).
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

/// Rows of a values.csv, and its interval's column stem (`ci95`, `eb80`, ...; `ci` for files
/// written with the old `ci_low,ci_high` columns).
pub fn read_values_with_stem(path: &Path) -> Result<(Vec<ValueRow>, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(stem) = stem_of_header(header) else {
        bail!(
            "{}: expected the header {:?}, found {header:?}",
            path.display(),
            VALUES_COLUMNS.replace("{stem}", "<interval>")
        );
    };
    let rows = lines
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
        .collect::<Result<_>>()?;
    Ok((rows, stem))
}

/// Rows of a values.csv (any interval columns).
pub fn read_values(path: &Path) -> Result<Vec<ValueRow>> {
    read_values_with_stem(path).map(|(rows, _)| rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_old_and_new_are_read_and_labelled() {
        assert_eq!(
            stem_of_header("node,index,value,stderr,ci_low,ci_high,samples,status").as_deref(),
            Some("ci")
        );
        assert_eq!(
            stem_of_header(&values_header("eb80")).as_deref(),
            Some("eb80")
        );
        assert_eq!(
            stem_of_header("node,index,value,stderr,a_low,b_high,samples,status"),
            None
        );
        assert_eq!(stem_of_header("node,value"), None);
        assert_eq!(interval_label("ci95"), "95% CI");
        assert_eq!(interval_label("eb80"), "80% EB bound");
        assert_eq!(interval_label("pac80"), "80% PAC interval");
        assert_eq!(interval_label("cs95"), "95% CS");
        assert_eq!(interval_label("ci99_5"), "99.5% CI");
        assert_eq!(interval_label("interval"), "interval");
        assert_eq!(interval_label("ci"), "interval");
    }
}

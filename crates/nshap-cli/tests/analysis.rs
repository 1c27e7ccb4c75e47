//! `nshap interactions`, `nshap measures` and `nshap compare` as a user runs them, checked
//! against an independent PyTorch enumeration of the shipped MLP's 2^16 coalitions
//! (tests/fixtures/make_interactions.py) and against naive recomputation from their own files.

mod common;

use common::{assert_one_line_error, model_args, repo};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

fn nshap(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nshap"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[String]) -> String {
    let o = nshap(args);
    assert!(
        o.status.success(),
        "nshap {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn truth() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/mlp_interactions.json")).unwrap(),
    )
    .unwrap()
}

/// PyTorch's pairwise SII of the MLP's relu2 units for neg_loss, by pair.
fn sii_truth(truth: &Value) -> HashMap<(usize, usize), f64> {
    let index = |v: &Value| v.as_u64().unwrap() as usize;
    truth["neg_loss"]["sii"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ((index(&r[0]), index(&r[1])), r[2].as_f64().unwrap()))
        .collect()
}

/// interactions.csv rows: (player indices of relu2, order, value, stderr).
type Row = (Vec<usize>, usize, f64, f64);

fn read_interactions(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("interactions.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("players,order,value,stderr"));
    let rows: Vec<Row> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            let players: Vec<usize> = f[0]
                .split(';')
                .map(|p| {
                    let (node, i) = p.split_once(':').unwrap();
                    assert_eq!(node, "relu2");
                    i.parse().unwrap()
                })
                .collect();
            (
                players,
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    // sorted by |value|, descending
    for w in rows.windows(2) {
        assert!(w[0].2.abs() >= w[1].2.abs(), "not sorted: {w:?}");
    }
    rows
}

fn report(dir: &Path, file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

fn assert_figure(dir: &Path, stem: &str) {
    for ext in ["svg", "png"] {
        let path = dir.join(format!("{stem}.{ext}"));
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|_| panic!("{} missing", path.display()))
            .len();
        assert!(len > 5_000, "{} is only {len} bytes", path.display());
    }
}

/// Exact SII and Möbius dividends over the MLP's 16 relu2 units equal PyTorch's enumeration
/// (definitions evaluated directly, no transform), and the second index reuses the first's
/// 2^16 coalition values instead of enumerating again.
#[test]
fn exact_interactions_match_pytorch_and_share_one_enumeration() {
    let truth = truth();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("inter");
    let mut args = strings(&["interactions"]);
    args.extend(model_args("digits-mlp"));
    args.extend(strings(&[
        "--players",
        "relu2",
        "--metric",
        "neg_loss",
        "--index",
        "sii",
        "--method",
        "exact",
        "--out",
    ]));
    args.push(out.to_string_lossy().into_owned());
    ok(&args);
    let rows = read_interactions(&out);
    assert_eq!(rows.len(), 120, "all pairs of 16 players");
    let want = sii_truth(&truth);
    let mut worst = 0.0f64;
    for (players, order, value, stderr) in &rows {
        assert_eq!(*order, 2);
        assert_eq!(*stderr, 0.0);
        let w = want[&(players[0], players[1])];
        worst = worst.max((value - w).abs());
    }
    println!("exact SII: max |nshap - PyTorch| = {worst:.3e}");
    assert!(worst < 1e-6, "max SII error {worst}");
    let r = report(&out, "interactions.json");
    assert_eq!(r["evaluations"], 65536);
    assert_eq!(r["reused_coalition_table"], false);
    assert_figure(&out, "interactions");

    // Möbius up to order 3 from the same directory: no new enumeration.
    let mut args2 = args.clone();
    let i = args2.iter().position(|a| a == "sii").unwrap();
    args2[i] = "moebius".into();
    args2.extend(strings(&["--order", "3"]));
    ok(&args2);
    let rows = read_interactions(&out);
    assert_eq!(rows.len(), 16 + 120 + 560);
    let want: HashMap<Vec<usize>, f64> = truth["neg_loss"]["moebius"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_u64().unwrap() as usize)
                    .collect(),
                r[1].as_f64().unwrap(),
            )
        })
        .collect();
    let mut worst = 0.0f64;
    for (players, order, value, _) in &rows {
        assert_eq!(players.len(), *order);
        worst = worst.max((value - want[players]).abs());
    }
    println!("exact Möbius (orders 1-3): max |nshap - PyTorch| = {worst:.3e}");
    assert!(worst < 1e-6, "max Möbius error {worst}");
    let r = report(&out, "interactions.json");
    assert_eq!(r["evaluations"], 0);
    assert_eq!(r["reused_coalition_table"], true);
}

/// A run, then sampled SII among its top 6 players (every pair within 4 standard errors of the
/// exact value), then measures and compare on the same run directory.
#[test]
fn sampled_interactions_measures_and_compare_on_a_run() {
    let truth = truth();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = strings(&["run"]);
    args.extend(model_args("digits-mlp"));
    args.extend(strings(&[
        "--players",
        "relu2",
        "--metric",
        "neg_loss",
        "--method",
        "exact",
        "--top-k",
        "4",
        "--out",
    ]));
    args.push(run.to_string_lossy().into_owned());
    ok(&args);

    let from = run.to_string_lossy().into_owned();
    let inter = |extra: &[&str]| {
        let mut a = strings(&["interactions", "--from", &from]);
        a.extend(strings(extra));
        a
    };
    // exact SII among the run's top 4: the run's own enumeration is reused (0 evaluations).
    let want = sii_truth(&truth);
    ok(&inter(&["--top", "4"]));
    let rows = read_interactions(&run);
    assert_eq!(rows.len(), 6, "pairs among the top 4");
    for (players, _, value, _) in &rows {
        assert!((value - want[&(players[0], players[1])]).abs() < 1e-6);
    }
    let r = report(&run, "interactions.json");
    assert_eq!(r["method"], "exact");
    assert_eq!(r["evaluations"], 0);
    assert_eq!(r["reused_coalition_table"], true);

    let stdout = ok(&inter(&[
        "--top", "6", "--method", "sampled", "--budget", "60000", "--seed", "3",
    ]));
    assert!(stdout.contains("±"), "{stdout}");
    let rows = read_interactions(&run);
    assert_eq!(rows.len(), 15, "pairs among the top 6");
    let mut worst_z = 0.0f64;
    for (players, _, value, stderr) in &rows {
        assert!(*stderr > 0.0, "a sampled value has a positive stderr");
        let z = (value - want[&(players[0], players[1])]).abs() / stderr;
        worst_z = worst_z.max(z);
    }
    println!("sampled SII among the top 6: worst |error| / stderr = {worst_z:.2}");
    assert!(worst_z < 4.0, "worst z {worst_z}");
    let r = report(&run, "interactions.json");
    assert!(r["evaluations"].as_u64().unwrap() <= 60_000);
    assert_eq!(r["selected"].as_array().unwrap().len(), 6);
    assert_figure(&run, "interactions");

    // measures: one row per player, in player order; LOO = v(N) - v(N \ {i}).
    ok(&strings(&["measures", "--from", &from]));
    let text = std::fs::read_to_string(run.join("measures.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("node,index,selectivity,sensitivity,taylor,loo")
    );
    let measures: Vec<Vec<f64>> = lines
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!((f[0], f[1]), ("relu2", i.to_string().as_str()));
            f[2..].iter().map(|v| v.parse::<f64>().unwrap()).collect()
        })
        .collect();
    assert_eq!(measures.len(), 16);
    // relu outputs are >= 0, so selectivity is in [0, 1]; sensitivity is a sum of |.|
    for m in &measures {
        assert!((0.0..=1.0).contains(&m[0]) && m[1] >= 0.0, "{m:?}");
    }

    // compare: its correlations agree with a naive recomputation from the two CSV files.
    ok(&strings(&[
        "compare",
        "--from",
        &from,
        "--random-seeds",
        "3",
    ]));
    let shapley: HashMap<usize, f64> = std::fs::read_to_string(run.join("values.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let phi: Vec<f64> = (0..16).map(|i| shapley[&i]).collect();
    let text = std::fs::read_to_string(run.join("compare.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("measure,spearman,kendall,top_k_overlap,k")
    );
    let names = ["selectivity", "sensitivity", "taylor", "loo"];
    for (col, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], names[col]);
        let x: Vec<f64> = measures.iter().map(|m| m[col]).collect();
        let rho: f64 = f[1].parse().unwrap();
        let tau: f64 = f[2].parse().unwrap();
        assert!((rho - naive_spearman(&phi, &x)).abs() < 1e-5, "{line}");
        assert!((tau - naive_kendall(&phi, &x)).abs() < 1e-5, "{line}");
        assert_eq!(f[4], "4");
    }
    assert_figure(&run, "compare");
    let ablation = std::fs::read_to_string(run.join("compare_ablation.csv")).unwrap();
    assert!(ablation
        .starts_with("k,shapley,loo,selectivity,taylor,random_mean,random_min,random_max\n"));
    assert_eq!(ablation.lines().count(), 1 + 11, "k = 0..=10");
}

/// Spearman with ties: Pearson correlation of mid-ranks (rank = #smaller + (#equal + 1) / 2).
fn naive_spearman(a: &[f64], b: &[f64]) -> f64 {
    let rank = |v: &[f64]| -> Vec<f64> {
        v.iter()
            .map(|x| {
                let less = v.iter().filter(|y| *y < x).count() as f64;
                let equal = v.iter().filter(|y| *y == x).count() as f64;
                less + (equal + 1.0) / 2.0
            })
            .collect()
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma) * (x - ma)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb) * (y - mb)).sum();
    cov / (va * vb).sqrt()
}

/// Kendall's tau-b by its textbook formula over all pairs.
fn naive_kendall(a: &[f64], b: &[f64]) -> f64 {
    let (mut s, mut untied_a, mut untied_b) = (0.0, 0.0, 0.0);
    let n = a.len();
    for i in 0..n {
        for j in i + 1..n {
            let (da, db) = ((a[i] - a[j]).signum(), (b[i] - b[j]).signum());
            let (da, db) = (
                if a[i] == a[j] { 0.0 } else { da },
                if b[i] == b[j] { 0.0 } else { db },
            );
            s += da * db;
            untied_a += da.abs();
            untied_b += db.abs();
        }
    }
    s / (untied_a * untied_b).sqrt()
}

#[test]
fn bad_analysis_arguments_get_one_clear_line_each() {
    let dir = tempfile::tempdir().unwrap();
    // a finished run on the CNN's 32 relu2 channels (LOO: cheap and deterministic)
    let run = dir.path().join("run");
    let mut args = strings(&["run"]);
    args.extend(model_args("digits-cnn"));
    args.extend(strings(&["--players", "relu2", "--method", "loo", "--out"]));
    args.push(run.to_string_lossy().into_owned());
    ok(&args);
    let from = run.to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["interactions", "--from", &from, "--top", "40"],
            vec!["--top 40", "32"],
        ),
        (
            vec!["interactions", "--from", &from, "--method", "exact"],
            vec!["32 players", "20", "--method sampled"],
        ),
        (
            vec!["interactions", "--from", &from, "--index", "shapley-taylor"],
            vec!["--index", "shapley-taylor", "moebius", "sii"],
        ),
        (
            vec![
                "interactions",
                "--from",
                &from,
                "--index",
                "moebius",
                "--top",
                "5",
                "--method",
                "sampled",
            ],
            vec!["moebius", "exact"],
        ),
        (
            vec![
                "interactions",
                "--from",
                &from,
                "--top",
                "5",
                "--order",
                "1",
            ],
            vec!["--order 1"],
        ),
        (
            vec!["interactions", "--from", &from, "--players", "relu1"],
            vec!["--from", "--players"],
        ),
        (vec!["interactions", "--top", "5"], vec!["--top", "--from"]),
        (
            vec!["interactions", "--from", &from, "--method", "psychic"],
            vec!["--method", "psychic"],
        ),
        (
            vec!["measures", "--from", "/nonexistent/run"],
            vec!["/nonexistent/run", "run.json"],
        ),
        (
            vec!["compare", "--from", "/nonexistent/run"],
            vec!["/nonexistent/run"],
        ),
    ];
    for (args, needles) in cases {
        let o = nshap(&strings(&args));
        assert_one_line_error(&o, &needles);
    }
    // compare on a run whose values.csv is missing (unfinished)
    let unfinished = dir.path().join("unfinished");
    std::fs::create_dir_all(&unfinished).unwrap();
    std::fs::copy(run.join("run.json"), unfinished.join("run.json")).unwrap();
    let o = nshap(&strings(&[
        "compare",
        "--from",
        &unfinished.to_string_lossy(),
    ]));
    assert_one_line_error(&o, &["values.csv"]);
}

/// `kill -9` in the middle of a sampled run, then the same command again: it continues from the
/// checkpoint and writes the same interactions.csv, byte for byte, as a run never interrupted.
#[test]
fn sampled_interactions_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| {
        let mut a = strings(&["interactions"]);
        a.extend(model_args("digits-cnn"));
        a.extend(strings(&[
            "--players",
            "relu2",
            "--method",
            "sampled",
            "--budget",
            "150000",
            "--batch-size",
            "2048",
            "--seed",
            "5",
            "--checkpoint-secs",
            "0.05",
            "--out",
        ]));
        a.push(out.to_string_lossy().into_owned());
        a
    };
    let whole = dir.path().join("whole");
    ok(&args(&whole));
    let want = std::fs::read(whole.join("interactions.csv")).unwrap();
    assert!(
        !whole.join("interactions-state.json").exists(),
        "removed when done"
    );

    let cut = dir.path().join("cut");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nshap"))
        .current_dir(repo())
        .args(args(&cut))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = cut.join("interactions-state.json");
    let started = std::time::Instant::now();
    while !state.exists() {
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint after 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        state.exists() && !cut.join("interactions.csv").exists(),
        "the run finished before it could be killed; raise the budget"
    );
    let o = nshap(&args(&cut));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("continuing the sampled run"), "{stderr}");
    assert_eq!(std::fs::read(cut.join("interactions.csv")).unwrap(), want);
}

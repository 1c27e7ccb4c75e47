//! The `nshap` command as a user runs it: real processes, real files.

mod common;

use common::{assert_one_line_error, asset, model_args, repo};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn nshap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nshap"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn run_args(model: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["run".to_string()];
    a.extend(model_args(model));
    a.extend(["--out".to_string(), out.to_string_lossy().into_owned()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn bad_arguments_get_one_clear_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            run_args("digits-cnn", out, &["--players", "conv9"]),
            vec!["unknown node \"conv9\"", "relu2"],
        ),
        (
            run_args("digits-cnn", out, &["--players", "fc"]),
            vec!["\"fc\"", "output layer"],
        ),
        (
            run_args("digits-cnn", out, &["--players", "relu2", "--top-k", "40"]),
            vec!["--top-k 40", "32"],
        ),
        (
            run_args(
                "digits-cnn",
                out,
                &["--players", "relu2", "--metric", "top5"],
            ),
            vec!["unknown metric"],
        ),
        (
            run_args(
                "digits-cnn",
                out,
                &["--players", "relu2", "--metric", "class_accuracy:12"],
            ),
            vec!["out of range"],
        ),
        (
            run_args(
                "digits-cnn",
                out,
                &["--players", "relu2", "--method", "magic"],
            ),
            vec!["--method", "magic"],
        ),
        (
            run_args(
                "digits-cnn",
                out,
                &["--players", "pool", "--baseline", "reference"],
            ),
            vec!["reference", "pool"],
        ),
    ];
    for (args, needles) in cases {
        assert_one_line_error(&nshap(&as_strs(&args)), &needles);
    }
    let mut args = run_args("digits-cnn", out, &["--players", "relu2"]);
    let i = args.iter().position(|a| a == "--backend").unwrap();
    args[i + 1] = "tpu".into();
    assert_one_line_error(&nshap(&as_strs(&args)), &["unknown backend \"tpu\""]);
    // Data that does not fit the model: the MLP's eval set given to the CNN.
    let mut args = run_args("digits-cnn", out, &["--players", "relu2"]);
    let i = args.iter().position(|a| a == "--data").unwrap();
    args[i + 1] = asset("digits-mlp", "eval.safetensors");
    assert_one_line_error(
        &nshap(&as_strs(&args)),
        &["eval.safetensors", "inputs", "[N, 1, 8, 8]", "[500, 64]"],
    );
    // A missing weights file names the file.
    let o = nshap(&[
        "inspect",
        "--model",
        &asset("digits-cnn", "model.json"),
        "--weights",
        "/nope/w.safetensors",
    ]);
    assert_one_line_error(&o, &["/nope/w.safetensors"]);
}

#[test]
fn inspect_describes_a_model_and_its_accuracy() {
    let o = nshap(&[
        "inspect",
        "--model",
        &asset("digits-cnn", "model.json"),
        "--weights",
        &asset("digits-cnn", "weights.safetensors"),
        "--data",
        &asset("digits-cnn", "eval.safetensors"),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("relu2") && text.contains("[32, 8, 8]"),
        "{text}"
    );
    assert!(text.contains("10026 parameters"), "{text}");
    assert!(text.contains("accuracy = 0.9980"), "{text}");
}

#[test]
fn inspect_builds_a_torchvision_resnet18_from_its_state_dict() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("resnet18.safetensors");
    std::fs::write(
        &w,
        nshap::model::resnet::synthetic_state_dict("resnet18", 1, 1000, 1).unwrap(),
    )
    .unwrap();
    let o = nshap(&[
        "inspect",
        "--arch",
        "resnet18",
        "--weights",
        w.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // torchvision's count (tests/fixtures/resnet18_state_dict.json): 11,689,512 parameters.
    assert!(text.contains("11689512 parameters"), "{text}");
    assert!(
        text.contains("layer4.1.relu2") && text.contains("[512, 7, 7]"),
        "{text}"
    );
    let o = nshap(&[
        "inspect",
        "--arch",
        "resnet50",
        "--weights",
        w.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["resnet50", "resnet18 and resnet34"]);
}

fn read_values(dir: &Path) -> Vec<(String, usize, f64)> {
    let text = std::fs::read_to_string(dir.join("values.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("node,index,value,stderr,ci_low,ci_high,samples,status")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

fn evaluations(dir: &Path) -> u64 {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    r["evaluations"].as_u64().unwrap()
}

/// Exact Shapley on the shipped MLP equals an independent PyTorch enumeration of all 2^16
/// coalitions (tests/fixtures/mlp_exact.json), and TMAB finds the same top-3 for far less.
#[test]
fn exact_matches_pytorch_enumeration_and_tmab_finds_the_same_top3() {
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/mlp_exact.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<f64> = truth["accuracy"]["shapley"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let top3: Vec<usize> = truth["accuracy"]["top3"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let exact = dir.path().join("exact");
    let o = nshap(&as_strs(&run_args(
        "digits-mlp",
        &exact,
        &["--players", "relu2", "--method", "exact", "--top-k", "3"],
    )));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_values(&exact);
    assert_eq!(got.len(), 16);
    for (node, i, v) in &got {
        assert_eq!(node, "relu2");
        assert!(
            (v - want[*i]).abs() <= 1e-5,
            "player {i}: nshap {v}, PyTorch {}",
            want[*i]
        );
    }
    assert_eq!(got[..3].iter().map(|r| r.1).collect::<Vec<_>>(), top3);
    let exact_evals = evaluations(&exact);
    assert_eq!(exact_evals, 1 << 16);

    // The 3rd and 4th values differ by 0.0106: a boundary tolerance of half that still pins the
    // exact top-3, and lets the bandits stop once the rest is resolved.
    let mut want_top = top3.clone();
    want_top.sort();
    for method in ["tmab", "cmcs"] {
        let out = dir.path().join(method);
        let args = [
            "--players",
            "relu2",
            "--method",
            method,
            "--top-k",
            "3",
            "--epsilon",
            "0.005",
            "--seed",
            "1",
        ];
        let o = nshap(&as_strs(&run_args("digits-mlp", &out, &args)));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = read_values(&out);
        let mut found: Vec<usize> = got[..3].iter().map(|r| r.1).collect();
        found.sort();
        assert_eq!(found, want_top, "{method} top-3");
        let evals = evaluations(&out);
        println!("exact: {exact_evals} evaluations, {method}: {evals}");
        assert!(
            evals * 4 <= exact_evals,
            "{method} spent {evals} evaluations, exact {exact_evals}"
        );
    }
}

/// kill -9 in the middle of a run, then --resume: the same values.csv, byte for byte, as a run
/// that was never interrupted.
#[test]
fn kill_9_then_resume_gives_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        "--players",
        "relu2",
        "--method",
        "permutation",
        "--budget",
        "60000",
        "--examples-per-eval",
        "64",
        "--seed",
        "5",
        "--checkpoint-secs",
        "0",
    ];
    let whole = dir.path().join("whole");
    let o = nshap(&as_strs(&run_args("digits-mlp", &whole, &extra)));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nshap"))
        .current_dir(repo())
        .args(as_strs(&run_args("digits-mlp", &killed, &extra)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for a few checkpoints, then kill without warning.
    let state = killed.join("state.json");
    let start = Instant::now();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 3 && start.elapsed() < Duration::from_secs(60) {
        if let Ok(meta) = std::fs::metadata(&state) {
            seen.insert(meta.modified().unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(seen.len() >= 3, "no checkpoints seen");
    assert!(
        !killed.join("values.csv").exists(),
        "the run finished before it was killed; raise the budget"
    );

    let o = nshap(&["run", "--resume", killed.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = std::fs::read(whole.join("values.csv")).unwrap();
    let b = std::fs::read(killed.join("values.csv")).unwrap();
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
}

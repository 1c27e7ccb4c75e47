//! Language models through the command line: `--hf DIR` folders of tiny random Hugging Face
//! models (`tests/fixtures/make_gpt2.py`), exact values against PyTorch, a certified top-k over
//! 48 heads against a PyTorch Monte-Carlo estimate, and the errors a user meets.

mod common;

use common::{assert_one_line_error, repo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nshap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nshap"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

fn reference(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `(layer, head, value)` rows of a run's values.csv, in its (ranked) order.
fn values(dir: &Path) -> Vec<(String, usize, f64)> {
    let text = std::fs::read_to_string(dir.join("values.csv")).unwrap();
    text.lines()
        .skip(1)
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

/// Global head index of a `transformer.h.{l}.attn.heads` row with `heads` heads per layer.
fn head_index(node: &str, head: usize, heads: usize) -> usize {
    let layer: usize = node
        .strip_prefix("transformer.h.")
        .and_then(|r| r.split('.').next())
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("not a head layer: {node}"));
    layer * heads + head
}

fn args<'a>(dir: &'a str, data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "run",
        "--hf",
        dir,
        "--data",
        data,
        "--players",
        "transformer.h.*.attn.heads",
        "--backend",
        "cpu",
        "--out",
        out,
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn exact_values_of_gpt2_heads_equal_a_pytorch_enumeration() {
    let dir = fixture("gpt2-tiny");
    let (d, data) = (
        dir.to_string_lossy().into_owned(),
        dir.join("eval.safetensors").to_string_lossy().into_owned(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exact").to_string_lossy().into_owned();
    let o = nshap(&args(
        &d,
        &data,
        &out,
        &["--metric", "logit_diff", "--method", "exact"],
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = floats(&reference("gpt2-tiny")["logit_diff_shapley"]);
    let got = values(Path::new(&out));
    assert_eq!(got.len(), 12);
    for (node, h, v) in got {
        let i = head_index(&node, h, 4);
        assert!(
            (v - want[i]).abs() < 2e-6,
            "head {i}: nshap {v}, PyTorch {}",
            want[i]
        );
    }
}

/// TMAB and CMCS find the top 3 of a 6-layer, 8-head GPT-2's 48 heads on logit_diff, and it is
/// the top 3 of an independent PyTorch permutation estimate (gaps far above its errors).
#[test]
fn bandits_find_the_top3_of_48_heads() {
    let truth = reference("gpt2-6x8");
    let top: Vec<usize> = truth["head_shapley"]["top"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut top = top;
    top.sort();
    let dir = fixture("gpt2-6x8");
    let (d, data) = (
        dir.to_string_lossy().into_owned(),
        dir.join("eval.safetensors").to_string_lossy().into_owned(),
    );
    let tmp = tempfile::tempdir().unwrap();
    for method in ["tmab", "cmcs"] {
        let out = tmp.path().join(method).to_string_lossy().into_owned();
        let extra = [
            "--metric",
            "logit_diff",
            "--method",
            method,
            "--top-k",
            "3",
            "--seed",
            "1",
        ];
        let o = nshap(&args(&d, &data, &out, &extra));
        assert!(
            o.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = values(Path::new(&out));
        assert_eq!(got.len(), 48);
        let mut found: Vec<usize> = got[..3]
            .iter()
            .map(|(n, h, _)| head_index(n, *h, 8))
            .collect();
        found.sort();
        assert_eq!(found, top, "{method}: top 3");
    }
}

#[test]
fn language_model_mistakes_get_one_clear_line() {
    let dir = fixture("gpt2-tiny");
    let d = dir.to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x").to_string_lossy().into_owned();
    // An image eval set for a language model.
    let digits = repo().join("assets/digits-cnn/eval.safetensors");
    let digits = digits.to_string_lossy().into_owned();
    let o = nshap(&args(&d, &digits, &out, &[]));
    assert_one_line_error(&o, &["tokens", "docs/transformers.md"]);
    // resample without corrupted prompts.
    let data = dir.join("eval.safetensors").to_string_lossy().into_owned();
    let o = nshap(&args(&d, &data, &out, &["--baseline", "resample"]));
    assert_one_line_error(&o, &["corrupted"]);
    // A folder that is not a model.
    let assets = repo().join("assets").to_string_lossy().into_owned();
    let o = nshap(&args(&assets, &data, &out, &[]));
    assert_one_line_error(&o, &["config.json"]);
    // An architecture that does not match the folder.
    let mut a = args(&d, &data, &out, &[]);
    a.extend(["--arch", "llama"]);
    let o = nshap(&a);
    assert_one_line_error(&o, &["model_type", "gpt2"]);
}

//! Helpers shared by the CLI's integration tests (each test file is its own crate).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn asset(model: &str, file: &str) -> String {
    repo()
        .join("assets")
        .join(model)
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// `run` arguments for a shipped model.
pub fn model_args(model: &str) -> Vec<String> {
    vec![
        "--model".into(),
        asset(model, "model.json"),
        "--weights".into(),
        asset(model, "weights.safetensors"),
        "--data".into(),
        asset(model, "eval.safetensors"),
        "--backend".into(),
        "cpu".into(),
    ]
}

/// Exactly one line on stderr, starting with "error:", exit code 2, no panic.
pub fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    for n in needles {
        assert!(lines[0].contains(n), "missing {n:?} in: {stderr}");
    }
}

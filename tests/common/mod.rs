//! Shared test support: the PyTorch fixtures and the backends under test.
#![allow(dead_code)]

use nshap::model::tensors::TensorFile;
use nshap::model::{Backend, EvalSet, Graph, MaskBatch, PlayerLayer, Players};
use safetensors::Dtype;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// One case of `tests/fixtures/<model>/cases.json`.
#[derive(Deserialize, Debug, Clone)]
pub struct CaseSpec {
    pub name: String,
    pub players: Vec<String>,
    pub baseline: String,
    pub file: String,
}

/// A case's expected values, from PyTorch.
pub struct Case {
    pub spec: CaseSpec,
    pub masks: MaskBatch,
    pub baseline: Vec<f32>,
    pub logits: Vec<f32>,
    pub accuracy: Vec<f64>,
    pub neg_loss: Vec<f64>,
    pub class_accuracy_3: Vec<f64>,
}

pub fn read_cases(dir: &Path) -> Vec<CaseSpec> {
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

fn raw(file: &TensorFile, name: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
    file.raw(name).unwrap_or_else(|e| panic!("{e}"))
}

fn f64s(file: &TensorFile, name: &str) -> Vec<f64> {
    let (dtype, _, bytes) = raw(file, name);
    assert_eq!(dtype, Dtype::F64, "{name}");
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn load_case(dir: &Path, spec: &CaseSpec) -> Case {
    let file = TensorFile::open(&dir.join(&spec.file)).unwrap_or_else(|e| panic!("{e}"));
    let (_, mshape, mbytes) = raw(&file, "masks");
    let (m, n) = (mshape[0], mshape[1]);
    let mut masks = MaskBatch::new(n);
    for r in 0..m {
        let row: Vec<bool> = mbytes[r * n..(r + 1) * n].iter().map(|&b| b != 0).collect();
        masks.push_bools(&row);
    }
    Case {
        spec: spec.clone(),
        masks,
        baseline: file.f32("baseline", None).unwrap().0,
        logits: file.f32("logits", None).unwrap().0,
        accuracy: f64s(&file, "accuracy"),
        neg_loss: f64s(&file, "neg_loss"),
        class_accuracy_3: f64s(&file, "class_accuracy_3"),
    }
}

/// Players with the baselines the fixture used.
pub fn players_with_baseline(graph: &Graph, names: &[String], baseline: &[f32]) -> Players {
    let mut layers = Vec::new();
    let mut at = 0;
    for name in names {
        let node = graph.find(name).unwrap_or_else(|| panic!("node {name}"));
        let c = graph.nodes[node].shape.channels();
        layers.push(PlayerLayer {
            node,
            name: name.clone(),
            baseline: baseline[at..at + c].to_vec(),
        });
        at += c;
    }
    assert_eq!(at, baseline.len());
    Players::new(layers).unwrap()
}

/// Assert `got` is within `rel` relative tolerance of `want`, relative to each value plus the
/// tensor's largest magnitude (as `allclose` with `atol = rel * max|want|`), with an absolute floor.
pub fn assert_close(got: &[f32], want: &[f32], rel: f32, floor: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = (rel * (w.abs() + scale)).max(floor);
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

/// Load a fixture model (spec or the resnet18 builder) and its data.
pub fn load_fixture_model(dir: &Path) -> (Graph, EvalSet) {
    let weights = dir.join("weights.safetensors");
    let graph = if dir.join("model.json").exists() {
        nshap::model::load_model(&dir.join("model.json"), &weights)
            .unwrap_or_else(|e| panic!("{e}"))
    } else {
        let file = TensorFile::open(&dir.join("data.safetensors")).unwrap();
        let shape = file.shape("inputs").unwrap();
        nshap::model::load_arch("resnet18", &weights, [shape[1], shape[2], shape[3]])
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    };
    let data =
        nshap::model::load_eval_set(&dir.join("data.safetensors"), &graph, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
    (graph, data)
}

/// The backends every conformance test runs on. The GPU backend is included whenever an
/// adapter exists; with NSHAP_REQUIRE_GPU=1 a missing adapter fails the test.
pub fn backends() -> Vec<(&'static str, Box<dyn Backend>)> {
    // Each backend as it runs (per-example tables where they pay) and without its fast paths
    // (every conv and linear layer plain), so both paths are held to the PyTorch references.
    let plain = nshap::cpu::CpuOptions {
        tables: false,
        ..nshap::cpu::CpuOptions::default()
    };
    let mut list: Vec<(&'static str, Box<dyn Backend>)> = vec![
        ("cpu", Box::new(nshap::cpu::CpuBackend::default())),
        (
            "cpu-no-tables",
            Box::new(nshap::cpu::CpuBackend::new(plain)),
        ),
    ];
    match nshap::make_backend(nshap::BackendChoice::Gpu) {
        Ok(gpu) => {
            list.push(("gpu", gpu));
            // Without pushdown, tables and the mask on read: every op as written.
            let plain = nshap::gpu::GpuOptions {
                fast_paths: false,
                ..nshap::gpu::GpuOptions::default()
            };
            let plain = nshap::make_backend_with(nshap::BackendChoice::Gpu, plain)
                .expect("a second backend on the adapter that just opened");
            list.push(("gpu-plain", plain));
        }
        Err(e) => {
            if std::env::var("NSHAP_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("NSHAP_REQUIRE_GPU=1 but no GPU backend: {e:#}");
            }
            eprintln!("SKIPPED GPU half of the conformance suite (no GPU adapter: {e:#})");
        }
    }
    list
}

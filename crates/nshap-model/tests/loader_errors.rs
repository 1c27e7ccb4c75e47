//! Every bad input gets a clear error naming the file and tensor/node — never a panic.

use nshap_model::{load_eval_set, load_model, DataOptions, ModelError};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::{Path, PathBuf};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn tensors(&self, name: &str, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> PathBuf {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let p = self.path(name);
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        p
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const MLP: &str = r#"{"format": "nshap.model.v1", "input": [4],
  "nodes": [{"name": "fc1", "op": "linear", "weight": "0.weight", "bias": "0.bias"},
            {"name": "relu", "op": "relu"},
            {"name": "fc2", "op": "linear", "weight": "2.weight"}]}"#;

fn good_weights(dir: &Dir) -> PathBuf {
    dir.tensors(
        "w.safetensors",
        &[
            ("0.weight", Dtype::F32, vec![3, 4], f32s(&[0.1; 12])),
            ("0.bias", Dtype::F32, vec![3], f32s(&[0.0; 3])),
            ("2.weight", Dtype::F32, vec![2, 3], f32s(&[0.2; 6])),
        ],
    )
}

fn err(r: Result<impl std::fmt::Debug, ModelError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn good_model_loads() {
    let d = Dir::new();
    let g = load_model(&d.write("m.json", MLP), &good_weights(&d)).unwrap();
    assert_eq!(g.num_classes(), 2);
    assert_eq!(g.nodes.len(), 3);
}

#[test]
fn missing_tensor_names_file_and_tensor() {
    let d = Dir::new();
    let w = d.tensors(
        "w.safetensors",
        &[("0.weight", Dtype::F32, vec![3, 4], f32s(&[0.1; 12]))],
    );
    let e = err(load_model(&d.write("m.json", MLP), &w));
    assert!(
        e.contains("w.safetensors") && e.contains("\"0.bias\"") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn shape_mismatch_says_expected_and_found() {
    let d = Dir::new();
    let w = d.tensors(
        "w.safetensors",
        &[
            ("0.weight", Dtype::F32, vec![3, 5], f32s(&[0.1; 15])),
            ("0.bias", Dtype::F32, vec![3], f32s(&[0.0; 3])),
            ("2.weight", Dtype::F32, vec![2, 3], f32s(&[0.2; 6])),
        ],
    );
    let e = err(load_model(&d.write("m.json", MLP), &w));
    assert!(
        e.contains("fc1") && e.contains("[out, 4]") && e.contains("[3, 5]"),
        "{e}"
    );
}

#[test]
fn unknown_op_is_named() {
    let d = Dir::new();
    let spec = MLP.replace("\"relu\"}", "\"swish\"}");
    let e = err(load_model(&d.write("m.json", &spec), &good_weights(&d)));
    assert!(
        e.contains("relu") && e.contains("unknown op \"swish\""),
        "{e}"
    );
}

#[test]
fn unsupported_dtype_and_nan_are_reported() {
    let d = Dir::new();
    let w = d.tensors(
        "w.safetensors",
        &[
            ("0.weight", Dtype::I32, vec![3, 4], vec![0; 48]),
            ("0.bias", Dtype::F32, vec![3], f32s(&[0.0; 3])),
            ("2.weight", Dtype::F32, vec![2, 3], f32s(&[0.2; 6])),
        ],
    );
    let e = err(load_model(&d.write("m.json", MLP), &w));
    assert!(
        e.contains("0.weight") && e.contains("unsupported dtype I32"),
        "{e}"
    );
    let mut bad = vec![0.1f32; 12];
    bad[7] = f32::NAN;
    let w = d.tensors(
        "n.safetensors",
        &[
            ("0.weight", Dtype::F32, vec![3, 4], f32s(&bad)),
            ("0.bias", Dtype::F32, vec![3], f32s(&[0.0; 3])),
            ("2.weight", Dtype::F32, vec![2, 3], f32s(&[0.2; 6])),
        ],
    );
    let e = err(load_model(&d.write("m.json", MLP), &w));
    assert!(
        e.contains("n.safetensors")
            && e.contains("0.weight")
            && e.contains("not finite")
            && e.contains("index 7"),
        "{e}"
    );
}

#[test]
fn f16_and_bf16_weights_convert_to_f32() {
    let d = Dir::new();
    let h = |v: f32| half::f16::from_f32(v).to_le_bytes();
    let b = |v: f32| half::bf16::from_f32(v).to_le_bytes();
    let w = d.tensors(
        "w.safetensors",
        &[
            (
                "0.weight",
                Dtype::F16,
                vec![3, 4],
                (0..12).flat_map(|i| h(i as f32 * 0.25)).collect(),
            ),
            (
                "0.bias",
                Dtype::BF16,
                vec![3],
                (0..3).flat_map(|i| b(i as f32 * 0.5)).collect(),
            ),
            ("2.weight", Dtype::F32, vec![2, 3], f32s(&[0.2; 6])),
        ],
    );
    let g = load_model(&d.write("m.json", MLP), &w).unwrap();
    let nshap_model::Op::Linear(l) = &g.nodes[0].op else {
        panic!()
    };
    assert_eq!(l.weight[5], 1.25);
    assert_eq!(l.bias, vec![0.0, 0.5, 1.0]);
}

#[test]
fn truncated_and_garbage_files_are_rejected() {
    let d = Dir::new();
    let good = std::fs::read(good_weights(&d)).unwrap();
    let p = d.path("t.safetensors");
    std::fs::write(&p, &good[..good.len() - 5]).unwrap();
    let e = err(load_model(&d.write("m.json", MLP), &p));
    assert!(
        e.contains("t.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
    std::fs::write(&p, b"hello").unwrap();
    assert!(err(load_model(&d.write("m.json", MLP), &p)).contains("not a valid safetensors file"));
    let e = err(load_model(
        &d.write("m.json", MLP),
        Path::new("/nonexistent/w.safetensors"),
    ));
    assert!(e.contains("/nonexistent/w.safetensors"), "{e}");
}

#[test]
fn spec_errors_name_the_field() {
    let d = Dir::new();
    let w = good_weights(&d);
    let e = err(load_model(&d.write("m.json", "{not json"), &w));
    assert!(
        e.contains("m.json") && e.contains("invalid spec JSON"),
        "{e}"
    );
    let e = err(load_model(
        &d.write("m.json", &MLP.replace("nshap.model.v1", "v0")),
        &w,
    ));
    assert!(e.contains("\"format\"") && e.contains("v0"), "{e}");
    let e = err(load_model(
        &d.write(
            "m.json",
            &MLP.replace("\"bias\": \"0.bias\"", "\"bais\": \"0.bias\""),
        ),
        &w,
    ));
    assert!(e.contains("bais"), "{e}");
    let e = err(load_model(
        &d.write("m.json", &MLP.replace("[4]", "[4, 4]")),
        &w,
    ));
    assert!(e.contains("\"input\""), "{e}");
    let add = r#"{"format": "nshap.model.v1", "input": [4], "nodes": [
        {"name": "a", "op": "add", "inputs": ["input", "ghost"]}]}"#;
    let e = err(load_model(&d.write("m.json", add), &w));
    assert!(e.contains("\"ghost\"") && e.contains("earlier node"), "{e}");
}

#[test]
fn eval_set_errors() {
    let d = Dir::new();
    let g = load_model(&d.write("m.json", MLP), &good_weights(&d)).unwrap();
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let data = d.tensors(
        "d.safetensors",
        &[
            ("inputs", Dtype::F32, vec![2, 4], f32s(&[0.5; 8])),
            ("labels", Dtype::I64, vec![2], i64s(&[1, 2])),
        ],
    );
    let e = err(load_eval_set(&data, &g, &DataOptions::default()));
    assert!(
        e.contains("d.safetensors")
            && e.contains("labels")
            && e.contains("label 2")
            && e.contains("2 classes"),
        "{e}"
    );
    let data = d.tensors(
        "s.safetensors",
        &[
            ("inputs", Dtype::F32, vec![2, 5], f32s(&[0.5; 10])),
            ("labels", Dtype::I64, vec![2], i64s(&[1, 0])),
        ],
    );
    let e = err(load_eval_set(&data, &g, &DataOptions::default()));
    assert!(
        e.contains("inputs") && e.contains("[N, 4]") && e.contains("[2, 5]"),
        "{e}"
    );
    let data = d.tensors(
        "u.safetensors",
        &[
            ("x", Dtype::U8, vec![2, 4], vec![255; 8]),
            ("y", Dtype::U8, vec![2], vec![1, 0]),
        ],
    );
    let opts = DataOptions {
        inputs: "x".into(),
        labels: "y".into(),
        ..DataOptions::default()
    };
    let set = load_eval_set(&data, &g, &opts).unwrap();
    assert_eq!(set.inputs[0], 1.0);
    let e = err(load_eval_set(&data, &g, &DataOptions::default()));
    assert!(e.contains("\"inputs\"") && e.contains("missing"), "{e}");
}

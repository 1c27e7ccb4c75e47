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

use nshap_model::load::{
    data_input_shape, fit_preprocess, load_model_with, load_spec_with, LoadOptions,
};
use nshap_model::spec::Preprocess;

#[test]
fn pytorch_pickles_get_the_conversion_line() {
    let d = Dir::new();
    let spec = d.write("m.json", MLP);
    // torch.save's zip format (PyTorch >= 1.6) and the legacy pickle (protocol byte 0x80).
    for (name, bytes) in [
        (
            "w.pt",
            b"PK\x03\x04\x00\x00\x08\x00archive/data.pkl".to_vec(),
        ),
        (
            "w.pth",
            vec![0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9],
        ),
    ] {
        let p = d.path(name);
        std::fs::write(&p, bytes).unwrap();
        let e = err(load_model(&spec, &p));
        let stem = p.with_extension("safetensors");
        assert!(
            e.contains("PyTorch pickle")
                && e.contains(&format!(
                    "torch.load('{}', map_location='cpu')",
                    p.display()
                ))
                && e.contains("save_file(torch.load(")
                && e.contains(&format!("'{}'", stem.display()))
                && e.contains("model.state_dict()")
                && !e.contains('\n'),
            "{e}"
        );
        // The same for an eval set given as a pickle.
        let g = load_model(&spec, &good_weights(&d)).unwrap();
        let e = err(load_eval_set(&p, &g, &DataOptions::default()));
        assert!(e.contains("PyTorch pickle"), "{e}");
    }
}

#[test]
fn a_directory_where_a_file_is_expected_says_what_it_holds() {
    let d = Dir::new();
    let model_dir = d.path("digits");
    std::fs::create_dir(&model_dir).unwrap();
    std::fs::write(model_dir.join("model.json"), MLP).unwrap();
    std::fs::copy(good_weights(&d), model_dir.join("weights.safetensors")).unwrap();
    let e = err(load_model(&model_dir.join("model.json"), &model_dir));
    assert!(
        e.contains("is a directory")
            && e.contains("model.json")
            && e.contains("weights.safetensors"),
        "{e}"
    );
    let e = err(load_model(
        &model_dir,
        &model_dir.join("weights.safetensors"),
    ));
    assert!(
        e.contains("is a directory") && e.contains("model.json"),
        "{e}"
    );
    let empty = d.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = err(load_model(&d.write("m.json", MLP), &empty));
    assert!(e.contains("is a directory, not a file"), "{e}");
}

fn prefixed_weights(dir: &Dir, name: &str, prefix: &str) -> PathBuf {
    dir.tensors(
        name,
        &[
            (
                &format!("{prefix}0.weight"),
                Dtype::F32,
                vec![3, 4],
                f32s(&[0.1; 12]),
            ),
            (
                &format!("{prefix}0.bias"),
                Dtype::F32,
                vec![3],
                f32s(&[0.0; 3]),
            ),
            (
                &format!("{prefix}2.weight"),
                Dtype::F32,
                vec![2, 3],
                f32s(&[0.2; 6]),
            ),
        ],
    )
}

#[test]
fn a_data_parallel_prefix_is_read_through_with_a_warning() {
    let d = Dir::new();
    let spec = d.write("m.json", MLP);
    for prefix in ["module.", "_orig_mod."] {
        let w = prefixed_weights(&d, "dp.safetensors", prefix);
        let plain = load_model(&spec, &good_weights(&d)).unwrap();
        let g = load_model(&spec, &w).unwrap();
        let (nshap_model::Op::Linear(a), nshap_model::Op::Linear(b)) =
            (&plain.nodes[0].op, &g.nodes[0].op)
        else {
            panic!()
        };
        assert_eq!(a.weight, b.weight);
        let loaded = load_model_with(&spec, &w, &LoadOptions::default()).unwrap();
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        let warning = &loaded.warnings[0];
        assert!(
            warning.contains(&format!("{prefix:?}"))
                && warning.contains("DataParallel")
                && warning.contains("removeprefix"),
            "{warning}"
        );
    }
    // Only some names prefixed: no silent fallback, but the error says what happened.
    let w = d.tensors(
        "mixed.safetensors",
        &[
            ("module.0.weight", Dtype::F32, vec![3, 4], f32s(&[0.1; 12])),
            ("module.0.bias", Dtype::F32, vec![3], f32s(&[0.0; 3])),
            ("2.weight", Dtype::F32, vec![2, 3], f32s(&[0.2; 6])),
        ],
    );
    let e = err(load_model(&spec, &w));
    assert!(
        e.contains("\"0.weight\"") && e.contains("module.0.weight") && e.contains("prefix"),
        "{e}"
    );
}

#[test]
fn tensors_the_spec_never_reads_are_warned_about() {
    let d = Dir::new();
    let spec = d.write("m.json", MLP);
    let mut tensors = vec![
        ("0.weight", Dtype::F32, vec![3, 4], f32s(&[0.1; 12])),
        ("0.bias", Dtype::F32, vec![3], f32s(&[0.0; 3])),
        ("2.weight", Dtype::F32, vec![2, 3], f32s(&[0.2; 6])),
        // fc2 in the spec has no "bias": a forgotten field.
        ("2.bias", Dtype::F32, vec![2], f32s(&[0.5; 2])),
        ("bn.num_batches_tracked", Dtype::I64, vec![], vec![0; 8]),
    ];
    let w = d.tensors("w.safetensors", &tensors);
    let loaded = load_model_with(&spec, &w, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let warning = &loaded.warnings[0];
    assert!(
        warning.contains("1 tensor(s) the spec never reads: 2.bias")
            && warning.contains("forgotten bias")
            && warning.contains("node \"fc2\"")
            && !warning.contains("num_batches_tracked"),
        "{warning}"
    );
    // Many unread tensors: the first few and a count.
    let names: Vec<String> = (0..9).map(|i| format!("aux.{i}.weight")).collect();
    for n in &names {
        tensors.push((n.as_str(), Dtype::F32, vec![1], f32s(&[0.0])));
    }
    let w = d.tensors("many.safetensors", &tensors);
    let loaded = load_model_with(&spec, &w, &LoadOptions::default()).unwrap();
    let warning = &loaded.warnings[0];
    assert!(
        warning.contains("10 tensor(s)") && warning.contains("(5 more)"),
        "{warning}"
    );
    // A model that reads everything: no warning.
    let loaded = load_model_with(&spec, &good_weights(&d), &LoadOptions::default()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn missing_data_tensors_list_what_the_file_has() {
    let d = Dir::new();
    let g = load_model(&d.write("m.json", MLP), &good_weights(&d)).unwrap();
    let data = d.tensors(
        "d.safetensors",
        &[
            ("images", Dtype::F32, vec![2, 4], f32s(&[0.5; 8])),
            ("targets", Dtype::I64, vec![2], vec![0; 16]),
        ],
    );
    let e = err(load_eval_set(&data, &g, &DataOptions::default()));
    assert!(
        e.contains("d.safetensors")
            && e.contains("\"inputs\"")
            && e.contains("missing")
            && e.contains("images F32 [2, 4]")
            && e.contains("targets I64 [2]")
            && e.contains("--inputs-name"),
        "{e}"
    );
    let opts = DataOptions {
        inputs: "images".into(),
        ..DataOptions::default()
    };
    let e = err(load_eval_set(&data, &g, &opts));
    assert!(e.contains("\"labels\"") && e.contains("targets"), "{e}");
    assert_eq!(data_input_shape(&data, "images").unwrap(), vec![4]);
    assert!(err(data_input_shape(&data, "inputs")).contains("images F32 [2, 4]"));
}

const CNN: &str = r#"{"format": "nshap.model.v1", "input": [3, 2, 2],
  "nodes": [{"name": "conv", "op": "conv2d", "weight": "c.weight"},
            {"name": "relu", "op": "relu"},
            {"name": "flat", "op": "flatten"},
            {"name": "fc", "op": "linear", "weight": "fc.weight"}]}"#;

fn cnn_weights(d: &Dir) -> PathBuf {
    d.tensors(
        "cnn.safetensors",
        &[
            ("c.weight", Dtype::F32, vec![2, 3, 1, 1], f32s(&[0.3; 6])),
            ("fc.weight", Dtype::F32, vec![2, 8], f32s(&[0.1; 16])),
        ],
    )
}

#[test]
fn channels_last_images_get_a_hint() {
    let d = Dir::new();
    let g = load_model(&d.write("c.json", CNN), &cnn_weights(&d)).unwrap();
    let data = d.tensors(
        "nhwc.safetensors",
        &[
            ("inputs", Dtype::U8, vec![5, 2, 2, 3], vec![7; 60]),
            ("labels", Dtype::U8, vec![5], vec![1; 5]),
        ],
    );
    let e = err(load_eval_set(&data, &g, &DataOptions::default()));
    assert!(
        e.contains("[N, 3, 2, 2]")
            && e.contains("[5, 2, 2, 3]")
            && e.contains("permute(0, 3, 1, 2)"),
        "{e}"
    );
}

#[test]
fn normalisation_becomes_the_first_node_and_is_checked_against_the_channels() {
    let d = Dir::new();
    let spec = nshap_model::ModelSpec::parse(CNN, Path::new("c.json")).unwrap();
    let imagenet = Preprocess {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    };
    let options = LoadOptions {
        preprocess: Some(imagenet.clone()),
    };
    let loaded = load_spec_with(spec.clone(), &cnn_weights(&d), &options).unwrap();
    let g = &loaded.graph;
    assert_eq!(g.nodes[0].name, "preprocess");
    let nshap_model::Op::BatchNorm(bn) = &g.nodes[0].op else {
        panic!()
    };
    assert!((bn.scale[2] - 1.0 / 0.225).abs() < 1e-5);
    assert!((bn.shift[0] + 0.485 / 0.229).abs() < 1e-5);
    assert_eq!(loaded.spec.preprocess.as_ref(), Some(&imagenet));
    // u8 images: scaled by 1/255 at load; the graph then normalises them.
    let data = d.tensors(
        "u8.safetensors",
        &[
            ("inputs", Dtype::U8, vec![1, 3, 2, 2], vec![255; 12]),
            ("labels", Dtype::U8, vec![1], vec![0]),
        ],
    );
    let set = load_eval_set(&data, g, &DataOptions::default()).unwrap();
    assert_eq!(set.inputs[0], 1.0);
    // One mean/std serves every channel, as torchvision's Normalize broadcasts it.
    let one = Preprocess {
        mean: vec![0.5],
        std: vec![0.25],
    };
    let fitted = fit_preprocess(&one, &[3, 2, 2]).unwrap();
    assert_eq!(fitted.mean, vec![0.5; 3]);
    // Anything else that does not fit the channels: one clear line.
    let two = Preprocess {
        mean: vec![0.5, 0.5],
        std: vec![0.2, 0.2],
    };
    let e = err(load_spec_with(
        spec.clone(),
        &cnn_weights(&d),
        &LoadOptions {
            preprocess: Some(two),
        },
    ));
    assert!(
        e.contains("2 means and stds")
            && e.contains("[3, 2, 2]")
            && e.contains("3 channel")
            && !e.contains('\n'),
        "{e}"
    );
    let uneven = Preprocess {
        mean: vec![0.5, 0.5, 0.5],
        std: vec![0.2],
    };
    let e = err(fit_preprocess(&uneven, &[3, 2, 2]));
    assert!(e.contains("3 mean(s) but 1 std(s)"), "{e}");
    let zero = Preprocess {
        mean: vec![0.5; 3],
        std: vec![0.2, 0.0, 0.2],
    };
    assert!(err(fit_preprocess(&zero, &[3, 2, 2])).contains("positive"));
}

#[test]
fn swapped_spec_and_weights_are_named() {
    let d = Dir::new();
    let spec = d.write("m.json", MLP);
    let w = good_weights(&d);
    let e = err(load_model(&w, &spec));
    assert!(
        e.contains("w.safetensors") && e.contains("safetensors file, not a JSON spec"),
        "{e}"
    );
    let e = err(load_model(&spec, &spec));
    assert!(
        e.contains("this is JSON, not safetensors") && e.contains("--model"),
        "{e}"
    );
    let pt = d.path("model.pt");
    std::fs::write(&pt, b"PK\x03\x04\x00\x00").unwrap();
    let e = err(load_model(&pt, &w));
    assert!(
        e.contains("PyTorch pickle") && e.contains("JSON spec"),
        "{e}"
    );
}

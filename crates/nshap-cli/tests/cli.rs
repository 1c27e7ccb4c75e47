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

/// values.csv's header for intervals of this stem.
fn values_header(stem: &str) -> String {
    format!("node,index,value,stderr,{stem}_low,{stem}_high,samples,status")
}

/// The interval stem of a run's values.csv (`ci95`, `eb80`, `pac80`, ...).
fn values_stem(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("values.csv")).unwrap();
    let header = text.lines().next().unwrap().to_string();
    let stem = header.split(',').nth(4).unwrap().trim_end_matches("_low");
    assert_eq!(header, values_header(stem));
    stem.to_string()
}

fn read_values(dir: &Path) -> Vec<(String, usize, f64)> {
    values_stem(dir);
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
    assert_eq!(values_stem(&exact), "interval");
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

// ---- Real PyTorch models as users bring them -------------------------------------------------

use nshap::model::tensors::TensorFile;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Write tensors `(name, dtype, shape, bytes)` as safetensors.
fn write_tensors(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Every tensor of a safetensors file, renamed by `rename` (None drops it).
fn copy_tensors(
    from: &Path,
    rename: impl Fn(&str) -> Option<String>,
) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let file = TensorFile::open(from).unwrap();
    file.names()
        .into_iter()
        .filter_map(|n| {
            let (d, s, b) = file.raw(&n).unwrap();
            rename(&n).map(|m| (m, d, s, b))
        })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read_f32(path: &Path, name: &str) -> (Vec<f32>, Vec<usize>) {
    TensorFile::open(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .f32(name, None)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ok(args: &[&str]) -> (String, String) {
    let o = nshap(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "nshap {}: {err}", args.join(" "));
    (out, err)
}

fn tiny_resnet18(file: &str) -> String {
    repo()
        .join("tests/fixtures/tiny_resnet18")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn tired_user_mistakes_get_one_clear_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let spec = asset("digits-cnn", "model.json");
    let weights = asset("digits-cnn", "weights.safetensors");
    let data = asset("digits-cnn", "eval.safetensors");
    // torch.save output given as weights: zip (PyTorch >= 1.6) and the legacy pickle.
    std::fs::write(d("w.pt"), b"PK\x03\x04\x14\x00\x00\x00archive/data.pkl").unwrap();
    std::fs::write(d("w.pth"), [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46]).unwrap();
    for w in ["w.pt", "w.pth"] {
        let o = nshap(&["inspect", "--model", &spec, "--weights", &d(w)]);
        let torch_load = format!("torch.load('{}', map_location='cpu')", d(w));
        assert_one_line_error(
            &o,
            &[
                "PyTorch pickle",
                "import torch; from safetensors.torch import save_file; save_file(",
                &torch_load,
                &d("w.safetensors"),
                "model.state_dict()",
            ],
        );
    }
    // --model and --weights swapped.
    let o = nshap(&["inspect", "--model", &weights, "--weights", &spec]);
    assert_one_line_error(&o, &["safetensors file, not a JSON spec", "--weights"]);
    let o = nshap(&["inspect", "--model", &spec, "--weights", &spec]);
    assert_one_line_error(&o, &["this is JSON, not safetensors", "--model"]);
    // A directory where a file is expected: which flags to pass.
    let asset_dir = repo().join("assets/digits-cnn");
    let adir = asset_dir.to_string_lossy().into_owned();
    let files = [
        format!("--model {adir}/model.json"),
        format!("--weights {adir}/weights.safetensors"),
    ];
    for args in [
        vec!["inspect", "--model", &spec, "--weights", &adir],
        vec!["inspect", "--model", &adir, "--weights", &weights],
        vec![
            "inspect",
            "--model",
            &spec,
            "--weights",
            &weights,
            "--data",
            &adir,
        ],
    ] {
        assert_one_line_error(&nshap(&args), &["is a directory", &files[0], &files[1]]);
    }
    // An eval set with other tensor names: what the file does have.
    let x = vec![0u8; 2 * 64];
    write_tensors(
        &dir.path().join("d.safetensors"),
        &[
            ("images".into(), Dtype::U8, vec![2, 1, 8, 8], x),
            ("targets".into(), Dtype::I64, vec![2], vec![0; 16]),
        ],
    );
    let o = nshap(&[
        "inspect",
        "--model",
        &spec,
        "--weights",
        &weights,
        "--data",
        &d("d.safetensors"),
    ]);
    assert_one_line_error(
        &o,
        &[
            "\"inputs\"",
            "missing",
            "images U8 [2, 1, 8, 8]",
            "targets I64 [2]",
            "--inputs-name",
        ],
    );
    // --normalize that does not fit the input channels, or does not parse.
    let (w18, d18) = (
        tiny_resnet18("weights.safetensors"),
        tiny_resnet18("data.safetensors"),
    );
    let base = [
        "inspect",
        "--arch",
        "resnet18",
        "--weights",
        &w18,
        "--data",
        &d18,
    ];
    let o = nshap(&[&base[..], &["--normalize", "0.5,0.5/0.2,0.2"]].concat());
    assert_one_line_error(
        &o,
        &["--normalize 0.5,0.5/0.2,0.2", "[3, 32, 32]", "3 channel"],
    );
    let o = nshap(&[&base[..], &["--normalize", "0.5,0.5,0.5"]].concat());
    assert_one_line_error(&o, &["--normalize", "MEAN/STD", "imagenet"]);
    let o = nshap(&[&base[..], &["--normalize", "0.5/0"]].concat());
    assert_one_line_error(&o, &["--normalize", "positive"]);
    // Player patterns that match nothing; unknown names in a 69-node graph: the closest only.
    let o = nshap(&[&base[..], &["--players", "layer9.*"]].concat());
    assert_one_line_error(&o, &["\"layer9.*\"", "matches no node", "closest"]);
    let o = nshap(&[&base[..], &["--players", "layer3.0.relu"]].concat());
    assert_one_line_error(
        &o,
        &[
            "unknown node \"layer3.0.relu\"",
            "layer3.0.relu1",
            "69 nodes",
        ],
    );
    assert!(!String::from_utf8_lossy(&o.stderr).contains("layer1.0.bn2"));
    let out = dir.path().join("run");
    let o = nshap(&as_strs(&run_args(
        "digits-cnn",
        &out,
        &["--players", "linear:*"],
    )));
    assert_one_line_error(&o, &["\"linear:*\"", "fc", "output node"]);
    let o = nshap(&[
        "inspect",
        "--model",
        &spec,
        "--weights",
        &weights,
        "--data",
        &data,
        "--players",
        "batchnorm2d:*,bogus:*",
    ]);
    assert_one_line_error(&o, &["unknown op kind \"bogus\""]);
}

#[test]
fn a_data_parallel_prefix_and_unread_tensors_are_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let spec = asset("digits-cnn", "model.json");
    let weights = asset("digits-cnn", "weights.safetensors");
    let data = asset("digits-cnn", "eval.safetensors");
    let dp = dir.path().join("dp.safetensors");
    write_tensors(
        &dp,
        &copy_tensors(Path::new(&weights), |n| Some(format!("module.{n}"))),
    );
    let (out, err) = ok(&[
        "inspect",
        "--model",
        &spec,
        "--weights",
        dp.to_str().unwrap(),
        "--data",
        &data,
    ]);
    assert!(out.contains("accuracy = 0.9980"), "{out}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("\"module.\"") && warnings[0].contains("DataParallel"),
        "{err}"
    );
    // The spec forgot fc's bias, and the file holds an extra tensor.
    let mut tensors = copy_tensors(Path::new(&weights), |n| Some(n.to_owned()));
    tensors.push((
        "aux_head.weight".into(),
        Dtype::F32,
        vec![2],
        f32_bytes(&[0.0, 1.0]),
    ));
    let extra = dir.path().join("extra.safetensors");
    write_tensors(&extra, &tensors);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace(r#", "bias": "fc.bias""#, "");
    assert!(!text.contains("fc.bias"));
    let nobias = dir.path().join("nobias.json");
    std::fs::write(&nobias, text).unwrap();
    let (_, err) = ok(&[
        "inspect",
        "--model",
        nobias.to_str().unwrap(),
        "--weights",
        extra.to_str().unwrap(),
    ]);
    assert!(
        err.contains("warning: ")
            && err.contains("2 tensor(s) the spec never reads: aux_head.weight, fc.bias")
            && err.contains("forgotten bias? node \"fc\""),
        "{err}"
    );
}

#[test]
fn a_spec_with_an_unknown_op_and_a_misplaced_field_reports_both() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(asset("digits-cnn", "model.json")).unwrap();
    let text = text
        .replace(r#""op": "relu"}"#, r#""op": "swish"}"#)
        .replace(r#""kernel": 2"#, r#""kernel": 2, "eps": 0.001"#);
    assert!(text.contains("swish") && text.contains("\"eps\": 0.001"));
    let spec = dir.path().join("bad.json");
    std::fs::write(&spec, text).unwrap();
    for command in ["inspect", "run"] {
        let mut args = vec![
            command.to_string(),
            "--model".into(),
            spec.to_string_lossy().into_owned(),
            "--weights".into(),
            asset("digits-cnn", "weights.safetensors"),
        ];
        if command == "run" {
            args.extend(["--data".into(), asset("digits-cnn", "eval.safetensors")]);
            args.extend([
                "--players".into(),
                "relu2".into(),
                "--backend".into(),
                "cpu".into(),
            ]);
            args.extend([
                "--out".into(),
                dir.path().join("out").to_string_lossy().into_owned(),
            ]);
        }
        let o = nshap(&as_strs(&args));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.starts_with("error: "), "{err}");
        for needle in [
            "relu1",
            "unknown op \"swish\"",
            "relu2",
            "pool",
            "eps",
            "maxpool2d",
        ] {
            assert!(err.contains(needle), "{needle:?} missing in: {err}");
        }
        assert!(err.contains("problems"), "{err}");
    }
}

/// The logits the fixtures were generated with (case 0, row 0: every player present).
fn fixture_logits(dir: &Path) -> Vec<f32> {
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let file = dir.join(cases[0]["file"].as_str().unwrap());
    let masks = TensorFile::open(&file).unwrap().raw("masks").unwrap();
    assert!(
        masks.2[..masks.1[1]].iter().all(|&b| b == 1),
        "row 0 is all ones"
    );
    let (logits, shape) = read_f32(&file, "logits");
    logits[..shape[1] * shape[2]].to_vec()
}

/// The fixture folders: the hand-made models, and the op models when they have been generated.
fn fixture_dirs() -> Vec<std::path::PathBuf> {
    let root = repo().join("tests/fixtures");
    let mut dirs: Vec<_> = ["mlp", "cnn", "resnet", "tiny_resnet18"]
        .iter()
        .map(|m| root.join(m))
        .collect();
    if let Ok(entries) = std::fs::read_dir(root.join("ops")) {
        let mut ops: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("cases.json").exists())
            .collect();
        ops.sort();
        dirs.extend(ops);
    }
    dirs
}

/// Backends the binary can use here: the CPU, and a GPU when an adapter exists (required with
/// NSHAP_REQUIRE_GPU=1).
fn logits_backends(probe: &[&str]) -> Vec<&'static str> {
    let o = nshap(&[probe, &["--backend", "gpu"]].concat());
    if o.status.success() {
        return vec!["cpu", "gpu"];
    }
    let err = String::from_utf8_lossy(&o.stderr);
    if std::env::var("NSHAP_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("NSHAP_REQUIRE_GPU=1 but nshap logits --backend gpu failed: {err}");
    }
    eprintln!("SKIPPED the GPU half of nshap logits: {err}");
    vec!["cpu"]
}

#[test]
fn logits_match_the_pytorch_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let mut probe_done = None;
    for dir in fixture_dirs() {
        let out = tmp.path().join("logits.safetensors");
        let (w, data) = (
            dir.join("weights.safetensors"),
            dir.join("data.safetensors"),
        );
        let mut args: Vec<String> = vec!["logits".into()];
        if dir.join("model.json").exists() {
            args.extend([
                "--model".into(),
                dir.join("model.json").to_string_lossy().into_owned(),
            ]);
        } else {
            // tiny_resnet18: --arch with 32x32 data and no --input.
            args.extend(["--arch".into(), "resnet18".into()]);
        }
        args.extend([
            "--weights".into(),
            w.to_string_lossy().into_owned(),
            "--data".into(),
            data.to_string_lossy().into_owned(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
        ]);
        let backends = probe_done
            .get_or_insert_with(|| logits_backends(&as_strs(&args)))
            .clone();
        let want = fixture_logits(&dir);
        for backend in backends {
            let mut a = args.clone();
            a.extend(["--backend".into(), backend.into()]);
            let (_, err) = ok(&as_strs(&a));
            assert!(err.contains(&format!("backend {backend}")), "{err}");
            let (got, shape) = read_f32(&out, "logits");
            let n = TensorFile::open(&data).unwrap().shape("inputs").unwrap()[0];
            assert_eq!(shape, vec![n, want.len() / n], "{}", dir.display());
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let tol = (1e-4 * (w.abs() + scale)).max(1e-4);
                assert!(
                    (g - w).abs() <= tol,
                    "{} {backend}: logit {i}: nshap {g}, PyTorch {w}",
                    dir.display()
                );
            }
        }
    }
}

/// u8 images with --normalize give the logits of the same images as normalised floats; a file
/// without labels is fine for logits; `imagenet` is torchvision's constants.
#[test]
fn normalize_on_u8_images_equals_normalised_float_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |f: &str| tmp.path().join(f).to_string_lossy().into_owned();
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let n = 6;
    let pixels: Vec<u8> = (0..n * 3 * 32 * 32)
        .map(|i| ((i * 37 + i / 97) % 256) as u8)
        .collect();
    let floats: Vec<f32> = pixels
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / (32 * 32)) % 3;
            (v as f32 / 255.0 - mean[c]) / std[c]
        })
        .collect();
    write_tensors(
        &tmp.path().join("u8.safetensors"),
        &[("inputs".into(), Dtype::U8, vec![n, 3, 32, 32], pixels)],
    );
    write_tensors(
        &tmp.path().join("f32.safetensors"),
        &[(
            "x".into(),
            Dtype::F32,
            vec![n, 3, 32, 32],
            f32_bytes(&floats),
        )],
    );
    let w = tiny_resnet18("weights.safetensors");
    let base = [
        "logits",
        "--arch",
        "resnet18",
        "--weights",
        &w,
        "--backend",
        "cpu",
    ];
    let (_, err) = ok(&[
        &base[..],
        &[
            "--data",
            &p("u8.safetensors"),
            "--normalize",
            "imagenet",
            "--out",
            &p("a.safetensors"),
        ],
    ]
    .concat());
    assert!(err.contains("input 3,32,32 from the eval data"), "{err}");
    ok(&[
        &base[..],
        &[
            "--data",
            &p("u8.safetensors"),
            "--normalize",
            "0.485,0.456,0.406/0.229,0.224,0.225",
            "--out",
            &p("b.safetensors"),
        ],
    ]
    .concat());
    ok(&[
        &base[..],
        &[
            "--data",
            &p("f32.safetensors"),
            "--inputs-name",
            "x",
            "--out",
            &p("c.safetensors"),
        ],
    ]
    .concat());
    let a = read_f32(Path::new(&p("a.safetensors")), "logits").0;
    let b = read_f32(Path::new(&p("b.safetensors")), "logits").0;
    let c = read_f32(Path::new(&p("c.safetensors")), "logits").0;
    assert_eq!(a, b);
    assert_eq!(a.len(), n * 10);
    for (x, y) in a.iter().zip(&c) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
    }
    // Normalised data normalised again: a warning, not silence.
    let (_, err) = ok(&[
        &base[..],
        &[
            "--data",
            &p("f32.safetensors"),
            "--inputs-name",
            "x",
            "--normalize",
            "imagenet",
            "--out",
            &p("d.safetensors"),
        ],
    ]
    .concat());
    assert!(
        err.contains("warning: ") && err.contains("normalised twice"),
        "{err}"
    );
}

#[test]
fn player_patterns_work_in_inspect_and_run() {
    let spec = asset("digits-resnet", "model.json");
    let weights = asset("digits-resnet", "weights.safetensors");
    let (out, _) = ok(&[
        "inspect",
        "--model",
        &spec,
        "--weights",
        &weights,
        "--players",
        "layer*.relu2,conv:layer2.*,filters",
    ]);
    let selection: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("--players"))
        .take_while(|l| !l.is_empty())
        .collect();
    // Then how the CPU backend computes each conv and linear layer reading the players.
    assert!(
        out.contains("CPU backend, layers reading the players")
            && out.contains("layer1.0.conv1 (conv2d): table"),
        "{out}"
    );
    // And the GPU backend's fast paths, which need no device to plan.
    assert!(
        out.contains("GPU backend, fast paths") && out.contains("layer1.0.conv1: table of"),
        "{out}"
    );
    let names: Vec<&str> = selection[2..selection.len() - 1]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "layer1.0.relu2",
            "layer2.0.relu2",
            "layer2.0.conv1",
            "layer2.0.conv2",
            "layer2.0.downsample.0",
            "conv1",
            "layer1.0.conv1",
            "layer1.0.conv2"
        ],
        "{out}"
    );
    assert!(selection.last().unwrap().starts_with("total: "), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = nshap(&as_strs(&run_args(
        "digits-resnet",
        &run,
        &[
            "--players",
            "relu:layer1.*",
            "--method",
            "loo",
            "--top-k",
            "3",
        ],
    )));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("players in 2 layers (relu:layer1.*)"), "{err}");
    let nodes: std::collections::BTreeSet<String> =
        read_values(&run).into_iter().map(|r| r.0).collect();
    assert_eq!(
        nodes.into_iter().collect::<Vec<_>>(),
        ["layer1.0.relu1", "layer1.0.relu2"]
    );
}

/// 94 parallel convs of the input (93 x 183 + 197 = 17,216 channels, Inception-v3's player
/// count), concatenated, pooled and classified. Returns (spec, weights, data).
fn wide_model(dir: &Path) -> (String, String, String) {
    let mut nodes = Vec::new();
    let mut tensors = Vec::new();
    let mut cat = Vec::new();
    let mut state = 1u32;
    let mut uniform = move || {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    for i in 0..94 {
        let c = if i == 93 { 197 } else { 183 };
        let name = format!("Mixed_{i}.branch.conv");
        nodes.push(format!(
            r#"{{"name": "{name}", "op": "conv2d", "weight": "{name}.weight", "inputs": ["input"]}}"#
        ));
        nodes.push(format!(
            r#"{{"name": "Mixed_{i}.branch.relu", "op": "relu"}}"#
        ));
        let w: Vec<f32> = (0..c * 3).map(|_| uniform()).collect();
        tensors.push((
            format!("{name}.weight"),
            Dtype::F32,
            vec![c, 3, 1, 1],
            f32_bytes(&w),
        ));
        cat.push(format!("\"Mixed_{i}.branch.relu\""));
    }
    nodes.push(format!(
        r#"{{"name": "cat", "op": "concat", "inputs": [{}]}}"#,
        cat.join(", ")
    ));
    nodes.push(r#"{"name": "pool", "op": "global_avgpool"}"#.into());
    nodes.push(r#"{"name": "flatten", "op": "flatten"}"#.into());
    nodes
        .push(r#"{"name": "fc", "op": "linear", "weight": "fc.weight", "bias": "fc.bias"}"#.into());
    let fc: Vec<f32> = (0..10 * 17_216).map(|_| uniform() * 0.1).collect();
    tensors.push((
        "fc.weight".into(),
        Dtype::F32,
        vec![10, 17_216],
        f32_bytes(&fc),
    ));
    tensors.push((
        "fc.bias".into(),
        Dtype::F32,
        vec![10],
        f32_bytes(&[0.0; 10]),
    ));
    let spec = dir.join("wide.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"format": "nshap.model.v1", "input": [3, 2, 2], "nodes": [{}]}}"#,
            nodes.join(",\n")
        ),
    )
    .unwrap();
    let weights = dir.join("wide.safetensors");
    write_tensors(&weights, &tensors);
    let n = 16;
    let x: Vec<f32> = (0..n * 12).map(|_| uniform() + 0.5).collect();
    let labels: Vec<u8> = (0..n as u8).map(|i| i % 10).collect();
    let data = dir.join("wide-eval.safetensors");
    write_tensors(
        &data,
        &[
            ("inputs".into(), Dtype::F32, vec![n, 3, 2, 2], f32_bytes(&x)),
            ("labels".into(), Dtype::U8, vec![n], labels),
        ],
    );
    let s = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    (s(spec), s(weights), s(data))
}

/// 94 player layers and 17,216 players: resolved at once, and nothing prints 17k lines.
#[test]
fn ninety_four_layers_and_17216_players_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, weights, data) = wide_model(dir.path());
    let model = ["--model", &spec, "--weights", &weights, "--data", &data];
    let started = Instant::now();
    let (out, _) = ok(&[&["inspect"][..], &model, &["--players", "filters"]].concat());
    assert!(out.contains("total: 17216 players in 94 layers"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let run = dir.path().join("run");
    let run_s = run.to_string_lossy().into_owned();
    let (out, err) = ok(&[
        &["run"][..],
        &model,
        &[
            "--players",
            "filters",
            "--backend",
            "cpu",
            "--method",
            "loo",
            "--budget",
            "17217",
            "--examples-per-eval",
            "4",
            "--top-k",
            "40",
            "--out",
            &run_s,
        ],
    ]
    .concat());
    assert!(
        err.contains("17216 players in 94 layers (filters)"),
        "{err}"
    );
    // TMAB's walks run 32 side by side: at this size 600 evaluations give no player a value.
    let started = Instant::now();
    let o = nshap(
        &[
            &["run"][..],
            &model,
            &[
                "--players",
                "filters",
                "--backend",
                "cpu",
                "--method",
                "tmab",
            ],
            &["--budget", "600", "--out", &run_s, "--overwrite"],
        ]
        .concat(),
    );
    assert_one_line_error(&o, &["--budget 600 is too small", "17216 players", "17217"]);
    println!("budget check at 17216 players: {:?}", started.elapsed());
    assert!(err.lines().count() < 200, "{err}");
    assert!(err.lines().all(|l| l.len() < 400), "{err}");
    assert!(out.lines().count() <= 30, "{out}");
    assert!(out.contains("15 more of the top 40 in values.csv"), "{out}");
    assert_eq!(read_values(&run).len(), 17_216);
    let (out, _) = ok(&["report", &run_s]);
    assert!(out.lines().count() < 80, "{out}");
    assert!(
        out.contains("94 layers; the 30 with the largest total"),
        "{out}"
    );
    let layers = std::fs::read_to_string(run.join("layers.csv")).unwrap();
    let rows: Vec<&str> = layers.lines().collect();
    assert_eq!(rows.len(), 95);
    // In player order, not by name.
    assert!(
        rows[1].starts_with("Mixed_0.branch.conv,183,"),
        "{}",
        rows[1]
    );
    assert!(
        rows[94].starts_with("Mixed_93.branch.conv,197,"),
        "{}",
        rows[94]
    );
    // One readable figure, not 94 panels 300 px each.
    let png = std::fs::read(run.join("layers.png")).unwrap();
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert!(w <= 3200 && h <= 1200, "{w}x{h}");
}

// ---- Honest reports: budgets, certificates, interval names ----------------------------------

fn report_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// values.csv's status column, in file order.
fn statuses(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("values.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().to_string())
        .collect()
}

/// `--budget 10` on the demo CNN's 32 players gave all-zero values and exit 0; now each method
/// refuses before any work, naming the budget, the least that gives a value, and why.
#[test]
fn a_budget_too_small_for_any_value_is_an_error_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cases = [
        (
            "tmab",
            vec![
                "--budget 10 is too small",
                "at least 33",
                "permutation walk of 33",
            ],
        ),
        (
            "permutation",
            vec!["--budget 10 is too small", "at least 65", "its reverse"],
        ),
        (
            "cmcs",
            vec!["--budget 10 is too small", "at least 33", "its 32 flips"],
        ),
        ("loo", vec!["33", "the budget is 10"]),
    ];
    for (method, needles) in cases {
        let args = run_args(
            "digits-cnn",
            &out,
            &["--players", "relu2", "--method", method, "--budget", "10"],
        );
        assert_one_line_error(&nshap(&as_strs(&args)), &needles);
        assert!(!out.exists(), "{method}: nothing is written");
    }
    // The least budget it names gives every player a sample (and says it is not certified).
    let args = run_args(
        "digits-cnn",
        &out,
        &["--players", "relu2", "--method", "tmab", "--budget", "33"],
    );
    let o = nshap(&as_strs(&args));
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(out.join("values.csv")).unwrap();
    let samples: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(6).unwrap().parse().unwrap())
        .collect();
    assert!(samples.iter().all(|&s| s >= 1), "{text}");
    assert!(read_values(&out).iter().any(|r| r.2 != 0.0), "{text}");
}

/// CMCS stopped by its budget on the demo CNN used to print `active 0`, mark everyone settled
/// and exit 0. Now the console, report.json, values.csv and the exit status say it is not
/// certified.
#[test]
fn cmcs_stopped_on_its_budget_says_not_certified_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = run_args(
        "digits-cnn",
        &out,
        &["--players", "relu2", "--method", "cmcs", "--budget", "5000"],
    );
    let o = nshap(&as_strs(&args));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let r = report_json(&out);
    assert_eq!(r["top_k_resolved"], false, "{r}");
    let unresolved = r["unresolved"].as_u64().unwrap() as usize;
    assert!(unresolved > 0, "{r}");
    let needed = r["evaluations_needed"].as_u64().unwrap();
    let suggested = r["suggested_budget"].as_u64().unwrap();
    assert!(needed > 0 && suggested > 5000, "{r}");
    assert!(r["interval"].as_str().unwrap().contains("CLT"), "{r}");
    assert_eq!(r["interval_columns"][0], "pac80_low", "{r}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("top-10 not certified: "))
        .unwrap_or_else(|| panic!("no verdict in: {stdout}"));
    assert!(
        line.contains(&format!("{unresolved} players unresolved"))
            && line.contains(&format!("about {needed} more evaluations needed"))
            && line.contains(&format!("--resume {} --budget {suggested}", out.display())),
        "{line}"
    );
    assert!(stdout.contains("80% PAC interval"), "{stdout}");
    assert_eq!(values_stem(&out), "pac80");
    let st = statuses(&out);
    assert_eq!(st.iter().filter(|s| *s == "unresolved").count(), unresolved);
    assert!(st
        .iter()
        .all(|s| ["unresolved", "in_top_k", "out"].contains(&s.as_str())));
    // `nshap report` reads the new columns and repeats the verdict.
    let (text, _) = ok(&["report", out.to_str().unwrap()]);
    assert!(text.contains("top-10 not certified"), "{text}");
    assert!(text.contains("80% PAC interval"), "{text}");
}

/// Interval columns and table headers are named for what they are; old files still read.
#[test]
fn interval_columns_are_named_for_their_kind_and_old_files_still_read() {
    let dir = tempfile::tempdir().unwrap();
    for (method, stem, label) in [
        ("permutation", "ci95", "95% CI"),
        ("tmab", "eb80", "80% EB bound"),
    ] {
        let out = dir.path().join(method);
        let args = run_args(
            "digits-mlp",
            &out,
            &["--players", "relu2", "--method", method, "--budget", "3000"],
        );
        let o = nshap(&as_strs(&args));
        assert!(o.status.code() == Some(0) || o.status.code() == Some(3));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains(label), "{method}: {stdout}");
        assert!(!stdout.contains("95% interval"), "{stdout}");
        assert_eq!(values_stem(&out), stem);
        assert_eq!(
            report_json(&out)["interval_columns"][1],
            format!("{stem}_high")
        );
    }
    // A values.csv from before (ci_low, ci_high) still works for report, ablate and compare.
    let old = dir.path().join("tmab");
    let csv = std::fs::read_to_string(old.join("values.csv")).unwrap();
    let csv = csv.replacen(&values_header("eb80"), &values_header("ci"), 1);
    std::fs::write(old.join("values.csv"), csv).unwrap();
    let (text, _) = ok(&["report", old.to_str().unwrap()]);
    assert!(text.contains("interval"), "{text}");
    ok(&[
        "ablate",
        "--from",
        old.to_str().unwrap(),
        "--random-seeds",
        "1",
    ]);
}

/// `--resume DIR --budget N` used to keep the old budget silently; now it extends the run,
/// records the new budget and says so. Other options must match run.json.
#[test]
fn resume_with_a_larger_budget_continues_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_string_lossy().into_owned();
    let args = run_args(
        "digits-mlp",
        &out,
        &["--players", "relu2", "--method", "cmcs", "--budget", "3000"],
    );
    let o = nshap(&as_strs(&args));
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(evaluations(&out), 3000);

    let o = nshap(&["run", "--resume", &out_s, "--budget", "20000"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(3),
        "{stderr}"
    );
    assert!(
        stderr.contains("budget raised from 3000 to 20000"),
        "{stderr}"
    );
    let spent = evaluations(&out);
    assert!(spent > 3000 && spent <= 20000, "{spent}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["spec"]["budget"], 20000);

    // Without --budget the recorded one is kept; an option repeated with its value is fine.
    let o = nshap(&["run", "--resume", &out_s, "--method", "cmcs"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(3),
        "{stderr}"
    );
    assert!(!stderr.contains("budget"), "{stderr}");
    assert_eq!(evaluations(&out), spent);

    // Options that differ from run.json are an error, all named at once.
    assert_one_line_error(
        &nshap(&[
            "run", "--resume", &out_s, "--method", "tmab", "--top-k", "3",
        ]),
        &[
            "--resume",
            "--method tmab (run.json: cmcs)",
            "--top-k 3 (run.json: 10)",
            "--budget",
        ],
    );
    assert_one_line_error(
        &nshap(&["run", "--resume", &out_s, "--truncation", "0.2"]),
        &["--truncation 0.2 (run.json: none)"],
    );
}

/// Truncation used to be always on in `run`; now `--truncation none` (the default) turns it off
/// and a tolerance turns it on, and both are recorded. `--value-range` sets TMAB's R.
#[test]
fn truncation_and_value_range_are_flags_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut a = vec!["--players", "relu2", "--budget", "4000", "--seed", "2"];
        a.extend_from_slice(extra);
        let o = nshap(&as_strs(&run_args("digits-mlp", &out, &a)));
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(3),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        report_json(&out)
    };
    let none = run("default", &["--method", "permutation"]);
    assert_eq!(none["truncation"], serde_json::Value::Null, "{none}");
    assert_eq!(none["config"]["truncation"], serde_json::Value::Null);
    assert_eq!(none["diagnostics"]["truncated_walks"], 0);
    let explicit = run("none", &["--method", "permutation", "--truncation", "none"]);
    assert_eq!(explicit["truncation"], serde_json::Value::Null);
    let on = run("on", &["--method", "permutation", "--truncation", "0.5"]);
    assert_eq!(on["truncation"]["tolerance"], 0.5, "{on}");
    assert_eq!(on["truncation"]["chance_level"], 0.1, "{on}");
    assert_eq!(on["config"]["truncation"], 0.5);
    assert!(
        on["diagnostics"]["truncated_walks"].as_u64().unwrap() > 0,
        "{on}"
    );
    // The old spelling still works.
    let old = run(
        "old",
        &["--method", "permutation", "--truncation-tolerance", "0.5"],
    );
    assert_eq!(old["truncation"], on["truncation"]);
    // A run.json from before --truncation (those runs always truncated) resumes as truncated.
    let legacy = dir.path().join("old");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(legacy.join("run.json")).unwrap()).unwrap();
    let spec = record["spec"].as_object_mut().unwrap();
    spec.remove("truncation");
    spec.insert("truncation_tolerance".into(), serde_json::json!(0.5));
    std::fs::write(legacy.join("run.json"), record.to_string()).unwrap();
    let o = nshap(&["run", "--resume", legacy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report_json(&legacy)["truncation"], on["truncation"]);

    let r1 = run("r1", &["--method", "tmab"]);
    let r2 = run("r2", &["--method", "tmab", "--value-range", "0.25"]);
    assert_eq!(r1["value_range"], 1.0);
    assert_eq!(r2["value_range"], 0.25);
    let width = |name: &str| {
        let text = std::fs::read_to_string(dir.path().join(name).join("values.csv")).unwrap();
        let w: Vec<f64> = text
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<f64> = l
                    .split(',')
                    .skip(4)
                    .take(2)
                    .map(|x| x.parse().unwrap())
                    .collect();
                f[1] - f[0]
            })
            .collect();
        w.iter().sum::<f64>() / w.len() as f64
    };
    let (w1, w2) = (width("r1"), width("r2"));
    assert!(
        w2 < 0.8 * w1,
        "a smaller R narrows TMAB's bound: {w1} vs {w2}"
    );

    for (flag, value) in [
        ("--value-range", "0"),
        ("--value-range", "-1"),
        ("--value-range", "inf"),
        ("--truncation", "abc"),
        ("--truncation", "-0.1"),
    ] {
        let o = nshap(&as_strs(&run_args(
            "digits-mlp",
            &dir.path().join("bad"),
            &["--players", "relu2", &format!("{flag}={value}")],
        )));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(flag) && err.contains(&format!("found \"{value}\"")),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_long_run_says_early_how_long_its_budget_will_take() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("long");
    let args = run_args(
        "digits-cnn",
        &out,
        &[
            "--players",
            "relu2",
            "--method",
            "permutation",
            "--budget",
            "2000000000",
        ],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_nshap"))
        .current_dir(repo())
        .args(as_strs(&args))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut estimate = None;
    for line in stderr.lines().map_while(Result::ok) {
        if line.starts_with("estimated time for the whole budget: about ") {
            estimate = Some(line);
            break;
        }
        seen.push(line);
        if seen.len() > 200 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let line = estimate.unwrap_or_else(|| panic!("no estimate in {seen:#?}"));
    assert!(
        line.contains(" h more (") && line.contains("evaluations/s so far"),
        "{line}"
    );
}

/// `nshap bench` on a user's own model: random and permutation-walk coalitions, JSON out, and
/// the CPU plan (which layers use per-example tables) on stderr.
#[test]
fn bench_measures_a_users_own_model() {
    let base = [
        "bench",
        "--backend",
        "cpu",
        "--model",
        &asset("digits-resnet", "model.json"),
        "--weights",
        &asset("digits-resnet", "weights.safetensors"),
        "--data",
        &asset("digits-resnet", "eval.safetensors"),
        "--players",
        "layer1.0.relu1",
        "--name",
        "mine",
        "--coalitions",
        "40",
        "--examples",
        "8",
        "--reps",
        "1",
        "--json",
    ];
    for walks in [false, true] {
        let mut args = base.to_vec();
        if walks {
            args.push("--walks");
        }
        let (out, err) = ok(&args);
        let m: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(m["model"], "mine");
        assert_eq!(m["coalitions"], 40);
        assert_eq!(m["examples"], 8);
        assert!(m["coalition_examples_per_second"].as_f64().unwrap() > 0.0);
        assert!(
            err.contains("mine on cpu: layer1.0.bn2 (conv2d): table"),
            "{err}"
        );
    }
    // --players is required with --model.
    let no_players: Vec<&str> = base
        .iter()
        .copied()
        .filter(|a| *a != "--players" && *a != "layer1.0.relu1")
        .collect();
    let o = nshap(&no_players);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--players is required with --model"));
}

//! The ops beyond the first fifteen: spec validation (all problems at once), shape inference and
//! PyTorch's pooling arithmetic.

use nshap_model::graph::{adaptive_window, pool_out_len};
use nshap_model::{load_model, Activation, ModelError, Op, Pool2d, Shape};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::PathBuf;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn tensors(&self, tensors: &[(&str, Vec<usize>)]) -> PathBuf {
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, s)| {
                let n: usize = s.iter().product();
                (0..n)
                    .flat_map(|i| (0.1 + i as f32 * 0.01).to_le_bytes())
                    .collect()
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .zip(&bytes)
            .map(|((n, s), b)| {
                (
                    n.to_string(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let p = self.0.path().join("w.safetensors");
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        p
    }
}

fn spec(input: &str, nodes: &str) -> String {
    format!(r#"{{"format": "nshap.model.v1", "input": {input}, "nodes": [{nodes}]}}"#)
}

#[test]
fn pytorch_pool_output_sizes() {
    // floor vs ceil mode; ceil's last window must start inside the input or its left padding
    assert_eq!(pool_out_len(5, 2, 2, 0, 1, false), Some(2));
    assert_eq!(pool_out_len(5, 2, 2, 0, 1, true), Some(3));
    assert_eq!(pool_out_len(4, 3, 2, 1, 1, true), Some(3));
    assert_eq!(pool_out_len(13, 3, 2, 1, 1, true), Some(7));
    // (6 + 2 - 3) / 2 = 2.5 -> ceil 3 -> 4 outputs, but output 3 would start at 6 >= 6 + 1? no
    assert_eq!(pool_out_len(6, 3, 2, 1, 1, true), Some(4));
    // dilation 2: span 3
    assert_eq!(pool_out_len(6, 2, 1, 0, 2, false), Some(4));
    assert_eq!(pool_out_len(2, 3, 1, 0, 1, false), None);
}

#[test]
fn average_divisor_follows_count_include_pad() {
    let mut p = Pool2d::new((3, 3), (2, 2), (1, 1));
    p.ceil_mode = true;
    // 4x4 input, output 2x2: window (0,0) covers rows -1..2 -> 3x3 padded, 2x2 inside
    assert_eq!(p.avg_divisor(4, 4, 0, 0), 9);
    // window 1 starts at row 1: 1..4 inside
    assert_eq!(p.avg_divisor(4, 4, 1, 1), 9);
    p.count_include_pad = false;
    assert_eq!(p.avg_divisor(4, 4, 0, 0), 4);
    assert_eq!(p.avg_divisor(4, 4, 1, 1), 9);
    // Ceil mode's last window hangs past the padded input: 4x4, output (2, 2) starts at 3,
    // rows 3..6 clipped to the padded 3..5, one row inside (PyTorch gives 1/4 on ones).
    assert_eq!(
        Pool2d {
            count_include_pad: true,
            ..p
        }
        .avg_divisor(4, 4, 2, 2),
        4
    );
    assert_eq!(p.avg_divisor(4, 4, 2, 2), 1);
    // 5x3 input, window (2, 1): rows 3..6 (2 inside), columns 1..4 (2 inside): 4/9 on ones
    let mut q = Pool2d::new((3, 3), (2, 2), (1, 1));
    q.ceil_mode = true;
    assert_eq!(q.avg_divisor(5, 3, 2, 1), 9);
}

#[test]
fn adaptive_windows_match_pytorch() {
    let w: Vec<(usize, usize)> = (0..3).map(|o| adaptive_window(o, 5, 3)).collect();
    assert_eq!(w, vec![(0, 2), (1, 4), (3, 5)]);
    let w: Vec<(usize, usize)> = (0..4).map(|o| adaptive_window(o, 6, 4)).collect();
    assert_eq!(w, vec![(0, 2), (1, 3), (3, 5), (4, 6)]);
    assert_eq!(adaptive_window(0, 7, 1), (0, 7));
}

#[test]
fn channel_shuffle_order() {
    let op = Op::ChannelShuffle { groups: 2 };
    let order: Vec<usize> = (0..6).map(|c| op.channel_source(c, 6).unwrap()).collect();
    assert_eq!(order, vec![0, 3, 1, 4, 2, 5]);
    let op = Op::ChannelShuffle { groups: 3 };
    let order: Vec<usize> = (0..6).map(|c| op.channel_source(c, 6).unwrap()).collect();
    assert_eq!(order, vec![0, 2, 4, 1, 3, 5]);
}

#[test]
fn every_unknown_op_and_misplaced_field_is_reported_at_once() {
    let d = Dir::new();
    let w = d.tensors(&[("fc.weight", vec![2, 12])]);
    let m = d.write(
        "m.json",
        &spec(
            "[3, 2, 2]",
            r#"{"name": "a", "op": "swish"},
               {"name": "b", "op": "relu", "kernel": 3},
               {"name": "c", "op": "maxpool2d", "kernel": 1, "count_include_pad": false},
               {"name": "d", "op": "flatten"},
               {"name": "fc", "op": "linear", "weight": "fc.weight"}"#,
        ),
    );
    let e = load_model(&m, &w).unwrap_err();
    let ModelError::Many(problems) = &e else {
        panic!("expected several problems, got {e}");
    };
    assert_eq!(problems.len(), 3, "{e}");
    let text = e.to_string();
    assert!(text.contains("3 problems"), "{text}");
    assert!(
        text.contains(r#"node "a" (swish): unknown op "swish""#),
        "{text}"
    );
    assert!(
        text.contains(r#"node "b" (relu): field(s) kernel not used by relu"#),
        "{text}"
    );
    assert!(
        text.contains(r#"node "c" (maxpool2d): field(s) count_include_pad"#),
        "{text}"
    );
}

#[test]
fn shapes_of_the_new_ops() {
    let d = Dir::new();
    let w = d.tensors(&[
        ("c1.weight", vec![4, 3, 1, 1]),
        ("pw.weight", vec![6, 4]),
        ("ln.weight", vec![6]),
        ("ln.bias", vec![6]),
        ("ls", vec![6, 1, 1]),
        ("pr.weight", vec![1]),
        ("fc.weight", vec![3, 20]),
    ]);
    let m = d.write(
        "m.json",
        &spec(
            "[3, 7, 7]",
            r#"{"name": "c1", "op": "conv2d", "weight": "c1.weight"},
               {"name": "pw", "op": "conv2d", "weight": "pw.weight"},
               {"name": "ln", "op": "layernorm", "prefix": "ln", "eps": 1e-6},
               {"name": "ls", "op": "mul", "weight": "ls"},
               {"name": "pr", "op": "prelu", "weight": "pr.weight"},
               {"name": "r6", "op": "relu6"},
               {"name": "pool", "op": "maxpool2d", "kernel": 2, "ceil_mode": true},
               {"name": "gap", "op": "global_avgpool"},
               {"name": "gate", "op": "sigmoid"},
               {"name": "se", "op": "mul", "inputs": ["gate", "pool"]},
               {"name": "lo", "op": "slice", "inputs": ["se"], "start": 0, "end": 2},
               {"name": "cat", "op": "concat", "inputs": ["se", "lo", "lo"]},
               {"name": "sh", "op": "channel_shuffle", "groups": 2},
               {"name": "ad", "op": "adaptive_avgpool2d", "output_size": [2, 1]},
               {"name": "act", "op": "hardtanh", "min_val": -0.5, "max_val": 2},
               {"name": "flat", "op": "flatten"},
               {"name": "fc", "op": "linear", "weight": "fc.weight"}"#,
        ),
    );
    let g = load_model(&m, &w).unwrap_or_else(|e| panic!("{e}"));
    let shape = |n: &str| g.nodes[g.find(n).unwrap()].shape;
    assert_eq!(shape("pw"), Shape::Image { c: 6, h: 7, w: 7 });
    assert!(matches!(&g.nodes[1].op, Op::Conv2d(c) if c.kernel == (1, 1) && c.in_channels == 4));
    assert_eq!(shape("pool"), Shape::Image { c: 6, h: 4, w: 4 });
    assert_eq!(shape("se"), Shape::Image { c: 6, h: 4, w: 4 });
    assert_eq!(shape("lo"), Shape::Image { c: 2, h: 4, w: 4 });
    assert_eq!(shape("cat"), Shape::Image { c: 10, h: 4, w: 4 });
    assert_eq!(shape("ad"), Shape::Image { c: 10, h: 2, w: 1 });
    assert!(matches!(&g.nodes[g.find("pr").unwrap()].op, Op::Prelu(s) if s.len() == 6));
    assert!(matches!(
        g.nodes[g.find("r6").unwrap()].op,
        Op::Activation(Activation::HardTanh { min: 0.0, max: 6.0 })
    ));
    assert!(matches!(
        g.nodes[g.find("act").unwrap()].op,
        Op::Activation(Activation::HardTanh {
            min: -0.5,
            max: 2.0
        })
    ));
}

#[test]
fn bad_shapes_of_the_new_ops_are_named() {
    let d = Dir::new();
    let w = d.tensors(&[("fc.weight", vec![2, 3]), ("s", vec![4])]);
    let cases = [
        (
            r#"{"name": "a", "op": "slice", "start": 2, "end": 9}"#,
            "channel range 2..9 must be non-empty and within the input's 3 channels",
        ),
        (
            r#"{"name": "a", "op": "channel_shuffle", "groups": 2}"#,
            "groups = 2 must divide the 3 input channels",
        ),
        (
            r#"{"name": "a", "op": "mul", "weight": "s"}"#,
            r#"weight "s": expected [3], [3, 1, 1] or [1]"#,
        ),
        (
            r#"{"name": "a", "op": "pad"}, {"name": "b", "op": "concat", "inputs": ["input", "a"]}"#,
            "unknown op \"pad\"",
        ),
        (
            r#"{"name": "a", "op": "hardtanh", "min_val": 2, "max_val": 1}"#,
            "min_val 2 is above max_val 1",
        ),
    ];
    for (nodes, want) in cases {
        let text = spec(
            "[3]",
            &format!(r#"{nodes}, {{"name": "fc", "op": "linear", "weight": "fc.weight"}}"#),
        );
        let e = load_model(&d.write("m.json", &text), &w)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{nodes}: {e}");
    }
}

#[test]
fn preprocess_becomes_the_first_node() {
    let d = Dir::new();
    let w = d.tensors(&[("fc.weight", vec![2, 3])]);
    let text = r#"{"format": "nshap.model.v1", "input": [3],
        "preprocess": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0]},
        "nodes": [{"name": "fc", "op": "linear", "weight": "fc.weight"}]}"#;
    let g = load_model(&d.write("m.json", text), &w).unwrap();
    assert_eq!(g.nodes[0].name, "preprocess");
    let Op::BatchNorm(bn) = &g.nodes[0].op else {
        panic!("preprocess is an affine map")
    };
    assert_eq!(bn.scale, vec![4.0, 2.0, 1.0]);
    assert_eq!(bn.shift, vec![-2.0, -1.0, -0.5]);
    assert_eq!(
        g.nodes[1].inputs,
        vec![nshap_model::Source::Node(0)],
        "the first layer reads the normalised input"
    );
    let bad = text.replace("[0.25, 0.5, 1.0]", "[0.25, 0.0]");
    let e = load_model(&d.write("m.json", &bad), &w)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expected 3 means and stds (one per input channel), found 3 and 2"),
        "{e}"
    );
}

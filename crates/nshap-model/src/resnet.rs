//! Build the spec of a torchvision ResNet-18/34 (BasicBlock) from its state_dict names, so users
//! can bring `torchvision.models.resnet18().state_dict()` without writing a spec.
//!
//! Node names follow the modules: `conv1, bn1, relu, maxpool, layerL.B.{conv1, bn1, relu1, conv2,
//! bn2, downsample.0, downsample.1, add, relu2}, avgpool, flatten, fc`; `layerL.B.relu2` is the
//! block's output. Widths come from the weights, so narrower models with the same naming load too.

use crate::error::ModelError;
use crate::spec::{ModelSpec, NodeSpec, Pair, FORMAT_V1};
use crate::tensors::TensorFile;

/// Blocks per stage of the supported architectures.
pub fn stage_blocks(arch: &str) -> Option<[usize; 4]> {
    match arch {
        "resnet18" => Some([2, 2, 2, 2]),
        "resnet34" => Some([3, 4, 6, 3]),
        _ => None,
    }
}

/// The spec for `arch` over the tensors in `tensors`, with input `[C, H, W]`.
pub fn resnet_spec(
    arch: &str,
    tensors: &TensorFile,
    input: [usize; 3],
) -> Result<ModelSpec, ModelError> {
    let err = |message: String| ModelError::Spec {
        path: tensors.path().to_owned(),
        message,
    };
    let expected = stage_blocks(arch).ok_or_else(|| {
        err(format!(
            "unknown --arch {arch:?}: supported are resnet18 and resnet34"
        ))
    })?;
    if tensors.contains("layer1.0.conv3.weight") {
        return Err(err(format!(
            "--arch {arch}: found layer1.0.conv3.weight, a Bottleneck ResNet (50/101/152), which is not supported"
        )));
    }
    let mut found = [0usize; 4];
    for (stage, count) in found.iter_mut().enumerate() {
        while tensors.contains(&format!("layer{}.{}.conv1.weight", stage + 1, *count)) {
            *count += 1;
        }
    }
    if found != expected {
        return Err(err(format!(
            "--arch {arch}: expected {expected:?} BasicBlocks per stage (tensors layerL.B.conv1.weight), found {found:?}"
        )));
    }
    let conv = |name: &str, stride: usize, padding: usize, inputs: Option<Vec<String>>| NodeSpec {
        weight: Some(format!("{name}.weight")),
        stride: Some(Pair::One(stride)),
        padding: Some(Pair::One(padding)),
        inputs,
        ..NodeSpec::new(name, "conv2d")
    };
    let bn = |name: &str| NodeSpec {
        prefix: Some(name.to_owned()),
        ..NodeSpec::new(name, "batchnorm2d")
    };
    let mut nodes = vec![
        conv("conv1", 2, 3, None),
        bn("bn1"),
        NodeSpec::new("relu", "relu"),
        NodeSpec {
            kernel: Some(Pair::One(3)),
            stride: Some(Pair::One(2)),
            padding: Some(Pair::One(1)),
            ..NodeSpec::new("maxpool", "maxpool2d")
        },
    ];
    let mut block_input = "maxpool".to_owned();
    for (stage, &blocks) in expected.iter().enumerate() {
        for b in 0..blocks {
            let p = format!("layer{}.{b}", stage + 1);
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            nodes.push(conv(
                &format!("{p}.conv1"),
                stride,
                1,
                Some(vec![block_input.clone()]),
            ));
            nodes.push(bn(&format!("{p}.bn1")));
            nodes.push(NodeSpec::new(format!("{p}.relu1"), "relu"));
            nodes.push(conv(&format!("{p}.conv2"), 1, 1, None));
            nodes.push(bn(&format!("{p}.bn2")));
            let shortcut = if tensors.contains(&format!("{p}.downsample.0.weight")) {
                nodes.push(conv(
                    &format!("{p}.downsample.0"),
                    stride,
                    0,
                    Some(vec![block_input.clone()]),
                ));
                nodes.push(bn(&format!("{p}.downsample.1")));
                format!("{p}.downsample.1")
            } else {
                block_input.clone()
            };
            nodes.push(NodeSpec {
                inputs: Some(vec![format!("{p}.bn2"), shortcut]),
                ..NodeSpec::new(format!("{p}.add"), "add")
            });
            nodes.push(NodeSpec::new(format!("{p}.relu2"), "relu"));
            block_input = format!("{p}.relu2");
        }
    }
    nodes.push(NodeSpec::new("avgpool", "global_avgpool"));
    nodes.push(NodeSpec::new("flatten", "flatten"));
    nodes.push(NodeSpec {
        weight: Some("fc.weight".into()),
        bias: Some("fc.bias".into()),
        ..NodeSpec::new("fc", "linear")
    });
    Ok(ModelSpec {
        format: FORMAT_V1.into(),
        input: input.to_vec(),
        tokens: None,
        preprocess: None,
        nodes,
    })
}

/// A synthetic state_dict of `arch` with torchvision's names and shapes (widths 64..512 scaled
/// by `width_divisor`), deterministic pseudo-random weights, as safetensors bytes. For tests and
/// benchmarks that need a full-size ResNet without shipping 45 MB of weights.
pub fn synthetic_state_dict(
    arch: &str,
    width_divisor: usize,
    classes: usize,
    seed: u64,
) -> Option<Vec<u8>> {
    let blocks = stage_blocks(arch)?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let mut conv = |t: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
                    name: String,
                    out: usize,
                    inp: usize,
                    k: usize| {
        let fan_in = (inp * k * k) as f32;
        let scale = (6.0 / fan_in).sqrt();
        let w = (0..out * inp * k * k).map(|_| uniform() * scale).collect();
        t.push((name, vec![out, inp, k, k], w));
    };
    let bn = |t: &mut Vec<(String, Vec<usize>, Vec<f32>)>, p: String, c: usize| {
        t.push((format!("{p}.weight"), vec![c], vec![1.0; c]));
        t.push((
            format!("{p}.bias"),
            vec![c],
            (0..c).map(|i| 0.01 * (i % 7) as f32).collect(),
        ));
        t.push((format!("{p}.running_mean"), vec![c], vec![0.0; c]));
        t.push((format!("{p}.running_var"), vec![c], vec![1.0; c]));
    };
    let widths: Vec<usize> = [64, 128, 256, 512]
        .iter()
        .map(|w| (w / width_divisor.max(1)).max(1))
        .collect();
    conv(&mut tensors, "conv1.weight".into(), widths[0], 3, 7);
    bn(&mut tensors, "bn1".into(), widths[0]);
    let mut inp = widths[0];
    for (s, &nb) in blocks.iter().enumerate() {
        for b in 0..nb {
            let p = format!("layer{}.{b}", s + 1);
            let out = widths[s];
            conv(&mut tensors, format!("{p}.conv1.weight"), out, inp, 3);
            bn(&mut tensors, format!("{p}.bn1"), out);
            conv(&mut tensors, format!("{p}.conv2.weight"), out, out, 3);
            bn(&mut tensors, format!("{p}.bn2"), out);
            if b == 0 && s > 0 {
                conv(
                    &mut tensors,
                    format!("{p}.downsample.0.weight"),
                    out,
                    inp,
                    1,
                );
                bn(&mut tensors, format!("{p}.downsample.1"), out);
            }
            inp = out;
        }
    }
    let scale = (1.0 / inp as f32).sqrt();
    let fc: Vec<f32> = (0..classes * inp).map(|_| uniform() * scale).collect();
    tensors.push(("fc.weight".into(), vec![classes, inp], fc));
    tensors.push((
        "fc.bias".into(),
        vec![classes],
        (0..classes)
            .map(|i| 0.001 * (i % 5) as f32 - 0.002)
            .collect(),
    ));
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<_, _>>()
        .ok()?;
    safetensors::serialize(views, None).ok()
}

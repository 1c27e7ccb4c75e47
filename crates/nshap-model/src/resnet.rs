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
pub fn resnet_spec(arch: &str, tensors: &TensorFile, input: [usize; 3]) -> Result<ModelSpec, ModelError> {
    let err = |message: String| ModelError::Spec { path: tensors.path().to_owned(), message };
    let expected = stage_blocks(arch)
        .ok_or_else(|| err(format!("unknown --arch {arch:?}: supported are resnet18 and resnet34")))?;
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
    let bn = |name: &str| NodeSpec { prefix: Some(name.to_owned()), ..NodeSpec::new(name, "batchnorm2d") };
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
            nodes.push(conv(&format!("{p}.conv1"), stride, 1, Some(vec![block_input.clone()])));
            nodes.push(bn(&format!("{p}.bn1")));
            nodes.push(NodeSpec::new(format!("{p}.relu1"), "relu"));
            nodes.push(conv(&format!("{p}.conv2"), 1, 1, None));
            nodes.push(bn(&format!("{p}.bn2")));
            let shortcut = if tensors.contains(&format!("{p}.downsample.0.weight")) {
                nodes.push(conv(&format!("{p}.downsample.0"), stride, 0, Some(vec![block_input.clone()])));
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
    Ok(ModelSpec { format: FORMAT_V1.into(), input: input.to_vec(), nodes })
}

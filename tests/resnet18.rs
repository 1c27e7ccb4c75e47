//! `--arch resnet18`: a state_dict with torchvision's exact names and shapes builds the right
//! graph, with torchvision's parameter count and FLOPs.

mod common;

use nshap::model::stats::{matmul_flops, total_parameters};
use nshap::model::tensors::TensorFile;

#[test]
fn synthetic_state_dict_has_torchvision_names_and_shapes() {
    let listing: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("resnet18_state_dict.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    std::fs::write(
        &path,
        nshap::model::resnet::synthetic_state_dict("resnet18", 1, 1000, 3).unwrap(),
    )
    .unwrap();
    let file = TensorFile::open(&path).unwrap();
    let mut want: Vec<(String, Vec<usize>)> = listing["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["name"].as_str().unwrap().ends_with("num_batches_tracked"))
        .map(|t| {
            let shape = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (t["name"].as_str().unwrap().to_string(), shape)
        })
        .collect();
    want.sort();
    let mut have: Vec<(String, Vec<usize>)> = file
        .names()
        .into_iter()
        .map(|n| (n.clone(), file.shape(&n).unwrap()))
        .collect();
    have.sort();
    assert_eq!(have, want);

    for (size, flops_key) in [(224usize, "flops_224"), (32, "flops_32")] {
        let (graph, _) = nshap::model::load_arch("resnet18", &path, [3, size, size]).unwrap();
        assert_eq!(
            total_parameters(&graph) as u64,
            listing["parameter_count"].as_u64().unwrap()
        );
        assert_eq!(
            matmul_flops(&graph),
            listing[flops_key].as_u64().unwrap(),
            "{flops_key}"
        );
        assert_eq!(graph.num_classes(), 1000);
    }
}

#[test]
fn wrong_block_counts_and_bottlenecks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    std::fs::write(
        &path,
        nshap::model::resnet::synthetic_state_dict("resnet18", 8, 10, 3).unwrap(),
    )
    .unwrap();
    let err = nshap::model::load_arch("resnet34", &path, [3, 32, 32])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[3, 4, 6, 3]") && err.contains("[2, 2, 2, 2]"),
        "{err}"
    );
}

//! Bounded fuzzing: mutated spec and safetensors files never panic the loaders.

use nshap_model::{load_eval_set, load_model, DataOptions};
use proptest::prelude::*;
use std::path::PathBuf;

fn asset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/digits-cnn")
        .join(name)
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(at, v) in edits {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] = v;
        }
    }
    if let Some(c) = cut {
        let c = c % (bytes.len() + 1);
        bytes.truncate(c);
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Byte edits in the header region (first 2 KiB) and truncation of the weights.
    #[test]
    fn mutated_weights_never_panic(edits in prop::collection::vec((0usize..2048, any::<u8>()), 0..8), cut in prop::option::of(any::<usize>())) {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w.safetensors");
        std::fs::write(&w, mutate(std::fs::read(asset("weights.safetensors")).unwrap(), &edits, cut)).unwrap();
        let _ = load_model(&asset("model.json"), &w);
    }

    /// Byte edits anywhere in the spec text.
    #[test]
    fn mutated_specs_never_panic(edits in prop::collection::vec((any::<usize>(), 32u8..127), 0..6), cut in prop::option::of(any::<usize>())) {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("m.json");
        std::fs::write(&s, mutate(std::fs::read(asset("model.json")).unwrap(), &edits, cut)).unwrap();
        let _ = load_model(&s, &asset("weights.safetensors"));
    }

    /// Mutated eval sets never panic either.
    #[test]
    fn mutated_eval_sets_never_panic(edits in prop::collection::vec((0usize..1024, any::<u8>()), 0..8), cut in prop::option::of(any::<usize>())) {
        let graph = load_model(&asset("model.json"), &asset("weights.safetensors")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d.safetensors");
        std::fs::write(&d, mutate(std::fs::read(asset("eval.safetensors")).unwrap(), &edits, cut)).unwrap();
        let _ = load_eval_set(&d, &graph, &DataOptions::default());
    }
}

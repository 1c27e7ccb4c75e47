//! The unmasked network's logits for every example of an eval set, on any backend.

use anyhow::{Context, Result};
use nshap_model::{
    Backend, BackendInfo, EvalJob, EvalSet, Examples, Graph, MaskBatch, Metric, PlayerLayer,
    Players,
};
use std::sync::Arc;

/// Examples per backend call: bounds what one call holds.
const CHUNK: usize = 256;

/// Logits `[N, classes]` (row-major) of the full network for every example of `data`, and what
/// computed them.
///
/// The backend API evaluates coalitions, so this asks for the coalition with every player
/// present, the players being the logits themselves (a layer that a full mask leaves as is):
/// everything before it is the shared, unmasked forward pass.
pub fn network_logits(
    backend: &dyn Backend,
    graph: Arc<Graph>,
    data: Arc<EvalSet>,
) -> Result<(Vec<f32>, BackendInfo)> {
    let last = graph.nodes.len() - 1;
    let classes = graph.num_classes();
    let layer = PlayerLayer {
        node: last,
        name: graph.nodes[last].name.clone(),
        baseline: vec![0.0; classes],
    };
    let players = Players::new(vec![layer])?;
    let mut full = MaskBatch::new(players.len());
    full.push_full();
    let n = data.len();
    let job = EvalJob {
        graph,
        players,
        data,
        metric: Metric::Accuracy,
    };
    let mut evaluator = backend.prepare(job).context("preparing the backend")?;
    let mut out = Vec::with_capacity(n * classes);
    let ids: Vec<u32> = (0..n as u32).collect();
    for chunk in ids.chunks(CHUNK) {
        let logits = evaluator
            .logits(Examples::Subset(chunk), &full)
            .map_err(|e| anyhow::anyhow!("computing logits: {e}"))?;
        anyhow::ensure!(
            logits.len() == chunk.len() * classes,
            "the backend returned {} logits for {} examples of {classes} classes",
            logits.len(),
            chunk.len()
        );
        out.extend_from_slice(&logits);
    }
    Ok((out, evaluator.info()))
}

//! Which nodes depend on the coalition and which are shared by all coalitions.
//!
//! A node is *dependent* when it is a player node or reads a dependent node; everything else is
//! computed once per example and shared. A player node whose inputs are all shared is a
//! *boundary*: its unmasked value is shared too, and each coalition only applies its mask to it.

use crate::ops::conv::ConvCache;
use crate::table::TableSpec;
use nshap_model::fold::fold_batchnorm;
use nshap_model::pushdown::{push_down, Flatten};
use nshap_model::{BackendError, Graph, Op, Players, Source};

pub struct Plan {
    pub graph: Graph,
    pub players: Players,
    pub dependent: Vec<bool>,
    pub boundary: Vec<bool>,
    /// Shared values the dependent stage reads (kept in the shared cache).
    pub retained: Vec<bool>,
    /// Index of the last node that reads each node (for freeing buffers early).
    pub last_use: Vec<usize>,
    /// Largest dependent activation (floats per example), for sizing work items.
    pub max_dependent_numel: usize,
    /// Floats per example the shared cache keeps.
    pub retained_numel: usize,
    /// Conv and linear layers computed from per-example tables, by node (see `table.rs`).
    pub tables: Vec<Option<TableSpec>>,
    /// Player nodes nothing reads masked (every consumer uses a table): never materialised.
    pub unmaterialized: Vec<bool>,
    /// Floats per example the tables take in the shared cache.
    pub table_numel: usize,
    /// What was picked for each layer after a player node, and why (for `inspect` and reports).
    pub choices: Vec<String>,
    /// Per node, the convolution work its calls share (made on first use).
    pub convs: Vec<ConvCache>,
    /// Per node: an add of a table node and a shared value, mapped to that table node. The
    /// shared value is folded into the table's per-example base, so the table's output is
    /// already the sum and the add costs nothing per coalition.
    pub absorbed: Vec<Option<usize>>,
}

/// What the plan may use, and the memory it may spend on shared values and tables.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    pub pushdown: bool,
    pub tables: bool,
    /// Eval-set size: the tables of every example must fit `cache_bytes` with the shared values.
    pub examples: usize,
    pub cache_bytes: usize,
}

impl Plan {
    /// The plan for `graph` with `players`: without `pushdown` every op after a player node
    /// runs per coalition, without `tables` every conv and linear layer runs plainly (slower;
    /// the references the fast paths are tested against).
    pub fn new(
        graph: &Graph,
        players: &Players,
        options: PlanOptions,
    ) -> Result<Plan, BackendError> {
        let (graph, players) = fold_batchnorm(graph, players);
        let players = if options.pushdown {
            push_down(&graph, &players, Flatten::Through)
        } else {
            players
        };
        let n = graph.nodes.len();
        let mut dependent = vec![false; n];
        let mut boundary = vec![false; n];
        for (i, node) in graph.nodes.iter().enumerate() {
            let reads_dependent = node
                .inputs
                .iter()
                .any(|s| matches!(s, Source::Node(j) if dependent[*j]));
            let is_player = players.layer_of_node(i).is_some();
            dependent[i] = is_player || reads_dependent;
            boundary[i] = is_player && !reads_dependent;
        }
        if !dependent[n - 1] {
            let names: Vec<&str> = players.layers().iter().map(|l| l.name.as_str()).collect();
            return Err(BackendError::Invalid(format!(
                "player layer(s) {} do not reach the output node {:?}",
                names.join(", "),
                graph.nodes[n - 1].name
            )));
        }
        let mut retained = boundary.clone();
        let mut last_use = vec![0; n];
        for (i, node) in graph.nodes.iter().enumerate() {
            for s in &node.inputs {
                if let Source::Node(j) = *s {
                    last_use[j] = i;
                    if dependent[i] && !dependent[j] {
                        retained[j] = true;
                    }
                }
            }
        }
        last_use[n - 1] = n;
        let max_dependent_numel = (0..n)
            .filter(|&i| dependent[i])
            .map(|i| graph.nodes[i].shape.numel())
            .max()
            .unwrap_or(1);
        let retained_numel = (0..n)
            .filter(|&i| retained[i])
            .map(|i| graph.nodes[i].shape.numel())
            .sum();
        let budget_floats = options.cache_bytes / 4 / options.examples.max(1);
        let mut picked = pick_tables(
            &graph,
            &players,
            &boundary,
            options.tables,
            budget_floats.saturating_sub(retained_numel),
        );
        let absorbed = absorb_shared_addends(&graph, &players, &dependent, &mut picked);
        Ok(Plan {
            graph,
            players,
            dependent,
            boundary,
            retained,
            last_use,
            max_dependent_numel,
            retained_numel,
            tables: picked.tables,
            unmaterialized: picked.unmaterialized,
            table_numel: picked.numel,
            choices: picked.choices,
            convs: (0..n).map(|_| ConvCache::default()).collect(),
            absorbed,
        })
    }
}

impl Plan {
    /// Whether the dependent stage's plain conv and linear layers do more multiply-adds per
    /// coalition-example than its tables do adds (at worst): their GEMMs then set the pace and
    /// want many rows per call, where a table-bound stage wants rows that stay in cache.
    pub fn gemm_bound(&self) -> bool {
        let plain: usize = (0..self.graph.nodes.len())
            .filter(|&i| self.dependent[i] && self.tables[i].is_none())
            .map(|i| {
                let node = &self.graph.nodes[i];
                match &node.op {
                    Op::Conv2d(c) => {
                        node.shape.numel() * (c.in_channels / c.groups) * c.kernel.0 * c.kernel.1
                    }
                    Op::Linear(l) => l.in_features * l.out_features,
                    _ => 0,
                }
            })
            .sum();
        let tables: usize = self
            .tables
            .iter()
            .flatten()
            .map(TableSpec::worst_adds)
            .sum();
        plain > tables
    }
}

/// Adds whose operands are a table node (read by nothing else, not itself a player node) and a
/// shared value of the same shape: the table takes the shared value as its addend (see
/// [`TableSpec::addend`]). A residual block with its players inside (a ResNet's `conv2 + skip`)
/// then spends no pass over its activations on the add.
fn absorb_shared_addends(
    graph: &Graph,
    players: &Players,
    dependent: &[bool],
    picked: &mut Picked,
) -> Vec<Option<usize>> {
    let mut absorbed = vec![None; graph.nodes.len()];
    for t in 0..graph.nodes.len() {
        let Some(spec) = picked.tables[t].as_mut() else {
            continue;
        };
        let [a] = graph.consumers(t)[..] else {
            continue;
        };
        let add = &graph.nodes[a];
        let other = match add.inputs[..] {
            [Source::Node(x), Source::Node(y)] if x == t && y != t => y,
            [Source::Node(x), Source::Node(y)] if y == t && x != t => x,
            _ => continue,
        };
        if !matches!(add.op, Op::Add)
            || add.shape != graph.nodes[t].shape
            || graph.nodes[other].shape != add.shape
            || dependent[other]
            || players.layer_of_node(t).is_some()
        {
            continue;
        }
        spec.addend = Some(other);
        absorbed[a] = Some(t);
        picked.choices.push(format!(
            "{} (add): folded into the table of {} (the shared {} is added to each example's base)",
            add.name, graph.nodes[t].name, graph.nodes[other].name
        ));
    }
    absorbed
}

struct Picked {
    tables: Vec<Option<TableSpec>>,
    unmaterialized: Vec<bool>,
    numel: usize,
    choices: Vec<String>,
}

/// Tables for the conv and linear layers that read a boundary player node, where the table is
/// no more work than the layer even when half the channels must be summed, best ratio first,
/// while they fit `budget` floats per example.
fn pick_tables(
    graph: &Graph,
    players: &Players,
    boundary: &[bool],
    enabled: bool,
    budget: usize,
) -> Picked {
    let n = graph.nodes.len();
    let mut candidates = Vec::new();
    for (layer, pl) in players.layers().iter().enumerate() {
        // A table's base assumes one removal constant per channel.
        if !boundary[pl.node] || players.values(layer).is_some() {
            continue;
        }
        for consumer in graph.consumers(pl.node) {
            if let Some(spec) = TableSpec::new(graph, consumer, layer, pl) {
                candidates.push(spec);
            }
        }
    }
    candidates.sort_by(|a, b| {
        let ratio = |s: &TableSpec| s.plain_macs as f64 / s.worst_adds() as f64;
        ratio(b).total_cmp(&ratio(a))
    });
    let mut picked = Picked {
        tables: (0..n).map(|_| None).collect(),
        unmaterialized: vec![false; n],
        numel: 0,
        choices: Vec::new(),
    };
    for spec in candidates {
        // A conv followed by a batchnorm is folded into one node with the batchnorm's name.
        let node = &graph.nodes[spec.node];
        let name = format!("{} ({})", node.name, node.op.kind());
        let per_example = spec.numel_per_example();
        let mib = per_example as f64 * 4.0 / (1 << 20) as f64;
        let sizes = format!(
            "{} channels x {} outputs, {mib:.2} MiB per example; plain {} multiply-adds, table at most {} adds per coalition-example",
            spec.channels,
            spec.block,
            spec.plain_macs,
            spec.worst_adds()
        );
        let why_not = if !enabled {
            Some("tables disabled")
        } else if spec.plain_macs < spec.worst_adds() {
            Some("the layer is cheaper")
        } else if picked.numel + per_example > budget {
            Some("the tables of every example would not fit the cache budget")
        } else {
            None
        };
        match why_not {
            Some(why) => picked
                .choices
                .push(format!("{name}: plain ({why}; {sizes})")),
            None => {
                picked.choices.push(format!("{name}: table ({sizes})"));
                picked.numel += per_example;
                let node = spec.node;
                picked.tables[node] = Some(spec);
            }
        }
    }
    for pl in players.layers() {
        let consumers = graph.consumers(pl.node);
        picked.unmaterialized[pl.node] = boundary[pl.node]
            && pl.node != n - 1
            && !consumers.is_empty()
            && consumers.iter().all(|&c| picked.tables[c].is_some());
    }
    picked
}

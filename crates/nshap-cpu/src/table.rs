//! Tables past the player: a conv or linear layer that reads a player node is linear in the
//! mask, so its output for a coalition is `base + sum over present channels c of T[example, c]`,
//! with `T[example, c]` the layer applied to `x_c - b_c` alone (no bias) and `base` the layer's
//! output when every player is absent. `T` is computed once per example; a coalition then costs
//! (present or absent channels, or channels changed since the previous coalition, whichever is
//! fewest) x (outputs one channel reaches) adds instead of the layer's multiply-adds.
//!
//! A coalition that lists many channels either way (random coalitions) is summed instead by
//! subset sums (`subsets.rs`): one add per group of 4 channels, from sums built once per work
//! item and example.
//!
//! The previous coalition is the row before in the request: permutation walks send coalitions
//! that differ by one player one after the other, so a walk step costs one table entry. Chains
//! restart from scratch every [`CHAIN`] rows so values do not depend on how a request is split
//! into work items (and rounding cannot drift far).

use crate::ops;
use crate::subsets;
use nshap_model::{Conv2d, Graph, Linear, Op, PlayerLayer, Shape, Source};
use rayon::prelude::*;

/// A coalition row whose index is a multiple of this is always summed from scratch.
pub const CHAIN: usize = 32;

/// Examples per step when tables are built (bounds the scratch).
const COMPUTE_ROWS: usize = 64;

/// How one table node is computed (fixed when the plan is made).
pub struct TableSpec {
    /// The conv or linear node.
    pub node: usize,
    /// The player node it reads (a boundary player: its unmasked value is shared).
    pub player_node: usize,
    /// The player layer (index into `Players`).
    pub layer: usize,
    pub channels: usize,
    /// Outputs one input channel reaches (one group's output channels x positions, or all
    /// output features of a linear layer).
    pub block: usize,
    /// Output offset of channel `c`'s block: `(c / channels_per_group) * block`.
    pub channels_per_group: usize,
    /// Output with every player absent (bias included).
    pub base: Vec<f32>,
    /// Multiply-adds of the plain layer per coalition-example.
    pub plain_macs: usize,
    /// A shared node whose value is added to the layer's output (the add that reads both is
    /// folded in, see `Plan::absorbed`): each example's base and full output include it.
    pub addend: Option<usize>,
    /// The layer restricted to one input channel, per channel (convs only).
    per_channel: Option<Vec<Conv2d>>,
    /// Player-node values per example (floats) and outputs per example.
    in_numel: usize,
    out_numel: usize,
}

impl TableSpec {
    /// The spec for node `node` when it is a conv or linear layer reading only player node `p`.
    pub fn new(graph: &Graph, node: usize, layer: usize, pl: &PlayerLayer) -> Option<TableSpec> {
        let n = &graph.nodes[node];
        let [Source::Node(p)] = n.inputs[..] else {
            return None;
        };
        if p != pl.node {
            return None;
        }
        let channels = pl.channels();
        let in_shape = graph.nodes[p].shape;
        let (in_numel, out_numel) = (in_shape.numel(), n.shape.numel());
        let (block, channels_per_group, plain_macs, per_channel) = match &n.op {
            Op::Conv2d(c) if in_shape.channels() == channels => {
                let (cin_g, cout_g) = (c.in_channels / c.groups, c.out_channels / c.groups);
                let positions = n.shape.spatial();
                let taps = c.kernel.0 * c.kernel.1;
                let single = (0..channels).map(|ch| single_channel(c, ch)).collect();
                (
                    cout_g * positions,
                    cin_g,
                    out_numel * cin_g * taps,
                    Some(single),
                )
            }
            Op::Linear(l) if l.in_features % channels == 0 => (
                l.out_features,
                channels,
                l.out_features * l.in_features,
                None,
            ),
            _ => return None,
        };
        let mut spec = TableSpec {
            node,
            player_node: p,
            layer,
            channels,
            block,
            channels_per_group,
            base: Vec::new(),
            plain_macs,
            addend: None,
            per_channel,
            in_numel,
            out_numel,
        };
        // The layer on the all-absent input: every channel at its baseline everywhere.
        let spatial = in_numel / channels;
        let absent: Vec<f32> = (0..in_numel).map(|i| pl.baseline[i / spatial]).collect();
        spec.base = vec![0.0; out_numel];
        ops::run(graph, n, &[&absent], 1, &mut spec.base);
        Some(spec)
    }

    /// Floats the table and the full output take per example.
    pub fn numel_per_example(&self) -> usize {
        self.channels * self.block + self.out_numel
    }

    /// Adds per coalition-example when half the channels are summed (the worst case).
    pub fn worst_adds(&self) -> usize {
        self.out_numel + self.channels.div_ceil(2) * self.block
    }

    fn offset(&self, c: usize) -> usize {
        (c / self.channels_per_group) * self.block
    }

    /// `T` `[rows, channels, block]` and the full outputs `[rows, out]` of rows of the player
    /// node's unmasked value `x`.
    /// With an [`addend`](Self::addend), `addend` holds its rows (one per row of `x`).
    pub fn compute(
        &self,
        graph: &Graph,
        x: &[f32],
        baseline: &[f32],
        addend: Option<&[f32]>,
    ) -> NodeTable {
        let rows = x.len() / self.in_numel.max(1);
        let (c_all, block) = (self.channels, self.block);
        let mut t = vec![0.0f32; rows * c_all * block];
        // A chunk of rows at a time, so the per-channel scratch stays small.
        for (k, xs) in x.chunks(COMPUTE_ROWS * self.in_numel).enumerate() {
            let first = k * COMPUTE_ROWS;
            let per_channel = self.channel_outputs(graph, xs, baseline);
            for (c, out) in per_channel.iter().enumerate() {
                for r in 0..xs.len() / self.in_numel {
                    t[((first + r) * c_all + c) * block..][..block]
                        .copy_from_slice(&out[r * block..][..block]);
                }
            }
        }
        let mut full = Vec::with_capacity(rows * self.out_numel);
        for r in 0..rows {
            let at = full.len();
            full.extend_from_slice(&self.base);
            let dst = &mut full[at..];
            for c in 0..c_all {
                add(
                    &mut dst[self.offset(c)..][..block],
                    &t[(r * c_all + c) * block..][..block],
                );
            }
        }
        let bases = addend.map(|addend| {
            let mut bases = Vec::with_capacity(rows * self.out_numel);
            for r in 0..rows {
                let add = &addend[r * self.out_numel..][..self.out_numel];
                bases.extend(self.base.iter().zip(add).map(|(b, a)| b + a));
                self::add(&mut full[r * self.out_numel..][..self.out_numel], add);
            }
            bases
        });
        NodeTable { t, full, bases }
    }

    /// For each channel c, `[rows, block]`: the one-channel layer applied to `x_c - b_c`.
    fn channel_outputs(&self, graph: &Graph, x: &[f32], baseline: &[f32]) -> Vec<Vec<f32>> {
        let rows = x.len() / self.in_numel;
        let spatial = self.in_numel / self.channels;
        let block = self.block;
        (0..self.channels)
            .into_par_iter()
            .map(|c| {
                let mut diff = Vec::with_capacity(rows * spatial);
                for r in 0..rows {
                    let xs = &x[r * self.in_numel + c * spatial..][..spatial];
                    diff.extend(xs.iter().map(|v| v - baseline[c]));
                }
                let mut out = vec![0.0f32; rows * block];
                match (&self.per_channel, &graph.nodes[self.node].op) {
                    (Some(convs), Op::Conv2d(_)) => {
                        let Shape::Image { h, w, .. } = graph.nodes[self.player_node].shape else {
                            unreachable!("a conv reads an image")
                        };
                        let Shape::Image { h: oh, w: ow, .. } = graph.nodes[self.node].shape else {
                            unreachable!("a conv makes an image")
                        };
                        let one = &convs[c];
                        let in_shape = Shape::Image { c: 1, h, w };
                        let out_shape = Shape::Image {
                            c: one.out_channels,
                            h: oh,
                            w: ow,
                        };
                        ops::conv::conv2d(one, in_shape, out_shape, &diff, rows, &mut out);
                    }
                    (_, Op::Linear(l)) => linear_block(l, c * spatial, spatial, &diff, &mut out),
                    _ => unreachable!("table nodes are conv or linear"),
                }
                out
            })
            .collect()
    }

    /// How coalitions `0..m` (`present_of(m, c)`: channel `c` of this layer present in
    /// coalition `m`) are assembled: computed once per request and shared by every work item,
    /// whose coalition ranges start at chain boundaries (so each item sees exactly the steps it
    /// would have planned itself; planning per item cost more than the sums for small tables).
    pub fn plan_request(&self, present_of: &dyn Fn(usize, usize) -> bool, m: usize) -> TablePlan {
        let steps = steps(present_of, 0..m, self.channels, self.subset_sums());
        let dense = self.dense_rows(&steps);
        let per_group = self.channels_per_group;
        let mut member = vec![false; self.channels];
        let mut index: Vec<Vec<u8>> = (0..self.channels / per_group)
            .map(|_| Vec::with_capacity(dense.len() * subsets::groups(per_group)))
            .collect();
        for &k in &dense {
            match &steps[k] {
                Step::Fresh(present) => {
                    member.fill(false);
                    present.iter().for_each(|&c| member[c] = true);
                }
                Step::Complement(absent) => {
                    member.fill(true);
                    absent.iter().for_each(|&c| member[c] = false);
                }
                Step::Incremental { .. } => unreachable!("dense rows are fresh or complement"),
            }
            for (g, index) in index.iter_mut().enumerate() {
                let first = g * per_group;
                subsets::push_index(per_group, |c| member[first + c], index);
            }
        }
        TablePlan {
            steps,
            dense,
            index,
        }
    }

    /// Outputs `[coalitions, rows, out]` of coalitions `coalitions` (a range of `plan`'s
    /// coalitions starting at a chain boundary) on cache rows `rows`, into `out`.
    pub fn compose(
        &self,
        table: &NodeTable,
        plan: &TablePlan,
        coalitions: std::ops::Range<usize>,
        rows: &[usize],
        out: &mut [f32],
    ) {
        debug_assert_eq!(
            coalitions.start % CHAIN,
            0,
            "items start at chain boundaries"
        );
        let first = coalitions.start;
        let plans = &plan.steps[coalitions.clone()];
        // The dense rows of this range, as positions in `plan.dense` and local indices.
        let lo = plan.dense.partition_point(|&k| k < coalitions.start);
        let hi = plan.dense.partition_point(|&k| k < coalitions.end);
        let dense: Vec<usize> = plan.dense[lo..hi].iter().map(|&k| k - first).collect();
        let (e, numel, block, c_all) = (rows.len(), self.out_numel, self.block, self.channels);
        for (ri, &row) in rows.iter().enumerate() {
            let tr = &table.t[row * c_all * block..][..c_all * block];
            let full = &table.full[row * numel..][..numel];
            let base = match &table.bases {
                Some(bases) => &bases[row * numel..][..numel],
                None => &self.base[..],
            };
            let sparse = |k: usize, out: &mut [f32]| {
                let at = (k * e + ri) * numel;
                let (before, rest) = out.split_at_mut(at);
                let dst = &mut rest[..numel];
                let (start, plus, minus) = match &plans[k] {
                    Step::Fresh(plus) => (base, &plus[..], &[][..]),
                    Step::Complement(minus) => (full, &[][..], &minus[..]),
                    Step::Incremental { plus, minus } => {
                        let prev = &before[((k - 1) * e + ri) * numel..][..numel];
                        (prev, &plus[..], &minus[..])
                    }
                };
                dst.copy_from_slice(start);
                for &c in plus {
                    add(
                        &mut dst[self.offset(c)..][..block],
                        &tr[c * block..][..block],
                    );
                }
                for &c in minus {
                    sub(
                        &mut dst[self.offset(c)..][..block],
                        &tr[c * block..][..block],
                    );
                }
            };
            // Dense rows first (they read nothing but the table), then the rest in order (an
            // incremental row reads the row before it, dense or not).
            self.subset_rows(plan, lo..hi, &dense, tr, base, ri, e, out);
            let mut dense = dense.iter().peekable();
            for k in 0..plans.len() {
                if dense.next_if_eq(&&k).is_none() {
                    sparse(k, out);
                }
            }
        }
    }

    /// Whether a step is cheaper as a subset-sum row (one add per group of
    /// [`subsets::BITS`] channels, from sums in L2) than as table row adds (its listed
    /// channels, each a pass over `block` floats streamed from L2/L3).
    fn dense(&self, step: &Step) -> bool {
        match step {
            Step::Fresh(l) | Step::Complement(l) => {
                self.subset_sums() && dense_count(l.len(), self.channels)
            }
            Step::Incremental { .. } => false,
        }
    }

    /// Whether coalitions may be subset-sum rows at all: a group of fewer than [`DENSE_RATIO`]
    /// channels has too few channels for the sums to beat table adds.
    fn subset_sums(&self) -> bool {
        self.channels_per_group >= DENSE_RATIO
    }

    /// The coalitions (indices into `plans`, ascending) summed by subset sums: the dense steps
    /// of every chain that has at least [`MIN_SUBSET_ROWS`] of them. Decided per chain, so
    /// which rows take which path (and so their rounding) does not depend on how the request is
    /// split into work items, which start at chain boundaries.
    fn dense_rows(&self, plans: &[Step]) -> Vec<usize> {
        let mut rows = Vec::new();
        for start in (0..plans.len()).step_by(CHAIN) {
            let chain = start..(start + CHAIN).min(plans.len());
            let dense: Vec<usize> = chain.filter(|&k| self.dense(&plans[k])).collect();
            if dense.len() >= MIN_SUBSET_ROWS {
                rows.extend(dense);
            }
        }
        rows
    }

    /// Dense rows `dense` (local indices of `plan.dense[positions]`) of example `ri` of `e`:
    /// `base + membership x T` by subset sums, one call per group, written at their places in
    /// `out`.
    #[allow(clippy::too_many_arguments)]
    fn subset_rows(
        &self,
        plan: &TablePlan,
        positions: std::ops::Range<usize>,
        dense: &[usize],
        tr: &[f32],
        base: &[f32],
        ri: usize,
        e: usize,
        out: &mut [f32],
    ) {
        if dense.is_empty() {
            return;
        }
        let (block, numel, per_group) = (self.block, self.out_numel, self.channels_per_group);
        let per_row = subsets::groups(per_group);
        for (g, index) in plan.index.iter().enumerate() {
            let channels = g * per_group..(g + 1) * per_group;
            let at = self.offset(channels.start);
            let dst: Vec<usize> = dense.iter().map(|&k| (k * e + ri) * numel + at).collect();
            subsets::SubsetRows {
                table: &tr[channels.start * block..channels.end * block],
                channels: per_group,
                block,
                base: &base[at..][..block],
                index: &index[positions.start * per_row..positions.end * per_row],
                dst: &dst,
            }
            .sum_into(out);
        }
    }
}

/// A coalition listing more than `channels / DENSE_RATIO` channels is summed by subset sums
/// (where a group has at least that many channels).
const DENSE_RATIO: usize = 8;

/// A chain with fewer dense rows than this sums them as table rows: building the subset sums
/// costs about `2^BITS / BITS` table passes, which a single row (a chain's restart along a
/// walk) does not repay.
const MIN_SUBSET_ROWS: usize = 4;

/// Whether `updates` table rows cost more than a subset-sum row over `channels`.
fn dense_count(updates: usize, channels: usize) -> bool {
    updates * DENSE_RATIO > channels
}

/// How a request's coalitions are assembled from one table node's tables.
pub struct TablePlan {
    /// One step per coalition.
    steps: Vec<Step>,
    /// The coalitions summed by subset sums, ascending.
    dense: Vec<usize>,
    /// Per group of the layer's channels (conv groups), the subset index of each dense row in
    /// each group of [`subsets::BITS`] channels: `[dense, subsets::groups(channels per group)]`.
    index: Vec<Vec<u8>>,
}

/// Per-example tables of one node, for the rows of a shared cache.
pub struct NodeTable {
    /// `[rows, channels, block]`.
    pub t: Vec<f32>,
    /// The layer's unmasked output `[rows, out]` (`base + sum of every channel's entry`, plus
    /// the addend).
    pub full: Vec<f32>,
    /// With an addend, each row's base (`[rows, out]`: the spec's base plus the addend).
    pub bases: Option<Vec<f32>>,
}

/// How each of coalitions `coalitions` is assembled from the one before it in the range.
fn steps(
    present_of: &dyn Fn(usize, usize) -> bool,
    coalitions: std::ops::Range<usize>,
    channels: usize,
    dense: bool,
) -> Vec<Step> {
    let mut prev: Option<Vec<bool>> = None;
    coalitions
        .map(|m| {
            let present: Vec<bool> = (0..channels).map(|c| present_of(m, c)).collect();
            // The row before, unless this row starts a chain (or the range).
            let before = prev.as_deref().filter(|_| m % CHAIN != 0);
            let step = Step::choose(&present, before, dense);
            prev = Some(present);
            step
        })
        .collect()
}

/// How one coalition's output is assembled; the lists are channel indices.
enum Step {
    /// `base + sum of present`.
    Fresh(Vec<usize>),
    /// `full - sum of absent`.
    Complement(Vec<usize>),
    /// `previous + sum of joined - sum of left`.
    Incremental { plus: Vec<usize>, minus: Vec<usize> },
}

impl Step {
    /// Table entries added or subtracted.
    #[cfg(test)]
    fn updates(&self) -> usize {
        match self {
            Step::Fresh(l) | Step::Complement(l) => l.len(),
            Step::Incremental { plus, minus } => plus.len() + minus.len(),
        }
    }

    /// The cheapest way to assemble `present`; with `dense`, a row whose cheapest list is long
    /// is listed as fresh or complement so it goes to the subset sums (whose cost does not depend on
    /// the list).
    fn choose(present: &[bool], prev: Option<&[bool]>, dense: bool) -> Step {
        let on = |want: bool| -> Vec<usize> {
            (0..present.len()).filter(|&c| present[c] == want).collect()
        };
        let n_present = present.iter().filter(|&&p| p).count();
        let n_absent = present.len() - n_present;
        if let Some(prev) = prev {
            let changed = present.iter().zip(prev).filter(|(a, b)| a != b).count();
            if changed < n_present.min(n_absent) && !(dense && dense_count(changed, present.len()))
            {
                let moved = |joined: bool| -> Vec<usize> {
                    (0..present.len())
                        .filter(|&c| present[c] != prev[c] && present[c] == joined)
                        .collect()
                };
                return Step::Incremental {
                    plus: moved(true),
                    minus: moved(false),
                };
            }
        }
        if n_present <= n_absent {
            Step::Fresh(on(true))
        } else {
            Step::Complement(on(false))
        }
    }
}

#[inline]
fn add(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

#[inline]
fn sub(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d -= s);
}

/// Conv `c` restricted to input channel `ch`: one input channel, its group's output channels,
/// no bias.
fn single_channel(c: &Conv2d, ch: usize) -> Conv2d {
    let (cin_g, cout_g) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let (g, ci) = (ch / cin_g, ch % cin_g);
    let taps = c.kernel.0 * c.kernel.1;
    let mut weight = Vec::with_capacity(cout_g * taps);
    for o in 0..cout_g {
        let oc = g * cout_g + o;
        weight.extend_from_slice(&c.weight[(oc * cin_g + ci) * taps..][..taps]);
    }
    Conv2d {
        in_channels: 1,
        out_channels: cout_g,
        kernel: c.kernel,
        stride: c.stride,
        padding: c.padding,
        dilation: c.dilation,
        groups: 1,
        weight,
        bias: vec![0.0; cout_g],
        has_bias: false,
    }
}

/// `out[rows, out_features] = diff[rows, len] * W[:, from..from + len]^T`.
fn linear_block(l: &Linear, from: usize, len: usize, diff: &[f32], out: &mut [f32]) {
    let rows = diff.len() / len.max(1);
    let n = l.out_features;
    // SAFETY: diff is [rows, len] row-major; the weight block is read transposed from W
    // ([n, in] row-major, element (k, o) at o * in + from + k); out is [rows, n].
    unsafe {
        matrixmultiply::sgemm(
            rows,
            len,
            n,
            1.0,
            diff.as_ptr(),
            len as isize,
            1,
            l.weight.as_ptr().add(from),
            1,
            l.in_features as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A permutation walk (row k: the first k players of an order present, then back down)
    /// costs one table entry per step, apart from the chain restarts, which cost at most half
    /// the channels.
    #[test]
    fn a_walk_step_costs_one_table_entry() {
        let n = 100;
        let order: Vec<usize> = (0..n).map(|i| (i * 37) % n).collect();
        let mut rows: Vec<Vec<bool>> = Vec::new();
        let mut row = vec![false; n];
        rows.push(row.clone());
        for &c in order.iter().chain(order.iter()) {
            row[c] = !row[c];
            rows.push(row.clone());
        }
        let present = |m: usize, c: usize| rows[m][c];
        // The same with subset-sum rows allowed: a walk step stays one table entry.
        assert_eq!(
            steps(&present, 0..rows.len(), n, true)
                .iter()
                .map(Step::updates)
                .collect::<Vec<_>>(),
            steps(&present, 0..rows.len(), n, false)
                .iter()
                .map(Step::updates)
                .collect::<Vec<_>>()
        );
        let all = steps(&present, 0..rows.len(), n, false);
        let mut total = 0;
        for (m, step) in all.iter().enumerate() {
            let u = step.updates();
            if m % CHAIN == 0 {
                assert!(u <= n / 2, "restart at row {m} costs {u}");
            } else {
                assert!(u <= 1, "walk step {m} costs {u} table entries");
            }
            total += u;
        }
        let restarts = rows.len().div_ceil(CHAIN);
        assert!(total <= rows.len() + restarts * n / 2);
        // A range that starts mid-chain starts from scratch, then follows the walk.
        let part = steps(&present, 40..60, n, false);
        assert!(part[0].updates() <= n / 2);
        assert!(part[1..].iter().all(|s| s.updates() <= 1));
    }

    /// Fresh sums take the present channels, complements the absent ones, whichever is fewer.
    #[test]
    fn the_cheaper_of_present_and_absent_is_summed() {
        let few = [true, false, false, false];
        assert!(matches!(Step::choose(&few, None, false), Step::Fresh(l) if l == [0]));
        let most = [true, true, false, true];
        assert!(matches!(Step::choose(&most, None, false), Step::Complement(l) if l == [2]));
        let prev = [true, true, false, false];
        let now = [true, false, true, false];
        // Two changes vs two present: not cheaper, so a fresh sum.
        assert!(matches!(
            Step::choose(&now, Some(&prev), false),
            Step::Fresh(_)
        ));
    }
}

//! The CPU [`Evaluator`]: splits a request into (coalitions x examples) work items run in
//! parallel, and reduces each coalition's metric.

use crate::dependent::{run_item, table_plans, Item};
use crate::plan::{Plan, PlanOptions};
use crate::shared::SharedCache;
use crate::table::CHAIN;
use nshap_model::backend::check_request;
use nshap_model::{BackendError, BackendInfo, EvalJob, Evaluator, Examples, MaskBatch, Metric};
use rayon::prelude::*;
use std::sync::Arc;

/// Tuning knobs of the CPU backend.
#[derive(Clone, Debug)]
pub struct CpuOptions {
    /// Worker threads (default: rayon's global pool, one per core).
    pub threads: Option<usize>,
    /// Bytes of activations one work item may hold (bounds memory per thread).
    pub item_bytes: usize,
    /// Largest shared cache (bytes) kept across calls; above it the shared stage is recomputed
    /// for each call's examples. Per-example tables (see `table.rs`) are used only where every
    /// example's fit in it.
    pub cache_bytes: usize,
    /// Use per-example tables for conv and linear layers after a player node where they pay.
    pub tables: bool,
}

impl Default for CpuOptions {
    fn default() -> CpuOptions {
        CpuOptions {
            threads: None,
            item_bytes: 64 << 20,
            cache_bytes: 2 << 30,
            tables: true,
        }
    }
}

/// Activations one table-bound work item may hold: about one core's L2, so each node's output
/// is still cached when the next node reads it.
const CACHED_ITEM_BYTES: usize = 1 << 20;

fn plan_options(job: &EvalJob, options: &CpuOptions, pushdown: bool) -> PlanOptions {
    PlanOptions {
        pushdown,
        tables: options.tables && pushdown,
        examples: job.data.len(),
        cache_bytes: options.cache_bytes,
    }
}

pub struct CpuEvaluator {
    job: EvalJob,
    plan: Plan,
    options: CpuOptions,
    pool: Option<Arc<rayon::ThreadPool>>,
    /// Shared stage for the whole eval set, computed on first use when it fits `cache_bytes`.
    full_cache: Option<SharedCache>,
}

impl CpuEvaluator {
    pub fn new(job: EvalJob, options: CpuOptions) -> Result<CpuEvaluator, BackendError> {
        if job.players.is_empty() {
            return Err(BackendError::Invalid("the job has no players".into()));
        }
        let plan = Plan::new(&job.graph, &job.players, plan_options(&job, &options, true))?;
        CpuEvaluator::with_plan(job, plan, options)
    }

    /// An evaluator that never moves masks past channel-wise ops (the plain path, for tests).
    #[cfg(test)]
    pub(crate) fn without_pushdown(
        job: EvalJob,
        options: CpuOptions,
    ) -> Result<CpuEvaluator, BackendError> {
        if job.players.is_empty() {
            return Err(BackendError::Invalid("the job has no players".into()));
        }
        let plan = Plan::new(
            &job.graph,
            &job.players,
            plan_options(&job, &options, false),
        )?;
        CpuEvaluator::with_plan(job, plan, options)
    }

    fn with_plan(
        job: EvalJob,
        plan: Plan,
        options: CpuOptions,
    ) -> Result<CpuEvaluator, BackendError> {
        let pool = match options.threads {
            Some(t) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .map_err(|e| BackendError::Invalid(format!("cannot start {t} threads: {e}")))?,
            )),
            None => None,
        };
        Ok(CpuEvaluator {
            job,
            plan,
            options,
            pool,
            full_cache: None,
        })
    }

    fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    fn in_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Make sure a cache covering `examples` exists; returns the cache rows to use.
    fn prepare_cache(&mut self, examples: Examples<'_>) -> (Option<SharedCache>, Vec<usize>) {
        let n = self.job.data.len();
        let fits =
            n * (self.plan.retained_numel + self.plan.table_numel) * 4 <= self.options.cache_bytes;
        if fits && self.full_cache.is_none() {
            let (plan, data) = (&self.plan, &self.job.data);
            let cache = self.in_pool(|| SharedCache::compute(plan, data, (0..n as u32).collect()));
            self.full_cache = Some(cache);
        }
        match (fits, examples) {
            (true, Examples::All) => (None, (0..n).collect()),
            (true, Examples::Subset(s)) => (None, s.iter().map(|&i| i as usize).collect()),
            (false, ex) => {
                let ids: Vec<u32> = match ex {
                    Examples::All => (0..n as u32).collect(),
                    Examples::Subset(s) => s.to_vec(),
                };
                let rows = (0..ids.len()).collect();
                let (plan, data) = (&self.plan, &self.job.data);
                (
                    Some(self.in_pool(|| SharedCache::compute(plan, data, ids))),
                    rows,
                )
            }
        }
    }

    /// Split M coalitions x B rows into items of bounded memory, enough of them for every thread.
    ///
    /// With tables, coalition blocks start at multiples of [`CHAIN`] so incremental chains (and
    /// so the values) do not depend on the split, and an item holds as many coalitions of as few
    /// examples as it can: each example's table (a MiB for a 64-channel conv) is read once per
    /// item, so rows of one example share that read. Where the tables set the pace (no larger
    /// GEMMs after them), an item's activations are also kept within [`CACHED_ITEM_BYTES`]:
    /// on the players-inside-a-block benchmark 32 coalitions x 8 examples per item ran 1.3x
    /// slower than 64 x 3, and that 1.25x slower than 64 x 1; a GEMM-bound stage (ResNet-18
    /// after a table) ran 1.35x slower at 64 x 1 than at 32 x 8, its weights packed per call.
    fn items<'r>(&self, m: usize, rows: &'r [usize]) -> Vec<Item<'r>> {
        let numel = self.plan.max_dependent_numel.max(1);
        let max_rows = (self.options.item_bytes / (numel * 4 * 3)).clamp(1, 4096);
        let chained = self.plan.tables.iter().any(Option::is_some);
        // Keep at least ~4 items per thread when the work allows it.
        let want = 4 * self.threads();
        let count = |cm: usize, ex: usize| m.div_ceil(cm) * rows.len().div_ceil(ex);
        let (mut cm, mut ex_chunk);
        if chained {
            let max_rows = if self.plan.gemm_bound() {
                max_rows
            } else {
                max_rows.min(CACHED_ITEM_BYTES / (numel * 4)).max(CHAIN)
            };
            cm = m.max(1).div_ceil(CHAIN).min((max_rows / CHAIN).max(1)) * CHAIN;
            ex_chunk = (max_rows / cm).clamp(1, rows.len().clamp(1, 128));
            // Fewer examples per item first, then (down to the chain length) fewer coalitions.
            while ex_chunk > 1 && count(cm, ex_chunk) < want {
                ex_chunk = ex_chunk.div_ceil(2);
            }
            while cm > CHAIN && count(cm, ex_chunk) < want {
                cm = (cm / 2).div_ceil(CHAIN) * CHAIN;
            }
        } else {
            ex_chunk = rows.len().clamp(1, 128).min(max_rows);
            cm = (max_rows / ex_chunk).max(1);
            // Fewer coalitions per item first.
            while cm > 1 && count(cm, ex_chunk) < want {
                cm /= 2;
            }
        }
        let mut items = Vec::new();
        for c0 in (0..m).step_by(cm) {
            for (k, r) in rows.chunks(ex_chunk).enumerate() {
                items.push(Item {
                    coalitions: c0..(c0 + cm).min(m),
                    rows: r,
                    first: k * ex_chunk,
                });
            }
        }
        items
    }

    /// Run all items, handing each item's logits to `per_item`, and collect what it returns.
    fn run<T: Send>(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
        per_item: impl Fn(&Item<'_>, &[u32], &mut dyn FnMut(&mut dyn FnMut(usize, usize, &[f32]))) -> T
            + Sync,
    ) -> Result<(Vec<T>, usize), BackendError> {
        check_request(&self.job, examples, masks)?;
        let (own, rows) = self.prepare_cache(examples);
        let cache = own
            .as_ref()
            .or(self.full_cache.as_ref())
            .expect("a cache exists");
        let items = self.items(masks.len(), &rows);
        let (plan, data) = (&self.plan, &*self.job.data);
        let tables = table_plans(plan, masks);
        let out = self.in_pool(|| {
            items
                .par_iter()
                .map(|item| {
                    per_item(item, &cache.examples, &mut |sink| {
                        run_item(plan, cache, data, masks, &tables, item, sink)
                    })
                })
                .collect()
        });
        Ok((out, rows.len()))
    }
}

impl Evaluator for CpuEvaluator {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "cpu".into(),
            device: format!("{} threads", self.threads()),
            plan: self.plan.choices.clone(),
        }
    }

    fn evaluate(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
    ) -> Result<Vec<f64>, BackendError> {
        let metric = self.job.metric.clone();
        let data = self.job.data.clone();
        let (parts, _) = self.run(examples, masks, |item, example_of, run| {
            let mut sums = vec![(0.0f64, 0usize); item.coalitions.len()];
            run(&mut |m, r, logits| {
                let example = example_of[item.rows[r]] as usize;
                if let Some(s) = metric.score_example(logits, &data, example) {
                    let acc = &mut sums[m - item.coalitions.start];
                    acc.0 += s;
                    acc.1 += 1;
                }
            });
            (item.coalitions.start, sums)
        })?;
        let mut totals = vec![(0.0f64, 0usize); masks.len()];
        for (start, sums) in parts {
            for (k, (s, c)) in sums.into_iter().enumerate() {
                totals[start + k].0 += s;
                totals[start + k].1 += c;
            }
        }
        Ok(totals
            .into_iter()
            .map(|(s, c)| Metric::finish(s, c))
            .collect())
    }

    fn logits(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
    ) -> Result<Vec<f32>, BackendError> {
        let classes = self.plan.graph.num_classes();
        let (parts, b) = self.run(examples, masks, |item, _, run| {
            let mut out = Vec::new();
            run(&mut |m, r, logits| out.push((m, item.first + r, logits.to_vec())));
            out
        })?;
        let mut all = vec![0.0f32; masks.len() * b * classes];
        for (m, pos, l) in parts.into_iter().flatten() {
            all[(m * b + pos) * classes..(m * b + pos + 1) * classes].copy_from_slice(&l);
        }
        Ok(all)
    }
}

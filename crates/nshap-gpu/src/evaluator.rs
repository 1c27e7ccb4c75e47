//! A prepared job on the device: weights uploaded, pipelines built, buffers pooled.
//!
//! One `evaluate` call: upload all masks, labels and every dispatch's parameters once; then, per
//! example chunk, upload its inputs and record one command buffer that runs the shared prefix
//! once and the per-coalition suffix plus the metric reduction for each coalition chunk; submit
//! without waiting; finally copy the per-chunk metric sums to a staging buffer and read them back
//! once. The host never waits between chunks.

use crate::buffers::{self, GrowBuffer};
use crate::chunk::{self, ChunkLimits, Chunks};
use crate::device::GpuContext;
use crate::error::GpuError;
use crate::kernels::{Kernel, Pipelines};
use crate::options::{GpuOptions, Precision};
use crate::params::{self, ChunkRows, Dispatch, Params};
use crate::plan::{Plan, PlanOptions, Slot, StepOp, TensorId};
use nshap_model::backend::check_request;
use nshap_model::{
    BackendError, BackendInfo, EvalJob, Evaluator, Examples, Graph, MaskBatch, Metric, Op,
};
use std::ops::Range;
use std::sync::Arc;

/// Weights of one step: the weight matrix (storage precision) and an f32 side buffer (bias,
/// batchnorm scale and shift, per-channel scale or slope, layernorm weight, bias and eps).
struct StepWeights {
    weights: Option<wgpu::Buffer>,
    aux: Option<wgpu::Buffer>,
}

pub(crate) struct GpuEvaluator {
    ctx: Arc<GpuContext>,
    pipelines: Arc<Pipelines>,
    precision: Precision,
    budget: u64,
    job: EvalJob,
    /// The batchnorm-folded graph the plan refers to.
    graph: Graph,
    plan: Plan,
    classes: usize,
    /// Pipelines of the steps in execution order (shared, then suffix), and of the metric.
    step_pipelines: Vec<Arc<wgpu::ComputePipeline>>,
    metric_pipeline: Arc<wgpu::ComputePipeline>,
    step_weights: Vec<StepWeights>,
    baselines: wgpu::Buffer,
    dummy: wgpu::Buffer,
    input: GrowBuffer,
    shared: Vec<GrowBuffer>,
    suffix: Vec<GrowBuffer>,
    masks: GrowBuffer,
    labels: GrowBuffer,
    params: GrowBuffer,
    results: GrowBuffer,
    staging: GrowBuffer,
    /// Bind groups of every step and of the metric; rebuilt only when a pool buffer grows.
    bind_groups: Option<(Vec<wgpu::BindGroup>, wgpu::BindGroup)>,
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);

impl GpuEvaluator {
    pub fn new(
        ctx: Arc<GpuContext>,
        pipelines: Arc<Pipelines>,
        options: &GpuOptions,
        job: EvalJob,
    ) -> Result<GpuEvaluator, GpuError> {
        let (precision, budget) = (options.precision, options.memory_budget_bytes);
        let sequence_ops: Vec<String> = job
            .graph
            .nodes
            .iter()
            .filter(|n| {
                matches!(
                    n.op,
                    Op::Embedding(_) | Op::Attention(_) | Op::SelectPosition | Op::RmsNorm(_)
                )
            })
            .map(|n| format!("{} ({})", n.name, n.op.kind()))
            .collect();
        if job.players.has_values() {
            return Err(GpuError::Unsupported {
                adapter: ctx.summary.name.clone(),
                what: "removal values per position or per example (mean and resample ablation of a language model; use --backend cpu)".into(),
            });
        }
        if !sequence_ops.is_empty() {
            return Err(GpuError::Unsupported {
                adapter: ctx.summary.name.clone(),
                what: format!(
                    "language-model ops have no GPU kernels yet (use --backend cpu): {}",
                    sequence_ops.join(", ")
                ),
            });
        }
        let (graph, players) = nshap_model::fold::fold_batchnorm(&job.graph, &job.players);
        let limits = &ctx.limits;
        let device_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_binding = options
            .max_weight_binding_bytes
            .map_or(device_binding, |m| m.min(device_binding));
        let elements =
            |bytes: u64| usize::try_from(bytes / precision.bytes() as u64).unwrap_or(usize::MAX);
        let plan = Plan::build_with(
            &graph,
            &players,
            PlanOptions {
                max_weight_elements: elements(max_binding),
                fast_paths: options.fast_paths,
                // At least four examples' tables in one binding and in the memory budget.
                max_table_elements: elements(device_binding.min(budget) / 4),
            },
        );
        let players = plan.players.clone();
        let device = &ctx.device;
        let mut step_pipelines = Vec::new();
        let mut step_weights = Vec::new();
        for step in plan.steps() {
            step_pipelines.push(pipelines.get(device, step.op.kernel(), precision)?);
            let (weights, aux) = match &step.op {
                StepOp::Linear { node, outputs } => match &graph.nodes[*node].op {
                    Op::Linear(l) => {
                        let rows = outputs.start * l.in_features..outputs.end * l.in_features;
                        (
                            Some(buffers::transpose_linear(
                                &l.weight[rows],
                                outputs.len(),
                                l.in_features,
                            )),
                            Some(l.bias[outputs.clone()].to_vec()),
                        )
                    }
                    _ => (None, None),
                },
                StepOp::Conv2d { node }
                | StepOp::TableBuild { node }
                | StepOp::TableBase { node } => {
                    // The transposed layouts of conv2d.wgsl serve a table's build too: group c of
                    // the per-channel conv reads weights [c][taps][outputs of c's group], which is
                    // where the layer's own layout has them (a linear layer's [in][out] likewise).
                    let (weights, bias) = match &graph.nodes[*node].op {
                        Op::Conv2d(c) => (
                            buffers::transpose_conv(&c.weight, c.out_channels, c.groups),
                            c.bias.clone(),
                        ),
                        Op::Linear(l) => (
                            buffers::transpose_linear(&l.weight, l.out_features, l.in_features),
                            l.bias.clone(),
                        ),
                        _ => {
                            unreachable!("conv-kernel steps are planned for conv and linear nodes")
                        }
                    };
                    let bias = match &step.op {
                        StepOp::TableBuild { .. } => {
                            vec![
                                0.0;
                                plan.tensors[step.output].shape.numel()
                                    / graph.nodes[*node].shape.spatial()
                            ]
                        }
                        _ => bias,
                    };
                    (Some(weights), Some(bias))
                }
                StepOp::Affine { node } => match &graph.nodes[*node].op {
                    Op::BatchNorm(bn) => {
                        (None, Some([bn.scale.clone(), bn.shift.clone()].concat()))
                    }
                    Op::Scale(w) => (None, Some([w.clone(), vec![0.0; w.len()]].concat())),
                    Op::Prelu(slope) => (None, Some(slope.clone())),
                    _ => (None, None),
                },
                StepOp::LayerNorm { node } => match &graph.nodes[*node].op {
                    Op::LayerNorm(ln) => (
                        None,
                        Some([ln.weight.clone(), ln.bias.clone(), vec![ln.eps]].concat()),
                    ),
                    _ => (None, None),
                },
                _ => (None, None),
            };
            if let Some(w) = &weights {
                let bytes = (w.len() * precision.bytes()) as u64;
                if bytes > max_binding {
                    let node = match &step.op {
                        StepOp::Linear { node, .. }
                        | StepOp::Conv2d { node }
                        | StepOp::TableBuild { node }
                        | StepOp::TableBase { node } => *node,
                        _ => unreachable!("only linear and conv steps carry weight matrices"),
                    };
                    return Err(GpuError::WeightTooLarge {
                        layer: graph.nodes[node].name.clone(),
                        bytes,
                        limit: max_binding,
                    });
                }
            }
            step_weights.push(StepWeights {
                weights: weights.map(|w| buffers::upload_store(device, &step.label, &w, precision)),
                aux: aux.map(|a| buffers::upload_f32(device, &step.label, &a)),
            });
        }
        let metric_pipeline = pipelines.get(device, Kernel::Metric, precision)?;
        let baseline_values: Vec<f32> = players
            .layers()
            .iter()
            .flat_map(|l| l.baseline.iter().copied())
            .collect();
        let baselines = buffers::upload_f32(device, "nshap.baselines", &baseline_values);
        let dummy = buffers::upload_f32(device, "nshap.dummy", &[0.0]);
        let classes = graph.num_classes();
        let evaluator = GpuEvaluator {
            shared: plan
                .shared_slots
                .iter()
                .map(|_| GrowBuffer::new("nshap.shared", STORAGE))
                .collect(),
            suffix: plan
                .suffix_slots
                .iter()
                .map(|_| GrowBuffer::new("nshap.suffix", STORAGE | wgpu::BufferUsages::COPY_SRC))
                .collect(),
            input: GrowBuffer::new("nshap.input", STORAGE | wgpu::BufferUsages::COPY_SRC),
            masks: GrowBuffer::new("nshap.masks", STORAGE),
            labels: GrowBuffer::new("nshap.labels", STORAGE),
            params: GrowBuffer::new(
                "nshap.params",
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ),
            results: GrowBuffer::new("nshap.results", STORAGE | wgpu::BufferUsages::COPY_SRC),
            staging: GrowBuffer::new(
                "nshap.staging",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            bind_groups: None,
            ctx,
            pipelines,
            precision,
            budget,
            job,
            graph,
            plan,
            classes,
            step_pipelines,
            metric_pipeline,
            step_weights,
            baselines,
            dummy,
        };
        evaluator.ctx.check()?;
        Ok(evaluator)
    }

    fn chunks(&self, examples: usize, coalitions: usize) -> Chunks {
        let limits = &self.ctx.limits;
        chunk::choose(
            &self.plan,
            examples,
            coalitions,
            ChunkLimits {
                budget_bytes: self.budget,
                max_binding_bytes: limits
                    .max_storage_buffer_binding_size
                    .min(limits.max_buffer_size),
                element_bytes: self.precision.bytes() as u64,
            },
        )
    }

    fn slot_buffer(&self, t: TensorId) -> &wgpu::Buffer {
        match self.plan.tensors[t].slot {
            Slot::Input => self.input.get(),
            Slot::Shared(s) => self.shared[s].get(),
            Slot::Suffix(s) => self.suffix[s].get(),
        }
    }

    fn params_stride(&self) -> u64 {
        (std::mem::size_of::<Params>() as u64).next_multiple_of(u64::from(
            self.ctx.limits.min_uniform_buffer_offset_alignment,
        ))
    }

    /// Size every pool for `chunks` and the request; rebuild bind groups if anything grew.
    fn reserve(
        &mut self,
        chunks: Chunks,
        coalitions: usize,
        examples: usize,
        dispatches: usize,
        staging: u64,
    ) {
        let device = self.ctx.device.clone();
        let e = self.precision.bytes() as u64;
        let b = chunks.examples as u64;
        let mb = b * chunks.coalitions as u64;
        let mut grew = self
            .input
            .ensure(&device, b * self.plan.tensors[0].shape.numel() as u64 * e);
        for (buf, &numel) in self.shared.iter_mut().zip(&self.plan.shared_slots) {
            grew |= buf.ensure(&device, b * numel as u64 * e);
        }
        for (buf, &numel) in self.suffix.iter_mut().zip(&self.plan.suffix_slots) {
            grew |= buf.ensure(&device, mb * numel as u64 * e);
        }
        let words = self.job.players.len().div_ceil(32).max(1) as u64;
        grew |= self.masks.ensure(&device, coalitions as u64 * words * 4);
        grew |= self.labels.ensure(&device, examples as u64 * 4);
        grew |= self
            .params
            .ensure(&device, dispatches as u64 * self.params_stride());
        let echunks = examples.div_ceil(chunks.examples) as u64;
        grew |= self
            .results
            .ensure(&device, echunks * coalitions as u64 * 4);
        self.staging.ensure(&device, staging);
        if grew || self.bind_groups.is_none() {
            self.bind_groups = Some(self.build_bind_groups());
        }
    }

    fn build_bind_groups(&self) -> (Vec<wgpu::BindGroup>, wgpu::BindGroup) {
        let device = &self.ctx.device;
        let params = wgpu::BufferBinding {
            buffer: self.params.get(),
            offset: 0,
            size: wgpu::BufferSize::new(std::mem::size_of::<Params>() as u64),
        };
        let make = |label: &str, buffers: [&wgpu::Buffer; 6]| {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(params.clone()),
            }];
            entries.extend(
                buffers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource: b.as_entire_binding(),
                    }),
            );
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &self.pipelines.layout,
                entries: &entries,
            })
        };
        let steps = self
            .plan
            .steps()
            .zip(&self.step_weights)
            .map(|(step, w)| {
                let second = match (&step.op, step.inputs.get(1)) {
                    (StepOp::Add | StepOp::Mul { .. } | StepOp::TableSum { .. }, Some(&t)) => {
                        self.slot_buffer(t)
                    }
                    _ => w.weights.as_ref().unwrap_or(&self.dummy),
                };
                make(
                    &step.label,
                    [
                        self.slot_buffer(step.inputs[0]),
                        second,
                        w.aux.as_ref().unwrap_or(&self.dummy),
                        self.slot_buffer(step.output),
                        self.masks.get(),
                        &self.baselines,
                    ],
                )
            })
            .collect();
        let metric = make(
            "nshap.metric",
            [
                self.slot_buffer(self.plan.logits),
                &self.dummy,
                self.labels.get(),
                self.results.get(),
                self.masks.get(),
                &self.baselines,
            ],
        );
        (steps, metric)
    }

    /// The example indices of a request.
    fn indices(&self, examples: Examples<'_>) -> Vec<u32> {
        match examples {
            Examples::All => (0..self.job.data.len() as u32).collect(),
            Examples::Subset(s) => s.to_vec(),
        }
    }

    fn upload_inputs(&self, indices: &[u32]) {
        let numel = self.plan.tensors[0].shape.numel();
        let mut values = Vec::with_capacity(indices.len() * numel);
        for &i in indices {
            values.extend_from_slice(self.job.data.example(i as usize));
        }
        self.ctx.queue.write_buffer(
            self.input.get(),
            0,
            &buffers::store_bytes(&values, self.precision),
        );
    }

    fn chunk_rows(&self, er: &Range<usize>, mr: &Range<usize>) -> ChunkRows {
        ChunkRows {
            examples: er.len() as u32,
            coalitions: mr.len() as u32,
            mask_row0: mr.start as u32,
            mask_words: self.job.players.len().div_ceil(32).max(1) as u32,
        }
    }

    /// Record `dispatches[range]` (shared steps when `shared`, else suffix steps) into `pass`.
    fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        steps: Range<usize>,
        first_param: usize,
        dispatches: &[Dispatch],
    ) {
        let Some((groups, _)) = &self.bind_groups else {
            return;
        };
        let stride = self.params_stride();
        for (k, s) in steps.enumerate() {
            let d = &dispatches[first_param + k];
            pass.set_pipeline(&self.step_pipelines[s]);
            pass.set_bind_group(0, &groups[s], &[((first_param + k) as u64 * stride) as u32]);
            pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
        }
    }

    fn write_params(&self, dispatches: &[Dispatch]) {
        let stride = self.params_stride() as usize;
        let mut bytes = vec![0u8; dispatches.len().max(1) * stride];
        for (i, d) in dispatches.iter().enumerate() {
            bytes[i * stride..i * stride + std::mem::size_of::<Params>()]
                .copy_from_slice(bytemuck::bytes_of(&d.params));
        }
        self.ctx.queue.write_buffer(self.params.get(), 0, &bytes);
    }

    fn write_masks(&self, masks: &MaskBatch) {
        let mut words = masks.words().to_vec();
        if words.is_empty() {
            words.push(0);
        }
        self.ctx
            .queue
            .write_buffer(self.masks.get(), 0, bytemuck::cast_slice(&words));
    }

    /// Copy `bytes` from `source` to the staging buffer and read them back (the one wait).
    fn read_back(&self, source: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        let bytes = bytes.max(4).next_multiple_of(4);
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("nshap.read"),
            });
        encoder.copy_buffer_to_buffer(source, 0, self.staging.get(), 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        self.map_staging(bytes)
    }

    /// Wait for the device and read the first `bytes` of the staging buffer.
    fn map_staging(&self, bytes: u64) -> Result<Vec<u8>, GpuError> {
        let bytes = bytes.max(4).next_multiple_of(4);
        let staging = self.staging.get();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
            let _ = tx.send(r);
        });
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Device(format!("waiting for the device: {e}")))?;
        self.ctx.check()?;
        rx.recv()
            .map_err(|_| GpuError::Device("read-back callback dropped".into()))?
            .map_err(|e| GpuError::Device(format!("read-back failed: {e}")))?;
        let data = staging
            .get_mapped_range(0..bytes)
            .map_err(|e| GpuError::Device(format!("read-back mapping failed: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    fn check_job(&self, examples: Examples<'_>, masks: &MaskBatch) -> Result<(), BackendError> {
        check_request(&self.job, examples, masks)?;
        if let Metric::Custom(m) = &self.job.metric {
            return Err(BackendError::Unsupported {
                backend: "gpu",
                what: format!("custom metric {:?}", m.name()),
            });
        }
        self.ctx.check().map_err(BackendError::from)
    }

    fn evaluate_inner(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
    ) -> Result<Vec<f64>, GpuError> {
        let indices = self.indices(examples);
        let m_total = masks.len();
        let chunks = self.chunks(indices.len(), m_total);
        let e_ranges: Vec<Range<usize>> = chunk::ranges(indices.len(), chunks.examples).collect();
        let m_ranges: Vec<Range<usize>> = chunk::ranges(m_total, chunks.coalitions).collect();
        let n_shared = self.plan.shared_steps.len();
        let n_suffix = self.plan.suffix_steps.len();

        // Every dispatch of the call, in recording order.
        let mut dispatches = Vec::new();
        for (ei, er) in e_ranges.iter().enumerate() {
            let rows = self.chunk_rows(er, &(0..0));
            for step in &self.plan.shared_steps {
                dispatches.push(params::step_dispatch(&self.graph, &self.plan, step, rows));
            }
            for mr in &m_ranges {
                let rows = self.chunk_rows(er, mr);
                for step in &self.plan.suffix_steps {
                    dispatches.push(params::step_dispatch(&self.graph, &self.plan, step, rows));
                }
                let out_offset = (ei * m_total + mr.start) as u32;
                dispatches.push(params::metric_dispatch(
                    &self.plan,
                    &self.job.metric,
                    self.classes,
                    rows,
                    out_offset,
                    er.start as u32,
                ));
            }
        }
        let result_bytes = (e_ranges.len() * m_total * 4) as u64;
        self.reserve(
            chunks,
            m_total,
            indices.len(),
            dispatches.len(),
            result_bytes,
        );
        self.write_params(&dispatches);
        self.write_masks(masks);
        let labels: Vec<u32> = indices
            .iter()
            .map(|&i| self.job.data.labels[i as usize])
            .collect();
        self.ctx
            .queue
            .write_buffer(self.labels.get(), 0, bytemuck::cast_slice(&labels));

        let stride = self.params_stride();
        let mut next = 0;
        for er in &e_ranges {
            self.upload_inputs(&indices[er.clone()]);
            let mut encoder =
                self.ctx
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("nshap.chunk"),
                    });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                self.record(&mut pass, 0..n_shared, next, &dispatches);
                next += n_shared;
                for _ in &m_ranges {
                    self.record(&mut pass, n_shared..n_shared + n_suffix, next, &dispatches);
                    next += n_suffix;
                    let d = &dispatches[next];
                    let Some((_, metric_group)) = &self.bind_groups else {
                        unreachable!("reserved")
                    };
                    pass.set_pipeline(&self.metric_pipeline);
                    pass.set_bind_group(0, metric_group, &[(next as u64 * stride) as u32]);
                    pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
                    next += 1;
                }
            }
            self.ctx.queue.submit([encoder.finish()]);
        }
        let bytes = self.read_back(self.results.get(), result_bytes)?;
        let sums: &[f32] = bytemuck::cast_slice(&bytes[..result_bytes as usize]);
        let count = match self.job.metric {
            Metric::ClassAccuracy(c) => labels.iter().filter(|&&l| l == c).count(),
            _ => labels.len(),
        };
        Ok((0..m_total)
            .map(|m| {
                let sum: f64 = (0..e_ranges.len())
                    .map(|e| f64::from(sums[e * m_total + m]))
                    .sum();
                Metric::finish(sum, count)
            })
            .collect())
    }

    fn logits_inner(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
    ) -> Result<Vec<f32>, GpuError> {
        let indices = self.indices(examples);
        let (b_total, m_total, classes) = (indices.len(), masks.len(), self.classes);
        let chunks = self.chunks(b_total, m_total);
        let e_ranges: Vec<Range<usize>> = chunk::ranges(b_total, chunks.examples).collect();
        let m_ranges: Vec<Range<usize>> = chunk::ranges(m_total, chunks.coalitions).collect();
        let e = self.precision.bytes() as u64;
        let shared_logits = self.plan.tensors[self.plan.logits].shared;
        // Each chunk's logits are copied to their own 4-byte aligned region of the staging buffer,
        // so the whole request is recorded up front and read back once, as in `evaluate`.
        let mut regions = Vec::new();
        let mut staging = 0u64;
        let mut dispatches = Vec::new();
        for er in &e_ranges {
            dispatches.extend(self.plan.shared_steps.iter().map(|step| {
                params::step_dispatch(&self.graph, &self.plan, step, self.chunk_rows(er, &(0..0)))
            }));
            for mr in &m_ranges {
                let rows = self.chunk_rows(er, mr);
                dispatches.extend(
                    self.plan
                        .suffix_steps
                        .iter()
                        .map(|step| params::step_dispatch(&self.graph, &self.plan, step, rows)),
                );
                let held = if shared_logits {
                    er.len()
                } else {
                    er.len() * mr.len()
                };
                let bytes = (held * classes) as u64 * e;
                regions.push((er.clone(), mr.clone(), held, staging, bytes));
                staging += bytes.next_multiple_of(4);
            }
        }
        if staging > self.ctx.limits.max_buffer_size {
            return Err(GpuError::Device(format!(
                "{m_total} coalitions x {b_total} examples x {classes} classes of logits ({staging} bytes) exceed \
                 the largest buffer of the device ({} bytes): request fewer at a time",
                self.ctx.limits.max_buffer_size
            )));
        }
        self.reserve(chunks, m_total, b_total, dispatches.len(), staging);
        self.write_params(&dispatches);
        self.write_masks(masks);
        let (n_shared, n_suffix) = (self.plan.shared_steps.len(), self.plan.suffix_steps.len());
        let logits_buffer = self.slot_buffer(self.plan.logits).clone();
        let mut next = 0;
        let mut region = regions.iter();
        for er in &e_ranges {
            self.upload_inputs(&indices[er.clone()]);
            let mut encoder =
                self.ctx
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("nshap.logits"),
                    });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                self.record(&mut pass, 0..n_shared, next, &dispatches);
            }
            next += n_shared;
            for _ in &m_ranges {
                {
                    let mut pass =
                        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                    self.record(&mut pass, n_shared..n_shared + n_suffix, next, &dispatches);
                }
                next += n_suffix;
                let &(_, _, _, offset, bytes) = region.next().expect("one region per chunk");
                encoder.copy_buffer_to_buffer(
                    &logits_buffer,
                    0,
                    self.staging.get(),
                    offset,
                    bytes.next_multiple_of(4),
                );
            }
            self.ctx.queue.submit([encoder.finish()]);
        }
        let data = self.map_staging(staging)?;
        let mut out = vec![0.0f32; m_total * b_total * classes];
        for (er, mr, held, offset, _) in regions {
            let values =
                buffers::load_values(&data[offset as usize..], held * classes, self.precision);
            for (ml, m) in mr.clone().enumerate() {
                for (bl, b) in er.clone().enumerate() {
                    let src = ((ml * er.len() + bl) % held) * classes;
                    let dst = (m * b_total + b) * classes;
                    out[dst..dst + classes].copy_from_slice(&values[src..src + classes]);
                }
            }
        }
        Ok(out)
    }
}

impl Evaluator for GpuEvaluator {
    fn info(&self) -> BackendInfo {
        let s = &self.ctx.summary;
        BackendInfo {
            backend: "gpu".into(),
            device: format!(
                "{} ({:?} {}, {} {})",
                s.name, self.precision, s.backend, s.driver, s.driver_info
            ),
            plan: self.plan.choices.clone(),
        }
    }

    fn evaluate(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
    ) -> Result<Vec<f64>, BackendError> {
        self.check_job(examples, masks)?;
        if masks.is_empty() {
            return Ok(Vec::new());
        }
        if examples.len(&self.job.data) == 0 {
            return Ok(vec![Metric::finish(0.0, 0); masks.len()]);
        }
        Ok(self.evaluate_inner(examples, masks)?)
    }

    fn logits(
        &mut self,
        examples: Examples<'_>,
        masks: &MaskBatch,
    ) -> Result<Vec<f32>, BackendError> {
        check_request(&self.job, examples, masks)?;
        self.ctx.check()?;
        if masks.is_empty() || examples.len(&self.job.data) == 0 {
            return Ok(Vec::new());
        }
        Ok(self.logits_inner(examples, masks)?)
    }
}

//! [`GpuBackend`]: the learning core's [`Backend`] on the GPU. Forwards run through
//! [`GpuForward`] (frozen prefix once per image via `first_tuned`); the gradient estimate and
//! the optimiser step are WGSL kernels (shaders/grad.wgsl, shaders/optim.wgsl) that read the
//! LR layer inputs kept on the GPU and regenerate every noise value from its stream.
//!
//! What travels to the host: the per-row losses (and, for clean passes, the logits), and one
//! f32 per step (the gradient norm). Parameters are updated in the model's GPU buffers in
//! place; the CPU copy ([`GpuBackend::network`]) is synced lazily: tensors changed on the GPU
//! are marked stale and read back only when `network()`, `read_params` or
//! [`GpuBackend::sync_async`] asks for them.
//!
//! Natively the synchronous [`Backend`] trait is implemented by blocking on the `*_async`
//! methods; on wasm (no blocking in the browser) only the `*_async` methods exist.

mod grad;
mod optim;

use std::cell::{Cell, OnceCell};
use std::collections::BTreeSet;
use std::sync::Arc;

use grad::Layout;
use optim::GpuOptimizer;

use super::context::GpuContext;
use super::error::GpuError;
use super::forward::{ForwardOptions, GpuForward, LrInputs, RowOutputs};
use super::model::GpuModel;
use super::ops::{self, Op};
use super::plan::{Perturbation, QueryRow, RowPlan};
use super::readback::Staging;
use super::tensor::GpuTensor;
#[cfg(not(target_arch = "wasm32"))]
use crate::learn::backend::Backend;
use crate::learn::backend::{Batch, CleanOut, StepPlan};
use crate::learn::error::LearnError;
use crate::learn::estimate::{EstimatorKind, Query};
use crate::learn::optim::OptimizerConfig;
use crate::model::ViTForImageClassification;

/// What the last query forward left for the gradient.
struct Queried {
    seed: u64,
    step: u32,
    queries: Vec<Query>,
    inputs: LrInputs,
}

pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    model: GpuModel,
    /// The host copy; tensors in `stale` are newer on the GPU.
    net: ViTForImageClassification,
    stale: BTreeSet<u32>,
    /// `net` with the stale tensors read back, built on demand by `network()`.
    synced: OnceCell<ViTForImageClassification>,
    /// A failed lazy readback in `network()`, reported by the next fallible call.
    sync_error: Cell<Option<GpuError>>,
    last: Option<Queried>,
    optimizer: Option<GpuOptimizer>,
    /// Chunking of the forwards.
    pub forward: ForwardOptions,
}

fn config_err(message: String) -> LearnError {
    LearnError::Config { message }
}

impl GpuBackend {
    /// Uploads `net` to the device of `ctx`.
    pub fn new(ctx: Arc<GpuContext>, net: ViTForImageClassification) -> Result<Self, LearnError> {
        let model = GpuModel::upload(&ctx, &net)?;
        Ok(Self {
            ctx,
            model,
            net,
            stale: BTreeSet::new(),
            synced: OnceCell::new(),
            sync_error: Cell::new(None),
            last: None,
            optimizer: None,
            forward: ForwardOptions::default(),
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The device copy of the model (parameters as of the last step).
    pub fn gpu_model(&self) -> &GpuModel {
        &self.model
    }

    fn take_sync_error(&self) -> Result<(), LearnError> {
        match self.sync_error.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    fn check(&self, batch: &Batch) -> Result<(), LearnError> {
        self.take_sync_error()?;
        let per = self.net.config.image_numel();
        if batch.is_empty() || batch.pixels.len() != batch.len() * per {
            return Err(config_err(format!(
                "batch of {} labels has {} pixel values",
                batch.len(),
                batch.pixels.len()
            )));
        }
        Ok(())
    }

    async fn run(&self, batch: &Batch<'_>, plan: &RowPlan) -> Result<RowOutputs, LearnError> {
        let pending = GpuForward::submit_with(&self.ctx, &self.model, batch.pixels, plan, &self.forward)?;
        Ok(pending.read(&self.ctx).await?)
    }

    /// [`Backend::clean`]: every block once per image, losses and logits back.
    pub async fn clean_async(&mut self, batch: &Batch<'_>) -> Result<CleanOut, LearnError> {
        self.check(batch)?;
        let plan = RowPlan {
            rows: batch
                .labels
                .iter()
                .enumerate()
                .map(|(image, &label)| QueryRow {
                    image,
                    label,
                    perturbation: Perturbation::Clean,
                })
                .collect(),
            first_tuned: self.net.vit.layers.len(),
        };
        let out = self.run(batch, &plan).await?;
        Ok(CleanOut {
            losses: out.losses,
            logits: out.logits,
        })
    }

    /// [`Backend::query_losses`]: one forward over all query rows; the LR layer inputs stay
    /// on the GPU for [`GpuBackend::gradient_async`] / [`GpuBackend::step_async`].
    pub async fn query_losses_async(&mut self, batch: &Batch<'_>, plan: &StepPlan) -> Result<Vec<f32>, LearnError> {
        self.check(batch)?;
        self.last = None;
        let rows =
            plan.queries
                .iter()
                .map(|q| {
                    let label = *batch.labels.get(q.point).ok_or_else(|| {
                        config_err(format!("query of point {} in a batch of {}", q.point, batch.len()))
                    })?;
                    let perturbation = match plan.kind {
                        EstimatorKind::Lr { sigma, .. } => Perturbation::Lr {
                            seed: plan.seed,
                            step: plan.step,
                            sigma: q.sign * sigma,
                            sites: plan.sites.clone(),
                            row: q.noise,
                        },
                        EstimatorKind::Spsa { eps } => Perturbation::Weight {
                            seed: plan.seed,
                            step: plan.step,
                            direction: q.noise,
                            scale: q.sign * eps,
                            tensors: plan.tensors.clone(),
                        },
                    };
                    Ok(QueryRow {
                        image: q.point,
                        label,
                        perturbation,
                    })
                })
                .collect::<Result<Vec<_>, LearnError>>()?;
        let out = self
            .run(
                batch,
                &RowPlan {
                    rows,
                    first_tuned: plan.first_tuned,
                },
            )
            .await?;
        self.last = Some(Queried {
            seed: plan.seed,
            step: plan.step,
            queries: plan.queries.clone(),
            inputs: out.lr_inputs,
        });
        Ok(out.losses)
    }

    /// Records the estimate of `coefficients` into a fresh flat gradient.
    fn record_gradient(
        &self,
        plan: &StepPlan,
        coefficients: &[f32],
        ops: &mut Vec<Op>,
    ) -> Result<(GpuTensor, Layout), LearnError> {
        let layout = Layout::of(&self.model, &plan.tensors)?;
        let g = GpuTensor::zeros(&self.ctx, "gradient", &[layout.total])?;
        match plan.kind {
            EstimatorKind::Lr { .. } => {
                let last = self
                    .last
                    .as_ref()
                    .filter(|l| l.seed == plan.seed && l.step == plan.step && l.queries == plan.queries)
                    .ok_or_else(|| config_err("the LR gradient needs query_losses of the same plan first".into()))?;
                grad::record_lr(
                    &self.ctx,
                    &self.model,
                    plan,
                    &last.inputs,
                    coefficients,
                    &layout,
                    &g,
                    ops,
                )?;
            }
            EstimatorKind::Spsa { .. } => {
                let dirs = plan.queries.iter().map(|q| q.noise as usize + 1).max().unwrap_or(0);
                if coefficients.len() < dirs {
                    return Err(config_err(format!(
                        "{} SPSA coefficients for {dirs} directions",
                        coefficients.len()
                    )));
                }
                grad::record_spsa(&self.ctx, &self.model, plan, coefficients, &layout, &g, ops)?;
            }
        }
        Ok((g, layout))
    }

    /// [`Backend::gradient`]: the estimate, read back flat in `plan.tensors` order.
    pub async fn gradient_async(&mut self, plan: &StepPlan, coefficients: &[f32]) -> Result<Vec<f32>, LearnError> {
        let mut ops = Vec::new();
        let (g, _) = self.record_gradient(plan, coefficients, &mut ops)?;
        ops::submit(&self.ctx, &ops)?;
        Ok(g.read(&self.ctx).await?)
    }

    /// One optimiser step entirely on the GPU: gradient, global norm, clipping, SGD/Adam
    /// update of the model's buffers; one submission, one f32 (the norm) read back. The
    /// optimiser state (`m`, `v`, `t`) lives here and restarts when the tuned tensors or the
    /// optimiser kind change. A non-finite norm leaves parameters and state unchanged.
    pub async fn step_async(
        &mut self,
        plan: &StepPlan,
        coefficients: &[f32],
        config: &OptimizerConfig,
        lr: f32,
    ) -> Result<f32, LearnError> {
        self.take_sync_error()?;
        config.validate()?;
        let mut ops = Vec::new();
        let (g, layout) = self.record_gradient(plan, coefficients, &mut ops)?;
        let mut opt = match self.optimizer.take() {
            Some(o) if o.fits(&layout, config.kind) => o,
            _ => GpuOptimizer::new(&self.ctx, layout, config.kind)?,
        };
        let recorded = opt.record(&self.model, &g, config, lr, &mut ops);
        let norm_buf = opt.norm.buffer.clone();
        self.optimizer = Some(opt);
        recorded?;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        ops::record(&self.ctx, &mut encoder, &ops)?;
        let staging = Staging::record(&self.ctx, &mut encoder, &norm_buf, 1);
        self.ctx.queue.submit([encoder.finish()]);
        self.stale.extend(plan.tensors.iter().copied());
        self.synced = OnceCell::new();
        let norm = staging.read(&self.ctx).await?.first().copied().unwrap_or(f32::NAN);
        if !norm.is_finite() {
            if let Some(o) = self.optimizer.as_mut() {
                o.t -= 1;
            }
            return Err(LearnError::NonFinite {
                step: plan.step as usize,
            });
        }
        Ok(norm)
    }

    /// [`Backend::read_params`]: stale tensors come from the GPU, the rest from the host copy.
    pub async fn read_params_async(&self, tensors: &[u32]) -> Result<Vec<f32>, LearnError> {
        let params = self.net.params();
        let mut out = Vec::new();
        for &t in tensors {
            let p = params
                .get(t as usize)
                .ok_or_else(|| config_err(format!("no tensor {t}")))?;
            if self.stale.contains(&t) {
                out.extend(self.model.get(t)?.read(&self.ctx).await?);
            } else {
                out.extend_from_slice(&p.data);
            }
        }
        Ok(out)
    }

    /// [`Backend::write_params`]: host copy and GPU buffers.
    pub fn write_params_now(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError> {
        let mut params = self.net.params_mut();
        let mut off = 0;
        for &t in tensors {
            let p = params
                .get_mut(t as usize)
                .ok_or_else(|| config_err(format!("no tensor {t}")))?;
            let n = p.data.len();
            let src = flat
                .get(off..off + n)
                .ok_or_else(|| config_err("parameter vector too short".into()))?;
            self.model.write(&self.ctx, t, src)?;
            p.data.copy_from_slice(src);
            self.stale.remove(&t);
            off += n;
        }
        self.synced = OnceCell::new();
        Ok(())
    }

    /// Reads the stale tensors back into the host copy and returns it (the browser's
    /// `network()`).
    pub async fn sync_async(&mut self) -> Result<&ViTForImageClassification, LearnError> {
        let stale: Vec<u32> = self.stale.iter().copied().collect();
        let flat = self.read_params_async(&stale).await?;
        self.write_host(&stale, &flat);
        self.stale.clear();
        self.synced = OnceCell::new();
        Ok(&self.net)
    }

    fn write_host(&mut self, tensors: &[u32], flat: &[f32]) {
        let mut params = self.net.params_mut();
        let mut off = 0;
        for &t in tensors {
            if let Some(p) = params.get_mut(t as usize) {
                let n = p.data.len();
                p.data.copy_from_slice(&flat[off..off + n]);
                off += n;
            }
        }
    }

    /// The host copy, possibly older than the GPU for tensors stepped since the last sync.
    pub fn network_unsynced(&self) -> &ViTForImageClassification {
        &self.net
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuBackend {
    /// Natively: the host copy with the stale tensors read back (cached until the next step).
    fn network_blocking(&self) -> &ViTForImageClassification {
        if self.stale.is_empty() {
            return &self.net;
        }
        self.synced.get_or_init(|| {
            let stale: Vec<u32> = self.stale.iter().copied().collect();
            let mut net = self.net.clone();
            match pollster::block_on(self.read_params_async(&stale)) {
                Ok(flat) => {
                    let mut params = net.params_mut();
                    let mut off = 0;
                    for &t in &stale {
                        let p = &mut params[t as usize];
                        let n = p.data.len();
                        p.data.copy_from_slice(&flat[off..off + n]);
                        off += n;
                    }
                }
                Err(LearnError::Gpu(e)) => self.sync_error.set(Some(e)),
                Err(e) => self.sync_error.set(Some(GpuError::Readback { reason: e.to_string() })),
            }
            net
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Backend for GpuBackend {
    fn clean(&mut self, batch: &Batch) -> Result<CleanOut, LearnError> {
        pollster::block_on(self.clean_async(batch))
    }

    fn query_losses(&mut self, batch: &Batch, plan: &StepPlan) -> Result<Vec<f32>, LearnError> {
        pollster::block_on(self.query_losses_async(batch, plan))
    }

    fn gradient(&mut self, plan: &StepPlan, coefficients: &[f32]) -> Result<Vec<f32>, LearnError> {
        pollster::block_on(self.gradient_async(plan, coefficients))
    }

    /// A failed readback (device lost) returns the host copy's values and is reported as an
    /// error by the next fallible call (the trait has no error path here).
    fn read_params(&self, tensors: &[u32]) -> Vec<f32> {
        match pollster::block_on(self.read_params_async(tensors)) {
            Ok(v) => v,
            Err(e) => {
                self.sync_error.set(Some(match e {
                    LearnError::Gpu(g) => g,
                    other => GpuError::Readback {
                        reason: other.to_string(),
                    },
                }));
                let params = self.net.params();
                tensors
                    .iter()
                    .filter_map(|&t| params.get(t as usize))
                    .flat_map(|p| p.data.iter().copied())
                    .collect()
            }
        }
    }

    fn write_params(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError> {
        self.write_params_now(tensors, flat)
    }

    fn network(&self) -> &ViTForImageClassification {
        self.network_blocking()
    }

    fn step(
        &mut self,
        plan: &StepPlan,
        coefficients: &[f32],
        optimizer: &mut crate::learn::optim::Optimizer,
        lr: f32,
    ) -> Result<f32, LearnError> {
        let config = optimizer.config;
        pollster::block_on(self.step_async(plan, coefficients, &config, lr))
    }
}

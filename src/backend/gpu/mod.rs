//! [`GpuBackend`]: the learning core's [`Backend`] on the GPU runtime ([`crate::gpu`]). Forwards run through
//! [`GpuForward`] (frozen prefix once per image via `first_tuned`); the gradient estimate and
//! the optimiser step are WGSL kernels (shaders/grad.wgsl, shaders/optim.wgsl) that read the
//! LR layer inputs kept on the GPU and regenerate every noise value from its stream.
//!
//! What travels to the host: the per-row losses (and, for clean passes, the logits), and one
//! f32 per step (the gradient norm). Parameters are updated in the model's GPU buffers in
//! place; the host copy is synced lazily: tensors changed on the GPU are marked stale and read
//! back only when [`Backend::network`] or `read_params` asks for them.
//!
//! Natively callers block on the [`Backend`] futures with `pollster`; in the browser the worker
//! awaits them.

mod features;
mod grad;
mod optim;

use std::collections::BTreeSet;
use std::sync::Arc;

use optim::GpuOptimizer;

use super::{read_host, write_host, FeatureCache};
use crate::gpu::forward::{ForwardOptions, GpuForward, LrInputs, RowOutputs};
use crate::gpu::ops::{self, Op};
use crate::gpu::readback::Staging;
use crate::gpu::{GpuContext, GpuError, GpuModel, GpuTensor, Perturbation, QueryRow, RowPlan};
use crate::learn::backend::{Backend, Batch, BoxFuture, CleanOut, StepPlan};
use crate::learn::estimate::{Query, Space};
use crate::learn::optim::{Optimizer, OptimizerConfig};
use crate::learn::LearnError;
use crate::model::{FlatLayout, ParamTable, ViTForImageClassification};

/// GPU errors reach the learning core as backend errors (the core does not import the runtime).
impl From<GpuError> for LearnError {
    fn from(e: GpuError) -> Self {
        LearnError::Backend(Box::new(e))
    }
}

/// What the last query forward left for the gradient.
struct Queried {
    seed: u64,
    step: u32,
    /// The forward ran every row from this block (the gradient's grouping relies on it).
    first_tuned: usize,
    queries: Vec<Query>,
    inputs: LrInputs,
}

pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    model: GpuModel,
    /// The host copy; tensors in `stale` are newer on the GPU.
    net: ViTForImageClassification,
    stale: BTreeSet<u32>,
    last: Option<Queried>,
    /// The per-image streams entering block `first_tuned` of the last batch: (pixels,
    /// first_tuned, `[B, T, D]`). The clean pass leaves them and the query pass of the same
    /// batch reuses them (the frozen prefix is never stepped); `write_params` drops them.
    prefix: Option<(Vec<f32>, usize, GpuTensor)>,
    /// The first tuned block of the last plan: where the clean pass splits its forward.
    first_tuned: Option<usize>,
    /// Per-image streams entering the frozen boundary ([`Backend::freeze_below`]), across steps.
    bank: FeatureCache<GpuTensor>,
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
            last: None,
            prefix: None,
            first_tuned: None,
            bank: FeatureCache::default(),
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

    fn check(&self, batch: &Batch) -> Result<(), LearnError> {
        batch.check(self.net.config.image_numel(), self.net.config.num_labels())
    }

    /// The forward of `plan`, reusing the prefix of the same batch and split, or assembling it
    /// from the feature bank when `plan` splits at the frozen boundary.
    async fn run(&mut self, batch: &Batch<'_>, plan: &RowPlan) -> Result<RowOutputs, LearnError> {
        let same_batch = match &self.prefix {
            // Block 0's input is the embedding output, which is never kept.
            Some((px, ft, t)) if *ft == plan.first_tuned && *ft > 0 && px.as_slice() == batch.pixels => Some(t.clone()),
            _ => None,
        };
        let reused = same_batch.is_some();
        let given = match same_batch {
            Some(t) => Some(t),
            None if self.bank.serves(plan.first_tuned) => {
                Some(self.bank.batch(&self.ctx, &self.model, batch.pixels)?)
            }
            None => None,
        };
        let (pending, hidden) = GpuForward::submit_reusing(
            &self.ctx,
            &self.model,
            batch.pixels,
            plan,
            &self.forward,
            given.as_ref(),
        )?;
        if !reused {
            self.prefix = Some((batch.pixels.to_vec(), plan.first_tuned, hidden));
        }
        Ok(pending.read(&self.ctx).await?)
    }

    /// Images whose frozen features are kept on the device.
    pub fn kept_features(&self) -> usize {
        self.bank.len()
    }

    /// [`Backend::clean`]: every block once per image, losses and logits back.
    async fn clean_now(&mut self, batch: &Batch<'_>) -> Result<CleanOut, LearnError> {
        self.check(batch)?;
        // Split where the last plan did (or at the frozen boundary), so that the query pass can
        // reuse the prefix.
        let first_tuned = self
            .first_tuned
            .or((self.bank.first > 0).then_some(self.bank.first))
            .unwrap_or(self.net.vit.layers.len());
        let plan = RowPlan::clean(batch.labels, first_tuned);
        let out = self.run(batch, &plan).await?;
        Ok(CleanOut {
            losses: out.losses,
            logits: out.logits,
            head_streams: None,
        })
    }

    /// [`Backend::query_losses`]: one forward over all query rows; the LR layer inputs stay
    /// on the GPU for the gradient.
    async fn query_losses_now(&mut self, batch: &Batch<'_>, plan: &StepPlan) -> Result<Vec<f32>, LearnError> {
        plan.check(batch, self.net.config.image_numel(), self.net.config.num_labels())?;
        self.last = None;
        self.first_tuned = Some(plan.first_tuned);
        let rows = plan
            .queries
            .iter()
            .map(|q| {
                let label = batch.labels[q.point];
                let perturbation = match plan.space {
                    Space::Activation { sigma } => Perturbation::Lr {
                        seed: plan.seed,
                        step: plan.step,
                        sites: plan.noise_sites(q, sigma),
                        row: q.noise,
                    },
                    Space::Weight { scale } => Perturbation::Weight {
                        seed: plan.seed,
                        step: plan.step,
                        direction: q.noise,
                        scale: q.sign * scale,
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
            first_tuned: plan.first_tuned,
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
    ) -> Result<(GpuTensor, FlatLayout), LearnError> {
        let layout = grad::layout(&self.model, &plan.tensors)?;
        let g = GpuTensor::zeros(&self.ctx, "gradient", &[layout.total])?;
        match plan.space {
            Space::Activation { .. } => {
                let last = self
                    .last
                    .as_ref()
                    .filter(|l| {
                        l.seed == plan.seed
                            && l.step == plan.step
                            && l.first_tuned == plan.first_tuned
                            && l.queries == plan.queries
                    })
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
            Space::Weight { .. } => {
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
    async fn gradient_now(&mut self, plan: &StepPlan, coefficients: &[f32]) -> Result<Vec<f32>, LearnError> {
        let mut ops = Vec::new();
        let (g, _) = self.record_gradient(plan, coefficients, &mut ops)?;
        ops::submit(&self.ctx, &ops)?;
        Ok(g.read(&self.ctx).await?)
    }

    /// One optimiser step entirely on the GPU: gradient, global norm, clipping, SGD/Adam
    /// update of the model's buffers; one submission, one f32 (the norm) read back. The
    /// optimiser state (`m`, `v`, `t`) lives here and restarts when the tuned tensors or the
    /// optimiser kind change. A non-finite norm leaves parameters and state unchanged.
    async fn step_now(
        &mut self,
        plan: &StepPlan,
        coefficients: &[f32],
        config: &OptimizerConfig,
        lr: f32,
    ) -> Result<f32, LearnError> {
        config.validate()?;
        let mut ops = Vec::new();
        let (g, layout) = self.record_gradient(plan, coefficients, &mut ops)?;
        let mut opt = match self.optimizer.take() {
            Some(o) if o.fits(&layout, config.kind) => o,
            _ => GpuOptimizer::new(&self.ctx, layout, config.kind)?,
        };
        let recorded = opt.record(&self.model, &g, config, lr, &plan.lr_scales, &mut ops);
        let norm_buf = opt.norm.buffer.clone();
        self.optimizer = Some(opt);
        recorded?;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        ops::record(&self.ctx, &mut encoder, &ops)?;
        let staging = Staging::record(&self.ctx, &mut encoder, &norm_buf, 1);
        self.ctx.queue.submit([encoder.finish()]);
        self.stale.extend(plan.tensors.iter().copied());
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
    async fn read_params_now(&self, tensors: &[u32]) -> Result<Vec<f32>, LearnError> {
        let mut out = Vec::new();
        for &t in tensors {
            if self.stale.contains(&t) {
                out.extend(self.model.get(t)?.read(&self.ctx).await?);
            } else {
                out.extend(read_host(&self.net, &[t])?);
            }
        }
        Ok(out)
    }

    /// Reads the stale tensors back into the host copy and returns it ([`Backend::network`]).
    async fn sync(&mut self) -> Result<&ViTForImageClassification, LearnError> {
        if !self.stale.is_empty() {
            let stale: Vec<u32> = self.stale.iter().copied().collect();
            let flat = self.read_params_now(&stale).await?;
            write_host(&mut self.net, &stale, &flat, |_, _| Ok(()))?;
            self.stale.clear();
        }
        Ok(&self.net)
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> &'static str {
        if cfg!(target_arch = "wasm32") {
            "webgpu"
        } else {
            "gpu"
        }
    }

    fn clean<'a>(&'a mut self, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<CleanOut, LearnError>> {
        Box::pin(self.clean_now(batch))
    }

    fn query_losses<'a>(
        &'a mut self,
        batch: &'a Batch<'a>,
        plan: &'a StepPlan,
    ) -> BoxFuture<'a, Result<Vec<f32>, LearnError>> {
        Box::pin(self.query_losses_now(batch, plan))
    }

    fn gradient<'a>(
        &'a mut self,
        plan: &'a StepPlan,
        coefficients: &'a [f32],
    ) -> BoxFuture<'a, Result<Vec<f32>, LearnError>> {
        Box::pin(self.gradient_now(plan, coefficients))
    }

    fn lost(&self) -> Option<String> {
        self.ctx.lost()
    }

    fn read_params<'a>(&'a self, tensors: &'a [u32]) -> BoxFuture<'a, Result<Vec<f32>, LearnError>> {
        Box::pin(self.read_params_now(tensors))
    }

    /// Host copy and GPU buffers.
    fn write_params(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError> {
        self.prefix = None;
        self.bank.invalidate_for(&self.model.ids, tensors);
        let (ctx, model, stale) = (&self.ctx, &self.model, &mut self.stale);
        write_host(&mut self.net, tensors, flat, |t, values| {
            model.write(ctx, t, values)?;
            stale.remove(&t);
            Ok(())
        })
    }

    fn host_network(&self) -> &ViTForImageClassification {
        &self.net
    }

    fn table(&self) -> &ParamTable {
        &self.model.ids
    }

    fn freeze_below(&mut self, block: usize) {
        if block != self.bank.first {
            self.bank.reset(block);
        }
    }

    fn network<'a>(&'a mut self) -> BoxFuture<'a, Result<&'a ViTForImageClassification, LearnError>> {
        Box::pin(self.sync())
    }

    /// On the GPU, with the optimiser state kept there; only `optimizer.config` is used.
    fn step<'a>(
        &'a mut self,
        plan: &'a StepPlan,
        coefficients: &'a [f32],
        optimizer: &'a mut Optimizer,
        lr: f32,
    ) -> BoxFuture<'a, Result<f32, LearnError>> {
        let config = optimizer.config;
        Box::pin(async move { self.step_now(plan, coefficients, &config, lr).await })
    }
}

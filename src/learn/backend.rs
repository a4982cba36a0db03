//! What a training step asks of a compute backend: the one declaration of a backend's methods.
//! The CPU reference and the GPU backend ([`crate::backend`]) implement it; the trainer, the
//! CLI and the page hold a `Box<dyn Backend>` and never learn which one runs.
//!
//! Backends see perturbation spaces ([`Space`]), never estimator names: a step's [`StepPlan`]
//! says where its queries perturb, and the estimator ([`super::estimate`]) turns their losses
//! into coefficients of the backend's gradient accumulation.

use std::future::Future;
use std::pin::Pin;

use super::error::LearnError;
use super::estimate::{Estimator, Query, Space};
use super::optim::Optimizer;
use super::tuning::Tuning;
use crate::model::{LinearSite, ParamTable, ViTForImageClassification};

/// A backend's frozen-feature cache stops growing here; images beyond it are recomputed.
pub const FEATURE_CACHE_BYTES: usize = 256 << 20;

/// The future of a backend method. Not `Send`: wgpu's futures on wasm are not.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A batch of preprocessed images.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// `[B, C, H, W]`.
    pub pixels: &'a [f32],
    pub labels: &'a [usize],
}

impl Batch<'_> {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The one batch validation of every backend: non-empty, `image_len` values per label,
    /// every label below `classes`.
    pub fn check(&self, image_len: usize, classes: usize) -> Result<(), LearnError> {
        if self.is_empty() || self.pixels.len() != self.len() * image_len {
            return Err(LearnError::Config {
                message: format!("batch of {} labels has {} pixel values", self.len(), self.pixels.len()),
            });
        }
        if let Some(&y) = self.labels.iter().find(|&&y| y >= classes) {
            return Err(LearnError::Config {
                message: format!("label {y} in a batch for a model of {classes} classes"),
            });
        }
        Ok(())
    }
}

/// Clean-pass results: per-sample losses and logits `[B, num_labels]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanOut {
    pub losses: Vec<f32>,
    pub logits: Vec<f32>,
    /// Each image's CLS stream entering the final LayerNorm `[B, D]`, for the exact head
    /// gradient ([`super::exact_head`]); `None` where the backend does not return it.
    pub head_streams: Option<Vec<f32>>,
}

/// Everything that defines one step's perturbations; the noise is regenerated from it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    /// Where the queries perturb.
    pub space: Space,
    pub seed: u64,
    pub step: u32,
    pub queries: Vec<Query>,
    /// The first block whose output depends on the tuned parameters.
    pub first_tuned: usize,
    /// Activation space: the perturbed linear layers (empty in weight space).
    pub sites: Vec<LinearSite>,
    /// Activation space: the site groups a query perturbs ([`Query::group`] indexes them): one
    /// group of every site when joint, one per site when site-wise.
    pub groups: Vec<Vec<LinearSite>>,
    /// Activation space: each site's noise scale relative to the space's `sigma`, in `sites`
    /// order (empty: 1 everywhere). A backend divides a site's accumulation by it, so the
    /// estimator's coefficients stay per query.
    pub site_scales: Vec<f32>,
    /// The tuned tensor ids (indices into `net.params()`), sorted.
    pub tensors: Vec<u32>,
    /// Each tuned tensor's learning rate relative to the step's, in `tensors` order (empty: 1
    /// everywhere): the head may move faster than the blocks.
    pub lr_scales: Vec<f32>,
}

impl StepPlan {
    /// The one check of a plan against its batch (both backends run it): every query's point is
    /// in the batch, which itself passes [`Batch::check`].
    pub fn check(&self, batch: &Batch, image_len: usize, classes: usize) -> Result<(), LearnError> {
        batch.check(image_len, classes)?;
        if let Some(q) = self.queries.iter().find(|q| q.point >= batch.len()) {
            return Err(LearnError::Config {
                message: format!("query of point {} in a batch of {}", q.point, batch.len()),
            });
        }
        if let Space::Activation { .. } = self.space {
            if let Some(q) = self.queries.iter().find(|q| q.group as usize >= self.groups.len()) {
                return Err(LearnError::Config {
                    message: format!("query of site group {} in a plan of {}", q.group, self.groups.len()),
                });
            }
            if !self.site_scales.is_empty() && self.site_scales.len() != self.sites.len() {
                return Err(LearnError::Config {
                    message: format!("{} site scales for {} sites", self.site_scales.len(), self.sites.len()),
                });
            }
            if let Some((site, s)) = self
                .sites
                .iter()
                .zip(&self.site_scales)
                .find(|(_, s)| !(s.is_finite() && **s > 0.0))
            {
                return Err(LearnError::Config {
                    message: format!("noise scale {s} at {site:?}: a site's activations are all zero or not finite"),
                });
            }
        }
        Ok(())
    }

    /// The relative noise scale of `site` (1 without per-site scales).
    pub fn site_scale(&self, site: LinearSite) -> f32 {
        self.sites
            .iter()
            .position(|&s| s == site)
            .and_then(|i| self.site_scales.get(i).copied())
            .unwrap_or(1.0)
    }

    /// Activation space: the sites query `q` perturbs, each with its signed noise scale
    /// `q.sign * sigma * scale_s`.
    pub fn noise_sites(&self, q: &Query, sigma: f32) -> Vec<(LinearSite, f32)> {
        self.groups
            .get(q.group as usize)
            .map(|g| g.iter().map(|&s| (s, q.sign * sigma * self.site_scale(s))).collect())
            .unwrap_or_default()
    }

    /// Where the queries of each site group start, as a residual-stream index: the earliest of
    /// the group's sites ([`LinearSite::start`]), never before the first tuned block. The CPU
    /// backend starts them there; the trainer's cost model counts from there.
    pub fn group_starts(&self, layers: usize) -> Vec<usize> {
        self.groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|s| s.start(layers))
                    .min()
                    .unwrap_or(self.first_tuned)
                    .max(self.first_tuned)
            })
            .collect()
    }

    /// Whether query `q` perturbs `site`.
    pub fn perturbs(&self, q: &Query, site: LinearSite) -> bool {
        self.groups.get(q.group as usize).is_some_and(|g| g.contains(&site))
    }

    /// Step `step`'s plan: where it splits, what it perturbs (sites in activation space, the
    /// tuned tensors in weight space) and the tuned tensors all follow from `estimator` and
    /// `tuning`. Joint (one group of every site) with unscaled noise; the trainer sets
    /// `groups` and `site_scales` for site-wise or scaled runs.
    pub fn new(
        estimator: &dyn Estimator,
        tuning: Tuning,
        table: &ParamTable,
        seed: u64,
        step: u32,
        queries: Vec<Query>,
    ) -> Self {
        let layers = table.layers.len();
        let space = estimator.space();
        let sites = match space {
            Space::Activation { .. } => tuning.lr_sites(layers),
            Space::Weight { .. } => Vec::new(),
        };
        Self {
            space,
            seed,
            step,
            queries,
            first_tuned: tuning.first_tuned_block(layers),
            groups: vec![sites.clone()],
            sites,
            site_scales: Vec::new(),
            lr_scales: Vec::new(),
            tensors: tuning.tensors(table),
        }
    }
}

/// A compute backend. The methods return futures because the GPU one reads results back
/// through `map_async`, which the browser cannot block on; the CPU one computes inline and its
/// futures are ready at once. Natively, callers block with `pollster::block_on`.
pub trait Backend {
    /// What the page and the logs call it: `"cpu"`, `"webgpu"` (in the browser) or `"gpu"`.
    fn name(&self) -> &'static str;
    /// Why the backend's device is gone for good (a lost GPU), once it is: every later call
    /// fails, and the run can move to another backend ([`super::trainer::Trainer::move_to`]).
    fn lost(&self) -> Option<String> {
        None
    }
    /// Whether [`Backend::clean`] returns [`CleanOut::head_streams`] (the exact head needs them).
    fn returns_head_streams(&self) -> bool {
        false
    }
    /// The unperturbed forward of a batch.
    fn clean<'a>(&'a mut self, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<CleanOut, LearnError>>;
    /// The loss of every query of `plan`, in plan order. Keeps what [`Backend::gradient`] needs.
    fn query_losses<'a>(
        &'a mut self,
        batch: &'a Batch<'a>,
        plan: &'a StepPlan,
    ) -> BoxFuture<'a, Result<Vec<f32>, LearnError>>;
    /// Accumulates the estimate from per-query (activation space) or per-direction (weight
    /// space) coefficients into the gradient of the tuned tensors and returns it flat, in
    /// `plan.tensors` order.
    fn gradient<'a>(
        &'a mut self,
        plan: &'a StepPlan,
        coefficients: &'a [f32],
    ) -> BoxFuture<'a, Result<Vec<f32>, LearnError>>;
    /// The tensors `tensors` as they are now, flat in that order.
    fn read_params<'a>(&'a self, tensors: &'a [u32]) -> BoxFuture<'a, Result<Vec<f32>, LearnError>>;
    /// Replaces the tensors `tensors` (flat, in that order).
    fn write_params(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError>;
    /// The host copy of the network without waiting: its structure, config and frozen tensors
    /// are exact, but tensors a device stepped since the last [`Backend::network`] may be older.
    /// For shapes, tensor ids and labels.
    fn host_network(&self) -> &ViTForImageClassification;
    /// The parameter table of the network.
    fn table(&self) -> &ParamTable;
    /// Declares that blocks below `block` stay frozen from now on (the trainer calls this
    /// once), so a backend may cache each image's activations entering `block` across steps.
    fn freeze_below(&mut self, block: usize);
    /// The network as it is now (for evaluation elsewhere and export): a device backend reads
    /// the tensors it stepped back into the host copy first.
    fn network<'a>(&'a mut self) -> BoxFuture<'a, Result<&'a ViTForImageClassification, LearnError>>;

    /// One optimiser step on the tuned tensors from the estimate of `coefficients` (as
    /// [`Backend::gradient`]) at learning rate `lr`; returns the gradient's norm before
    /// clipping. On a non-finite norm or parameter the parameters are left unchanged and
    /// [`LearnError::NonFinite`] is returned. The default runs `optimizer` on the host; a
    /// backend may keep the optimiser state itself (the GPU one does, taking only
    /// `optimizer.config` from the argument).
    fn step<'a>(
        &'a mut self,
        plan: &'a StepPlan,
        coefficients: &'a [f32],
        optimizer: &'a mut Optimizer,
        lr: f32,
    ) -> BoxFuture<'a, Result<f32, LearnError>> {
        Box::pin(async move {
            let grad = self.gradient(plan, coefficients).await?;
            let mut params = self.read_params(&plan.tensors).await?;
            let layout = self
                .table()
                .layout(&plan.tensors)
                .map_err(|message| LearnError::Config { message })?;
            let segments: Vec<(usize, f32)> = (0..plan.tensors.len())
                .map(|i| {
                    (
                        layout.range_at(i).len(),
                        lr * plan.lr_scales.get(i).copied().unwrap_or(1.0),
                    )
                })
                .collect();
            let norm = optimizer.step_segments(&mut params, &grad, &segments);
            if !norm.is_finite() || params.iter().any(|p| !p.is_finite()) {
                return Err(LearnError::NonFinite {
                    step: plan.step as usize,
                });
            }
            self.write_params(&plan.tensors, &params)?;
            Ok(norm)
        })
    }
}

//! What a training step asks of a compute backend. The CPU reference ([`super::cpu`]) and the
//! GPU implement it; the trainer, estimators and allocators do not know which runs.

use super::error::LearnError;
use super::estimate::{EstimatorKind, Query};
use super::optim::Optimizer;
use super::tuning::Tuning;
use crate::model::params::ParamTable;
use crate::model::{LinearSite, ViTForImageClassification};

/// A backend's frozen-feature cache stops growing here; images beyond it are recomputed.
pub const FEATURE_CACHE_BYTES: usize = 256 << 20;

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
}

/// Clean-pass results: per-sample losses and logits `[B, num_labels]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanOut {
    pub losses: Vec<f32>,
    pub logits: Vec<f32>,
}

/// Everything that defines one step's perturbations; the noise is regenerated from it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub kind: EstimatorKind,
    pub seed: u64,
    pub step: u32,
    pub queries: Vec<Query>,
    /// The first block whose output depends on the tuned parameters.
    pub first_tuned: usize,
    /// LR: the perturbed linear layers.
    pub sites: Vec<LinearSite>,
    /// The tuned tensor ids (indices into `net.params()`), sorted.
    pub tensors: Vec<u32>,
}

impl StepPlan {
    /// Step `step`'s plan: where it splits, what LR perturbs (nothing for SPSA, which perturbs
    /// the tensors) and the tuned tensors all follow from `kind` and `tuning`.
    pub fn new(
        kind: EstimatorKind,
        tuning: Tuning,
        ids: &ParamTable,
        seed: u64,
        step: u32,
        queries: Vec<Query>,
    ) -> Self {
        let layers = ids.layers.len();
        Self {
            kind,
            seed,
            step,
            queries,
            first_tuned: tuning.first_tuned_block(layers),
            sites: match kind {
                EstimatorKind::Lr { .. } => tuning.lr_sites(layers),
                EstimatorKind::Spsa { .. } => Vec::new(),
            },
            tensors: tuning.tensors(ids),
        }
    }
}

/// A compute backend, used generically (never as `dyn`). The methods are `async` because the
/// GPU one reads results back through `map_async`, which the browser cannot block on; the CPU
/// one computes inline and its futures are ready at once. No `Send` bound: wgpu's futures on
/// wasm are not `Send`. Natively, callers block with `pollster::block_on`.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// The unperturbed forward of a batch, reusing nothing.
    async fn clean(&mut self, batch: &Batch<'_>) -> Result<CleanOut, LearnError>;
    /// The loss of every query of `plan`, in plan order. Keeps what [`Backend::gradient`] needs.
    async fn query_losses(&mut self, batch: &Batch<'_>, plan: &StepPlan) -> Result<Vec<f32>, LearnError>;
    /// Accumulates the estimate from per-query (LR) or per-direction (SPSA) coefficients into
    /// the gradient of the tuned tensors and returns it flat, in `plan.tensors` order.
    async fn gradient(&mut self, plan: &StepPlan, coefficients: &[f32]) -> Result<Vec<f32>, LearnError>;
    /// The tuned tensors as they are now, flat in `tensors` order.
    async fn read_params(&self, tensors: &[u32]) -> Result<Vec<f32>, LearnError>;
    /// Replaces the tuned tensors.
    fn write_params(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError>;
    /// The host copy of the network without waiting: its structure, config and frozen tensors
    /// are exact, but tensors a device stepped since the last [`Backend::network`] may be older.
    /// For shapes, tensor ids and labels.
    fn host_network(&self) -> &ViTForImageClassification;
    /// Declares that blocks below `block` stay frozen from now on (the trainer calls this
    /// once), so a backend may cache each image's activations entering `block` across steps.
    fn freeze_below(&mut self, _block: usize) {}
    /// The network as it is now (for evaluation on the CPU and export): the GPU backend reads
    /// the tensors it stepped back into the host copy first.
    async fn network(&mut self) -> Result<&ViTForImageClassification, LearnError>;

    /// One optimiser step on the tuned tensors from the estimate of `coefficients` (as
    /// [`Backend::gradient`]) at learning rate `lr`; returns the gradient's norm before
    /// clipping. On a non-finite norm or parameter the parameters are left unchanged and
    /// [`LearnError::NonFinite`] is returned. The default runs `optimizer` on the host; a
    /// backend may keep the optimiser state itself (the GPU one does, taking only
    /// `optimizer.config` from the argument).
    async fn step(
        &mut self,
        plan: &StepPlan,
        coefficients: &[f32],
        optimizer: &mut Optimizer,
        lr: f32,
    ) -> Result<f32, LearnError> {
        let grad = self.gradient(plan, coefficients).await?;
        let mut params = self.read_params(&plan.tensors).await?;
        let norm = optimizer.step(&mut params, &grad, lr);
        if !norm.is_finite() || params.iter().any(|p| !p.is_finite()) {
            return Err(LearnError::NonFinite {
                step: plan.step as usize,
            });
        }
        self.write_params(&plan.tensors, &params)?;
        Ok(norm)
    }
}

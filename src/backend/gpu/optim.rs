//! The optimiser on the GPU: state `m`, `v` (flat, at the gradient's offsets) and the step
//! count live here; the update rule is the twin of [`crate::learn::optim::Optimizer::step`].

use crate::gpu::context::GpuContext;
use crate::gpu::error::Result;
use crate::gpu::model::GpuModel;
use crate::gpu::ops::{self, Op, UpdateRule, NORM_PARTIALS};
use crate::gpu::tensor::GpuTensor;
use crate::learn::optim::{OptimizerConfig, OptimizerKind};
use crate::model::FlatLayout as Layout;

/// Optimiser state of one set of tuned tensors.
pub(super) struct GpuOptimizer {
    pub layout: Layout,
    pub kind: OptimizerKind,
    m: GpuTensor,
    /// Adam's second moment; a 1-value stand-in for SGD.
    v: GpuTensor,
    partial: GpuTensor,
    /// `[1]`: the gradient's global norm before clipping.
    pub norm: GpuTensor,
    /// Steps taken (Adam's `t`).
    pub t: u32,
}

impl GpuOptimizer {
    pub fn new(ctx: &GpuContext, layout: Layout, kind: OptimizerKind) -> Result<Self> {
        let v_len = match kind {
            OptimizerKind::Adam { .. } => layout.total,
            OptimizerKind::Sgd { .. } => 1,
        };
        Ok(Self {
            m: GpuTensor::zeros(ctx, "optimiser m", &[layout.total])?,
            v: GpuTensor::zeros(ctx, "optimiser v", &[v_len])?,
            partial: GpuTensor::zeros(ctx, "norm partials", &[NORM_PARTIALS])?,
            norm: GpuTensor::zeros(ctx, "grad norm", &[1])?,
            layout,
            kind,
            t: 0,
        })
    }

    /// Whether this state belongs to `layout` under `kind` (else a fresh one is needed).
    pub fn fits(&self, layout: &Layout, kind: OptimizerKind) -> bool {
        self.layout == *layout && std::mem::discriminant(&self.kind) == std::mem::discriminant(&kind)
    }

    /// Records norm, clipping and update of every tuned tensor from `g` at `lr` times its
    /// scale in `lr_scales` (layout order; missing: 1); advances `t`.
    /// The update kernels skip everything when the norm is not finite.
    pub fn record(
        &mut self,
        model: &GpuModel,
        g: &GpuTensor,
        config: &OptimizerConfig,
        lr: f32,
        lr_scales: &[f32],
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        self.t += 1;
        let t = self.t as i32;
        let rule = match config.kind {
            OptimizerKind::Sgd { momentum } => UpdateRule::Sgd { momentum },
            // The bias corrections in f32 exactly as the CPU optimiser computes them.
            OptimizerKind::Adam { beta1, beta2, eps } => UpdateRule::Adam {
                beta1,
                beta2,
                eps,
                bc1: 1.0 - beta1.powi(t),
                bc2: 1.0 - beta2.powi(t),
            },
        };
        ops.extend(ops::grad_norm(g, &self.partial, &self.norm)?);
        for (i, (&id, &off)) in self.layout.tensors.iter().zip(&self.layout.offsets).enumerate() {
            let param = model.get(id)?;
            ops.push(ops::optim_update(
                rule,
                lr * lr_scales.get(i).copied().unwrap_or(1.0),
                config.clip_norm,
                g,
                &self.norm,
                param,
                off,
                &self.m,
                &self.v,
            )?);
        }
        Ok(())
    }
}

//! [`GpuModel`]: the weights of a `ViTForImageClassification` on the device, uploaded once,
//! one storage buffer per tensor (each checked against the binding limit).

use super::context::GpuContext;
use super::error::{GpuError, Result};
use super::tensor::GpuTensor;
use crate::model::params::ParamTable;
use crate::model::{ViTConfig, ViTForImageClassification};

/// Device copies of every parameter, indexed by tensor id (`net.params()` order).
#[derive(Debug)]
pub struct GpuModel {
    pub config: ViTConfig,
    pub ids: ParamTable,
    pub tensors: Vec<GpuTensor>,
    pub names: Vec<String>,
    /// LayerNorm epsilon of every LayerNorm (one config value).
    pub layer_norm_eps: f64,
    /// `(ones, zeros)` of width D: a LayerNorm with these gives `x_hat` (for LR's LayerNorm
    /// affine gradients).
    pub unit_affine: (GpuTensor, GpuTensor),
}

impl GpuModel {
    pub fn upload(ctx: &GpuContext, net: &ViTForImageClassification) -> Result<Self> {
        if net.config.activation().is_err() {
            return Err(GpuError::Unsupported {
                reason: format!("activation `{}`", net.config.hidden_act),
            });
        }
        let params = net.params();
        let d = net.config.hidden_size;
        let mut tensors = Vec::with_capacity(params.len());
        for p in &params {
            // Linear weights are addressed as [out, in]; conv weights flatten to that too.
            tensors.push(GpuTensor::from_slice(ctx, &p.name, &p.shape, &p.data)?);
        }
        Ok(Self {
            config: net.config.clone(),
            ids: ParamTable::of(net),
            tensors,
            names: params.iter().map(|p| p.name.clone()).collect(),
            layer_norm_eps: net.config.layer_norm_eps,
            unit_affine: (
                GpuTensor::from_slice(ctx, "LayerNorm unit gamma", &[d], &vec![1.0; d])?,
                GpuTensor::from_slice(ctx, "LayerNorm zero beta", &[d], &vec![0.0; d])?,
            ),
        })
    }

    /// Replaces tensor `id`'s values (after an optimiser step on the host).
    pub fn write(&self, ctx: &GpuContext, id: u32, data: &[f32]) -> Result<()> {
        let t = self.get(id)?;
        if t.numel() != data.len() {
            return Err(GpuError::Shape {
                op: "GpuModel::write",
                message: format!(
                    "`{}` holds {} values, got {}",
                    self.names[id as usize],
                    t.numel(),
                    data.len()
                ),
            });
        }
        ctx.queue.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    pub fn get(&self, id: u32) -> Result<&GpuTensor> {
        self.tensors
            .get(id as usize)
            .ok_or_else(|| GpuError::MissingTensor { name: format!("#{id}") })
    }

    /// The tensor id of an HF parameter name.
    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }
}

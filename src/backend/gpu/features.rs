//! Frozen features across steps on the GPU: blocks below the first tuned one never change during
//! a run, so each image's residual stream entering that block is computed once, kept in a device
//! buffer ([`FeatureCache`] of device tensors), and copied into later batches.

use crate::backend::FeatureCache;
use crate::gpu::forward::{image_count, GpuForward};
use crate::gpu::{GpuContext, GpuModel, GpuTensor, Result};
use crate::model::ParamTable;

/// Per image: its `[T, D]` stream entering `first()`, on the device.
#[derive(Default)]
pub(super) struct FeatureBank {
    cache: FeatureCache<GpuTensor>,
}

impl FeatureBank {
    /// The block the kept streams enter; 0: nothing is kept.
    pub fn first(&self) -> usize {
        self.cache.first
    }

    pub fn serves(&self, block: usize) -> bool {
        self.cache.serves(block)
    }

    /// Forgets every kept stream; keeps streams entering `first` from now on.
    pub fn reset(&mut self, first: usize) {
        self.cache.reset(first);
    }

    pub fn invalidate_for(&mut self, table: &ParamTable, tensors: &[u32]) {
        self.cache.invalidate_for(table, tensors);
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// The streams entering block `first()` of a batch `[B, C, H, W]`: `[B, T, D]`. Kept images
    /// are copied from the bank; the others are computed together and kept while the cache
    /// admits them. Submitted; later submissions see the result.
    pub fn batch(&mut self, ctx: &GpuContext, model: &GpuModel, pixels: &[f32]) -> Result<GpuTensor> {
        image_count("feature bank", model, pixels)?;
        let per = model.config.image_numel();
        let images: Vec<&[f32]> = pixels.chunks_exact(per).collect();
        let (t, d) = (model.config.seq_len(), model.config.hidden_size);
        let row = (t * d * 4) as u64;
        // Each image's kept stream, looked up once (None: to compute).
        let found: Vec<Option<GpuTensor>> = images.iter().map(|img| self.cache.get(img).cloned()).collect();
        let missing: Vec<usize> = (0..images.len()).filter(|&i| found[i].is_none()).collect();
        let fresh = if missing.is_empty() {
            None
        } else {
            let px: Vec<f32> = missing.iter().flat_map(|&i| images[i].iter().copied()).collect();
            Some(GpuForward::prefix(ctx, model, &px, self.cache.first)?)
        };
        let out = GpuTensor::zeros(ctx, "batch features", &[images.len(), t, d])?;
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("feature bank"),
        });
        for (i, kept) in found.iter().enumerate() {
            if let Some(kept) = kept {
                encoder.copy_buffer_to_buffer(&kept.buffer, 0, &out.buffer, i as u64 * row, row);
            }
        }
        if let Some(fresh) = &fresh {
            for (j, &i) in missing.iter().enumerate() {
                encoder.copy_buffer_to_buffer(&fresh.buffer, j as u64 * row, &out.buffer, i as u64 * row, row);
                if self.cache.admits(images[i], row as usize) {
                    let kept = GpuTensor::zeros(ctx, "kept features", &[t, d])?;
                    encoder.copy_buffer_to_buffer(&fresh.buffer, j as u64 * row, &kept.buffer, 0, row);
                    self.cache.insert(images[i], kept, row as usize);
                }
            }
        }
        ctx.queue.submit([encoder.finish()]);
        Ok(out)
    }
}

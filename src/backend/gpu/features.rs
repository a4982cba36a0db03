//! Frozen features across steps on the GPU: blocks below the first tuned one never change during
//! a run, so each image's residual stream entering that block is computed once, kept in a device
//! buffer (the backends' shared [`FeatureCache`], of device tensors), and copied into later
//! batches.

use crate::backend::FeatureCache;
use crate::gpu::forward::{image_count, GpuForward};
use crate::gpu::{GpuContext, GpuModel, GpuTensor, Result};

impl FeatureCache<GpuTensor> {
    /// The streams entering block `first` of a batch `[B, C, H, W]`: `[B, T, D]`. Kept images
    /// are copied from the bank; the others are computed together and kept while the cache
    /// admits them. Submitted; later submissions see the result.
    pub(super) fn batch(&mut self, ctx: &GpuContext, model: &GpuModel, pixels: &[f32]) -> Result<GpuTensor> {
        image_count("feature bank", model, pixels)?;
        let per = model.config.image_numel();
        let images: Vec<&[f32]> = pixels.chunks_exact(per).collect();
        let (t, d) = (model.config.seq_len(), model.config.hidden_size);
        let row = (t * d * 4) as u64;
        // Each image's kept stream, looked up once (None: to compute).
        let found: Vec<Option<GpuTensor>> = images.iter().map(|img| self.get(img).cloned()).collect();
        let missing: Vec<usize> = (0..images.len()).filter(|&i| found[i].is_none()).collect();
        let fresh = if missing.is_empty() {
            None
        } else {
            let px: Vec<f32> = missing.iter().flat_map(|&i| images[i].iter().copied()).collect();
            Some(GpuForward::prefix(ctx, model, &px, self.first)?)
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
                if self.admits(images[i], row as usize) {
                    let kept = GpuTensor::zeros(ctx, "kept features", &[t, d])?;
                    encoder.copy_buffer_to_buffer(&fresh.buffer, j as u64 * row, &kept.buffer, 0, row);
                    self.insert(images[i], kept, row as usize);
                }
            }
        }
        ctx.queue.submit([encoder.finish()]);
        Ok(out)
    }
}

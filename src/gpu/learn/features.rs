//! Frozen features across steps on the GPU: blocks below the first tuned one never change during
//! a run, so each image's residual stream entering that block is computed once, kept in a device
//! buffer, and copied into later batches (the CPU backend keeps the same cache on the host).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::gpu::context::GpuContext;
use crate::gpu::error::Result;
use crate::gpu::forward::{image_count, GpuForward};
use crate::gpu::model::GpuModel;
use crate::gpu::tensor::GpuTensor;
use crate::learn::backend::FEATURE_CACHE_BYTES;

/// Per image (by pixel hash, pixels compared on a hit): its `[T, D]` stream entering `first`.
#[derive(Default)]
pub(super) struct FeatureBank {
    /// The block the kept streams enter; 0: nothing is kept (block 0 reads the embeddings).
    pub first: usize,
    images: HashMap<u64, (Vec<f32>, GpuTensor)>,
    bytes: usize,
}

fn key(pixels: &[f32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pixels.iter().for_each(|p| p.to_bits().hash(&mut h));
    h.finish()
}

impl FeatureBank {
    /// Forgets every kept stream; keeps streams entering `first` from now on.
    pub fn reset(&mut self, first: usize) {
        *self = Self {
            first,
            ..Self::default()
        };
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// The streams entering block `first` of a batch `[B, C, H, W]`: `[B, T, D]`. Kept images
    /// are copied from the bank; the others are computed together and kept while the bank is
    /// under [`FEATURE_CACHE_BYTES`]. Submitted; later submissions see the result.
    pub fn batch(&mut self, ctx: &GpuContext, model: &GpuModel, pixels: &[f32]) -> Result<GpuTensor> {
        image_count("feature bank", model, pixels)?;
        let per = model.config.image_numel();
        let images: Vec<&[f32]> = pixels.chunks_exact(per).collect();
        let keys: Vec<u64> = images.iter().map(|img| key(img)).collect();
        let (t, d) = (model.config.seq_len(), model.config.hidden_size);
        let row = (t * d * 4) as u64;
        // Each image's kept stream, looked up once (None: to compute).
        let found: Vec<Option<GpuTensor>> = images
            .iter()
            .zip(&keys)
            .map(|(img, k)| {
                self.images
                    .get(k)
                    .filter(|(px, _)| px.as_slice() == *img)
                    .map(|(_, t)| t.clone())
            })
            .collect();
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
                let bytes = row as usize + 4 * per;
                // A key taken by other pixels (a hash collision) stays with its first image.
                if self.bytes + bytes <= FEATURE_CACHE_BYTES && !self.images.contains_key(&keys[i]) {
                    let kept = GpuTensor::zeros(ctx, "kept features", &[t, d])?;
                    encoder.copy_buffer_to_buffer(&fresh.buffer, j as u64 * row, &kept.buffer, 0, row);
                    self.images.insert(keys[i], (images[i].to_vec(), kept));
                    self.bytes += bytes;
                }
            }
        }
        ctx.queue.submit([encoder.finish()]);
        Ok(out)
    }
}

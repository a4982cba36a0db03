//! Reading results back: a `MAP_READ` staging buffer, one `map_async`, awaited. On the web the
//! callback fires from the browser's event loop, so the wait is a future (never a block);
//! natively `device.poll` drives it and [`pollster`] blocks on the future.

use super::context::GpuContext;
use super::error::{GpuError, Result};

/// A staging buffer already filled by submitted work, waiting to be mapped.
pub struct Staging {
    buffer: wgpu::Buffer,
    len: usize,
}

impl Staging {
    /// Records a copy of the first `len` f32 of `src` into a new staging buffer on `encoder`.
    pub fn record(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, len: usize) -> Self {
        let bytes = (len as u64 * 4).max(4);
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback staging"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if len > 0 {
            encoder.copy_buffer_to_buffer(src, 0, &buffer, 0, bytes);
        }
        Self { buffer, len }
    }

    /// Maps the buffer after the submission that filled it and returns its values.
    pub async fn read(self, ctx: &GpuContext) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(ctx).await?))
    }

    /// The raw bytes of the first `len` 4-byte words.
    pub async fn read_bytes(self, ctx: &GpuContext) -> Result<Vec<u8>> {
        let slice = self.buffer.slice(..);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            // The receiver only disappears when the caller dropped the future; nothing to report.
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| failed(ctx, e.to_string()))?;
        rx.await
            .map_err(|_| failed(ctx, "the map callback was dropped".into()))?
            .map_err(|e| failed(ctx, e.to_string()))?;
        let out = {
            let view = slice.get_mapped_range().map_err(|e| failed(ctx, e.to_string()))?;
            view[..self.len * 4].to_vec()
        };
        self.buffer.unmap();
        // An error outside every scope (wgpu would otherwise panic on it) fails the read.
        if let Some(message) = ctx.take_uncaptured_error() {
            return Err(GpuError::Validation { message });
        }
        Ok(out)
    }
}

/// A failed readback: [`GpuError::DeviceLost`] when the device is gone (the usual cause).
fn failed(ctx: &GpuContext, reason: String) -> GpuError {
    match ctx.lost() {
        Some(lost) => GpuError::DeviceLost { reason: lost },
        None => GpuError::Readback { reason },
    }
}

/// Copies `len` f32 of `src` to the host.
pub async fn read_f32(ctx: &GpuContext, src: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    let staging = Staging::record(ctx, &mut encoder, src, len);
    ctx.queue.submit([encoder.finish()]);
    staging.read(ctx).await
}

/// Copies `len` u32 of `src` to the host.
pub async fn read_u32(ctx: &GpuContext, src: &wgpu::Buffer, len: usize) -> Result<Vec<u32>> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    let staging = Staging::record(ctx, &mut encoder, src, len);
    ctx.queue.submit([encoder.finish()]);
    Ok(bytemuck::pod_collect_to_vec(&staging.read_bytes(ctx).await?))
}

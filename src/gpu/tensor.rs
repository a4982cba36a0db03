//! [`GpuTensor`]: an f32 storage buffer with a row-major shape, and size-checked creation.

use std::sync::Arc;

use super::context::{GpuContext, TensorBytes};
use super::error::{GpuError, Result};

/// A row-major f32 tensor in one storage buffer (never above the device's binding limit).
#[derive(Debug, Clone)]
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
    /// Counts the buffer in its context's [`GpuContext::memory`] while any view of it lives.
    _counted: Arc<Counted>,
}

/// The allocation guard of one buffer: added to the context's tensor bytes when made,
/// subtracted when the last view of the buffer goes.
#[derive(Debug)]
struct Counted {
    bytes: u64,
    total: Arc<TensorBytes>,
}

impl Counted {
    fn new(ctx: &GpuContext, buffer: &wgpu::Buffer) -> Arc<Self> {
        let bytes = buffer.size();
        ctx.tensor_bytes.add(bytes);
        Arc::new(Self {
            bytes,
            total: ctx.tensor_bytes.clone(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.total.sub(self.bytes);
    }
}

impl GpuTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// A zero-filled tensor (usable as storage, copy source and copy destination).
    pub fn zeros(ctx: &GpuContext, label: &str, shape: &[usize]) -> Result<Self> {
        let bytes = check_size(ctx, label, shape.iter().product::<usize>() as u64 * 4)?;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: storage_usage(),
            mapped_at_creation: false,
        });
        Ok(Self {
            _counted: Counted::new(ctx, &buffer),
            buffer,
            shape: shape.to_vec(),
        })
    }

    /// Uploads `data` (its length must match `shape`).
    pub fn from_slice(ctx: &GpuContext, label: &str, shape: &[usize], data: &[f32]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(GpuError::Shape {
                op: "upload",
                message: format!("`{label}`: shape {shape:?} holds {n} values, got {}", data.len()),
            });
        }
        let buffer = upload_bytes(ctx, label, bytemuck::cast_slice(data))?;
        Ok(Self {
            _counted: Counted::new(ctx, &buffer),
            buffer,
            shape: shape.to_vec(),
        })
    }

    /// Reads the tensor back (one submission, one `map_async`).
    pub async fn read(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        super::readback::read_f32(ctx, &self.buffer, self.numel()).await
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        pollster::block_on(self.read(ctx))
    }
}

pub(crate) fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

/// Bytes rounded up to 16 (never zero), after checking the binding limit.
pub(crate) fn check_size(ctx: &GpuContext, label: &str, bytes: u64) -> Result<u64> {
    let limit = ctx.max_binding_bytes();
    if bytes > limit {
        return Err(GpuError::BufferTooLarge {
            label: label.to_string(),
            bytes,
            limit,
        });
    }
    Ok(bytes.max(16).div_ceil(16) * 16)
}

/// A new buffer holding `contents` (a multiple of 4 bytes), written through the queue: unlike
/// `create_buffer_init`, which panics when the device is lost, a lost device only makes this
/// an invalid buffer, whose use fails as an error.
pub(crate) fn buffer_with(ctx: &GpuContext, label: &str, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: contents.len().max(4) as u64,
        usage: usage | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    if !contents.is_empty() {
        ctx.queue.write_buffer(&buffer, 0, contents);
    }
    buffer
}

/// A storage buffer holding `bytes` (padded to a multiple of 16).
pub(crate) fn upload_bytes(ctx: &GpuContext, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
    let size = check_size(ctx, label, bytes.len() as u64)? as usize;
    let mut padded;
    let contents = if size == bytes.len() {
        bytes
    } else {
        padded = vec![0u8; size];
        padded[..bytes.len()].copy_from_slice(bytes);
        &padded[..]
    };
    Ok(buffer_with(ctx, label, contents, storage_usage()))
}

impl GpuTensor {
    /// The same buffer seen with a shape of at most its capacity (a scratch buffer reused by
    /// a smaller chunk).
    pub fn view(&self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n as u64 * 4 > self.buffer.size() {
            return Err(GpuError::Shape {
                op: "view",
                message: format!("shape {shape:?} exceeds a buffer of {} bytes", self.buffer.size()),
            });
        }
        Ok(Self {
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
            _counted: self._counted.clone(),
        })
    }
}

/// A u32 storage buffer (index lists).
pub(crate) fn upload_u32(ctx: &GpuContext, label: &str, data: &[u32]) -> Result<wgpu::Buffer> {
    upload_bytes(ctx, label, bytemuck::cast_slice(data))
}

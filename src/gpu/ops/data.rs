//! Data-movement, embedding, loss and RNG-fill ops (the non-linear-algebra kernels).

use bytemuck::{Pod, Zeroable};

use super::{expect_numel, grid, shape_err, to_u32, Op, PertView, WG};
use crate::gpu::context::PipelineKey;
use crate::gpu::error::Result;
use crate::gpu::shaders::Kernel;
use crate::gpu::tensor::GpuTensor;
use crate::noise::Stream;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug, Default)]
pub struct EmbedParams {
    pub images: u32,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    pub ph: u32,
    pub pw: u32,
    pub grid_w: u32,
    pub patches: u32,
    pub d: u32,
    pub _pad: [u32; 3],
}

/// Patch vectors `[images * NP, C * ph * pw]` of `pixels: [images, C, H, W]`.
pub fn im2col(p: &EmbedParams, pixels: &GpuTensor, patches: &GpuTensor) -> Result<Op> {
    const OP: &str = "im2col";
    let (b, c, h, w) = (
        p.images as usize,
        p.channels as usize,
        p.height as usize,
        p.width as usize,
    );
    expect_numel(OP, "pixels", pixels, b * c * h * w)?;
    let n = b * p.patches as usize * c * (p.ph * p.pw) as usize;
    expect_numel(OP, "patches", patches, n)?;
    Ok(Op {
        key: PipelineKey::new(Kernel::Embed, "im2col", &[]),
        params: bytemuck::bytes_of(p).to_vec(),
        bindings: vec![(1, pixels.buffer.clone()), (2, patches.buffer.clone())],
        workgroups: grid(n),
    })
}

/// `hidden[b, 0] = cls + pos[0]`, `hidden[b, 1 + i] = proj[b * NP + i] + pos[1 + i]`.
pub fn assemble(p: &EmbedParams, proj: &GpuTensor, cls: &GpuTensor, pos: &GpuTensor, hidden: &GpuTensor) -> Result<Op> {
    const OP: &str = "assemble";
    let (b, np, d) = (p.images as usize, p.patches as usize, p.d as usize);
    expect_numel(OP, "proj", proj, b * np * d)?;
    expect_numel(OP, "cls", cls, d)?;
    expect_numel(OP, "pos", pos, (np + 1) * d)?;
    expect_numel(OP, "hidden", hidden, b * (np + 1) * d)?;
    Ok(Op {
        key: PipelineKey::new(Kernel::Embed, "assemble", &[]),
        params: bytemuck::bytes_of(p).to_vec(),
        bindings: vec![
            (3, proj.buffer.clone()),
            (4, cls.buffer.clone()),
            (5, pos.buffer.clone()),
            (6, hidden.buffer.clone()),
        ],
        workgroups: grid(b * (np + 1) * d),
    })
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ElementwiseParams {
    count: u32,
    width: u32,
    src_stride: u32,
    src_offset: u32,
}

/// `acc += other` (same shapes).
pub fn add(acc: &GpuTensor, other: &GpuTensor) -> Result<Op> {
    expect_numel("add", "other", other, acc.numel())?;
    let p = ElementwiseParams {
        count: to_u32("add", "count", acc.numel())?,
        width: 0,
        src_stride: 0,
        src_offset: 0,
    };
    Ok(Op {
        key: PipelineKey::new(Kernel::Elementwise, "add", &[]),
        params: bytemuck::bytes_of(&p).to_vec(),
        bindings: vec![(1, acc.buffer.clone()), (2, other.buffer.clone())],
        workgroups: grid(acc.numel()),
    })
}

/// `dst[i, j] = src[idx[i] * src_stride + src_offset + j]` for `i < rows`, `j < width`;
/// `idx` holds `rows` u32 (checked by the caller that built it).
pub fn gather(
    src: &GpuTensor,
    idx: &wgpu::Buffer,
    rows: usize,
    width: usize,
    src_stride: usize,
    src_offset: usize,
    dst: &GpuTensor,
) -> Result<Op> {
    const OP: &str = "gather";
    expect_numel(OP, "dst", dst, rows * width)?;
    if src_offset + width > src_stride || !src.numel().is_multiple_of(src_stride.max(1)) {
        return Err(shape_err(
            OP,
            format!("rows of {width} at offset {src_offset} do not fit a source stride of {src_stride}"),
        ));
    }
    let p = ElementwiseParams {
        count: to_u32(OP, "rows", rows)?,
        width: to_u32(OP, "width", width)?,
        src_stride: to_u32(OP, "stride", src_stride)?,
        src_offset: src_offset as u32,
    };
    Ok(Op {
        key: PipelineKey::new(Kernel::Elementwise, "gather", &[]),
        params: bytemuck::bytes_of(&p).to_vec(),
        bindings: vec![(3, src.buffer.clone()), (4, idx.clone()), (5, dst.buffer.clone())],
        workgroups: grid(rows * width),
    })
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    rows: u32,
    classes: u32,
    row_base: u32,
    total_rows: u32,
    rows_off: u32,
    _pad: [u32; 3],
}

/// Per-row cross-entropy of `logits: [rows, C]` (labels from the pert rows section), written
/// with the logits into `out: [R + R * C]` at row `row_base`.
pub fn loss(
    logits: &GpuTensor,
    rows: usize,
    row_base: usize,
    total_rows: usize,
    pert: &PertView,
    out: &GpuTensor,
) -> Result<Op> {
    const OP: &str = "loss";
    let classes = logits.numel() / rows.max(1);
    expect_numel(OP, "logits", logits, rows * classes)?;
    expect_numel(OP, "out", out, total_rows * (classes + 1))?;
    if row_base + rows > total_rows {
        return Err(shape_err(
            OP,
            format!("rows {row_base}..{} beyond {total_rows}", row_base + rows),
        ));
    }
    let p = LossParams {
        rows: rows as u32,
        classes: classes as u32,
        row_base: row_base as u32,
        total_rows: total_rows as u32,
        rows_off: pert.rows_off,
        _pad: [0; 3],
    };
    Ok(Op {
        key: PipelineKey::new(Kernel::Loss, "main", &[]),
        params: bytemuck::bytes_of(&p).to_vec(),
        bindings: vec![
            (1, logits.buffer.clone()),
            (2, out.buffer.clone()),
            (7, pert.buffer.clone()),
        ],
        workgroups: [rows.div_ceil(WG as usize).max(1) as u32, 1, 1],
    })
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct FillParams {
    key: [u32; 2],
    sub: u32,
    step: u32,
    tag: u32,
    start: u32,
    count: u32,
    _pad: u32,
}

fn fill_params(s: &Stream, start: u32, count: u32) -> FillParams {
    FillParams {
        key: s.key,
        sub: s.sub,
        step: s.step,
        tag: s.tag,
        start,
        count,
        _pad: 0,
    }
}

/// Raw Philox blocks `start .. start + count` of `stream` into `out: [count, 4]` (u32 bits).
pub fn rng_raw(stream: &Stream, start: u32, count: usize, out: &wgpu::Buffer) -> Result<Op> {
    if out.size() < count as u64 * 16 {
        return Err(shape_err(
            "rng_raw",
            format!("{count} blocks need {} bytes, buffer has {}", count * 16, out.size()),
        ));
    }
    Ok(Op {
        key: PipelineKey::new(Kernel::RngFill, "raw", &[]),
        params: bytemuck::bytes_of(&fill_params(stream, start, to_u32("rng_raw", "count", count)?)).to_vec(),
        bindings: vec![(1, out.clone())],
        workgroups: [count.div_ceil(WG as usize).max(1) as u32, 1, 1],
    })
}

/// Normals `start .. start + count` of `stream` into `out: [count]`.
pub fn rng_normal(stream: &Stream, start: u32, out: &GpuTensor) -> Result<Op> {
    let count = out.numel();
    Ok(Op {
        key: PipelineKey::new(Kernel::RngFill, "normal", &[]),
        params: bytemuck::bytes_of(&fill_params(stream, start, to_u32("rng_normal", "count", count)?)).to_vec(),
        bindings: vec![(2, out.buffer.clone())],
        workgroups: [count.div_ceil(WG as usize).max(1) as u32, 1, 1],
    })
}

//! Encoding recorded [`Op`]s: one uniform buffer for all params, one bind group per op, one
//! compute pass, inside a validation error scope (errors become [`GpuError::Validation`]).

use super::context::{block_or_ready, GpuContext};
use super::error::{GpuError, Result};
use super::ops::Op;

/// Encodes `ops` in order into one compute pass on `encoder`; their params share one
/// uniform buffer (one slot per op at the device's offset alignment).
pub fn record(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, ops: &[Op]) -> Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let recorded = record_inner(ctx, encoder, ops);
    if let Some(e) = block_or_ready(scope.pop()) {
        return Err(GpuError::Validation { message: e.to_string() });
    }
    recorded
}

fn record_inner(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, ops: &[Op]) -> Result<()> {
    let align = ctx.limits.min_uniform_buffer_offset_alignment.max(16) as usize;
    let mut uniforms = Vec::new();
    let mut slots = Vec::with_capacity(ops.len());
    for op in ops {
        let size = op.params.len().max(16).div_ceil(16) * 16;
        let offset = uniforms.len();
        slots.push((offset as u64, size as u64));
        uniforms.extend_from_slice(&op.params);
        uniforms.resize((offset + size).div_ceil(align) * align, 0);
    }
    let ubuf = super::tensor::buffer_with(ctx, "op params", &uniforms, wgpu::BufferUsages::UNIFORM);
    let mut prepared = Vec::with_capacity(ops.len());
    for (op, &(offset, size)) in ops.iter().zip(&slots) {
        let pipeline = ctx.pipeline(&op.key)?;
        let layout = pipeline.get_bind_group_layout(0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &ubuf,
                offset,
                size: std::num::NonZeroU64::new(size),
            }),
        }];
        entries.extend(op.bindings.iter().map(|(b, buf)| wgpu::BindGroupEntry {
            binding: *b,
            resource: buf.as_entire_binding(),
        }));
        let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(op.key.entry),
            layout: &layout,
            entries: &entries,
        });
        prepared.push((pipeline, group));
    }
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("ops"),
        timestamp_writes: None,
    });
    for (op, (pipeline, group)) in ops.iter().zip(&prepared) {
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, group, &[]);
        let [x, y, z] = op.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
    Ok(())
}

/// Records `ops` in one encoder and submits it (no readback).
pub fn submit(ctx: &GpuContext, ops: &[Op]) -> Result<()> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    record(ctx, &mut encoder, ops)?;
    ctx.queue.submit([encoder.finish()]);
    Ok(())
}

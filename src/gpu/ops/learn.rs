//! Gradient-accumulation and optimiser ops (shaders/grad.wgsl, shaders/optim.wgsl). The
//! gradient `g` is one flat `[total]` tensor over the tuned tensors; each op adds into the
//! slice at `out_off`.

use bytemuck::{Pod, Zeroable};

use super::{expect_numel, grid, shape_err, to_u32, Op};
use crate::gpu::context::PipelineKey;
use crate::gpu::error::Result;
use crate::gpu::shaders::Kernel;
use crate::gpu::tensor::GpuTensor;

/// Workgroups of the first norm-reduction stage (`partial` holds this many values).
pub const NORM_PARTIALS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct GradParams {
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    id: u32,
    rows: u32,
    tokens: u32,
    n: u32,
    k: u32,
    out_off: u32,
    noise_tokens: u32,
    gamma_off: u32,
    beta_off: u32,
    bias_off: u32,
    seg_at: u32,
    overwrite: u32,
    _pad: u32,
}

fn grad_op(entry: &'static str, p: &GradParams, bindings: Vec<(u32, wgpu::Buffer)>, workgroups: [u32; 3]) -> Op {
    Op {
        key: PipelineKey::new(Kernel::Grad, entry, &[]),
        params: bytemuck::bytes_of(p).to_vec(),
        bindings,
        workgroups,
    }
}

fn check_slice(op: &'static str, g: &GpuTensor, out_off: usize, len: usize) -> Result<u32> {
    if out_off + len > g.numel() {
        return Err(shape_err(
            op,
            format!("slice {out_off}..{} beyond a gradient of {}", out_off + len, g.numel()),
        ));
    }
    to_u32(op, "offset", out_off)
}

/// LR noise of one linear site for a chunk of rows, scaled per row:
/// `e[r, t, o] = c_r * Stream::lr(seed, step, site, id_r)(t * N + o)` for `t < noise_tokens`, else 0.
/// `row_table: [rows, 2]` u32 `(c_r as bits, id_r)`. With `segments = Some(s)`, rows that read
/// one input are summed: `e[s, t, o] = sum_{r in segment s} ...`, the `s + 1` segment bounds
/// (chunk rows, the last `rows`) following in `row_table` from word `2 rows`.
/// `e: [rows or segments, tokens, N]`.
#[allow(clippy::too_many_arguments)]
pub fn lr_noise(
    seed: u64,
    step: u32,
    site: u32,
    row_table: &wgpu::Buffer,
    (rows, segments): (usize, Option<usize>),
    tokens: usize,
    noise_tokens: usize,
    n: usize,
    e: &GpuTensor,
) -> Result<Op> {
    const OP: &str = "lr_noise";
    let out_rows = segments.unwrap_or(rows);
    expect_numel(OP, "e", e, out_rows * tokens * n)?;
    let words = 2 * rows + segments.map_or(0, |s| s + 1);
    if row_table.size() < words as u64 * 4 {
        return Err(shape_err(
            OP,
            format!(
                "row table of {} bytes for {rows} rows ({segments:?} segments)",
                row_table.size()
            ),
        ));
    }
    let p = GradParams {
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        step,
        id: site,
        rows: to_u32(OP, "rows", out_rows)?,
        tokens: to_u32(OP, "tokens", tokens)?,
        n: to_u32(OP, "n", n)?,
        noise_tokens: to_u32(OP, "noise_tokens", noise_tokens)?,
        seg_at: to_u32(OP, "rows", 2 * rows)?,
        ..Default::default()
    };
    let entry = if segments.is_some() { "lr_noise_sum" } else { "lr_noise" };
    let threads = out_rows * (tokens * n).div_ceil(4);
    Ok(grad_op(
        entry,
        &p,
        vec![(1, row_table.clone()), (2, e.buffer.clone())],
        grid(threads),
    ))
}

/// `g[out_off + o * K + i] += sum_m e[m, o] u[m, i]` over `m < rows * tokens` (`=` with
/// `overwrite`: a scratch that several sites reuse); `e: [rows, tokens, N]`, `u: [rows, tokens, K]`.
pub fn grad_outer(
    e: &GpuTensor,
    u: &GpuTensor,
    (rows, tokens): (usize, usize),
    g: &GpuTensor,
    out_off: usize,
    overwrite: bool,
) -> Result<Op> {
    const OP: &str = "grad_outer";
    let m = rows * tokens;
    if m == 0 || !e.numel().is_multiple_of(m) || !u.numel().is_multiple_of(m) {
        return Err(shape_err(
            OP,
            format!("e {:?} and u {:?} are not [{rows}, {tokens}, _]", e.shape, u.shape),
        ));
    }
    let (n, k) = (e.numel() / m, u.numel() / m);
    let p = GradParams {
        rows: to_u32(OP, "rows", rows)?,
        tokens: to_u32(OP, "tokens", tokens)?,
        n: to_u32(OP, "n", n)?,
        k: to_u32(OP, "k", k)?,
        out_off: check_slice(OP, g, out_off, n * k)?,
        overwrite: overwrite as u32,
        ..Default::default()
    };
    Ok(grad_op(
        "outer",
        &p,
        vec![(2, e.buffer.clone()), (3, u.buffer.clone()), (4, g.buffer.clone())],
        [k.div_ceil(32) as u32, n.div_ceil(32) as u32, 1],
    ))
}

/// `g[out_off + o] += sum_m e[m, o]` (`=` with `overwrite`); `e: [rows, tokens, N]`.
pub fn grad_bias(
    e: &GpuTensor,
    (rows, tokens): (usize, usize),
    g: &GpuTensor,
    out_off: usize,
    overwrite: bool,
) -> Result<Op> {
    const OP: &str = "grad_bias";
    let m = rows * tokens;
    if m == 0 || !e.numel().is_multiple_of(m) {
        return Err(shape_err(OP, format!("e {:?} is not [{rows}, {tokens}, _]", e.shape)));
    }
    let n = e.numel() / m;
    let p = GradParams {
        rows: to_u32(OP, "rows", rows)?,
        tokens: to_u32(OP, "tokens", tokens)?,
        n: to_u32(OP, "n", n)?,
        out_off: check_slice(OP, g, out_off, n)?,
        overwrite: overwrite as u32,
        ..Default::default()
    };
    Ok(grad_op(
        "bias",
        &p,
        vec![(2, e.buffer.clone()), (4, g.buffer.clone())],
        grid(n),
    ))
}

/// Where [`grad_through_norm`] adds: the site's weight and bias (if tuned), its LayerNorm's
/// gamma and beta, as offsets in `g`.
#[derive(Debug, Clone, Copy)]
pub struct ThroughNorm {
    pub weight: usize,
    pub bias: Option<usize>,
    pub gamma: usize,
    pub beta: usize,
}

/// A linear site fed by a tuned LayerNorm (input `gamma * x_hat + beta`), from
/// `ms = [M, s]`: `M = E^T X_hat` `[N, K]` ([`grad_outer`] over x_hat) and `s = E^T 1` `[N]`
/// ([`grad_bias`]): `G_W += M diag(gamma) + s beta^T`, `G_b += s`, and the norm's
/// `G_gamma += sum_o W[o, :] M[o, :]`, `G_beta += W^T s` (its output gradient `d_y = E W`
/// never formed; the CPU backend's accumulate_through_norm is the same algebra).
pub fn grad_through_norm(
    ms: &GpuTensor,
    w: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    g: &GpuTensor,
    at: ThroughNorm,
) -> Result<Op> {
    const OP: &str = "grad_through_norm";
    let n = w.shape.first().copied().unwrap_or(0);
    let k = w.numel().checked_div(n).unwrap_or(0);
    if n == 0 || w.numel() != n * k || gamma.numel() != k || beta.numel() != k {
        return Err(shape_err(
            OP,
            format!("w {:?}, gamma {:?}, beta {:?}", w.shape, gamma.shape, beta.shape),
        ));
    }
    expect_numel(OP, "ms", ms, n * k + n)?;
    let p = GradParams {
        n: to_u32(OP, "n", n)?,
        k: to_u32(OP, "k", k)?,
        out_off: check_slice(OP, g, at.weight, n * k)?,
        gamma_off: check_slice(OP, g, at.gamma, k)?,
        beta_off: check_slice(OP, g, at.beta, k)?,
        bias_off: match at.bias {
            Some(b) => check_slice(OP, g, b, n)?,
            None => u32::MAX,
        },
        ..Default::default()
    };
    Ok(grad_op(
        "through_norm",
        &p,
        vec![
            (2, ms.buffer.clone()),
            (3, w.buffer.clone()),
            (4, g.buffer.clone()),
            (6, gamma.buffer.clone()),
            (7, beta.buffer.clone()),
        ],
        grid(n.max(k)),
    ))
}

/// SPSA: `g[out_off + j] += sum_k c_k Stream::weight(seed, step, tensor, k)(j)` for the `n`
/// elements of `tensor`; `coeff: [directions]` f32.
#[allow(clippy::too_many_arguments)]
pub fn spsa_grad(
    seed: u64,
    step: u32,
    tensor: u32,
    n: usize,
    coeff: &wgpu::Buffer,
    directions: usize,
    g: &GpuTensor,
    out_off: usize,
) -> Result<Op> {
    const OP: &str = "spsa_grad";
    if coeff.size() < directions as u64 * 4 {
        return Err(shape_err(
            OP,
            format!("{directions} coefficients in {} bytes", coeff.size()),
        ));
    }
    let p = GradParams {
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        step,
        id: tensor,
        rows: to_u32(OP, "directions", directions)?,
        n: to_u32(OP, "n", n)?,
        out_off: check_slice(OP, g, out_off, n)?,
        ..Default::default()
    };
    Ok(grad_op(
        "spsa",
        &p,
        vec![(4, g.buffer.clone()), (5, coeff.clone())],
        grid(n.div_ceil(4)),
    ))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct OptimParams {
    n: u32,
    off: u32,
    clip: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
    _pad: [u32; 3],
}

/// The global L2 norm of `grad` into `norm: [1]`, through `partial: [NORM_PARTIALS]` (two ops).
pub fn grad_norm(grad: &GpuTensor, partial: &GpuTensor, norm: &GpuTensor) -> Result<[Op; 2]> {
    const OP: &str = "grad_norm";
    expect_numel(OP, "partial", partial, NORM_PARTIALS)?;
    expect_numel(OP, "norm", norm, 1)?;
    let first = OptimParams {
        n: to_u32(OP, "n", grad.numel())?,
        ..Default::default()
    };
    let second = OptimParams {
        n: NORM_PARTIALS as u32,
        ..Default::default()
    };
    Ok([
        Op {
            key: PipelineKey::new(Kernel::Optim, "sumsq_partial", &[]),
            params: bytemuck::bytes_of(&first).to_vec(),
            bindings: vec![(1, grad.buffer.clone()), (2, partial.buffer.clone())],
            workgroups: [NORM_PARTIALS as u32, 1, 1],
        },
        Op {
            key: PipelineKey::new(Kernel::Optim, "sumsq_final", &[]),
            params: bytemuck::bytes_of(&second).to_vec(),
            bindings: vec![(2, partial.buffer.clone()), (3, norm.buffer.clone())],
            workgroups: [1, 1, 1],
        },
    ])
}

/// The update rule and its step constants (learning rate, bias corrections).
#[derive(Debug, Clone, Copy)]
pub enum UpdateRule {
    Sgd {
        momentum: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        bc1: f32,
        bc2: f32,
    },
}

/// Clips `grad` by the global norm in `norm[0]` (when `clip` is set) and updates one tensor
/// `param: [n]` in place from `grad`, `m`, `v` at `off`. `v` may be a stand-in for SGD.
#[allow(clippy::too_many_arguments)]
pub fn optim_update(
    rule: UpdateRule,
    lr: f32,
    clip: Option<f32>,
    grad: &GpuTensor,
    norm: &GpuTensor,
    param: &GpuTensor,
    off: usize,
    m: &GpuTensor,
    v: &GpuTensor,
) -> Result<Op> {
    const OP: &str = "optim_update";
    let n = param.numel();
    let off32 = check_slice(OP, grad, off, n)?;
    check_slice(OP, m, off, n)?;
    let adam = matches!(rule, UpdateRule::Adam { .. });
    if adam {
        check_slice(OP, v, off, n)?;
    }
    let mut p = OptimParams {
        n: to_u32(OP, "n", n)?,
        off: off32,
        clip: clip.unwrap_or(0.0),
        lr,
        ..Default::default()
    };
    match rule {
        UpdateRule::Sgd { momentum } => p.beta1 = momentum,
        UpdateRule::Adam {
            beta1,
            beta2,
            eps,
            bc1,
            bc2,
        } => {
            (p.beta1, p.beta2, p.eps, p.bc1, p.bc2) = (beta1, beta2, eps, bc1, bc2);
        }
    }
    Ok(Op {
        key: PipelineKey::new(Kernel::Optim, "update", &[("ADAM", adam)]),
        params: bytemuck::bytes_of(&p).to_vec(),
        bindings: vec![
            (1, grad.buffer.clone()),
            (3, norm.buffer.clone()),
            (4, param.buffer.clone()),
            (5, m.buffer.clone()),
            (6, v.buffer.clone()),
        ],
        workgroups: grid(n),
    })
}

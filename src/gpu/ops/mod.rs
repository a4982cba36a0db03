//! Recorded kernels. Each constructor checks shapes and returns an [`Op`] (pipeline key,
//! uniform params, bindings, dispatch size); [`record`] encodes a list of ops into one
//! compute pass ([`super::encode`]). Conventions: activations are row-major
//! `[rows, tokens, features]`, linear weights PyTorch's `[out, in]`.

use bytemuck::{Pod, Zeroable};

use super::context::PipelineKey;
use super::error::{GpuError, Result};
use super::shaders::Kernel;
use super::tensor::GpuTensor;

mod data;
mod learn;

pub use super::encode::{record, submit};
pub use data::{add, assemble, gather, im2col, loss, rng_normal, rng_raw, EmbedParams};
pub use learn::{
    grad_bias, grad_norm, grad_outer, grad_through_norm, lr_noise, optim_update, spsa_grad, ThroughNorm, UpdateRule,
    NORM_PARTIALS,
};

/// Threads per workgroup of the 1-D kernels.
const WG: u32 = 64;
/// Head width one attention thread can hold (`MAX_HD` in attention.wgsl; ViT-Ti/S/B/L: 64).
pub const ATTENTION_MAX_HEAD_DIM: usize = 128;
/// Query tokens per attention workgroup (`WG` in attention.wgsl).
const ATTENTION_QUERIES_PER_GROUP: usize = 64;
/// "No tensor / no table" in the perturbation words.
pub const NONE: u32 = u32::MAX;

/// One dispatch, ready to encode.
#[derive(Debug)]
pub struct Op {
    pub key: PipelineKey,
    /// The uniform at binding 0.
    pub params: Vec<u8>,
    /// Storage bindings `(binding, buffer)`, exactly those the entry point uses.
    pub bindings: Vec<(u32, wgpu::Buffer)>,
    pub workgroups: [u32; 3],
}

/// The perturbation table of a forward (see shaders/perturb.wgsl) and its section offsets.
#[derive(Debug, Clone)]
pub struct PertView {
    pub buffer: wgpu::Buffer,
    pub rows_off: u32,
    pub groups_off: u32,
    pub wscale_off: u32,
    pub n_tensors: u32,
}

impl PertView {
    /// A stand-in for ops that perturb nothing (the table is then not bound).
    pub fn unused(ctx: &super::context::GpuContext) -> Result<Self> {
        let buffer = super::tensor::upload_bytes(ctx, "no perturbation", &[0u8; 16])?;
        Ok(Self {
            buffer,
            rows_off: 0,
            groups_off: 0,
            wscale_off: 0,
            n_tensors: 0,
        })
    }
}

fn shape_err(op: &'static str, message: String) -> GpuError {
    GpuError::Shape { op, message }
}

fn expect_numel(op: &'static str, what: &str, t: &GpuTensor, n: usize) -> Result<()> {
    if t.numel() != n {
        return Err(shape_err(
            op,
            format!(
                "{what} has shape {:?} ({} values), expected {n} values",
                t.shape,
                t.numel()
            ),
        ));
    }
    Ok(())
}

fn to_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| shape_err(op, format!("{what} = {v} does not fit in u32")))
}

/// A 1-D launch of `n` threads as a 2-D grid (at most 65535 workgroups per dimension).
fn grid(n: usize) -> [u32; 3] {
    let groups = n.div_ceil(WG as usize).max(1);
    let x = groups.min(65_535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    rows: u32,
    tokens: u32,
    k: u32,
    n: u32,
    row_base: u32,
    rows_off: u32,
    groups_off: u32,
    wscale_off: u32,
    n_tensors: u32,
    w_tensor: u32,
    b_tensor: u32,
    list_off: u32,
    sigma_off: u32,
    site: u32,
    noise_tokens: u32,
    _pad: u32,
}

/// LR noise on a linear layer's output: `+ sigma_r * eps`, `sigma_r` from the table at
/// `sigma_off` (one f32 per internal row), noise addressed by `site` and the row's seed/id.
#[derive(Debug, Clone, Copy)]
pub struct LrEpilogue {
    pub sigma_off: u32,
    pub site: u32,
    /// Noise on the first `noise_tokens` tokens of each row only
    /// ([`crate::model::perturb::lr_noise_tokens`]).
    pub noise_tokens: u32,
}

/// Weight perturbation of a linear layer: rows come in groups (`list_off`: `n_groups`
/// entries of `(first row, rows, group)`), `max_group_rows` sizes the dispatch.
#[derive(Debug, Clone, Copy)]
pub struct WeightEpilogue {
    pub list_off: u32,
    pub n_groups: u32,
    pub max_group_rows: u32,
}

/// `y[rows * tokens, N] = x[rows * tokens, K] W[N, K]^T (+ b)` with optional epilogues.
pub struct Matmul<'a> {
    pub x: &'a GpuTensor,
    pub rows: usize,
    pub tokens: usize,
    pub weight: &'a GpuTensor,
    pub bias: Option<&'a GpuTensor>,
    pub y: &'a GpuTensor,
    /// Tensor ids of weight and bias (noise addresses), [`NONE`] when not perturbable.
    pub tensor_ids: (u32, u32),
    pub gelu: bool,
    pub lr: Option<LrEpilogue>,
    pub weight_pert: Option<WeightEpilogue>,
    /// Internal index of `x`'s first row in the perturbation table.
    pub row_base: u32,
    pub pert: &'a PertView,
}

pub fn matmul(a: &Matmul) -> Result<Op> {
    const OP: &str = "matmul";
    let n = *a
        .weight
        .shape
        .first()
        .ok_or_else(|| shape_err(OP, "weight has no dimensions".into()))?;
    if n == 0 {
        return Err(shape_err(OP, "weight has no output rows".into()));
    }
    let k = a.weight.numel() / n;
    let m = a.rows * a.tokens;
    expect_numel(OP, "x", a.x, m * k)?;
    expect_numel(OP, "y", a.y, m * n)?;
    if let Some(b) = a.bias {
        expect_numel(OP, "bias", b, n)?;
    }
    let row_tiles = match a.weight_pert {
        Some(w) => w.max_group_rows as usize * a.tokens,
        None => m,
    };
    let p = MatmulParams {
        rows: to_u32(OP, "rows", a.rows)?,
        tokens: to_u32(OP, "tokens", a.tokens)?,
        k: to_u32(OP, "k", k)?,
        n: to_u32(OP, "n", n)?,
        row_base: a.row_base,
        rows_off: a.pert.rows_off,
        groups_off: a.pert.groups_off,
        wscale_off: a.pert.wscale_off,
        n_tensors: a.pert.n_tensors,
        w_tensor: a.tensor_ids.0,
        b_tensor: if a.bias.is_some() { a.tensor_ids.1 } else { NONE },
        list_off: a.weight_pert.map_or(0, |w| w.list_off),
        sigma_off: a.lr.map_or(NONE, |l| l.sigma_off),
        site: a.lr.map_or(0, |l| l.site),
        noise_tokens: a.lr.map_or(0, |l| l.noise_tokens),
        _pad: 0,
    };
    let key = PipelineKey::new(
        Kernel::Matmul,
        "main",
        &[
            ("HAS_BIAS", a.bias.is_some()),
            ("GELU", a.gelu),
            ("LR_NOISE", a.lr.is_some()),
            ("WEIGHT_PERT", a.weight_pert.is_some()),
        ],
    );
    let bias = a.bias.unwrap_or(a.weight);
    // The table is statically used (behind override constants), so always bound.
    let bindings = vec![
        (1, a.x.buffer.clone()),
        (2, a.weight.buffer.clone()),
        (3, bias.buffer.clone()),
        (4, a.y.buffer.clone()),
        (7, a.pert.buffer.clone()),
    ];
    let groups = a.weight_pert.map_or(1, |w| w.n_groups).max(1);
    Ok(Op {
        key,
        params: bytemuck::bytes_of(&p).to_vec(),
        bindings,
        workgroups: [n.div_ceil(32) as u32, row_tiles.div_ceil(32).max(1) as u32, groups],
    })
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LayerNormParams {
    tokens: u32,
    d: u32,
    row_base: u32,
    rows_off: u32,
    groups_off: u32,
    wscale_off: u32,
    n_tensors: u32,
    gamma_tensor: u32,
    beta_tensor: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// LayerNorm of `x[rows * tokens, D]` into `y`. `perturb = Some((gamma id, beta id))` applies
/// each row's weight-perturbation group to gamma and beta.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    x: &GpuTensor,
    rows: usize,
    tokens: usize,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    eps: f64,
    y: &GpuTensor,
    perturb: Option<(u32, u32)>,
    row_base: u32,
    pert: &PertView,
) -> Result<Op> {
    const OP: &str = "layer_norm";
    let d = gamma.numel();
    let m = rows * tokens;
    expect_numel(OP, "beta", beta, d)?;
    expect_numel(OP, "x", x, m * d)?;
    expect_numel(OP, "y", y, m * d)?;
    if m > 65_535 {
        return Err(shape_err(
            OP,
            format!("{m} token rows exceed one dispatch dimension (65535)"),
        ));
    }
    let (gt, bt) = perturb.unwrap_or((NONE, NONE));
    let p = LayerNormParams {
        tokens: to_u32(OP, "tokens", tokens)?,
        d: to_u32(OP, "d", d)?,
        row_base,
        rows_off: pert.rows_off,
        groups_off: pert.groups_off,
        wscale_off: pert.wscale_off,
        n_tensors: pert.n_tensors,
        gamma_tensor: gt,
        beta_tensor: bt,
        eps: eps as f32,
        _pad: [0; 2],
    };
    let bindings = vec![
        (1, x.buffer.clone()),
        (2, gamma.buffer.clone()),
        (3, beta.buffer.clone()),
        (4, y.buffer.clone()),
        (7, pert.buffer.clone()),
    ];
    Ok(Op {
        key: PipelineKey::new(Kernel::LayerNorm, "main", &[("WEIGHT_PERT", perturb.is_some())]),
        params: bytemuck::bytes_of(&p).to_vec(),
        bindings,
        workgroups: [m as u32, 1, 1],
    })
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttentionParams {
    tokens: u32,
    d: u32,
    head_dim: u32,
    scale: f32,
}

/// Softmax attention of `q, k, v: [rows, T, D]` with `heads` heads into `out: [rows, T, D]`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &GpuTensor,
    rows: usize,
    tokens: usize,
    d: usize,
    heads: usize,
) -> Result<Op> {
    const OP: &str = "attention";
    if heads == 0 || !d.is_multiple_of(heads) {
        return Err(shape_err(OP, format!("{heads} heads do not divide {d} features")));
    }
    let hd = d / heads;
    if hd > ATTENTION_MAX_HEAD_DIM {
        return Err(GpuError::Unsupported {
            reason: format!("attention heads of width {hd} (at most {ATTENTION_MAX_HEAD_DIM})"),
        });
    }
    for (what, t) in [("q", q), ("k", k), ("v", v), ("out", out)] {
        expect_numel(OP, what, t, rows * tokens * d)?;
    }
    let p = AttentionParams {
        tokens: tokens as u32,
        d: d as u32,
        head_dim: hd as u32,
        scale: 1.0 / (hd as f32).sqrt(),
    };
    Ok(Op {
        key: PipelineKey::new(Kernel::Attention, "main", &[]),
        params: bytemuck::bytes_of(&p).to_vec(),
        bindings: vec![
            (1, q.buffer.clone()),
            (2, k.buffer.clone()),
            (3, v.buffer.clone()),
            (4, out.buffer.clone()),
        ],
        workgroups: [
            to_u32(OP, "tokens", tokens.div_ceil(ATTENTION_QUERIES_PER_GROUP))?,
            heads as u32,
            to_u32(OP, "rows", rows)?,
        ],
    })
}

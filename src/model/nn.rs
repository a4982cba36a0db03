//! The CPU reference's building blocks: named parameters, `Linear`, `LayerNorm`, GELU,
//! softmax and cross-entropy, in plain loops. Activations are row-major `[T, features]`.

use super::error::Result;
use super::weights::VarBuilder;

/// One tensor of the model, under its HF `ViTForImageClassification` name.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Param {
    pub fn load(vb: &VarBuilder, name: &str, shape: &[usize]) -> Result<Self> {
        Ok(Self {
            name: vb.pp(name).path_name(),
            shape: shape.to_vec(),
            data: vb.get(name, shape)?,
        })
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Which implementation computes a module's dense products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Plain loops: the reference, the oracle every other path is tested against.
    #[default]
    Reference,
    /// A GEMM library (`matrixmultiply`: AVX2/FMA or AVX-512 chosen at run time on x86-64,
    /// simd128 in wasm): the fast CPU path. Same results up to float reassociation.
    Gemm,
}

/// Row counts below this run the plain loops even under [`Kernels::Gemm`].
pub const GEMM_MIN_ROWS: usize = 4;

/// `C = alpha A B + beta C` for row/column-strided `A: [m, k]`, `B: [k, n]`, `C: [m, n]`
/// (strides in elements); every index is checked against the slices first.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    (a, rsa, csa): (&[f32], usize, usize),
    (b, rsb, csb): (&[f32], usize, usize),
    beta: f32,
    (c, rsc, csc): (&mut [f32], usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        k == 0 || (last(m, k, rsa, csa) < a.len() && last(k, n, rsb, csb) < b.len()),
        "sgemm: operands shorter than [{m}, {k}] x [{k}, {n}]"
    );
    assert!(last(m, n, rsc, csc) < c.len(), "sgemm: output shorter than [{m}, {n}]");
    // SAFETY: every element addressed by (m, k, n) and the strides lies inside the slices
    // (checked above), and `c` is borrowed mutably, so it aliases neither `a` nor `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

/// `y = x W^T + b` with `W` as `[out, in]` (PyTorch's layout).
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Param,
    pub bias: Option<Param>,
    pub kernels: Kernels,
}

impl Linear {
    pub fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        Ok(Self {
            weight: Param::load(vb, "weight", &[out_dim, in_dim])?,
            bias: if bias {
                Some(Param::load(vb, "bias", &[out_dim])?)
            } else {
                None
            },
            kernels: Kernels::Reference,
        })
    }

    /// A freshly initialised layer (weights `N(0, std^2)` from `normal`, zero bias).
    pub fn init(name: &str, in_dim: usize, out_dim: usize, mut normal: impl FnMut() -> f32, std: f32) -> Self {
        Self {
            weight: Param {
                name: format!("{name}.weight"),
                shape: vec![out_dim, in_dim],
                data: (0..in_dim * out_dim).map(|_| std * normal()).collect(),
            },
            bias: Some(Param {
                name: format!("{name}.bias"),
                shape: vec![out_dim],
                data: vec![0.0; out_dim],
            }),
            kernels: Kernels::Reference,
        }
    }

    /// Input width; the weight may keep a conv shape `[out, C, kh, kw]` (the patch projection).
    pub fn in_dim(&self) -> usize {
        self.weight.numel() / self.out_dim()
    }

    pub fn out_dim(&self) -> usize {
        self.weight.shape[0]
    }

    /// `x`: `[T, in]` -> `[T, out]`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (din, dout) = (self.in_dim(), self.out_dim());
        let t = x.len() / din;
        // A GEMM library's packing only pays from a few rows on (the last block's CLS-only rows
        // are single vectors): fewer rows take the loops.
        if self.kernels == Kernels::Gemm && t >= GEMM_MIN_ROWS {
            let mut y = match &self.bias {
                Some(b) => b.data.repeat(t),
                None => vec![0.0f32; t * dout],
            };
            let w = &self.weight.data;
            sgemm((t, din, dout), 1.0, (x, din, 1), (w, 1, din), 1.0, (&mut y, dout, 1));
            return y;
        }
        let mut y = vec![0.0f32; t * dout];
        for r in 0..t {
            let xr = &x[r * din..(r + 1) * din];
            for o in 0..dout {
                let w = &self.weight.data[o * din..(o + 1) * din];
                let mut acc = self.bias.as_ref().map_or(0.0, |b| b.data[o]);
                for i in 0..din {
                    acc += xr[i] * w[i];
                }
                y[r * dout + o] = acc;
            }
        }
        y
    }

    pub fn params(&self) -> Vec<&Param> {
        std::iter::once(&self.weight).chain(self.bias.as_ref()).collect()
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        std::iter::once(&mut self.weight).chain(self.bias.as_mut()).collect()
    }
}

/// LayerNorm over the last dimension, statistics in f64 ([`Kernels::Gemm`]: in f32, vectorised).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Param,
    pub bias: Param,
    pub eps: f64,
    pub kernels: Kernels,
}

impl LayerNorm {
    pub fn load(vb: &VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: Param::load(vb, "weight", &[dim])?,
            bias: Param::load(vb, "bias", &[dim])?,
            eps,
            kernels: Kernels::Reference,
        })
    }

    /// `x`: `[T, D]` -> `[T, D]`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let d = self.weight.numel();
        let mut y = self.normalize(x);
        for yr in y.chunks_exact_mut(d) {
            for ((y, &w), &b) in yr.iter_mut().zip(&self.weight.data).zip(&self.bias.data) {
                *y = *y * w + b;
            }
        }
        y
    }

    /// `x_hat = (x - mean) / sqrt(var + eps)` per row, before the affine map.
    pub fn normalize(&self, x: &[f32]) -> Vec<f32> {
        let d = self.weight.numel();
        let mut y = vec![0.0f32; x.len()];
        if self.kernels == Kernels::Gemm {
            for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
                super::fast_math::normalize(xr, yr, self.eps as f32);
            }
            return y;
        }
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + self.eps).sqrt();
            for (y, &x) in yr.iter_mut().zip(xr) {
                *y = ((x as f64 - mean) * inv) as f32;
            }
        }
        y
    }

    pub fn params(&self) -> Vec<&Param> {
        vec![&self.weight, &self.bias]
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
}

/// Exact GELU: `x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))`.
pub fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
}

/// Softmax in place over a row.
pub fn softmax_inplace(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    for v in row.iter_mut() {
        *v = (*v as f64 / sum) as f32;
    }
}

/// Softmax of a row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let mut p = logits.to_vec();
    softmax_inplace(&mut p);
    p
}

/// Cross-entropy of one sample: `logsumexp(z) - z_y`.
pub fn cross_entropy(logits: &[f32], label: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + logits.iter().map(|&z| (z as f64 - max).exp()).sum::<f64>().ln();
    (lse - logits[label] as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgemm_matches_loops_on_strided_operands() {
        // A [2, 3] row-major, B^T stored [4, 3] (so B = [3, 4] with strides (1, 3)).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bt: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let mut c = vec![1.0f32; 8];
        sgemm((2, 3, 4), 2.0, (&a, 3, 1), (&bt, 1, 3), 1.0, (&mut c, 4, 1));
        for i in 0..2 {
            for j in 0..4 {
                let want = 1.0 + 2.0 * (0..3).map(|k| a[i * 3 + k] * bt[j * 3 + k]).sum::<f32>();
                assert_eq!(c[i * 4 + j], want, "({i}, {j})");
            }
        }
    }
}

//! Vectorisable f32 math for the fast CPU path ([`Kernels::Gemm`](super::nn::Kernels)): `exp`,
//! softmax, GELU and LayerNorm's statistics over slices, as straight-line arithmetic (no calls,
//! no branches) so that LLVM vectorises the loops: SSE2 natively, `simd128` in the browser.
//! libm's scalar `expf` and `erff` (and LayerNorm in f64), which the reference keeps, were 13%
//! of a ViT-Tiny forward in wasm (410 -> 356 ms for 4 images in Chromium, simd128 build).
//!
//! Accuracy (tested below against the `f64` functions over their whole useful range): [`exp`]
//! within 3e-7 relative; [`gelu`] within 3e-7 * max(1, |x|) absolute (Abramowitz & Stegun
//! 7.1.26 for erf, 1.5e-7, the same approximation as `shaders/matmul.wgsl`).

/// `e^x` in f32: Cephes' range reduction (`x = n ln 2 + r`, `|r| <= ln 2 / 2`) and degree-7
/// polynomial, `2^n` built in the exponent bits. Inputs clamp to [-87.3, 88]: `exp` of anything
/// below is 1.2e-38 rather than a denormal or 0 (harmless for softmax weights); NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to the nearest integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p =
        ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let y = p * r * r + r + 1.0;
    let exponent = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    y * f32::from_bits(exponent as u32)
}

/// `erf(x)` in f32, Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7) over [`exp`].
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// Exact-erf GELU, `0.5 x (1 + erf(x / sqrt 2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// [`gelu`] of every element.
pub fn gelu_inplace(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = gelu(*x));
}

/// Lanes of the reductions below: independent accumulators the compiler keeps in one vector.
const LANES: usize = 8;

/// The largest element (NaN-free inputs; -inf for an empty row).
fn max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    tail.iter().chain(&acc).copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Softmax of a row in place, in f32: `exp(v - max)` by [`exp`], one division.
pub fn softmax_inplace(row: &mut [f32]) {
    let m = max(row);
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *v = exp(*v - m);
            *a += *v;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - m);
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// The sum of a row in [`LANES`] partial sums.
fn sum(row: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    tail.iter().chain(&acc).sum()
}

/// LayerNorm's `y = (x - mean) / sqrt(var + eps)` of one row, in f32 (two passes: the mean,
/// then the variance of `x - mean`, so no cancellation).
pub fn normalize(x: &[f32], y: &mut [f32], eps: f32) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x - mean;
    }
    let mut acc = [0.0f32; LANES];
    let chunks = y.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let var = (acc.iter().sum::<f32>() + tail) / n;
    let inv = 1.0 / (var + eps).sqrt();
    y.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` points evenly over `[lo, hi]`.
    fn grid(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| lo + (hi - lo) * i as f32 / n as f32)
    }

    #[test]
    fn exp_is_within_3e_7_relative_of_f64() {
        let worst = grid(-87.0, 88.0, 400_000)
            .map(|x| {
                let want = (x as f64).exp();
                ((exp(x) as f64 - want) / want).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst <= 3e-7, "{worst}");
        assert!(exp(-1000.0) < 1.3e-38 && exp(-1000.0) > 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn gelu_is_within_3e_7_of_the_exact_gelu() {
        let worst = grid(-12.0, 12.0, 400_000)
            .map(|x| {
                let err = (gelu(x) - super::super::nn::gelu(x)).abs();
                err / x.abs().max(1.0)
            })
            .fold(0.0, f32::max);
        assert!(worst <= 3e-7, "{worst}");
        assert_eq!(gelu(0.0), 0.0);
    }

    #[test]
    fn normalize_matches_f64_statistics() {
        // A row with a large offset (cancellation would show) and one of ViT-Tiny's width.
        for (len, offset) in [(192usize, 0.0f32), (64, 300.0), (5, -2.0)] {
            let x: Vec<f32> = (0..len).map(|i| offset + ((i * 13) % 17) as f32 * 0.37 - 3.0).collect();
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            let mut y = vec![0.0; len];
            normalize(&x, &mut y, 1e-12);
            let err = x
                .iter()
                .zip(&y)
                .map(|(&x, &y)| (y as f64 - (x as f64 - mean) / (var + 1e-12).sqrt()).abs())
                .fold(0.0, f64::max);
            assert!(err <= 2e-5, "len {len}, offset {offset}: {err}");
        }
    }

    #[test]
    fn softmax_matches_the_reference_and_sums_to_one() {
        // Rows of 197 (ViT's tokens: not a multiple of the lanes) and 3, with large spreads.
        for len in [3usize, 8, 197] {
            let row: Vec<f32> = (0..len).map(|i| ((i * 37) % 23) as f32 * 1.7 - 20.0).collect();
            let mut fast = row.clone();
            softmax_inplace(&mut fast);
            let mut want = row.clone();
            super::super::nn::softmax_inplace(&mut want);
            let err = fast.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err <= 1e-6, "len {len}: {err}");
            assert!((fast.iter().sum::<f32>() - 1.0).abs() <= 1e-5);
        }
    }
}

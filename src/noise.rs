//! Counter-based Gaussian noise shared by the CPU oracle, the GPU kernels and the gradient
//! accumulation: Philox4x32-10 plus Box-Muller. Backend-agnostic (no wgpu); the WGSL
//! twin is `shaders/rng.wgsl`, whose `u32` outputs are bit-identical to [`philox4x32_10`].
//!
//! # Addressing
//!
//! Every noise value is a pure function of a [`Stream`] and an element index `n`, so noise is
//! never stored: the perturbed forward, the gradient estimate and the update regenerate it.
//!
//! - key `= (seed as u32, seed >> 32)`;
//! - counter `= (n >> 2, sub, step, purpose << 24 | id)`;
//! - lane `n & 3` of the block: lanes 0/1 are `r cos(theta)` / `r sin(theta)` of Box-Muller on
//!   words `(x0, x1)`, lanes 2/3 the same on `(x2, x3)`.
//!
//! | purpose | `id` (24 bits) | `sub` | element `n` |
//! |---|---|---|---|
//! | [`PURPOSE_LR`]: activation noise `eps` of LR rows | the site id of the linear layer (`model::params::ParamTable::site_id`) | query row id | `token * out_dim + unit` |
//! | [`PURPOSE_WEIGHT`]: weight direction `z_k` (SPSA/ES) | tensor id (index in `net.params()`, HF order) | direction `k` | flat element index (row-major) |
//!
//! Independent draws need distinct (seed, step, purpose, id, sub); a training step that
//! increments `step` gets fresh noise with the same seed.

/// Purpose tag of likelihood-ratio activation noise.
pub const PURPOSE_LR: u32 = 1;
/// Purpose tag of weight-space directions (SPSA / ES).
pub const PURPOSE_WEIGHT: u32 = 2;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds (Salmon et al., SC'11; Random123's `philox4x32_10`).
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// A `u32` as a uniform in `(0, 1)`: the top 24 bits plus one half, exact in `f32`.
#[inline]
pub fn uniform(x: u32) -> f32 {
    ((x >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// `ln(u)` for a normal `u` in `(0, 1]` from its bits and a fixed polynomial, so that CPU and
/// GPU agree to a few ulp (GPU `log`/`cos`/`sin` may be off by 2^-11 absolute on Vulkan).
/// `u = m 2^e` with `m` in `[sqrt(1/2), sqrt 2)`, `ln m = 2 atanh(s)`, `s = (m - 1)/(m + 1)`.
#[inline]
pub fn ln_unit(u: f32) -> f32 {
    // Branch-free (selects), so that `Stream::fill` vectorises; the same operations as the WGSL.
    let bits = u.to_bits();
    let e = ((bits >> 23) & 0xFF) as i32 - 127;
    let m0 = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    let big = m0 > std::f32::consts::SQRT_2;
    let m = if big { m0 * 0.5 } else { m0 };
    let e = e + big as i32;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = s * (2.0 + s2 * (2.0 / 3.0 + s2 * (0.4 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0)))));
    e as f32 * std::f32::consts::LN_2 + p
}

/// `(sin, cos)` of `2 pi u` for `u` in `[0, 1)`: quadrant from `round(4 u)` (exact), Taylor
/// polynomials on `[-pi/4, pi/4]` (error below 2e-9).
#[inline]
pub fn sincos_turns(u: f32) -> (f32, f32) {
    let x = u * 4.0;
    // floor(x + 1/2) as a truncating cast (x > 0): `floor` is a libm call on baseline x86-64,
    // which would keep `Stream::fill` from vectorising.
    let q = (x + 0.5) as u32;
    let a = (x - q as f32) * std::f32::consts::FRAC_PI_2;
    let a2 = a * a;
    let s = a * (1.0 + a2 * (-1.0 / 6.0 + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (1.0 / 362_880.0)))));
    let c = 1.0 + a2 * (-0.5 + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40_320.0 - a2 / 3_628_800.0))));
    // Quadrant q: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s) for q = 0..3, as selects.
    let q = q & 3;
    let odd = q & 1 == 1;
    let (sin, cos) = if odd { (c, s) } else { (s, c) };
    let sin = if q & 2 == 2 { -sin } else { sin };
    let cos = if (q + 1) & 2 == 2 { -cos } else { cos };
    (sin, cos)
}

/// Box-Muller on two words: `(r cos(theta), r sin(theta))`, `r = sqrt(-2 ln u1)`,
/// `theta = 2 pi u2`, in `f32` with the same portable `ln`/`sin`/`cos` as the shader.
#[inline]
pub fn box_muller(x1: u32, x2: u32) -> (f32, f32) {
    let r = (-2.0 * ln_unit(uniform(x1))).sqrt();
    let (sin, cos) = sincos_turns(uniform(x2));
    (r * cos, r * sin)
}

/// One independent stream of standard normals, addressed by element index (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream {
    pub key: [u32; 2],
    /// Counter word 1: the query row (LR) or the direction `k` (weights).
    pub sub: u32,
    /// Counter word 2: the training step.
    pub step: u32,
    /// Counter word 3: `purpose << 24 | id`.
    pub tag: u32,
}

impl Stream {
    pub fn new(seed: u64, step: u32, purpose: u32, id: u32, sub: u32) -> Self {
        Self {
            key: [seed as u32, (seed >> 32) as u32],
            sub,
            step,
            tag: (purpose << 24) | (id & 0xFF_FFFF),
        }
    }

    /// Activation noise of the site with noise id `site` in query row `row`; element
    /// `token * out_dim + unit`. The caller's parameter table gives the site ids; this module
    /// knows nothing of the network.
    pub fn lr(seed: u64, step: u32, site: u32, row: u32) -> Self {
        Self::new(seed, step, PURPOSE_LR, site, row)
    }

    /// Weight direction `z_k` of tensor `tensor` (its index in `net.params()`); element = flat index.
    pub fn weight(seed: u64, step: u32, tensor: u32, direction: u32) -> Self {
        Self::new(seed, step, PURPOSE_WEIGHT, tensor, direction)
    }

    /// The Philox block holding elements `4 b .. 4 b + 4`.
    pub fn block(&self, b: u32) -> [u32; 4] {
        philox4x32_10([b, self.sub, self.step, self.tag], self.key)
    }

    /// Element `n`.
    pub fn normal(&self, n: u32) -> f32 {
        let x = self.block(n >> 2);
        let pair = (n as usize & 3) >> 1;
        let (c, s) = box_muller(x[2 * pair], x[2 * pair + 1]);
        if n & 1 == 0 {
            c
        } else {
            s
        }
    }

    /// Elements `start .. start + out.len()`, one Philox block per four values. Aligned blocks
    /// go 64 at a time through Philox with the four counter words in separate arrays
    /// (one lane per block) and then through Box-Muller, loops the compiler vectorises; the
    /// values are the same as [`Stream::normal`]'s, bit for bit.
    pub fn fill(&self, start: u32, out: &mut [f32]) {
        let mut n = start;
        let mut i = 0;
        while i < out.len() && n & 3 != 0 {
            out[i] = self.normal(n);
            i += 1;
            n = n.wrapping_add(1);
        }
        let aligned = (out.len() - i) / 4 * 4;
        self.fill_blocks(n >> 2, &mut out[i..i + aligned]);
        i += aligned;
        n = n.wrapping_add(aligned as u32);
        while i < out.len() {
            out[i] = self.normal(n);
            i += 1;
            n = n.wrapping_add(1);
        }
    }

    /// Whole blocks from block `b0` into `out` (`out.len()` a multiple of 4); with AVX2 where
    /// the CPU has it (runtime detection; twice the baseline's lanes).
    fn fill_blocks(&self, b0: u32, out: &mut [f32]) {
        // A short fill (the classifier's 10 outputs) would pay for a whole chunk of lanes.
        if out.len() < 4 * SHORT_BLOCKS {
            for (b, o) in out.chunks_exact_mut(4).enumerate() {
                let x = self.block(b0.wrapping_add(b as u32));
                let ((c0, s0), (c1, s1)) = (box_muller(x[0], x[1]), box_muller(x[2], x[3]));
                o.copy_from_slice(&[c0, s0, c1, s1]);
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { self.fill_blocks_avx2(b0, out) };
            return;
        }
        self.fill_blocks_portable(b0, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fill_blocks_avx2(&self, b0: u32, out: &mut [f32]) {
        self.fill_blocks_portable(b0, out);
    }

    #[inline(always)]
    fn fill_blocks_portable(&self, mut b0: u32, out: &mut [f32]) {
        let mut words = [[0u32; CHUNK]; 4];
        let mut normals = [[0.0f32; CHUNK]; 4];
        for dst in out.chunks_mut(4 * CHUNK) {
            self.blocks(b0, &mut words);
            for pair in 0..2 {
                let [x1, x2] = [&words[2 * pair], &words[2 * pair + 1]];
                let (lo, hi) = normals.split_at_mut(2 * pair + 1);
                let (c, s) = (&mut lo[2 * pair], &mut hi[0]);
                for b in 0..CHUNK {
                    (c[b], s[b]) = box_muller(x1[b], x2[b]);
                }
            }
            for (b, o) in dst.chunks_exact_mut(4).enumerate() {
                o.copy_from_slice(&[normals[0][b], normals[1][b], normals[2][b], normals[3][b]]);
            }
            b0 = b0.wrapping_add(CHUNK as u32);
        }
    }

    /// The Philox blocks `b0 .. b0 + CHUNK`, word `j` of block `b0 + b` in `words[j][b]`:
    /// [`philox4x32_10`] with every operation applied lane-wise over the chunk.
    #[inline(always)]
    fn blocks(&self, b0: u32, words: &mut [[u32; CHUNK]; 4]) {
        let [c0, c1, c2, c3] = words;
        for (b, c) in c0.iter_mut().enumerate() {
            *c = b0.wrapping_add(b as u32);
        }
        c1.fill(self.sub);
        c2.fill(self.step);
        c3.fill(self.tag);
        let mut k = self.key;
        for round in 0..10 {
            if round > 0 {
                k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
            }
            for b in 0..CHUNK {
                let (hi0, lo0) = mulhilo(M0, c0[b]);
                let (hi1, lo1) = mulhilo(M1, c2[b]);
                (c0[b], c1[b], c2[b], c3[b]) = (hi1 ^ c1[b] ^ k[0], lo1, hi0 ^ c3[b] ^ k[1], lo0);
            }
        }
    }
}

/// Philox blocks per [`Stream::fill`] chunk.
const CHUNK: usize = 64;
/// Fills of fewer blocks than this go block by block.
const SHORT_BLOCKS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (`kat_vectors`, philox4x32 10 rounds).
    #[test]
    fn philox_matches_random123() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn portable_math_is_accurate() {
        for i in 1..=4096u32 {
            let u = i as f32 / 4096.0 - 0.5 / 4096.0;
            assert!((ln_unit(u) as f64 - (u as f64).ln()).abs() < 1e-6, "ln {u}");
            let (s, c) = sincos_turns(u);
            let t = std::f64::consts::TAU * u as f64;
            assert!(
                (s as f64 - t.sin()).abs() < 1e-6 && (c as f64 - t.cos()).abs() < 1e-6,
                "sincos {u}"
            );
        }
        assert!((ln_unit(uniform(0)) as f64 - (uniform(0) as f64).ln()).abs() < 1e-5);
    }

    #[test]
    fn fill_equals_normal_at_any_offset() {
        let s = Stream::lr(42, 3, 11, 7);
        // Short fills, several chunks with a partial last one, and the top of the counter.
        for (start, len) in [(5u32, 11usize), (3, 601), (0, 4 * 64 * 3), (u32::MAX - 601, 598)] {
            let mut v = vec![0.0; len];
            s.fill(start, &mut v);
            for (i, x) in v.iter().enumerate() {
                let n = start.wrapping_add(i as u32);
                assert_eq!(x.to_bits(), s.normal(n).to_bits(), "start {start}, element {i}");
            }
        }
    }

    #[test]
    fn normals_have_unit_moments() {
        let s = Stream::weight(1, 0, 4, 2);
        let mut v = vec![0.0; 200_000];
        s.fill(0, &mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // Standard errors: mean 1/sqrt(n) = 0.0022, variance sqrt(2/n) = 0.0032; allow 5 sigma.
        assert!(mean.abs() < 0.011, "mean {mean}");
        assert!((var - 1.0).abs() < 0.016, "var {var}");
    }
}

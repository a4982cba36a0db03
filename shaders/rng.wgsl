// Counter-based Gaussian RNG: Philox4x32-10 + Box-Muller, the twin of src/noise.rs
// (u32 outputs bit-identical). No bindings: Rust concatenates this file in front of the
// kernels that draw noise (WGSL has no include).
//
// Box-Muller uses portable ln/sin/cos polynomials (same as noise.rs) so both sides agree
// to a few ulp on any GPU.
//
// Addressing (see src/noise.rs): key = (seed_lo, seed_hi);
// counter = (n >> 2, sub, step, purpose << 24 | id); lane n & 3 picks cos/sin of the pair
// (x0, x1) or (x2, x3).

struct NoiseStream {
    key: vec2<u32>,
    sub: u32,
    step: u32,
    tag: u32,
}

// Purposes (noise.rs PURPOSE_*): LR activation noise, weight directions.
const RNG_PURPOSE_LR: u32 = 1u;
const RNG_PURPOSE_WEIGHT: u32 = 2u;

fn rng_stream(key: vec2<u32>, sub: u32, step: u32, purpose: u32, id: u32) -> NoiseStream {
    return NoiseStream(key, sub, step, (purpose << 24u) | (id & 0xFFFFFFu));
}

// (hi, lo) of the 64-bit product, from 16-bit halves (WGSL has no u64).
fn rng_mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xFFFFu;
    let ah = a >> 16u;
    let bl = b & 0xFFFFu;
    let bh = b >> 16u;
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = rng_mulhilo(0xD2511F53u, c.x);
        let p1 = rng_mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// Top 24 bits plus one half, in (0, 1), exact in f32.
fn rng_uniform(x: u32) -> f32 {
    return (f32(x >> 8u) + 0.5) * (1.0 / 16777216.0);
}

// ln(u) for u in (0, 1], twin of noise.rs `ln_unit`: u = m 2^e, m in [sqrt(1/2), sqrt 2),
// ln m = 2 atanh((m - 1) / (m + 1)). Portable: GPU log may be off by 2^-11 on Vulkan.
fn rng_ln_unit(u: f32) -> f32 {
    let bits = bitcast<u32>(u);
    var e = i32((bits >> 23u) & 0xFFu) - 127;
    var m = bitcast<f32>((bits & 0x007FFFFFu) | 0x3F800000u);
    if (m > 1.41421356237) {
        m = m * 0.5;
        e = e + 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = s * (2.0 + s2 * (2.0 / 3.0 + s2 * (0.4 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0)))));
    return f32(e) * 0.693147180559945 + p;
}

// (sin, cos) of 2 pi u, twin of noise.rs `sincos_turns`.
fn rng_sincos_turns(u: f32) -> vec2<f32> {
    let x = u * 4.0;
    let k = floor(x + 0.5);
    let a = (x - k) * 1.57079632679490;
    let a2 = a * a;
    let s = a * (1.0 + a2 * (-1.0 / 6.0 + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (1.0 / 362880.0)))));
    let c = 1.0 + a2 * (-0.5 + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40320.0 - a2 / 3628800.0))));
    switch (u32(k) & 3u) {
        case 0u: { return vec2<f32>(s, c); }
        case 1u: { return vec2<f32>(c, -s); }
        case 2u: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

// Box-Muller: (r cos, r sin) from two words.
fn rng_box_muller(u1: u32, u2: u32) -> vec2<f32> {
    let r = sqrt(-2.0 * rng_ln_unit(rng_uniform(u1)));
    let sc = rng_sincos_turns(rng_uniform(u2));
    return vec2<f32>(r * sc.y, r * sc.x);
}

fn rng_block(s: NoiseStream, b: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(b, s.sub, s.step, s.tag), s.key);
}

// The four normals of Philox block `b` (elements 4b .. 4b + 3).
fn rng_block_normals(s: NoiseStream, b: u32) -> vec4<f32> {
    let x = rng_block(s, b);
    return vec4<f32>(rng_box_muller(x.x, x.y), rng_box_muller(x.z, x.w));
}

// Standard normal number n of the stream (one Box-Muller pair of its block).
fn rng_normal(s: NoiseStream, n: u32) -> f32 {
    let x = rng_block(s, n >> 2u);
    var z = rng_box_muller(x.x, x.y);
    if ((n & 2u) != 0u) {
        z = rng_box_muller(x.z, x.w);
    }
    if ((n & 1u) == 0u) {
        return z.x;
    }
    return z.y;
}

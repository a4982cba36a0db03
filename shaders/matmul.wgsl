// Tiled linear layer: Y = X W^T + b, PyTorch's [out, in] weight layout, with optional fused
// epilogues chosen by override constants:
//   HAS_BIAS     + b (bias perturbed with the weight when WEIGHT_PERT)
//   LR_NOISE     + sigma_r * eps(row r, token t, unit n) on the linear output (LR rows), for
//                tokens t < noise_tokens (the last block's CLS-only sites: 1)
//   GELU         exact-erf GELU after the noise (fc1)
//   WEIGHT_PERT  W + s_g * z_k(element) per row group g, regenerated while loading tiles
// Each workgroup computes a 32x32 output tile, 16x16 threads with 2x2 outputs, K steps of 16.
// Dispatch: (ceil(N / 32), ceil(max group token rows / 32), groups) where groups = 1 unless
// WEIGHT_PERT. Needs rng.wgsl and perturb.wgsl in front.

override HAS_BIAS: bool = true;
override GELU: bool = false;
override LR_NOISE: bool = false;
override WEIGHT_PERT: bool = false;

struct MatmulParams {
    rows: u32,        // query rows (or images) in X
    tokens: u32,      // token rows per row: M = rows * tokens
    k: u32,           // input features
    n: u32,           // output features
    row_base: u32,    // internal index of X's first row in the pert tables
    rows_off: u32,    // pert: rows section
    groups_off: u32,  // pert: groups section
    wscale_off: u32,  // pert: wscale section
    n_tensors: u32,   // NT
    w_tensor: u32,    // tensor id of W (noise address)
    b_tensor: u32,    // tensor id of b, or PERT_NONE
    list_off: u32,    // pert: this chunk's group list (WEIGHT_PERT)
    sigma_off: u32,   // pert: this site's sigma table (LR_NOISE)
    site: u32,        // noise site id (LR_NOISE)
    noise_tokens: u32,  // LR_NOISE: tokens of each row that get noise
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [M, K]
@group(0) @binding(2) var<storage, read> w: array<f32>;        // [N, K]
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [N] (unused without HAS_BIAS)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [M, N]

const TILE: u32 = 32u;
const BK: u32 = 16u;
var<workgroup> xs: array<array<f32, 33>, 16>;  // [BK, TILE + 1]: X tile, transposed
var<workgroup> ws: array<array<f32, 33>, 16>;  // [BK, TILE + 1]: W tile, transposed

// erf, Abramowitz & Stegun 7.1.26 refined: |err| < 1.5e-7.
fn erf_approx(v: f32) -> f32 {
    let s = sign(v);
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return s * (1.0 - poly * exp(-a * a));
}

fn gelu(v: f32) -> f32 {
    return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var m_begin = 0u;
    var m_end = p.rows * p.tokens;
    var group = PERT_NONE;
    if (WEIGHT_PERT) {
        let e = p.list_off + 3u * wg.z;
        m_begin = pert[e] * p.tokens;
        m_end = m_begin + pert[e + 1u] * p.tokens;
        group = pert[e + 2u];
    }
    let m0 = m_begin + wg.y * TILE;
    let n0 = wg.x * TILE;
    let sw = pert_scale(p.wscale_off, p.n_tensors, group, p.w_tensor);
    var ws_stream = NoiseStream(vec2<u32>(0u, 0u), 0u, 0u, 0u);
    if (WEIGHT_PERT && group != PERT_NONE) {
        ws_stream = pert_weight_stream(p.groups_off, group, p.w_tensor);
    }
    let flat = lid.y * 16u + lid.x;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var i = 0u; i < 2u; i++) {
            let e = flat + 256u * i;  // 0..512 over [TILE, BK]
            let r = e / BK;
            let c = e % BK;
            let m = m0 + r;
            let kk = k0 + c;
            var xv = 0.0;
            if (m < m_end && kk < p.k) {
                xv = x[m * p.k + kk];
            }
            xs[c][r] = xv;
            let nn = n0 + r;
            var wv = 0.0;
            if (nn < p.n && kk < p.k) {
                let idx = nn * p.k + kk;
                wv = w[idx];
                if (WEIGHT_PERT && sw != 0.0) {
                    wv = wv + sw * rng_normal(ws_stream, idx);
                }
            }
            ws[c][r] = wv;
        }
        workgroupBarrier();
        for (var c = 0u; c < BK; c++) {
            let a0 = xs[c][lid.y];
            let a1 = xs[c][lid.y + 16u];
            let b0 = ws[c][lid.x];
            let b1 = ws[c][lid.x + 16u];
            acc[0] += a0 * b0;
            acc[1] += a0 * b1;
            acc[2] += a1 * b0;
            acc[3] += a1 * b1;
        }
        workgroupBarrier();
    }
    let sb = pert_scale(p.wscale_off, p.n_tensors, group, p.b_tensor);
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + 16u * (i / 2u);
        let nn = n0 + lid.x + 16u * (i % 2u);
        if (m >= m_end || nn >= p.n) {
            continue;
        }
        var v = acc[i];
        if (HAS_BIAS) {
            var b = bias[nn];
            if (WEIGHT_PERT && sb != 0.0) {
                b = b + sb * rng_normal(pert_weight_stream(p.groups_off, group, p.b_tensor), nn);
            }
            v = v + b;
        }
        if (LR_NOISE) {
            let r = p.row_base + m / p.tokens;
            let sigma = pert_f32(p.sigma_off + r);
            let t = m % p.tokens;
            if (sigma != 0.0 && t < p.noise_tokens) {
                v = v + sigma * rng_normal(pert_lr_stream(p.rows_off, r, p.site), t * p.n + nn);
            }
        }
        if (GELU) {
            v = gelu(v);
        }
        y[m * p.n + nn] = v;
    }
}

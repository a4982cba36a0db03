// Tiled linear layer: Y = X W^T + b, PyTorch's [out, in] weight layout, with optional fused
// epilogues chosen by override constants:
//   HAS_BIAS     + b (bias perturbed with the weight when WEIGHT_PERT)
//   LR_NOISE     + sigma_r * eps(row r, token t, unit n) on the linear output (LR rows), for
//                tokens t < noise_tokens (the last block's CLS-only sites: 1)
//   GELU         exact-erf GELU after the noise (fc1)
//   WEIGHT_PERT  W + s_g * z_k(element) per row group g, regenerated while loading tiles
// Each workgroup computes a 32x32 output tile: 8x8 threads, each a 4x4 block of outputs (rows
// 4 ty.., columns 4 tx..) held in four vec4 accumulators and fed by one vec4 read of each staged
// tile per k (four vec4 multiply-adds), K steps of 16. The shape needs 64 invocations and 4 KiB
// of workgroup memory, within WebGPU's guaranteed limits, so every adapter runs it.
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
var<workgroup> xs: array<array<vec4<f32>, 8>, 16>;  // [BK, TILE / 4]: X tile, transposed
var<workgroup> ws: array<array<vec4<f32>, 8>, 16>;  // [BK, TILE / 4]: W tile, transposed

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

@compute @workgroup_size(8, 8)
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
    let flat = lid.y * 8u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var i = 0u; i < 8u; i++) {
            let e = flat + 64u * i;  // 0..512 over [TILE, BK]
            let r = e / BK;
            let c = e % BK;
            let m = m0 + r;
            let kk = k0 + c;
            var xv = 0.0;
            if (m < m_end && kk < p.k) {
                xv = x[m * p.k + kk];
            }
            xs[c][r >> 2u][r & 3u] = xv;
            let nn = n0 + r;
            var wv = 0.0;
            if (nn < p.n && kk < p.k) {
                let idx = nn * p.k + kk;
                wv = w[idx];
                if (WEIGHT_PERT && sw != 0.0) {
                    wv = wv + sw * rng_normal(ws_stream, idx);
                }
            }
            ws[c][r >> 2u][r & 3u] = wv;
        }
        workgroupBarrier();
        for (var c = 0u; c < BK; c++) {
            let a = xs[c][lid.y];
            let b = ws[c][lid.x];
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }
    let sb = pert_scale(p.wscale_off, p.n_tensors, group, p.b_tensor);
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 16u; i++) {
        let m = m0 + 4u * lid.y + i / 4u;
        let nn = n0 + 4u * lid.x + i % 4u;
        if (m >= m_end || nn >= p.n) {
            continue;
        }
        var v = acc[i / 4u][i % 4u];
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

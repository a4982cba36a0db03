// LayerNorm over the last dimension, one workgroup of 64 per token row, two-pass f32 stats.
// WEIGHT_PERT: gamma/beta + s_g * z_k per query row's group (SPSA/ES rows).
// Dispatch: (token rows, 1, 1). Needs rng.wgsl and perturb.wgsl in front.

override WEIGHT_PERT: bool = false;

struct LayerNormParams {
    tokens: u32,      // token rows per query row (T)
    d: u32,           // features
    row_base: u32,    // internal index of X's first row in the pert tables
    rows_off: u32,    // pert: rows section
    groups_off: u32,  // pert: groups section
    wscale_off: u32,  // pert: wscale section
    n_tensors: u32,
    gamma_tensor: u32,
    beta_tensor: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: LayerNormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [M, D]
@group(0) @binding(2) var<storage, read> gamma: array<f32>;     // [D]
@group(0) @binding(3) var<storage, read> beta: array<f32>;      // [D]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // [M, D]

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let m = wg.x;
    let base = m * p.d;
    var s = 0.0;
    for (var i = lid; i < p.d; i += WG) {
        s += x[base + i];
    }
    let mean = reduce_sum(lid, s) / f32(p.d);
    var q = 0.0;
    for (var i = lid; i < p.d; i += WG) {
        let c = x[base + i] - mean;
        q += c * c;
    }
    let inv = inverseSqrt(reduce_sum(lid, q) / f32(p.d) + p.eps);
    var group = PERT_NONE;
    if (WEIGHT_PERT) {
        group = pert_row_group(p.rows_off, p.row_base + m / p.tokens);
    }
    let sg = pert_scale(p.wscale_off, p.n_tensors, group, p.gamma_tensor);
    let sb = pert_scale(p.wscale_off, p.n_tensors, group, p.beta_tensor);
    for (var i = lid; i < p.d; i += WG) {
        var g = gamma[i];
        var b = beta[i];
        if (WEIGHT_PERT && sg != 0.0) {
            g = g + sg * rng_normal(pert_weight_stream(p.groups_off, group, p.gamma_tensor), i);
        }
        if (WEIGHT_PERT && sb != 0.0) {
            b = b + sb * rng_normal(pert_weight_stream(p.groups_off, group, p.beta_tensor), i);
        }
        y[base + i] = (x[base + i] - mean) * inv * g + b;
    }
}

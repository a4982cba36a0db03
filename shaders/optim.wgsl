// The optimiser step on the GPU, twin of src/learn/optim.rs, over the flat gradient `grad`
// of the tuned tensors and flat state `m`, `v` at the same offsets:
//   sumsq_partial: partial[wg] = sum of grad^2 over a grid-stride slice (PARTIALS workgroups)
//   sumsq_final:   norm[0] = sqrt(sum partial)      (one workgroup)
//   update:        clip by global norm, then SGD-momentum or Adam (override ADAM) on one
//                  tensor's parameters `param`, in place. A non-finite norm skips the update.
// 1-D kernels use a 2-D grid: x * 64 threads per y.

override ADAM: bool = false;

struct OptimParams {
    n: u32,         // sumsq: gradient elements; update: elements of this tensor
    off: u32,       // update: first element of this tensor in grad, m, v
    clip: f32,      // clip to this global norm; 0 = no clipping
    lr: f32,
    beta1: f32,     // SGD: momentum
    beta2: f32,
    eps: f32,
    bc1: f32,       // Adam: 1 - beta1^t
    bc2: f32,       // Adam: 1 - beta2^t
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG_REDUCE: u32 = 256u;

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;           // [total]
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;  // [PARTIALS]
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;     // [1]
@group(0) @binding(4) var<storage, read_write> param: array<f32>;    // [n] one tensor
@group(0) @binding(5) var<storage, read_write> m: array<f32>;        // [total]
@group(0) @binding(6) var<storage, read_write> v: array<f32>;        // [total] (Adam)

var<workgroup> red: array<f32, 256>;

fn reduce_into(lid: u32, x: f32) -> f32 {
    red[lid] = x;
    workgroupBarrier();
    for (var s = WG_REDUCE / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

@compute @workgroup_size(256)
fn sumsq_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let stride = nwg.x * WG_REDUCE;
    var acc = 0.0;
    for (var i = wg.x * WG_REDUCE + lid.x; i < p.n; i += stride) {
        let x = grad[i];
        acc += x * x;
    }
    let total = reduce_into(lid.x, acc);
    if (lid.x == 0u) {
        partial[wg.x] = total;
    }
}

@compute @workgroup_size(256)
fn sumsq_final(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = 0.0;
    for (var i = lid.x; i < p.n; i += WG_REDUCE) {
        acc += partial[i];
    }
    let total = reduce_into(lid.x, acc);
    if (lid.x == 0u) {
        norm[0] = sqrt(total);
    }
}

// Inf or NaN, from the bits (WGSL may assume finite floats in arithmetic).
fn not_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7F800000u) == 0x7F800000u;
}

@compute @workgroup_size(64)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let nrm = norm[0];
    if (i >= p.n || not_finite(nrm)) {
        return;
    }
    var scale = 1.0;
    if (p.clip > 0.0 && nrm > p.clip) {
        scale = p.clip / nrm;
    }
    let j = p.off + i;
    let g = grad[j] * scale;
    if (ADAM) {
        let mj = p.beta1 * m[j] + (1.0 - p.beta1) * g;
        let vj = p.beta2 * v[j] + (1.0 - p.beta2) * g * g;
        m[j] = mj;
        v[j] = vj;
        param[i] = param[i] - p.lr * (mj / p.bc1) / (sqrt(vj / p.bc2) + p.eps);
    } else {
        let mj = p.beta1 * m[j] + g;
        m[j] = mj;
        param[i] = param[i] - p.lr * mj;
    }
}

// Fused scaled dot-product attention per (query token, head, row): scores, softmax, weighted
// sum, without materialising [T, T]. Heads side by side: column = head * HD + j.
// Dispatch: (T, heads, rows); one workgroup of 64 per query token.

struct AttentionParams {
    tokens: u32,   // T (<= MAX_T)
    d: u32,        // hidden size D = heads * HD
    head_dim: u32, // HD (<= MAX_HD)
    scale: f32,    // 1 / sqrt(HD)
}

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;         // [rows, T, D]
@group(0) @binding(2) var<storage, read> k: array<f32>;         // [rows, T, D]
@group(0) @binding(3) var<storage, read> v: array<f32>;         // [rows, T, D]
@group(0) @binding(4) var<storage, read_write> ctx: array<f32>; // [rows, T, D]

const WG: u32 = 64u;
const MAX_T: u32 = 1024u;
const MAX_HD: u32 = 256u;
var<workgroup> scores: array<f32, 1024>;  // [T]: scores, then exp(score - max)
var<workgroup> qi: array<f32, 256>;       // [HD]: this query
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let i = wg.x;
    let h = wg.y;
    let row = wg.z;
    let off = h * p.head_dim;
    let row_base = row * p.tokens * p.d;
    for (var j = lid; j < p.head_dim; j += WG) {
        qi[j] = q[row_base + i * p.d + off + j];
    }
    workgroupBarrier();
    var local_max = -3.4e38;
    for (var j = lid; j < p.tokens; j += WG) {
        let kb = row_base + j * p.d + off;
        var s = 0.0;
        for (var c = 0u; c < p.head_dim; c++) {
            s += qi[c] * k[kb + c];
        }
        s = s * p.scale;
        scores[j] = s;
        local_max = max(local_max, s);
    }
    red[lid] = local_max;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let mx = red[0];
    workgroupBarrier();
    var local_sum = 0.0;
    for (var j = lid; j < p.tokens; j += WG) {
        let e = exp(scores[j] - mx);
        scores[j] = e;
        local_sum += e;
    }
    red[lid] = local_sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    for (var c = lid; c < p.head_dim; c += WG) {
        var acc = 0.0;
        for (var j = 0u; j < p.tokens; j++) {
            acc += scores[j] * v[row_base + j * p.d + off + c];
        }
        ctx[row_base + i * p.d + off + c] = acc * inv;
    }
}

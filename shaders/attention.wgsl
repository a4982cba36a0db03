// Scaled dot-product attention, one thread per (query token, head, row), with an online softmax
// over tiles of KT keys staged in workgroup memory (flash-attention style): no [T, T] scores, no
// reductions across threads, two barriers per tile, and every staged key and value is used by
// the workgroup's WG queries. Heads side by side: column = head * HD + j.
// Dispatch: (ceil(T / WG), heads, rows).

struct AttentionParams {
    tokens: u32,   // T
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
const KT: u32 = 16u;
const MAX_HD: u32 = 128u;
var<workgroup> ks: array<f32, 2048>; // [KT, MAX_HD]: this tile's keys
var<workgroup> vs: array<f32, 2048>; // [KT, MAX_HD]: and values

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let i = wg.x * WG + lid;
    let hd = p.head_dim;
    let off = wg.y * hd;
    let base = wg.z * p.tokens * p.d;
    let live = i < p.tokens;
    var qi: array<f32, MAX_HD>;
    var acc: array<f32, MAX_HD>;
    if (live) {
        for (var c = 0u; c < hd; c++) {
            qi[c] = q[base + i * p.d + off + c] * p.scale;
            acc[c] = 0.0;
        }
    }
    var m = -3.4e38; // running max of the scores
    var l = 0.0;     // running sum of exp(score - m)
    var s: array<f32, KT>;
    for (var j0 = 0u; j0 < p.tokens; j0 += KT) {
        let nk = min(KT, p.tokens - j0);
        for (var e = lid; e < nk * hd; e += WG) {
            let j = e / hd;
            let c = e % hd;
            let src = base + (j0 + j) * p.d + off + c;
            ks[j * MAX_HD + c] = k[src];
            vs[j * MAX_HD + c] = v[src];
        }
        workgroupBarrier();
        if (live) {
            var tmax = m;
            for (var j = 0u; j < nk; j++) {
                var score = 0.0;
                for (var c = 0u; c < hd; c++) {
                    score += qi[c] * ks[j * MAX_HD + c];
                }
                s[j] = score;
                tmax = max(tmax, score);
            }
            let corr = exp(m - tmax);
            l = l * corr;
            for (var c = 0u; c < hd; c++) {
                acc[c] = acc[c] * corr;
            }
            for (var j = 0u; j < nk; j++) {
                let pj = exp(s[j] - tmax);
                l += pj;
                for (var c = 0u; c < hd; c++) {
                    acc[c] += pj * vs[j * MAX_HD + c];
                }
            }
            m = tmax;
        }
        workgroupBarrier();
    }
    if (live) {
        let inv = 1.0 / l;
        for (var c = 0u; c < hd; c++) {
            ctx[base + i * p.d + off + c] = acc[c] * inv;
        }
    }
}

// Gradient accumulation of the forward-only estimators, into one flat gradient `g` over the
// tuned tensors (offsets from the params). Needs rng.wgsl in front. Noise is regenerated from
// the same streams as the forward (src/noise.rs), never stored between passes.
//   lr_noise: e[r, t, o] = c_r * eps_r(t * N + o)   LR noise of one site for a chunk of rows,
//             scaled by each row's coefficient; eps_r = Stream::lr(seed, step, site, id_r);
//             0 for tokens t >= noise_tokens (as the forward's matmul)
//   lr_noise_sum: e[s, t, o] = sum_{r in segment s} c_r * eps_r(t * N + o)   rows that read one
//             input (an image's queries at the first tuned block's Q, K, V) sum their noise
//             before the products; segment s is rows row_table[seg_at + s] .. row_table[seg_at + s + 1]
//   outer:    g[out_off + o * K + i] += sum_m e[m, o] * u[m, i]   (m over rows * tokens)
//   bias:     g[out_off + o] += sum_m e[m, o]
//   through_norm: a site fed by a tuned LayerNorm, from e = [M (N x K), s (N)] with
//             M = E^T X_hat (outer over x_hat) and s = E^T 1 (bias), u = W [N, K],
//             gamma, beta of the norm (the site's input is gamma * x_hat + beta):
//             g[out_off + o K + i] += M[o, i] gamma[i] + s[o] beta[i], g[bias_off + o] += s[o],
//             g[gamma_off + i] += sum_o W[o, i] M[o, i]   (= sum_m d_y[m, i] x_hat[m, i], d_y = E W),
//             g[beta_off + i] += sum_o W[o, i] s[o]       (= sum_m d_y[m, i])
//   spsa:     g[out_off + j] += sum_k c_k z_k(j),  z_k = Stream::weight(seed, step, tensor, k)
// 1-D kernels use a 2-D grid: x * 64 threads per y.

struct GradParams {
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    id: u32,       // lr_noise: site id; spsa: tensor id
    rows: u32,     // lr_noise/outer/bias: query rows of the chunk; spsa: directions
    tokens: u32,   // token rows per query row (1 for the classifier)
    n: u32,        // output features N (spsa: elements of the tensor)
    k: u32,        // input features K
    out_off: u32,  // first element of the tensor in g
    noise_tokens: u32,  // lr_noise: tokens of each row that got noise
    gamma_off: u32,     // through_norm: the norm's gamma in g
    beta_off: u32,      // through_norm: the norm's beta in g
    bias_off: u32,      // through_norm: the site's bias in g (NO_BIAS: none tuned)
    seg_at: u32,        // lr_noise_sum: first word of the segment table in row_table
    overwrite: u32,     // outer, bias: 1 = g[..] = sum (a scratch reused across sites), 0 = g[..] += sum
    _pad2: u32,
}

const NO_BIAS: u32 = 0xFFFFFFFFu;

@group(0) @binding(0) var<uniform> p: GradParams;
// lr_noise: [rows, 2] per chunk row: coefficient c_r (f32 bits), noise row id
@group(0) @binding(1) var<storage, read> row_table: array<u32>;
// lr_noise: written, outer/bias: read. [rows, tokens, N]
@group(0) @binding(2) var<storage, read_write> e: array<f32>;
@group(0) @binding(3) var<storage, read> u: array<f32>;            // outer: [rows, tokens, K]
@group(0) @binding(4) var<storage, read_write> g: array<f32>;      // [total]
@group(0) @binding(5) var<storage, read> coeff: array<f32>;        // spsa: [directions]
@group(0) @binding(6) var<storage, read> gamma: array<f32>;        // through_norm: [K]
@group(0) @binding(7) var<storage, read> beta: array<f32>;         // through_norm: [K]

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// sum_{r0 <= r < r1} c_r * eps_r of Philox block b; rows with the noise id of the row before
// (an antithetic pair) reuse its draw.
fn summed_noise(r0: u32, r1: u32, b: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    var z = vec4<f32>(0.0);
    var last = 0u;
    for (var r = r0; r < r1; r++) {
        let id = row_table[2u * r + 1u];
        if (r == r0 || id != last) {
            let s = rng_stream(vec2<u32>(p.seed_lo, p.seed_hi), id, p.step, RNG_PURPOSE_LR, p.id);
            z = rng_block_normals(s, b);
            last = id;
        }
        acc += bitcast<f32>(row_table[2u * r]) * z;
    }
    return acc;
}

// Block b of output row `row` of e (0 on tokens without noise).
fn store_noise(row: u32, b: u32, v: vec4<f32>) {
    let per_row = p.tokens * p.n;
    for (var j = 0u; j < 4u; j++) {
        let el = 4u * b + j;
        if (el < per_row) {
            e[row * per_row + el] = select(0.0, v[j], el / p.n < p.noise_tokens);
        }
    }
}

// One thread per (row, Philox block of the row's T * N elements).
@compute @workgroup_size(64)
fn lr_noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.tokens * p.n + 3u) / 4u;
    let i = flat_id(gid, nwg);
    if (i >= p.rows * blocks) {
        return;
    }
    let r = i / blocks;
    store_noise(r, i % blocks, summed_noise(r, r + 1u, i % blocks));
}

// One thread per (segment, Philox block of a row's T * N elements); p.rows = segments.
@compute @workgroup_size(64)
fn lr_noise_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.tokens * p.n + 3u) / 4u;
    let i = flat_id(gid, nwg);
    if (i >= p.rows * blocks) {
        return;
    }
    let sg = i / blocks;
    let b = i % blocks;
    store_noise(sg, b, summed_noise(row_table[p.seg_at + sg], row_table[p.seg_at + sg + 1u], b));
}

const TILE: u32 = 32u;
const BM: u32 = 16u;
var<workgroup> es: array<array<vec4<f32>, 8>, 16>;  // [BM, TILE / 4]: e tile (m, o)
var<workgroup> us: array<array<vec4<f32>, 8>, 16>;  // [BM, TILE / 4]: u tile (m, i)

// 32x32 tile of G[N, K] (o along y, i along x): 8x8 threads, each a 4x4 block (o = 4 ty..,
// i = 4 tx..) in four vec4 accumulators fed by one vec4 read of each staged tile per m, as in
// matmul.wgsl; M steps of 16. Dispatch: (ceil(K / 32), ceil(N / 32), 1).
@compute @workgroup_size(8, 8)
fn outer(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m_total = p.rows * p.tokens;
    let o0 = wg.y * TILE;
    let i0 = wg.x * TILE;
    let flat = lid.y * 8u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var m0 = 0u; m0 < m_total; m0 += BM) {
        for (var h = 0u; h < 8u; h++) {
            let idx = flat + 64u * h;  // 0..512 over [BM, TILE]
            let mm = m0 + idx / TILE;
            let c = idx % TILE;
            var ev = 0.0;
            var uv = 0.0;
            if (mm < m_total) {
                if (o0 + c < p.n) {
                    ev = e[mm * p.n + o0 + c];
                }
                if (i0 + c < p.k) {
                    uv = u[mm * p.k + i0 + c];
                }
            }
            es[idx / TILE][c >> 2u][c & 3u] = ev;
            us[idx / TILE][c >> 2u][c & 3u] = uv;
        }
        workgroupBarrier();
        for (var j = 0u; j < BM; j++) {
            let a = es[j][lid.y];
            let b = us[j][lid.x];
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var q = 0u; q < 16u; q++) {
        let o = o0 + 4u * lid.y + q / 4u;
        let i = i0 + 4u * lid.x + q % 4u;
        if (o < p.n && i < p.k) {
            let at = p.out_off + o * p.k + i;
            g[at] = select(g[at], 0.0, p.overwrite != 0u) + acc[q / 4u][q % 4u];
        }
    }
}

// One thread per output unit o.
@compute @workgroup_size(64)
fn bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_id(gid, nwg);
    if (o >= p.n) {
        return;
    }
    var acc = 0.0;
    let m_total = p.rows * p.tokens;
    for (var m = 0u; m < m_total; m++) {
        acc += e[m * p.n + o];
    }
    g[p.out_off + o] = select(g[p.out_off + o], 0.0, p.overwrite != 0u) + acc;
}

// One thread per i < max(N, K); every thread writes its own elements of g.
@compute @workgroup_size(64)
fn through_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    let s_at = p.n * p.k;
    if (i < p.n && p.bias_off != NO_BIAS) {
        g[p.bias_off + i] = g[p.bias_off + i] + e[s_at + i];
    }
    if (i >= p.k) {
        return;
    }
    let gm = gamma[i];
    let bt = beta[i];
    var sg = 0.0;
    var sb = 0.0;
    for (var o = 0u; o < p.n; o++) {
        let m = e[o * p.k + i];
        let so = e[s_at + o];
        let w = u[o * p.k + i];
        let at = p.out_off + o * p.k + i;
        g[at] = g[at] + m * gm + so * bt;
        sg += w * m;
        sb += w * so;
    }
    g[p.gamma_off + i] = g[p.gamma_off + i] + sg;
    g[p.beta_off + i] = g[p.beta_off + i] + sb;
}

// One thread per Philox block (4 elements) of one tensor, looping over the directions.
@compute @workgroup_size(64)
fn spsa(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_id(gid, nwg);
    if (4u * b >= p.n) {
        return;
    }
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < p.rows; k++) {
        let s = rng_stream(vec2<u32>(p.seed_lo, p.seed_hi), k, p.step, RNG_PURPOSE_WEIGHT, p.id);
        acc += coeff[k] * rng_block_normals(s, b);
    }
    for (var j = 0u; j < 4u; j++) {
        let el = 4u * b + j;
        if (el < p.n) {
            g[p.out_off + el] = g[p.out_off + el] + acc[j];
        }
    }
}

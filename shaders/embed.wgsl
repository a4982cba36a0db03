// Patch embedding around the matmul: `im2col` cuts images into patch vectors ordered
// (c, dy, dx) like the conv weight [D, C, ph, pw]; `assemble` prepends the CLS token and adds
// position embeddings. One thread per output element, 2-D dispatch (x * 64 threads per y).

struct EmbedParams {
    images: u32,
    channels: u32,
    height: u32,
    width: u32,
    ph: u32,
    pw: u32,
    grid_w: u32,   // patches per image row
    patches: u32,  // patches per image (NP)
    d: u32,        // hidden size
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: EmbedParams;
// im2col
@group(0) @binding(1) var<storage, read> pixels: array<f32>;          // [B, C, H, W]
@group(0) @binding(2) var<storage, read_write> patches: array<f32>;   // [B * NP, C * ph * pw]
// assemble
@group(0) @binding(3) var<storage, read> proj: array<f32>;            // [B * NP, D]
@group(0) @binding(4) var<storage, read> cls: array<f32>;             // [D]
@group(0) @binding(5) var<storage, read> pos: array<f32>;             // [NP + 1, D]
@group(0) @binding(6) var<storage, read_write> hidden: array<f32>;    // [B, NP + 1, D]

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_id(gid, nwg);
    let width = p.channels * p.ph * p.pw;
    if (e >= p.images * p.patches * width) {
        return;
    }
    let col = e % width;
    let patch_index = (e / width) % p.patches;
    let b = e / (width * p.patches);
    let c = col / (p.ph * p.pw);
    let dy = (col / p.pw) % p.ph;
    let dx = col % p.pw;
    let gy = patch_index / p.grid_w;
    let gx = patch_index % p.grid_w;
    patches[e] = pixels[((b * p.channels + c) * p.height + gy * p.ph + dy) * p.width + gx * p.pw + dx];
}

@compute @workgroup_size(64)
fn assemble(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_id(gid, nwg);
    let t_count = p.patches + 1u;
    if (e >= p.images * t_count * p.d) {
        return;
    }
    let j = e % p.d;
    let t = (e / p.d) % t_count;
    let b = e / (p.d * t_count);
    var v = 0.0;
    if (t == 0u) {
        v = cls[j];
    } else {
        v = proj[(b * p.patches + t - 1u) * p.d + j];
    }
    hidden[e] = v + pos[t * p.d + j];
}

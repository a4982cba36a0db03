// Fills a buffer from one noise stream: raw Philox blocks or standard normals. Used by the
// tests (parity with src/noise.rs) and by anything that needs a materialised direction.
// Needs rng.wgsl in front.

struct FillParams {
    key: vec2<u32>,  // the stream (flat: a struct member would need 16-byte uniform alignment)
    sub: u32,
    step: u32,
    tag: u32,
    start: u32,      // first element (normals) or first block (raw)
    count: u32,      // elements (normals) or blocks (raw)
    _pad: u32,
}

fn fill_stream() -> NoiseStream {
    return NoiseStream(p.key, p.sub, p.step, p.tag);
}

@group(0) @binding(0) var<uniform> p: FillParams;
// raw: [count, 4] u32 words of Philox blocks start..start+count
@group(0) @binding(1) var<storage, read_write> out_u32: array<u32>;
// normal: [count] f32, elements start..start+count
@group(0) @binding(2) var<storage, read_write> out_f32: array<f32>;

@compute @workgroup_size(64)
fn raw(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.count) {
        return;
    }
    let s = fill_stream();
    let x = philox4x32_10(vec4<u32>(p.start + i, s.sub, s.step, s.tag), s.key);
    out_u32[4u * i] = x.x;
    out_u32[4u * i + 1u] = x.y;
    out_u32[4u * i + 2u] = x.z;
    out_u32[4u * i + 3u] = x.w;
}

@compute @workgroup_size(64)
fn normal(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.count) {
        return;
    }
    out_f32[i] = rng_normal(fill_stream(), p.start + i);
}

// Data movement and residuals. 2-D dispatch: x * 64 threads per y.
//   add:    acc += other                    (residual stream, in place)
//   gather: dst[i, j] = src[idx[i] * src_stride + src_offset + j]
//           frozen-prefix fan-out (image -> its query rows) and the CLS gather.

struct ElementwiseParams {
    count: u32,       // add: elements; gather: destination rows
    width: u32,       // gather: elements per destination row
    src_stride: u32,  // gather: elements between source rows
    src_offset: u32,  // gather: first element within a source row
}

@group(0) @binding(0) var<uniform> p: ElementwiseParams;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;   // add: [n]
@group(0) @binding(2) var<storage, read> other: array<f32>;       // add: [n]
@group(0) @binding(3) var<storage, read> src: array<f32>;         // gather: [.., src_stride]
@group(0) @binding(4) var<storage, read> idx: array<u32>;         // gather: [rows]
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;   // gather: [rows, width]

@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e < p.count) {
        acc[e] = acc[e] + other[e];
    }
}

@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= p.count * p.width) {
        return;
    }
    let i = e / p.width;
    let j = e % p.width;
    dst[e] = src[idx[i] * p.src_stride + p.src_offset + j];
}

// Per-row softmax cross-entropy, written with the logits into the forward's result buffer
// (the one buffer read back). One thread per query row. Needs rng.wgsl and perturb.wgsl in
// front (labels live in the pert rows section).

struct LossParams {
    rows: u32,        // rows in this chunk
    classes: u32,     // C
    row_base: u32,    // internal index of the chunk's first row
    total_rows: u32,  // R: logits start at out[R]
    rows_off: u32,    // pert: rows section
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;      // [rows, C]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;   // [R] losses, then [R, C] logits

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let gr = p.row_base + r;
    let base = r * p.classes;
    var mx = -3.4e38;
    for (var c = 0u; c < p.classes; c++) {
        mx = max(mx, logits[base + c]);
    }
    var s = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        let z = logits[base + c];
        s += exp(z - mx);
        out[p.total_rows + gr * p.classes + c] = z;
    }
    let label = pert_row_label(p.rows_off, gr);
    out[gr] = mx + log(s) - logits[base + label];
}

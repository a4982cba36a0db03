// The per-forward perturbation table and its readers, shared by the kernels that perturb
// (matmul, layer_norm, loss). Concatenated after rng.wgsl. All offsets are in u32 words and
// come from each dispatch's params; f32 entries are stored as bits.
//
// pert: [words] u32, sections (built by src/gpu/plan.rs):
//   rows    [R, 8]  per internal query row: seed_lo, seed_hi, step, row_id (LR), group, label, image, 0
//   groups  [G, 4]  per weight-perturbation group: seed_lo, seed_hi, step, direction k
//   wscale  [G, NT] f32: scale s of tensor t in group g (0 = not perturbed)
//   sigma   [S, R]  f32: LR sigma of site slot s for row r (0 = no noise)
//   lists   [C, n, 3] per chunk: local first row, row count, group
@group(0) @binding(7) var<storage, read> pert: array<u32>;

const PERT_ROW_WORDS: u32 = 8u;
const PERT_NONE: u32 = 0xFFFFFFFFu;

// LR activation noise stream of internal row `row` at linear site `site`.
fn pert_lr_stream(rows_off: u32, row: u32, site: u32) -> NoiseStream {
    let e = rows_off + PERT_ROW_WORDS * row;
    return rng_stream(vec2<u32>(pert[e], pert[e + 1u]), pert[e + 3u], pert[e + 2u], RNG_PURPOSE_LR, site);
}

// Weight direction stream of group `g` for tensor `tensor`.
fn pert_weight_stream(groups_off: u32, g: u32, tensor: u32) -> NoiseStream {
    let e = groups_off + 4u * g;
    return rng_stream(vec2<u32>(pert[e], pert[e + 1u]), pert[e + 3u], pert[e + 2u], RNG_PURPOSE_WEIGHT, tensor);
}

fn pert_f32(i: u32) -> f32 {
    return bitcast<f32>(pert[i]);
}

// Scale of `tensor` in group `g`, 0 when the tensor is PERT_NONE.
fn pert_scale(wscale_off: u32, n_tensors: u32, g: u32, tensor: u32) -> f32 {
    if (tensor == PERT_NONE || g == PERT_NONE) {
        return 0.0;
    }
    return pert_f32(wscale_off + g * n_tensors + tensor);
}

fn pert_row_group(rows_off: u32, row: u32) -> u32 {
    return pert[rows_off + PERT_ROW_WORDS * row + 4u];
}

fn pert_row_label(rows_off: u32, row: u32) -> u32 {
    return pert[rows_off + PERT_ROW_WORDS * row + 5u];
}

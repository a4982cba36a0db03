//! The batched GPU forward over query rows against the CPU reference (the oracle), natively
//! on whatever adapter wgpu finds (lavapipe here). No adapter is a failure, not a skip.
//!
//! Tolerances: logits and losses max |err| <= 1e-4 (the reference's bar); frozen-prefix rows
//! vs full-depth rows <= 1e-6 (same kernels, same order); kept LR inputs <= 1e-4.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::OnceLock;

use common::{assert_close, fixture, load_dir};
use flops_web::gpu::{
    ForwardOptions, GpuContext, GpuError, GpuForward, GpuModel, GpuOptions, Perturbation, QueryRow, RowOutputs, RowPlan,
};
use flops_web::model::params::ParamTable;
use flops_web::model::perturb::LrNoiseHook;
use flops_web::model::{ForwardHook, LinearSite, Model, ViTForImageClassification};
use rand::{rngs::StdRng, Rng, SeedableRng};

const TOL: f32 = 1e-4;

fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new_blocking(&GpuOptions { backends_from_env: true, ..Default::default() }).unwrap_or_else(|e| {
            panic!("GPU tests need an adapter: {e}\nHINT: run scripts/setup.sh (installs lavapipe: mesa-vulkan-drivers libvulkan1)")
        })
    })
}

fn images(net: &ViTForImageClassification, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * net.config.image_numel())
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect()
}

fn run(model: &GpuModel, pixels: &[f32], plan: &RowPlan) -> RowOutputs {
    GpuForward::run_blocking(ctx(), model, pixels, plan).expect("GPU forward")
}

/// CPU logits and losses of each row (the library's oracle of the GPU forward).
fn cpu_rows(net: &ViTForImageClassification, pixels: &[f32], plan: &RowPlan) -> (Vec<f32>, Vec<f32>) {
    plan.cpu_reference(net, pixels).expect("CPU reference of the plan")
}

fn clean_plan(n_images: usize, classes: usize) -> RowPlan {
    let rows = (0..n_images)
        .map(|i| QueryRow {
            image: i,
            label: (3 * i + 1) % classes,
            perturbation: Perturbation::Clean,
        })
        .collect();
    RowPlan { rows, first_tuned: 0 }
}

fn check_clean(model: &Model, what: &str, n_images: usize) {
    let net = &model.net;
    let gpu = GpuModel::upload(ctx(), net).expect("upload");
    let pixels = images(net, n_images, 11);
    let plan = clean_plan(n_images, net.config.num_labels());
    let out = run(&gpu, &pixels, &plan);
    let (logits, losses) = cpu_rows(net, &pixels, &plan);
    assert_close(&format!("{what} clean logits"), &out.logits, &logits, TOL, 0.0);
    assert_close(&format!("{what} clean losses"), &out.losses, &losses, TOL, 0.0);
}

#[test]
fn clean_forward_matches_cpu_tiny_hf() {
    check_clean(&load_dir(&fixture("tiny_vit_hf")), "tiny HF", 3);
}

#[test]
fn clean_forward_matches_cpu_tiny_timm() {
    check_clean(&load_dir(&fixture("tiny_vit_timm")), "tiny timm", 2);
}

#[test]
fn clean_forward_matches_cpu_default_model() {
    check_clean(&Model::embedded_default().expect("embedded default"), "default", 2);
}

#[test]
fn clean_forward_matches_golden_pixels() {
    // The HF fixture's own preprocessed images, against the CPU reference.
    let model = load_dir(&fixture("tiny_vit_hf"));
    let golden = common::Golden::open("tiny_vit_golden.safetensors");
    let (shape, pixels) = golden.f32("pixel_values");
    let (_, labels) = golden.i64("labels");
    let gpu = GpuModel::upload(ctx(), &model.net).unwrap();
    let rows = labels.iter().enumerate().map(|(i, &y)| QueryRow {
        image: i,
        label: y as usize,
        perturbation: Perturbation::Clean,
    });
    let plan = RowPlan {
        rows: rows.collect(),
        first_tuned: 0,
    };
    assert_eq!(plan.rows.len(), shape[0]);
    let out = run(&gpu, &pixels, &plan);
    assert_close(
        "tiny HF golden pixels logits",
        &out.logits,
        &golden.f32("logits").1,
        TOL,
        0.0,
    );
    assert_close(
        "tiny HF golden pixels losses",
        &out.losses,
        &golden.f32("losses").1,
        TOL,
        0.0,
    );
}

fn lr(seed: u64, row: u32, sigma: f32, sites: Vec<LinearSite>) -> Perturbation {
    Perturbation::Lr {
        seed,
        step: 2,
        sites: sites.into_iter().map(|s| (s, sigma)).collect(),
        row,
    }
}

fn all_sites(layer: usize) -> Vec<LinearSite> {
    use LinearSite::*;
    vec![
        Query(layer),
        Key(layer),
        Value(layer),
        AttnOut(layer),
        Fc1(layer),
        Fc2(layer),
    ]
}

/// Records the input of one linear site (after the noise of earlier sites).
struct InputRecorder {
    inner: LrNoiseHook,
    site: LinearSite,
    input: Vec<f32>,
}
impl ForwardHook for InputRecorder {
    fn linear(&mut self, site: LinearSite, input: &[f32], output: &mut [f32]) {
        if site == self.site {
            self.input = input.to_vec();
        }
        self.inner.linear(site, input, output);
    }
}

#[test]
fn lr_rows_match_cpu_with_regenerated_noise() {
    let model = load_dir(&fixture("tiny_vit_hf"));
    let net = &model.net;
    let gpu = GpuModel::upload(ctx(), net).unwrap();
    let pixels = images(net, 2, 5);
    let mut sites1 = all_sites(1);
    sites1.push(LinearSite::Classifier);
    let rows = vec![
        QueryRow {
            image: 0,
            label: 1,
            perturbation: lr(7, 0, 0.05, all_sites(0)),
        },
        QueryRow {
            image: 0,
            label: 1,
            perturbation: Perturbation::Clean,
        },
        QueryRow {
            image: 1,
            label: 4,
            perturbation: lr(7, 1, 0.05, sites1.clone()),
        },
        QueryRow {
            image: 1,
            label: 4,
            perturbation: lr(7, 2, 0.2, vec![LinearSite::Fc1(1), LinearSite::Query(0)]),
        },
        QueryRow {
            image: 0,
            label: 2,
            perturbation: lr(8, 0, 0.1, sites1),
        },
    ];
    let plan = RowPlan { rows, first_tuned: 0 };
    let (logits, losses) = cpu_rows(net, &pixels, &plan);
    for max_rows in [None, Some(2)] {
        let opts = ForwardOptions {
            max_rows_per_chunk: max_rows,
        };
        let out = GpuForward::submit_with(ctx(), &gpu, &pixels, &plan, &opts)
            .and_then(|p| p.read_blocking(ctx()))
            .expect("forward");
        check_lr_out(
            net,
            &pixels,
            &plan,
            &out,
            &logits,
            &losses,
            &format!("chunk {max_rows:?}"),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn check_lr_out(
    net: &ViTForImageClassification,
    pixels: &[f32],
    plan: &RowPlan,
    out: &RowOutputs,
    logits: &[f32],
    losses: &[f32],
    what: &str,
) {
    assert_close(&format!("LR rows logits ({what})"), &out.logits, logits, TOL, 0.0);
    assert_close(&format!("LR rows losses ({what})"), &out.losses, losses, TOL, 0.0);
    let clean = &out.logits[5..10];
    let moved = out.logits[..5]
        .iter()
        .zip(clean)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "LR noise did not change the logits (max change {moved})");

    // The kept inputs of Fc2(1) for plan row 2 (image 1, row id 1) equal the CPU's.
    let internal = out.lr_inputs.order.iter().position(|&r| r == 2).expect("row 2");
    let kept = out
        .lr_inputs
        .kept
        .iter()
        .find(|k| k.site == LinearSite::Fc2(1) && k.rows.contains(&internal))
        .expect("Fc2(1) input kept");
    let all = kept.tensor.read_blocking(ctx()).unwrap();
    let per_row = all.len() / kept.rows.len();
    let got = &all[(internal - kept.rows.start) * per_row..][..per_row];
    let Perturbation::Lr { seed, step, sites, row } = plan.rows[2].perturbation.clone() else {
        unreachable!()
    };
    let mut rec = InputRecorder {
        inner: LrNoiseHook { seed, step, row, sites },
        site: LinearSite::Fc2(1),
        input: vec![],
    };
    net.forward(&pixels[net.config.image_numel()..], &mut rec);
    // Block 1 is the last: the CPU runs its MLP for the CLS token only (the only token the
    // classifier reads, and the only one LR perturbs there), the GPU for every token.
    assert_eq!(rec.input.len() * net.config.seq_len(), got.len(), "Fc2(1) input sizes");
    assert_close(
        &format!("kept Fc2(1) input, CLS token ({what})"),
        &got[..rec.input.len()],
        &rec.input,
        TOL,
        1e-4,
    );
}

fn weight(direction: u32, scale: f32, tensors: &[u32]) -> Perturbation {
    Perturbation::Weight {
        seed: 99,
        step: 1,
        direction,
        scale,
        tensors: tensors.to_vec(),
    }
}

#[test]
fn weight_rows_match_cpu_perturbed_copies() {
    let model = load_dir(&fixture("tiny_vit_timm"));
    let net = &model.net;
    let ids = ParamTable::of(net);
    let gpu = GpuModel::upload(ctx(), net).unwrap();
    let pixels = images(net, 2, 6);
    let mut tuned = ids.layers[1].all();
    tuned.extend([
        ids.final_ln.0,
        ids.final_ln.1,
        ids.classifier.weight,
        ids.classifier.bias.unwrap(),
    ]);
    let attn_only = [
        ids.layers[0].query.weight,
        ids.layers[0].value.bias.unwrap(),
        ids.layers[0].ln_before.0,
    ];
    let mut rows = Vec::new();
    for (i, p) in [
        weight(0, 0.02, &tuned),
        Perturbation::Clean,
        weight(0, -0.02, &tuned),
        weight(1, 0.02, &tuned),
        weight(3, 0.05, &attn_only),
        weight(1, -0.02, &tuned),
    ]
    .into_iter()
    .enumerate()
    {
        rows.push(QueryRow {
            image: i % 2,
            label: i % 5,
            perturbation: p.clone(),
        });
        rows.push(QueryRow {
            image: (i + 1) % 2,
            label: (i + 2) % 5,
            perturbation: p,
        });
    }
    let plan = RowPlan { rows, first_tuned: 0 };
    let (logits, losses) = cpu_rows(net, &pixels, &plan);
    for max_rows in [None, Some(3)] {
        let out = GpuForward::submit_with(
            ctx(),
            &gpu,
            &pixels,
            &plan,
            &ForwardOptions {
                max_rows_per_chunk: max_rows,
            },
        )
        .and_then(|p| p.read_blocking(ctx()))
        .expect("forward");
        assert_close(
            &format!("weight rows logits (chunk {max_rows:?})"),
            &out.logits,
            &logits,
            TOL,
            0.0,
        );
        assert_close(
            &format!("weight rows losses (chunk {max_rows:?})"),
            &out.losses,
            &losses,
            TOL,
            0.0,
        );
    }
    // + and - of one direction differ: the perturbation was applied.
    let c = 5;
    let diff = (0..c)
        .map(|j| (logits[j] - logits[4 * c + j]).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 1e-4, "directions had no effect ({diff})");
}

#[test]
fn frozen_prefix_rows_equal_full_depth_rows() {
    let model = load_dir(&fixture("tiny_vit_hf"));
    let net = &model.net;
    let ids = ParamTable::of(net);
    let gpu = GpuModel::upload(ctx(), net).unwrap();
    let pixels = images(net, 3, 8);
    let mut sites = all_sites(1);
    sites.push(LinearSite::Classifier);
    let rows: Vec<QueryRow> = (0..7)
        .map(|i| QueryRow {
            image: i % 3,
            label: i % 5,
            perturbation: match i % 3 {
                0 => Perturbation::Clean,
                1 => lr(3, i as u32, 0.1, sites.clone()),
                _ => weight(i as u32 / 3, 0.03, &ids.layers[1].all()),
            },
        })
        .collect();
    let full = run(
        &gpu,
        &pixels,
        &RowPlan {
            rows: rows.clone(),
            first_tuned: 0,
        },
    );
    let frozen = run(
        &gpu,
        &pixels,
        &RowPlan {
            rows: rows.clone(),
            first_tuned: 1,
        },
    );
    assert_close(
        "frozen prefix vs full depth logits",
        &frozen.logits,
        &full.logits,
        1e-6,
        0.0,
    );
    assert_close(
        "frozen prefix vs full depth losses",
        &frozen.losses,
        &full.losses,
        1e-6,
        0.0,
    );
    let head_only = RowPlan {
        rows: rows
            .iter()
            .map(|r| QueryRow {
                perturbation: Perturbation::Clean,
                ..r.clone()
            })
            .collect(),
        first_tuned: 2,
    };
    let (logits, _) = cpu_rows(net, &pixels, &head_only);
    assert_close(
        "first_tuned = depth logits",
        &run(&gpu, &pixels, &head_only).logits,
        &logits,
        TOL,
        0.0,
    );
    let (logits, _) = cpu_rows(net, &pixels, &RowPlan { rows, first_tuned: 1 });
    assert_close("frozen prefix vs CPU logits", &frozen.logits, &logits, TOL, 0.0);
}

#[test]
fn invalid_plans_are_typed_errors() {
    let model = load_dir(&fixture("tiny_vit_hf"));
    let gpu = GpuModel::upload(ctx(), &model.net).unwrap();
    let pixels = images(&model.net, 1, 1);
    let one = |p: Perturbation, first_tuned| RowPlan {
        rows: vec![QueryRow {
            image: 0,
            label: 0,
            perturbation: p,
        }],
        first_tuned,
    };
    let err = |plan: RowPlan| GpuForward::submit(ctx(), &gpu, &pixels, &plan).err().expect("an error");
    assert!(matches!(
        err(one(lr(1, 0, 0.1, vec![LinearSite::Fc1(0)]), 1)),
        GpuError::Plan { .. }
    ));
    assert!(matches!(
        err(one(lr(1, 0, 0.1, vec![LinearSite::PatchEmbed]), 0)),
        GpuError::Unsupported { .. }
    ));
    assert!(matches!(
        err(one(weight(0, 0.1, &[0]), 0)),
        GpuError::Unsupported { .. }
    ));
    assert!(matches!(err(one(Perturbation::Clean, 3)), GpuError::Plan { .. }));
    let bad_image = RowPlan {
        rows: vec![QueryRow {
            image: 1,
            label: 0,
            perturbation: Perturbation::Clean,
        }],
        first_tuned: 0,
    };
    assert!(matches!(err(bad_image), GpuError::Plan { .. }));
    assert!(matches!(
        GpuForward::submit(ctx(), &gpu, &pixels[1..], &one(Perturbation::Clean, 0)),
        Err(GpuError::Shape { .. })
    ));
}

//! The GPU learning backend against the CPU backend (the oracle), natively on lavapipe. No
//! adapter is a failure, not a skip.
//!
//! Tolerances: losses max |err| <= 1e-4 (the forward's bar); gradients max |err| <= 1e-4 *
//! max |g| (f32 sums of GPU-kept inputs vs the CPU's f64 sums); parameter updates after two
//! steps max |err| <= 1e-3 * max |update| (Adam: elements whose CPU gradient is below 1e-5 *
//! max |g| are left out: there `g / (|g| + eps)` flips with the last bits of `g`).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use flops_web::backend::cpu::CpuBackend;
use flops_web::backend::gpu::GpuBackend;
use flops_web::gpu::{GpuContext, GpuOptions};
use flops_web::learn::backend::{Backend, Batch, StepPlan};
use flops_web::learn::data::Examples;
use flops_web::learn::estimate::EstimatorKind;
use flops_web::learn::optim::{Optimizer, OptimizerConfig, OptimizerKind, Schedule};
use flops_web::learn::trainer::{evaluate, TrainConfig, Trainer};
use flops_web::learn::tuning::{Perturb, Tuning};
use flops_web::learn::AllocatorKind;
use flops_web::model::params::ParamTable;
use flops_web::model::{Model, ViTForImageClassification};
use pollster::block_on;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn ctx() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        Arc::new(
            GpuContext::new_blocking(&GpuOptions {
                backends_from_env: true,
                ..Default::default()
            })
            .unwrap_or_else(|e| {
                panic!("GPU tests need an adapter: {e}\nHINT: run scripts/setup.sh (installs lavapipe)")
            }),
        )
    })
    .clone()
}

fn net() -> ViTForImageClassification {
    Model::embedded_default().expect("default model").net
}

fn images(net: &ViTForImageClassification, n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let px = (0..n * net.config.image_numel())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let labels = (0..n).map(|_| rng.random_range(0..net.config.num_labels())).collect();
    (px, labels)
}

fn plan(net: &ViTForImageClassification, kind: EstimatorKind, tuning: Tuning, alloc: &[usize], step: u32) -> StepPlan {
    StepPlan::new(
        kind.build().as_ref(),
        tuning,
        &ParamTable::of(net),
        11,
        step,
        kind.build().plan(alloc, 1),
    )
}

/// max |a - b| / max |b|.
fn rel_err(what: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let err = got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(got.iter().all(|x| x.is_finite()), "{what}: non-finite");
    eprintln!(
        "{what}: max |err| {err:.3e}, max |ref| {scale:.3e}, relative {:.3e}",
        err / scale
    );
    err / scale.max(f32::MIN_POSITIVE)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// Clean and query losses on both backends (checked against each other) and the coefficients
/// from the CPU's losses.
fn query_both(
    cpu: &mut CpuBackend,
    gpu: &mut GpuBackend,
    batch: &Batch,
    kind: EstimatorKind,
    plan: &StepPlan,
    alloc: &[usize],
) -> Vec<f32> {
    let (cc, gc) = (block_on(cpu.clean(batch)).unwrap(), block_on(gpu.clean(batch)).unwrap());
    assert!(
        max_abs_diff(&gc.losses, &cc.losses) <= 1e-4,
        "clean losses {:?} vs {:?}",
        gc.losses,
        cc.losses
    );
    assert!(max_abs_diff(&gc.logits, &cc.logits) <= 1e-4, "clean logits");
    let cl = block_on(cpu.query_losses(batch, plan)).unwrap();
    let gl = block_on(gpu.query_losses(batch, plan)).unwrap();
    let err = max_abs_diff(&gl, &cl);
    assert!(err <= 1e-4, "query losses: max |err| {err:.3e}");
    common::cell_coefficients(kind, &plan.queries, &cl, &cc.losses, alloc, plan.groups.len().max(1))
}

fn gradients_agree(kind: EstimatorKind, tuning: Tuning, alloc: &[usize], max_rows_per_chunk: Option<usize>) {
    let net = net();
    let plan = plan(&net, kind, tuning, alloc, 5);
    plans_agree(net, kind, plan, alloc, max_rows_per_chunk);
}

/// `alloc` over the plan's cells (`alloc[point * groups + g]`).
fn plans_agree(
    net: ViTForImageClassification,
    kind: EstimatorKind,
    plan: StepPlan,
    alloc: &[usize],
    max_rows_per_chunk: Option<usize>,
) {
    let (px, labels) = images(&net, alloc.len() / plan.groups.len().max(1), 3);
    let batch = Batch {
        pixels: &px,
        labels: &labels,
    };
    let mut cpu = CpuBackend::new(net.clone());
    let mut gpu = GpuBackend::new(ctx(), net).unwrap();
    gpu.forward.max_rows_per_chunk = max_rows_per_chunk;
    let coeffs = query_both(&mut cpu, &mut gpu, &batch, kind, &plan, alloc);
    let want = block_on(cpu.gradient(&plan, &coeffs)).unwrap();
    let got = block_on(gpu.gradient(&plan, &coeffs)).unwrap();
    let rel = rel_err(
        &format!("{kind:?} first tuned {} gradient", plan.first_tuned),
        &got,
        &want,
    );
    assert!(rel <= 1e-4, "gradient relative error {rel:.3e}");
    // Per tensor, relative to the tensor's own scale (LayerNorm affine gradients are small).
    let params = cpu.net.params();
    let mut off = 0;
    for &t in &plan.tensors {
        let (p, n) = (params[t as usize], params[t as usize].numel());
        let (w, g) = (&want[off..off + n], &got[off..off + n]);
        off += n;
        if p.name.ends_with("key.bias") {
            continue; // exactly 0 in exact arithmetic: only round-off on either side
        }
        let rel = rel_err(&p.name, g, w);
        assert!(w.iter().any(|&x| x != 0.0), "{}: zero gradient", p.name);
        assert!(rel <= 1e-3, "{}: relative error {rel:.3e}", p.name);
    }
    assert_eq!(off, want.len());
}

#[test]
fn lr_gradient_matches_cpu_head_and_last_block() {
    let kind = EstimatorKind::Lr {
        sigma: 0.1,
        antithetic: true,
    };
    // Chunks of 5 rows: kept inputs span several chunks, and a chunk splits an antithetic pair.
    gradients_agree(kind, Tuning::Last(1), &[4, 2, 4], Some(5));
}

/// Two tuned blocks: block 2's LayerNorm and Q/K/V inputs are the same for all rows of an image
/// (frozen prefix), block 3's differ per row.
#[test]
fn lr_gradient_matches_cpu_last_two_blocks() {
    let kind = EstimatorKind::Lr {
        sigma: 0.1,
        antithetic: true,
    };
    gradients_agree(kind, Tuning::Last(2), &[2, 4], None);
}

#[test]
fn lr_gradient_matches_cpu_head_only() {
    let kind = EstimatorKind::Lr {
        sigma: 0.05,
        antithetic: false,
    };
    gradients_agree(kind, Tuning::Head, &[3, 1, 2, 2], None);
}

/// Site-wise queries (one site each, late sites starting from the clean stream on the CPU, the
/// GPU running every row from the first tuned block with the other sites' noise at 0) with
/// per-site noise scales, over an uneven allocation of image x site cells.
#[test]
fn site_wise_lr_gradient_matches_cpu_last_two_blocks() {
    let kind = EstimatorKind::Lr {
        sigma: 0.05,
        antithetic: true,
    };
    let net = net();
    let mut plan = plan(&net, kind, Tuning::Last(2), &[], 5);
    plan.groups = Perturb::Site.groups(&plan.sites);
    plan.site_scales = (0..plan.sites.len()).map(|s| 0.5 + 0.25 * (s % 4) as f32).collect();
    let g = plan.groups.len();
    let alloc: Vec<usize> = (0..2 * g).map(|c| 2 * (1 + c % 3)).collect();
    plan.queries = kind.build().plan(&alloc, g);
    plans_agree(net, kind, plan, &alloc, Some(7));
}

#[test]
fn spsa_gradient_matches_cpu() {
    gradients_agree(EstimatorKind::Spsa { eps: 1e-2 }, Tuning::Last(1), &[4, 2, 6], None);
}

/// ES reaches the GPU through the weight space alone: no backend code names it.
#[test]
fn es_gradient_matches_cpu() {
    gradients_agree(EstimatorKind::Es { sigma: 1e-2 }, Tuning::Last(1), &[3, 1, 2], None);
}

fn steps_agree(optimizer: OptimizerKind, clip_norm: Option<f32>) {
    let net = net();
    let alloc = [4, 4, 2];
    let (px, labels) = images(&net, alloc.len(), 9);
    let batch = Batch {
        pixels: &px,
        labels: &labels,
    };
    let kind = EstimatorKind::Lr {
        sigma: 0.1,
        antithetic: true,
    };
    let config = OptimizerConfig {
        kind: optimizer,
        lr: 0.01,
        schedule: Schedule::Constant,
        clip_norm,
    };
    let mut cpu = CpuBackend::new(net.clone());
    let mut gpu = GpuBackend::new(ctx(), net).unwrap();
    let tensors = plan(cpu.host_network(), kind, Tuning::Last(1), &alloc, 0).tensors;
    let before = block_on(cpu.read_params(&tensors)).unwrap();
    let mut cpu_opt = Optimizer::new(config, before.len()).unwrap();
    let mut gpu_opt = Optimizer::new(config, 0).unwrap();
    let mut small = vec![false; before.len()];
    for step in 0..2 {
        let plan = plan(cpu.host_network(), kind, Tuning::Last(1), &alloc, step);
        let coeffs = query_both(&mut cpu, &mut gpu, &batch, kind, &plan, &alloc);
        let g = block_on(cpu.gradient(&plan, &coeffs)).unwrap();
        let gmax = g.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (s, x) in small.iter_mut().zip(&g) {
            *s |= x.abs() < 1e-5 * gmax;
        }
        let cn = block_on(cpu.step(&plan, &coeffs, &mut cpu_opt, config.lr)).unwrap();
        let gn = block_on(gpu.step(&plan, &coeffs, &mut gpu_opt, config.lr)).unwrap();
        assert!((gn - cn).abs() <= 1e-4 * cn, "step {step}: grad norm {gn} vs {cn}");
    }
    let delta = |after: Vec<f32>| -> Vec<f32> { after.iter().zip(&before).map(|(a, b)| a - b).collect() };
    let (mut dc, mut dg) = (
        delta(block_on(cpu.read_params(&tensors)).unwrap()),
        delta(block_on(gpu.read_params(&tensors)).unwrap()),
    );
    if matches!(optimizer, OptimizerKind::Adam { .. }) {
        let skipped = small.iter().filter(|&&s| s).count();
        eprintln!(
            "Adam: {skipped} of {} elements with |g| < 1e-5 max |g| left out",
            small.len()
        );
        for ((c, g), &s) in dc.iter_mut().zip(&mut dg).zip(&small) {
            if s {
                (*c, *g) = (0.0, 0.0);
            }
        }
    }
    let rel = rel_err(&format!("{optimizer:?} clip {clip_norm:?} update"), &dg, &dc);
    assert!(rel <= 1e-3, "update relative error {rel:.3e}");
    // The lazily synced host copy equals the GPU's parameters.
    let synced = block_on(gpu.network()).unwrap();
    let ids = ParamTable::of(synced);
    let head = synced.params()[ids.classifier.weight as usize].data.clone();
    let slot = tensors.iter().position(|&t| t == ids.classifier.weight).unwrap();
    let off: usize = tensors[..slot]
        .iter()
        .map(|&t| cpu.host_network().params()[t as usize].numel())
        .sum();
    assert_eq!(
        head,
        block_on(gpu.read_params(&tensors)).unwrap()[off..off + head.len()].to_vec()
    );
}

#[test]
fn sgd_step_matches_cpu() {
    steps_agree(OptimizerKind::Sgd { momentum: 0.9 }, None);
}

#[test]
fn adam_step_with_clipping_matches_cpu() {
    // A clip norm below the gradient's norm exercises the clip scale.
    steps_agree(OptimizerKind::adam(), Some(1e-3));
}

/// The embedded model with a new Animal-Shape head and 8 prepared training images per class.
fn animal_model() -> (ViTForImageClassification, Examples) {
    let (model, train, _) = common::animal_model(1);
    let data = Examples::prepare(&train.take_per_class(8), &model.preprocessor).unwrap();
    (model.net, data)
}

fn animal_config(steps: usize) -> TrainConfig {
    TrainConfig {
        estimator: EstimatorKind::Lr {
            sigma: 0.1,
            antithetic: true,
        },
        allocator: AllocatorKind::Uniform,
        queries_per_point: 8,
        batch: 16,
        steps,
        tuning: Tuning::Head,
        perturb: Perturb::Joint,
        relative_noise: false,
        head_lr: None,
        exact_head: false,
        optimizer: OptimizerConfig {
            kind: OptimizerKind::adam(),
            lr: 0.01,
            schedule: Schedule::Constant,
            clip_norm: Some(5.0),
        },
        seed: 7,
    }
}

#[test]
fn gpu_trainer_lowers_the_clean_loss() {
    let (net, data) = animal_model();
    let config = animal_config(12);
    let mut trainer = Trainer::new(
        Box::new(GpuBackend::new(ctx(), net).unwrap()),
        config.clone(),
        data.clone(),
    )
    .unwrap();
    let before = block_on(evaluate(trainer.backend.as_mut(), &data, 32)).unwrap();
    let t0 = Instant::now();
    for _ in 0..config.steps {
        block_on(trainer.step()).unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = block_on(evaluate(trainer.backend.as_mut(), &data, 32)).unwrap();
    eprintln!(
        "Trainer on the GPU backend: train loss {:.4} -> {:.4} over {} steps ({:.2} s/step)",
        before.loss,
        after.loss,
        config.steps,
        secs / config.steps as f64
    );
    assert!(after.loss < before.loss - 0.05, "{} -> {}", before.loss, after.loss);
}

/// The exact head needs the clean pass's head inputs, which the GPU backend does not return:
/// the trainer refuses it by name before any step.
#[test]
fn gpu_trainer_refuses_the_exact_head_by_name() {
    let (net, data) = animal_model();
    let config = TrainConfig {
        tuning: Tuning::Last(1),
        exact_head: true,
        ..animal_config(1)
    };
    let e = Trainer::new(Box::new(GpuBackend::new(ctx(), net).unwrap()), config, data)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("exact head") && e.contains("CPU backend"), "{e}");
}

/// The full-GPU step (gradient, clipping and Adam in WGSL) drives a head-only run down too.
#[test]
fn gpu_optimizer_step_lowers_the_clean_loss() {
    let (net, data) = animal_model();
    let config = animal_config(12);
    let mut gpu = GpuBackend::new(ctx(), net).unwrap();
    let before = block_on(evaluate(&mut gpu, &data, 32)).unwrap();
    // Only the config is used: the GPU keeps the optimiser state.
    let mut opt = Optimizer::new(config.optimizer, 0).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let b = config.batch;
    let alloc = vec![config.queries_per_point; b];
    for step in 0..config.steps {
        let idx: Vec<usize> = (0..b).map(|_| rng.random_range(0..data.len())).collect();
        let px: Vec<f32> = idx
            .iter()
            .flat_map(|&i| {
                data.pixels[i * data.image_len..(i + 1) * data.image_len]
                    .iter()
                    .copied()
            })
            .collect();
        let labels: Vec<usize> = idx.iter().map(|&i| data.labels[i]).collect();
        let batch = Batch {
            pixels: &px,
            labels: &labels,
        };
        let plan = plan(gpu.host_network(), config.estimator, config.tuning, &alloc, step as u32);
        let clean = block_on(gpu.clean(&batch)).unwrap();
        let losses = block_on(gpu.query_losses(&batch, &plan)).unwrap();
        let c = common::lr_coefficients(&plan.queries, &losses, &clean.losses, &alloc, 0.1);
        block_on(gpu.step(&plan, &c, &mut opt, config.optimizer.lr)).unwrap();
    }
    let after = block_on(evaluate(&mut gpu, &data, 32)).unwrap();
    eprintln!("GPU optimiser step: train loss {:.4} -> {:.4}", before.loss, after.loss);
    assert!(after.loss < before.loss - 0.05, "{} -> {}", before.loss, after.loss);
}

/// Per-step wall time of the GPU and CPU backends on the default model, batch 16, n_bar 8,
/// antithetic LR, Adam, frozen features kept as in training (the same batch every step: the
/// steady state after the first epoch)
/// (`cargo test --release --test gpu_learn step_timing -- --ignored --nocapture`).
#[test]
#[ignore = "timing, prints only"]
fn step_timing() {
    let kind = EstimatorKind::Lr {
        sigma: 0.1,
        antithetic: true,
    };
    let config = animal_config(1).optimizer;
    for tuning in [Tuning::Head, Tuning::Last(1)] {
        let net = net();
        let alloc = [8usize; 16];
        let (px, labels) = images(&net, alloc.len(), 1);
        let batch = Batch {
            pixels: &px,
            labels: &labels,
        };
        let frozen = tuning.first_tuned_block(net.vit.layers.len());
        let mut cpu = CpuBackend::new(net.clone());
        let mut gpu = GpuBackend::new(ctx(), net).unwrap();
        cpu.freeze_below(frozen);
        gpu.freeze_below(frozen);
        time_steps("cpu", &mut cpu, &batch, kind, tuning, &alloc, config);
        time_steps("gpu", &mut gpu, &batch, kind, tuning, &alloc, config);
    }
}

fn time_steps<B: Backend>(
    name: &str,
    be: &mut B,
    batch: &Batch,
    kind: EstimatorKind,
    tuning: Tuning,
    alloc: &[usize],
    config: OptimizerConfig,
) {
    let mut opt = Optimizer::new(config, 100_000).unwrap();
    let mut times = [0.0f64; 3];
    let steps = 4;
    for step in 0..=steps {
        let plan = plan(be.host_network(), kind, tuning, alloc, step);
        let t0 = Instant::now();
        let clean = block_on(be.clean(batch)).unwrap();
        let t1 = Instant::now();
        let losses = block_on(be.query_losses(batch, &plan)).unwrap();
        let t2 = Instant::now();
        let c = common::lr_coefficients(&plan.queries, &losses, &clean.losses, alloc, 0.1);
        block_on(be.step(&plan, &c, &mut opt, config.lr)).unwrap();
        let t3 = Instant::now();
        if step > 0 {
            // Step 0 compiles the pipelines.
            times[0] += (t1 - t0).as_secs_f64() / steps as f64;
            times[1] += (t2 - t1).as_secs_f64() / steps as f64;
            times[2] += (t3 - t2).as_secs_f64() / steps as f64;
        }
    }
    eprintln!(
        "{tuning:?} {name}: clean {:.3} s, queries {:.3} s, gradient + optimiser {:.3} s, step {:.3} s",
        times[0],
        times[1],
        times[2],
        times.iter().sum::<f64>()
    );
}

/// With blocks below 3 frozen, each image's stream entering block 3 is computed once and kept on
/// the device: batches that share images give the same clean and query losses as a backend that
/// keeps nothing (bit for bit: the same kernels on the same rows), the bank holds each image
/// once, and writing a frozen tensor empties it.
#[test]
fn gpu_frozen_features_are_kept_across_steps() {
    let net = net();
    let (px, labels) = images(&net, 4, 21);
    let per = net.config.image_numel();
    let pick = |idx: &[usize]| -> (Vec<f32>, Vec<usize>) {
        (
            idx.iter()
                .flat_map(|&i| px[i * per..(i + 1) * per].iter().copied())
                .collect(),
            idx.iter().map(|&i| labels[i]).collect(),
        )
    };
    let batches = [pick(&[0, 1, 2]), pick(&[2, 1, 3]), pick(&[3, 0, 1])];
    let alloc = [2, 2, 2];
    let kind = EstimatorKind::Lr {
        sigma: 0.1,
        antithetic: true,
    };
    let mut kept = GpuBackend::new(ctx(), net.clone()).unwrap();
    kept.freeze_below(3);
    let mut fresh = GpuBackend::new(ctx(), net.clone()).unwrap();
    for (step, (p, l)) in batches.iter().enumerate() {
        let batch = Batch { pixels: p, labels: l };
        let plan = plan(&net, kind, Tuning::Last(1), &alloc, step as u32);
        let (a, b) = (
            block_on(kept.clean(&batch)).unwrap(),
            block_on(fresh.clean(&batch)).unwrap(),
        );
        assert_eq!(a, b, "step {step}: clean pass");
        let (a, b) = (
            block_on(kept.query_losses(&batch, &plan)).unwrap(),
            block_on(fresh.query_losses(&batch, &plan)).unwrap(),
        );
        assert_eq!(a, b, "step {step}: query losses");
    }
    assert_eq!(kept.kept_features(), 4, "each of the 4 images kept once");
    assert_eq!(fresh.kept_features(), 0);
    // Writing a frozen tensor (block 0's query bias) invalidates the bank.
    let ids = ParamTable::of(&net);
    let t = ids.layers[0].query.bias.unwrap();
    let values = vec![0.01f32; net.params()[t as usize].numel()];
    kept.write_params(&[t], &values).unwrap();
    assert_eq!(kept.kept_features(), 0, "a frozen tensor changed: nothing kept");
}

/// The acceptance's "same parameter update for one full step with the same seed", end to end:
/// two trainers with one config and seed, one on each backend, take their first step (batch
/// sampling, clean pass, allocation, queries, estimate, SGD step). Same batch and allocation; the
/// parameter updates agree within 1e-3 of the largest update (the GPU's f32 sums vs the CPU's).
#[test]
fn cpu_and_gpu_trainers_take_the_same_first_step() {
    let (net, data) = animal_model();
    let mut config = animal_config(1);
    config.tuning = Tuning::Last(1);
    config.allocator = AllocatorKind::Flops;
    config.optimizer.kind = OptimizerKind::Sgd { momentum: 0.9 };
    let mut cpu = Trainer::new(Box::new(CpuBackend::new(net.clone())), config.clone(), data.clone()).unwrap();
    let mut gpu = Trainer::new(Box::new(GpuBackend::new(ctx(), net).unwrap()), config, data).unwrap();
    let tensors = cpu.tuned_tensors().to_vec();
    let before = block_on(cpu.backend.read_params(&tensors)).unwrap();
    let (ec, eg) = (block_on(cpu.step()).unwrap(), block_on(gpu.step()).unwrap());
    assert_eq!(ec.allocation, eg.allocation, "allocation");
    assert!(
        (ec.loss - eg.loss).abs() <= 1e-4,
        "batch loss {} vs {}",
        ec.loss,
        eg.loss
    );
    let delta = |after: Vec<f32>| -> Vec<f32> { after.iter().zip(&before).map(|(a, b)| a - b).collect() };
    let dc = delta(block_on(cpu.backend.read_params(&tensors)).unwrap());
    let dg = delta(block_on(gpu.backend.read_params(&tensors)).unwrap());
    assert!(dc.iter().any(|&d| d != 0.0), "the step changed the parameters");
    let rel = rel_err("first trainer step's update", &dg, &dc);
    assert!(rel <= 1e-3, "update relative error {rel:.3e}");
}

/// Same seed, same result, on each backend: two trainers with one config (the last block,
/// site-wise, the FLOPS allocator learning as it goes) take three steps each; every step's
/// event (timing apart) and the tuned parameters after them are bit-identical between the two
/// runs of one backend.
#[test]
fn same_seed_same_run_on_each_backend() {
    let (net, data) = animal_model();
    let mut config = animal_config(3);
    config.tuning = Tuning::Last(1);
    config.perturb = Perturb::Site;
    config.allocator = AllocatorKind::Flops;
    config.queries_per_point = 14;
    let run = |backend: Box<dyn Backend>| {
        let mut t = Trainer::new(backend, config.clone(), data.clone()).unwrap();
        let events: Vec<String> = (0..3)
            .map(|_| {
                let mut e = block_on(t.step()).unwrap();
                e.queries_per_second = 0.0;
                format!("{e:?}")
            })
            .collect();
        let tensors = t.tuned_tensors().to_vec();
        let params: Vec<u32> = block_on(t.backend.read_params(&tensors))
            .unwrap()
            .iter()
            .map(|p| p.to_bits())
            .collect();
        (events, params)
    };
    for (name, make) in [
        (
            "cpu",
            Box::new(|| Box::new(CpuBackend::fast(net.clone())) as Box<dyn Backend>)
                as Box<dyn Fn() -> Box<dyn Backend>>,
        ),
        (
            "gpu",
            Box::new(|| Box::new(GpuBackend::new(ctx(), net.clone()).unwrap()) as Box<dyn Backend>),
        ),
    ] {
        let (a, b) = (run(make()), run(make()));
        assert_eq!(a.0, b.0, "{name}: step events differ between two runs of one seed");
        assert!(a.1 == b.1, "{name}: parameters differ between two runs of one seed");
    }
}

/// A GPU device lost mid-run (destroyed, as a driver reset or the browser reclaiming the GPU
/// would): the failing step says the device is gone, the backend reports it, and the run moves
/// to the CPU from its last checkpoint, bit for bit, and steps on. A context of its own: the
/// shared one must survive.
#[test]
fn device_lost_mid_run_moves_to_the_cpu_from_the_checkpoint() {
    let gpu = Arc::new(
        GpuContext::new_blocking(&GpuOptions {
            backends_from_env: true,
            ..Default::default()
        })
        .expect("GPU tests need an adapter (scripts/setup.sh installs lavapipe)"),
    );
    let (net, data) = animal_model();
    let mut config = animal_config(10);
    config.tuning = Tuning::Last(1);
    let mut t = Trainer::new(Box::new(GpuBackend::new(gpu.clone(), net).unwrap()), config, data).unwrap();
    for _ in 0..2 {
        block_on(t.step()).unwrap();
    }
    assert_eq!(block_on(t.checkpoint()).unwrap(), 2);
    let tuned = t.tuned_tensors().to_vec();
    let kept = block_on(t.backend.read_params(&tuned)).unwrap();
    block_on(t.step()).unwrap();
    assert!(t.backend.lost().is_none());
    gpu.destroy_for_testing();
    let err = block_on(t.step()).expect_err("a step on a destroyed device must fail");
    eprintln!("the step on the destroyed device: {err}");
    let lost = t.backend.lost().expect("the backend must report the lost device");
    assert!(lost.contains("destroyed"), "lost reason: {lost}");
    eprintln!("the step on the destroyed device: {err}");
    assert_eq!(t.step, 3, "a failed step must not count");
    let cpu = CpuBackend::fast(t.backend.host_network().clone());
    assert_eq!(
        t.move_to(Box::new(cpu)).unwrap(),
        2,
        "moves from the checkpoint of step 2"
    );
    assert_eq!(t.backend.name(), "cpu");
    let now = block_on(t.backend.read_params(&tuned)).unwrap();
    assert!(
        now == kept,
        "the CPU backend must hold the checkpoint's weights exactly"
    );
    for _ in 0..2 {
        let e = block_on(t.step()).unwrap();
        assert!(e.loss.is_finite());
    }
    assert_eq!(t.step, 5);
}

/// The context counts the bytes of the tensors alive on its device: a model upload adds at
/// least its parameters' bytes, dropping it gives them back, and the peak remembers. A context
/// of its own: tests beside it allocate on the shared one.
#[test]
fn device_tensor_bytes_are_counted() {
    let ctx = GpuContext::new_blocking(&GpuOptions {
        backends_from_env: true,
        ..Default::default()
    })
    .expect("GPU tests need an adapter (scripts/setup.sh installs lavapipe)");
    let net = net();
    let before = ctx.memory();
    let model = flops_web::gpu::GpuModel::upload(&ctx, &net).unwrap();
    let loaded = ctx.memory();
    let params = 4 * net.num_params() as u64;
    assert!(
        loaded.live_bytes >= before.live_bytes + params,
        "{loaded:?} after uploading {params} bytes of parameters (before: {before:?})"
    );
    assert!(loaded.peak_bytes >= loaded.live_bytes);
    drop(model);
    let after = ctx.memory();
    assert!(
        after.live_bytes <= loaded.live_bytes - params,
        "{after:?} after the drop (loaded: {loaded:?})"
    );
    assert!(after.peak_bytes >= loaded.live_bytes);
}

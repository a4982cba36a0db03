//! `flops bench speed`: the clean forward of a batch of images on every path we have, side by
//! side, and where a training step's time goes on each backend; one JSON object out. Paths: `cpu-reference` (plain loops, the oracle), `cpu-fast`
//! (GEMM through `matrixmultiply`) and `wgsl` (the GPU forward; on these machines lavapipe,
//! which says nothing about real GPUs). All CPU paths run on one thread. ONNX Runtime's numbers
//! (`ort-native`) come from a separate script on the same models.

use std::time::Instant;

use clap::Args;
use flops_web::backend::cpu::CpuBackend;
use flops_web::backend::gpu::GpuBackend;
use flops_web::gpu::{GpuContext, GpuForward, GpuModel, GpuOptions, RowPlan};
use flops_web::learn::allocate::{make_allocator, AllocatorKind, BatchStats, Budget};
use flops_web::learn::backend::{Backend, Batch, StepPlan};
use flops_web::learn::estimate::{EstimatorKind, Results};
use flops_web::learn::optim::{Optimizer, OptimizerConfig, OptimizerKind, Schedule};
use flops_web::learn::tuning::Tuning;
use flops_web::model::nn::Kernels;
use flops_web::model::ViTForImageClassification;
use pollster::block_on;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use crate::bench::{median, model_of, BenchModel};
use crate::model_dir::CliError;

#[derive(Args)]
pub struct SpeedArgs {
    /// Models to run.
    #[arg(long, value_delimiter = ',', default_values = ["default", "vit-tiny"])]
    models: Vec<BenchModel>,
    /// Images per forward (the batch).
    #[arg(long, default_value_t = 4)]
    rows: usize,
    /// Timed repetitions per path (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Skip the WGSL path (lavapipe needs seconds per ViT-Tiny image).
    #[arg(long)]
    no_wgsl: bool,
}

#[derive(Serialize)]
struct Entry {
    path: &'static str,
    model: BenchModel,
    threads: usize,
    rows: usize,
    ms: f64,
    rows_per_s: f64,
    gflop_per_s: f64,
}

/// Where one training step's time goes (default model, antithetic LR, Adam, frozen features
/// kept: the steady state after the first epoch). `forward_ms` = clean + queries, the forward
/// passes the step runs; `step_over_forward` = the whole step over them.
#[derive(Serialize)]
struct StepEntry {
    path: &'static str,
    tuning: String,
    batch: usize,
    queries: usize,
    clean_ms: f64,
    allocator_ms: f64,
    queries_ms: f64,
    coefficients_ms: f64,
    /// Gradient accumulation and the optimiser update (GPU: one submission, the norm read back).
    gradient_update_ms: f64,
    forward_ms: f64,
    step_ms: f64,
    step_over_forward: f64,
}

#[derive(Serialize)]
struct Report {
    adapter: Option<flops_web::gpu::AdapterSummary>,
    forward: Vec<Entry>,
    steps: Vec<StepEntry>,
}

/// Times `steps` steps (after one warm-up) of `backend` on one batch, phase by phase.
fn time_step(
    path: &'static str,
    backend: &mut dyn Backend,
    tuning: Tuning,
    batch: &Batch,
    n_bar: usize,
    steps: usize,
) -> Result<StepEntry, CliError> {
    let other = |e: &dyn std::fmt::Display| CliError::Other(e.to_string());
    let kind = EstimatorKind::Lr {
        sigma: 0.1,
        antithetic: true,
    };
    let estimator = kind.build();
    let b = batch.len();
    let table = backend.table().clone();
    backend.freeze_below(tuning.first_tuned_block(table.layers.len()));
    let tensors = StepPlan::new(estimator.as_ref(), tuning, &table, 0, 0, Vec::new()).tensors;
    let n_params = table.layout(&tensors).map_err(|e| other(&e))?.total;
    let config = OptimizerConfig {
        kind: OptimizerKind::adam(),
        lr: 1e-3,
        schedule: Schedule::Constant,
        clip_norm: Some(5.0),
    };
    let mut opt = Optimizer::new(config, n_params).map_err(|e| other(&e))?;
    let mut alloc = make_allocator(AllocatorKind::Flops, 1);
    let budget = Budget {
        total: b * n_bar,
        min_per_point: 2,
        unit: 2,
    };
    let mut t = [0.0f64; 5];
    for step in 0..=steps {
        let t0 = Instant::now();
        let clean = block_on(backend.clean(batch)).map_err(|e| other(&e))?;
        let t1 = Instant::now();
        let proxy = vec![1.0; b];
        let stats = BatchStats {
            losses: &clean.losses,
            variance_proxy: &proxy,
        };
        let a = alloc.allocate(&stats, budget).map_err(|e| other(&e))?;
        let plan = StepPlan::new(
            estimator.as_ref(),
            tuning,
            &table,
            0,
            step as u32,
            estimator.plan(&a, 1),
        );
        let t2 = Instant::now();
        let losses = block_on(backend.query_losses(batch, &plan)).map_err(|e| other(&e))?;
        let t3 = Instant::now();
        let c = estimator.coefficients(&Results {
            queries: &plan.queries,
            losses: &losses,
            baselines: &clean.losses,
            alloc: &a,
            groups: 1,
        });
        let t4 = Instant::now();
        block_on(backend.step(&plan, &c, &mut opt, config.lr)).map_err(|e| other(&e))?;
        let t5 = Instant::now();
        if step > 0 {
            // The first step computes the frozen features and compiles the GPU pipelines.
            for (acc, (a, b)) in t.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]) {
                *acc += (b - a).as_secs_f64() * 1e3 / steps as f64;
            }
        }
    }
    let forward = t[0] + t[2];
    let total: f64 = t.iter().sum();
    Ok(StepEntry {
        path,
        tuning: match tuning {
            Tuning::Head => "head".into(),
            Tuning::Last(k) => format!("last:{k}"),
        },
        batch: b,
        queries: b * n_bar,
        clean_ms: t[0],
        allocator_ms: t[1],
        queries_ms: t[2],
        coefficients_ms: t[3],
        gradient_update_ms: t[4],
        forward_ms: forward,
        step_ms: total,
        step_over_forward: total / forward,
    })
}

fn time(repeats: usize, mut f: impl FnMut() -> Result<(), CliError>) -> Result<f64, CliError> {
    f()?;
    let mut t = Vec::new();
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(&mut t))
}

pub fn run(args: SpeedArgs) -> Result<(), CliError> {
    let other = |e: &dyn std::fmt::Display| CliError::Other(e.to_string());
    let ctx = if args.no_wgsl {
        None
    } else {
        Some(std::sync::Arc::new(
            GpuContext::new_blocking(&GpuOptions {
                backends_from_env: true,
                ..Default::default()
            })
            .map_err(|e| other(&e))?,
        ))
    };
    let mut forward = Vec::new();
    for &which in &args.models {
        let net = model_of(which)?;
        let rows = args.rows.max(1);
        let mut rng = StdRng::seed_from_u64(1);
        let pixels: Vec<f32> = (0..rows * net.config.image_numel())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let flop = net.config.forward_flop_per_image() * rows as f64;
        let mut push = |path, s: f64| {
            forward.push(Entry {
                path,
                model: which,
                threads: 1,
                rows,
                ms: s * 1e3,
                rows_per_s: rows as f64 / s,
                gflop_per_s: flop / s / 1e9,
            })
        };
        for (path, kernels) in [("cpu-reference", Kernels::Reference), ("cpu-fast", Kernels::Gemm)] {
            let mut n: ViTForImageClassification = net.clone();
            n.set_kernels(kernels);
            let s = time(args.repeats, || {
                std::hint::black_box(n.forward_batch(&pixels).map_err(|e| other(&e))?);
                Ok(())
            })?;
            push(path, s);
        }
        if let Some(ctx) = &ctx {
            let model = GpuModel::upload(ctx, &net).map_err(|e| other(&e))?;
            let plan = RowPlan::clean(&vec![0; rows], net.config.num_hidden_layers);
            let s = time(args.repeats, || {
                std::hint::black_box(GpuForward::run_blocking(ctx, &model, &pixels, &plan).map_err(|e| other(&e))?);
                Ok(())
            })?;
            push("wgsl", s);
        }
    }
    let net = model_of(BenchModel::Default)?;
    let (b, n_bar) = (16, 8);
    let mut rng = StdRng::seed_from_u64(2);
    let pixels: Vec<f32> = (0..b * net.config.image_numel())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let labels: Vec<usize> = (0..b).map(|i| i % net.config.num_labels()).collect();
    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    let mut steps = Vec::new();
    for tuning in [Tuning::Head, Tuning::Last(1)] {
        let mut backends: Vec<(&'static str, Box<dyn Backend>)> = vec![
            ("cpu-reference", Box::new(CpuBackend::new(net.clone()))),
            ("cpu-fast", Box::new(CpuBackend::fast(net.clone()))),
        ];
        if let Some(ctx) = &ctx {
            let gpu = GpuBackend::new(ctx.clone(), net.clone()).map_err(|e| other(&e))?;
            backends.push(("wgsl", Box::new(gpu)));
        }
        for (path, mut be) in backends {
            steps.push(time_step(
                path,
                be.as_mut(),
                tuning,
                &batch,
                n_bar,
                args.repeats.max(1),
            )?);
        }
    }
    let report = Report {
        adapter: ctx.as_ref().map(|c| c.summary()),
        forward,
        steps,
    };
    println!("{}", serde_json::to_string_pretty(&report).map_err(|e| other(&e))?);
    Ok(())
}

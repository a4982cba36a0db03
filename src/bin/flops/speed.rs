//! `flops bench speed`: the clean forward of a batch of images on every path we have, side by
//! side, one JSON object out. Paths: `cpu-reference` (plain loops, the oracle), `cpu-fast`
//! (GEMM through `matrixmultiply`) and `wgsl` (the GPU forward; on these machines lavapipe,
//! which says nothing about real GPUs). All CPU paths run on one thread. ONNX Runtime's numbers
//! (`ort-native`) come from a separate script on the same models.

use std::time::Instant;

use clap::Args;
use flops_web::gpu::{GpuContext, GpuForward, GpuModel, GpuOptions, Perturbation, QueryRow, RowPlan};
use flops_web::model::nn::Kernels;
use flops_web::model::ViTForImageClassification;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use crate::bench::{flop_per_row, median, model_of, BenchModel};
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

#[derive(Serialize)]
struct Report {
    adapter: Option<flops_web::gpu::AdapterSummary>,
    forward: Vec<Entry>,
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
        Some(
            GpuContext::new_blocking(&GpuOptions {
                backends_from_env: true,
                ..Default::default()
            })
            .map_err(|e| other(&e))?,
        )
    };
    let mut forward = Vec::new();
    for &which in &args.models {
        let net = model_of(which)?;
        let rows = args.rows.max(1);
        let mut rng = StdRng::seed_from_u64(1);
        let pixels: Vec<f32> = (0..rows * net.config.image_numel())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let flop = flop_per_row(&net.config) * rows as f64;
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
            let plan = RowPlan {
                rows: (0..rows)
                    .map(|image| QueryRow {
                        image,
                        label: 0,
                        perturbation: Perturbation::Clean,
                    })
                    .collect(),
                first_tuned: net.config.num_hidden_layers,
            };
            let s = time(args.repeats, || {
                std::hint::black_box(GpuForward::run_blocking(ctx, &model, &pixels, &plan).map_err(|e| other(&e))?);
                Ok(())
            })?;
            push("wgsl", s);
        }
    }
    let report = Report {
        adapter: ctx.as_ref().map(|c| c.summary()),
        forward,
    };
    println!("{}", serde_json::to_string_pretty(&report).map_err(|e| other(&e))?);
    Ok(())
}

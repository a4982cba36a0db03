//! `flops bench forward`: throughput of the batched GPU forward over query rows, next to the
//! CPU reference on the same rows (`flops bench speed`: every path side by side, in
//! `speed.rs`). Prints one JSON object. A benchmark, not a test: lavapipe
//! numbers say nothing about real GPUs.

use std::collections::HashMap;
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use flops_web::gpu::{GpuContext, GpuForward, GpuModel, GpuOptions, Perturbation, QueryRow, RowPlan};
use flops_web::model::params::ParamTable;
use flops_web::model::{LinearSite, LoadOptions, Model, ModelFiles, ViTForImageClassification};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::Serialize;

use crate::model_dir::CliError;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The forward over query rows (GPU and CPU reference).
    Forward(ForwardArgs),
    /// The clean forward on every path side by side (CPU reference, fast CPU, WGSL).
    Speed(crate::speed::SpeedArgs),
    /// Allocators at equal cost: gradient variance at checkpoints and learning curves.
    Learn(crate::learn_bench::LearnArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BenchModel {
    /// The embedded default model.
    Default,
    /// ViT-Tiny shapes with random weights: 224 px, patch 16, 12 layers, hidden 192, 3 heads, MLP 768.
    VitTiny,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum RowKind {
    Clean,
    /// LR noise on every linear layer of every block and the classifier.
    Lr,
    /// Weight perturbation of every block tensor, directions shared by pairs of rows (+/-).
    Weight,
}

#[derive(Args)]
pub struct ForwardArgs {
    /// Models to run.
    #[arg(long, value_delimiter = ',', default_values = ["default", "vit-tiny"])]
    models: Vec<BenchModel>,
    /// Row counts for the default model.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    rows: Vec<usize>,
    /// Row counts for ViT-Tiny (lavapipe needs seconds per row).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4])]
    tiny_rows: Vec<usize>,
    /// What each row perturbs.
    #[arg(long, value_enum, default_value_t = RowKind::Lr)]
    kind: RowKind,
    /// Query rows per image.
    #[arg(long, default_value_t = 4)]
    rows_per_image: usize,
    /// Timed repetitions per row count (after one warm-up).
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Rows of the CPU reference per model (0 skips it); rows/s is extrapolated from these.
    #[arg(long, default_value_t = 4)]
    cpu_rows: usize,
}

#[derive(Serialize)]
struct Report {
    adapter: flops_web::gpu::AdapterSummary,
    kind: RowKind,
    results: Vec<ModelReport>,
}

#[derive(Serialize)]
struct ModelReport {
    model: BenchModel,
    params: usize,
    tokens: usize,
    hidden: usize,
    layers: usize,
    gflop_per_row: f64,
    gpu: Vec<GpuRun>,
    cpu: Option<CpuRun>,
}

#[derive(Serialize)]
struct GpuRun {
    rows: usize,
    images: usize,
    /// Recording + uploads + submit (host side), median.
    record_ms: f64,
    /// Submit until the results are on the host (GPU done), median.
    submit_to_readback_ms: f64,
    rows_per_s: f64,
    gflop_per_s: f64,
}

#[derive(Serialize)]
struct CpuRun {
    rows: usize,
    ms: f64,
    rows_per_s: f64,
    gflop_per_s: f64,
}

pub fn run(cmd: BenchCommand) -> Result<(), CliError> {
    let args = match cmd {
        BenchCommand::Forward(args) => args,
        BenchCommand::Speed(args) => return crate::speed::run(args),
        BenchCommand::Learn(args) => return crate::learn_bench::run(args),
    };
    let err = |e: flops_web::gpu::GpuError| CliError::Other(e.to_string());
    let ctx = GpuContext::new_blocking(&GpuOptions {
        backends_from_env: true,
        ..Default::default()
    })
    .map_err(err)?;
    let mut results = Vec::new();
    for &which in &args.models {
        let model = model_of(which)?;
        let rows = match which {
            BenchModel::Default => &args.rows,
            BenchModel::VitTiny => &args.tiny_rows,
        };
        results.push(bench_model(&ctx, which, &model, rows, &args).map_err(err)?);
    }
    let report = Report {
        adapter: ctx.summary(),
        kind: args.kind,
        results,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| CliError::Other(e.to_string()))?
    );
    Ok(())
}

fn bench_model(
    ctx: &GpuContext,
    which: BenchModel,
    net: &ViTForImageClassification,
    row_counts: &[usize],
    args: &ForwardArgs,
) -> flops_web::gpu::Result<ModelReport> {
    let gpu_model = GpuModel::upload(ctx, net)?;
    let cfg = &net.config;
    let flop = cfg.forward_flop_per_image();
    let mut gpu = Vec::new();
    for &r in row_counts {
        let (pixels, plan) = workload(net, r, args);
        GpuForward::run_blocking(ctx, &gpu_model, &pixels, &plan)?; // warm-up: pipeline compiles
        let (mut record, mut wait) = (Vec::new(), Vec::new());
        for _ in 0..args.repeats.max(1) {
            let t0 = Instant::now();
            let pending = GpuForward::submit(ctx, &gpu_model, &pixels, &plan)?;
            let t1 = Instant::now();
            pending.read_blocking(ctx)?;
            record.push((t1 - t0).as_secs_f64());
            wait.push(t1.elapsed().as_secs_f64());
        }
        let (rec, w) = (median(&mut record), median(&mut wait));
        gpu.push(GpuRun {
            rows: r,
            images: pixels.len() / cfg.image_numel(),
            record_ms: rec * 1e3,
            submit_to_readback_ms: w * 1e3,
            rows_per_s: r as f64 / (rec + w),
            gflop_per_s: r as f64 * flop / (rec + w) / 1e9,
        });
    }
    let cpu = if args.cpu_rows == 0 {
        None
    } else {
        let (pixels, plan) = workload(net, args.cpu_rows, args);
        let t0 = Instant::now();
        std::hint::black_box(plan.cpu_reference(net, &pixels)?);
        let s = t0.elapsed().as_secs_f64();
        Some(CpuRun {
            rows: args.cpu_rows,
            ms: s * 1e3,
            rows_per_s: args.cpu_rows as f64 / s,
            gflop_per_s: args.cpu_rows as f64 * flop / s / 1e9,
        })
    };
    Ok(ModelReport {
        model: which,
        params: net.num_params(),
        tokens: cfg.seq_len(),
        hidden: cfg.hidden_size,
        layers: cfg.num_hidden_layers,
        gflop_per_row: flop / 1e9,
        gpu,
        cpu,
    })
}

/// The network of a benchmark model.
pub(crate) fn model_of(which: BenchModel) -> Result<ViTForImageClassification, CliError> {
    match which {
        BenchModel::Default => Ok(Model::embedded_default()
            .map_err(|e| CliError::Other(e.to_string()))?
            .net),
        BenchModel::VitTiny => vit_tiny(),
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn workload(net: &ViTForImageClassification, rows: usize, args: &ForwardArgs) -> (Vec<f32>, RowPlan) {
    let per = args.rows_per_image.max(1);
    let images = rows.div_ceil(per);
    let mut rng = StdRng::seed_from_u64(1);
    let pixels: Vec<f32> = (0..images * net.config.image_numel())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let layers = net.config.num_hidden_layers;
    let ids = ParamTable::of(net);
    let mut sites: Vec<LinearSite> = (0..layers)
        .flat_map(|l| {
            use LinearSite::*;
            [Query(l), Key(l), Value(l), AttnOut(l), Fc1(l), Fc2(l)]
        })
        .collect();
    sites.push(LinearSite::Classifier);
    let tensors: Vec<u32> = ids.layers.iter().flat_map(|l| l.all()).collect();
    let classes = net.config.num_labels();
    let plan_rows = (0..rows)
        .map(|r| QueryRow {
            image: r / per,
            label: r % classes,
            perturbation: match args.kind {
                RowKind::Clean => Perturbation::Clean,
                RowKind::Lr => Perturbation::Lr {
                    seed: 5,
                    step: 0,
                    sites: sites.iter().map(|&s| (s, 0.01)).collect(),
                    row: r as u32,
                },
                RowKind::Weight => Perturbation::Weight {
                    seed: 5,
                    step: 0,
                    direction: (r / 2) as u32,
                    scale: if r % 2 == 0 { 1e-3 } else { -1e-3 },
                    tensors: tensors.clone(),
                },
            },
        })
        .collect();
    (
        pixels,
        RowPlan {
            rows: plan_rows,
            first_tuned: 0,
        },
    )
}

/// A ViT-Tiny-shaped classifier with random weights (N(0, 0.02^2), LayerNorm 1/0, zero biases),
/// loaded through the ordinary HF path.
fn vit_tiny() -> Result<ViTForImageClassification, CliError> {
    let (d, i, l, classes, t) = (192usize, 768usize, 12usize, 10usize, 197usize);
    let config = serde_json::json!({
        "hidden_size": d, "num_hidden_layers": l, "num_attention_heads": 3, "intermediate_size": i,
        "image_size": 224, "patch_size": 16, "num_channels": 3, "layer_norm_eps": 1e-12,
        "id2label": (0..classes).map(|c| (c.to_string(), format!("class{c}"))).collect::<HashMap<_, _>>(),
    })
    .to_string();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("vit.embeddings.cls_token".into(), vec![1, 1, d]),
        ("vit.embeddings.position_embeddings".into(), vec![1, t, d]),
        (
            "vit.embeddings.patch_embeddings.projection.weight".into(),
            vec![d, 3, 16, 16],
        ),
        ("vit.embeddings.patch_embeddings.projection.bias".into(), vec![d]),
    ];
    for k in 0..l {
        let p = format!("vit.encoder.layer.{k}");
        for (name, shape) in [
            ("layernorm_before", None),
            ("attention.attention.query", Some(vec![d, d])),
            ("attention.attention.key", Some(vec![d, d])),
            ("attention.attention.value", Some(vec![d, d])),
            ("attention.output.dense", Some(vec![d, d])),
            ("layernorm_after", None),
            ("intermediate.dense", Some(vec![i, d])),
            ("output.dense", Some(vec![d, i])),
        ] {
            let out = shape.as_ref().map_or(d, |s| s[0]);
            shapes.push((format!("{p}.{name}.weight"), shape.unwrap_or(vec![d])));
            shapes.push((format!("{p}.{name}.bias"), vec![out]));
        }
    }
    shapes.push(("vit.layernorm.weight".into(), vec![d]));
    shapes.push(("vit.layernorm.bias".into(), vec![d]));
    shapes.push(("classifier.weight".into(), vec![classes, d]));
    shapes.push(("classifier.bias".into(), vec![classes]));
    let mut rng = StdRng::seed_from_u64(7);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.contains("layernorm") && name.ends_with("weight") {
                vec![1.0; n]
            } else if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| 0.02 * rng.sample::<f32, _>(StandardNormal)).collect()
            };
            (name, shape, bytemuck::cast_slice(&values).to_vec())
        })
        .collect();
    let views = data
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Other(e.to_string()))?;
    let weights = safetensors::serialize(views, None).map_err(|e| CliError::Other(e.to_string()))?;
    let files = ModelFiles {
        config: Some(config.as_bytes()),
        weights: Some(&weights),
        preprocessor: None,
    };
    Ok(Model::load(files, &LoadOptions::default())
        .map_err(|e| CliError::Other(e.to_string()))?
        .net)
}

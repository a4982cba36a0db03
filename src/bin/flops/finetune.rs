//! `flops finetune` and `flops eval`: forward-only fine-tuning and evaluation.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use flops_web::backend::cpu::CpuBackend;
use flops_web::backend::gpu::GpuBackend;
use flops_web::learn::backend::Backend;
use flops_web::learn::data::Examples;
use flops_web::learn::data::{Dataset, Skipped};
use flops_web::learn::estimate::EstimatorKind;
use flops_web::learn::options::TrainOptions;
use flops_web::learn::trainer::{evaluate, EvalResult, TrainConfig, Trainer};
use flops_web::learn::tuning::{Perturb, Tuning};
use flops_web::learn::LearnError;
use flops_web::model::{LoadOptions, Model};
use serde::Serialize;

use crate::model_dir::{load_model_with, read_file, CliError};

#[derive(Args)]
pub struct DataArgs {
    /// Model folder; default: the embedded MNIST model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A folder with one subfolder of images per class; default: the embedded Animal-Shape set
    /// (its train split trains, its test split validates).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Share of each class held out for validation when --data is a folder.
    #[arg(long, default_value_t = defaults().validation_fraction)]
    val_fraction: f64,
}

#[derive(Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Gradient estimator: lr (likelihood ratio, activation noise), spsa (two-point weight
    /// perturbation) or es (one-sided weight perturbation).
    #[arg(long, default_value_t = defaults().estimator,
          value_parser = clap::builder::PossibleValuesParser::new(EstimatorKind::NAMES))]
    estimator: String,
    /// Query allocator: flops, uniform, neyman or bernoulli.
    #[arg(long, default_value_t = defaults().allocator)]
    allocator: String,
    /// Perturbed queries per data point on average (n_bar); the step budget is batch * n_bar.
    #[arg(long, default_value_t = defaults().queries_per_point)]
    budget: usize,
    #[arg(long, default_value_t = defaults().batch)]
    batch: usize,
    /// Optimiser steps [default: 200] (or use --epochs).
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    /// What to tune: head, or last:K (the last K blocks, the final LayerNorm and the head).
    #[arg(long, default_value = "head")]
    tune: Tuning,
    /// Base learning rate.
    #[arg(long, default_value_t = defaults().learning_rate)]
    lr: f32,
    /// adam or sgd (momentum 0.9).
    #[arg(long, default_value_t = defaults().optimizer,
          value_parser = clap::builder::PossibleValuesParser::new(TrainOptions::OPTIMIZERS))]
    optimizer: String,
    /// Learning-rate schedule: cosine (decay to 0 over the run) or constant.
    #[arg(long, default_value_t = defaults().schedule,
          value_parser = clap::builder::PossibleValuesParser::new(TrainOptions::SCHEDULES))]
    schedule: String,
    /// Clip the gradient to this global norm [default: 5]; 0: no clipping.
    #[arg(long)]
    clip_norm: Option<f32>,
    /// Noise scale: LR and ES sigma, or SPSA eps.
    #[arg(long, default_value_t = defaults().noise_scale)]
    sigma: f32,
    /// One-sided LR instead of antithetic pairs.
    #[arg(long, conflicts_with = "antithetic")]
    no_antithetic: bool,
    /// Antithetic pairs (the default; for presets that are one-sided).
    #[arg(long)]
    antithetic: bool,
    /// LR: joint (every tuned site in every query) or site (one site per query; the budget is
    /// split over image x site cells: --budget must give each cell a query, or a pair).
    #[arg(long, default_value_t = defaults().perturb,
          value_parser = clap::builder::PossibleValuesParser::new(Perturb::NAMES))]
    perturb: String,
    /// LR: --sigma relative to each site's clean activation RMS.
    #[arg(long)]
    relative_noise: bool,
    /// The classifier head's learning rate, when it should differ from --lr (which then
    /// applies to the tuned blocks and norms).
    #[arg(long)]
    head_lr: Option<f32>,
    /// LR with --tune last:K: the head's and final LayerNorm's gradient exactly from the clean
    /// pass (no backward pass through the network); every query goes to the blocks. CPU only.
    #[arg(long)]
    exact_head: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validate every this many steps (and at the end).
    #[arg(long, default_value_t = defaults().eval_every)]
    eval_every: usize,
    /// Where to write the fine-tuned model (HF layout) and log.jsonl.
    #[arg(long)]
    out: PathBuf,
    /// No progress bar (the JSON-lines log is still written).
    #[arg(long)]
    quiet: bool,
    /// A recipe whose settings the other flags given override: quick (the defaults: the head,
    /// about a second) or best (the last block and the head, site-wise; minutes; see
    /// docs/results.md).
    #[arg(long, default_value = "quick",
          value_parser = clap::builder::PossibleValuesParser::new(TrainOptions::PRESETS))]
    preset: String,
    /// Where the forward passes, gradient and optimiser run: cpu (the fast CPU path: GEMM
    /// kernels), cpu-reference (the plain-loop oracle) or gpu (wgpu: Vulkan, Metal, DX12; on a
    /// machine without a GPU, lavapipe).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cpu-reference", "gpu"])]
    backend: String,
}

/// The defaults the page uses too.
fn defaults() -> TrainOptions {
    TrainOptions::default()
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
}

fn learn_err(e: LearnError) -> CliError {
    CliError::Other(e.to_string())
}

/// Reads `dir/<class>/<image>` files; unreadable or undecodable files are reported and skipped.
fn read_folder(dir: &Path) -> Result<(Dataset, Vec<Skipped>), CliError> {
    let io = |p: &Path, e: std::io::Error| CliError::Io {
        path: p.to_owned(),
        message: e.to_string(),
    };
    let mut files: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut classes: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io(dir, e))?;
    classes.sort_by_key(|e| e.file_name());
    for class in classes.into_iter().filter(|e| e.path().is_dir()) {
        let name = class.file_name().to_string_lossy().into_owned();
        let mut entries: Vec<_> = std::fs::read_dir(class.path())
            .map_err(|e| io(&class.path(), e))?
            .collect::<Result<_, _>>()
            .map_err(|e| io(&class.path(), e))?;
        entries.sort_by_key(|e| e.file_name());
        for f in entries.into_iter().filter(|e| e.path().is_file()) {
            let bytes = read_file(&f.path())?;
            files.push((name.clone(), f.path().display().to_string(), bytes));
        }
    }
    let (ds, skipped) =
        Dataset::from_files(files.iter().map(|(c, n, b)| (c.as_str(), n.as_str(), b.as_slice()))).map_err(learn_err)?;
    ds.check_trainable().map_err(|e| CliError::Io {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    Ok((ds, skipped))
}

/// (train, validation) and the model with a head for the data's classes.
fn load(args: &DataArgs, head_seed: u64) -> Result<(Model, Dataset, Dataset), CliError> {
    let (train, val) = match &args.data {
        None => Dataset::animal_shape().map_err(learn_err)?,
        Some(dir) => {
            let (ds, skipped) = read_folder(dir)?;
            for s in &skipped {
                eprintln!("warning: skipped {}: {}", s.name, s.reason);
            }
            ds.split(args.val_fraction, head_seed)
        }
    };
    let opts = LoadOptions {
        labels: Some(train.classes.clone()),
        head_seed,
    };
    let model = load_model_with(args.model.as_deref(), &opts)?;
    Ok((model, train, val))
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum LogLine<'a> {
    Config {
        config: &'a TrainConfig,
        train_images: usize,
        val_images: usize,
        classes: &'a [String],
    },
    Step(&'a flops_web::learn::trainer::StepEvent),
    Eval {
        step: usize,
        queries: u64,
        loss: f32,
        accuracy: f32,
    },
}

/// The run's options: the preset's, with every flag given on the command line on top
/// (`matches`: the subcommand's, to tell given flags from defaults), through the one overlay
/// the page uses too ([`TrainOptions::from_json`]).
fn options_of(args: &FinetuneArgs, matches: Option<&ArgMatches>, train_len: usize) -> Result<TrainOptions, CliError> {
    use serde_json::{json, Value};
    let given = |id: &str| matches.and_then(|m| m.value_source(id)) == Some(ValueSource::CommandLine);
    let tuned_layers = match args.tune {
        Tuning::Head => 0,
        Tuning::Last(k) => k,
    };
    // (flag id, option key, value) of every flag that maps onto one option.
    let flags: [(&str, &str, Value); 15] = [
        ("estimator", "estimator", json!(args.estimator)),
        ("no_antithetic", "antithetic", json!(false)),
        ("antithetic", "antithetic", json!(true)),
        ("allocator", "allocator", json!(args.allocator)),
        ("budget", "queriesPerPoint", json!(args.budget)),
        ("batch", "batch", json!(args.batch)),
        ("lr", "learningRate", json!(args.lr)),
        ("sigma", "noiseScale", json!(args.sigma)),
        ("perturb", "perturb", json!(args.perturb)),
        ("relative_noise", "relativeNoise", json!(true)),
        ("head_lr", "headLearningRate", json!(args.head_lr)),
        ("exact_head", "exactHead", json!(true)),
        ("tune", "tunedLayers", json!(tuned_layers)),
        ("optimizer", "optimizer", json!(args.optimizer)),
        ("schedule", "schedule", json!(args.schedule)),
    ];
    let mut given_options = serde_json::Map::new();
    given_options.insert("preset".into(), json!(args.preset));
    for (id, key, value) in flags {
        if given(id) {
            given_options.insert(key.into(), value);
        }
    }
    if let Some(c) = args.clip_norm {
        given_options.insert("clipNorm".into(), if c == 0.0 { Value::Null } else { json!(c) });
    }
    if given("eval_every") {
        given_options.insert("evalEvery".into(), json!(args.eval_every));
    }
    given_options.insert("seed".into(), json!(args.seed));
    given_options.insert("validationFraction".into(), json!(args.data.val_fraction));
    let mut o = TrainOptions::from_json(Value::Object(given_options)).map_err(learn_err)?;
    if let Some(steps) = args
        .steps
        .or(args.epochs.map(|e| e * train_len.div_ceil(o.batch.max(1))))
    {
        o.steps = steps;
    }
    Ok(o)
}

pub fn run_finetune(args: FinetuneArgs, matches: Option<&ArgMatches>) -> Result<(), CliError> {
    let (model, train, val) = load(&args.data, args.seed)?;
    let options = options_of(&args, matches, train.len())?;
    let config = options.to_config(args.seed).map_err(learn_err)?;
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::Io {
        path: args.out.clone(),
        message: e.to_string(),
    })?;
    let log_path = args.out.join("log.jsonl");
    let mut log = std::fs::File::create(&log_path).map_err(|e| CliError::Io {
        path: log_path.clone(),
        message: e.to_string(),
    })?;
    let mut write = |line: &LogLine| -> Result<(), CliError> {
        let s = serde_json::to_string(line).map_err(|e| CliError::Other(e.to_string()))?;
        writeln!(log, "{s}").map_err(|e| CliError::Io {
            path: log_path.clone(),
            message: e.to_string(),
        })
    };
    write(&LogLine::Config {
        config: &config,
        train_images: train.len(),
        val_images: val.len(),
        classes: &train.classes,
    })?;

    let pre = model.preprocessor.clone();
    let train_p = Examples::prepare(&train, &pre).map_err(learn_err)?;
    let val_p = Examples::prepare(&val, &pre).map_err(learn_err)?;
    let ctx = Run {
        layout: model.layout,
        pre,
        steps: options.steps,
        eval_every: options.eval_every,
        out: &args.out,
        quiet: args.quiet,
    };
    let backend: Box<dyn Backend> = if args.backend == "gpu" {
        let gpu = flops_web::gpu::GpuContext::new_blocking(&Default::default())
            .map_err(|e| CliError::Other(e.to_string()))?;
        eprintln!("training on {}", gpu.summary().name);
        Box::new(GpuBackend::new(std::sync::Arc::new(gpu), model.net).map_err(learn_err)?)
    } else if args.backend == "cpu-reference" {
        Box::new(CpuBackend::new(model.net))
    } else {
        Box::new(CpuBackend::fast(model.net))
    };
    train_loop(
        Trainer::new(backend, config, train_p).map_err(learn_err)?,
        &val_p,
        &ctx,
        &mut write,
    )
}

/// What the training loop needs besides the trainer.
struct Run<'a> {
    layout: flops_web::model::Layout,
    pre: flops_web::model::Preprocessor,
    steps: usize,
    eval_every: usize,
    out: &'a Path,
    quiet: bool,
}

fn train_loop(
    mut trainer: Trainer,
    val_p: &Examples,
    run: &Run,
    write: &mut dyn FnMut(&LogLine) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let steps = run.steps;
    let bar = if run.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(steps as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut failure = None;
    let mut last_val: Option<EvalResult> = None;
    for s in 0..steps {
        match pollster::block_on(trainer.step()) {
            Ok(ev) => {
                write(&LogLine::Step(&ev))?;
                bar.set_message(format!(
                    "loss {:.3} batch acc {:.2} {:.0} q/s{}",
                    ev.loss,
                    ev.accuracy,
                    ev.queries_per_second,
                    last_val
                        .as_ref()
                        .map(|v| format!(" val acc {:.3}", v.accuracy))
                        .unwrap_or_default()
                ));
                bar.inc(1);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if (s + 1) % run.eval_every.max(1) == 0 || s + 1 == steps {
            let r = pollster::block_on(evaluate(trainer.backend.as_mut(), val_p, 64)).map_err(learn_err)?;
            write(&LogLine::Eval {
                step: trainer.step,
                queries: trainer.queries,
                loss: r.loss,
                accuracy: r.accuracy,
            })?;
            last_val = Some(r);
        }
    }
    bar.finish_and_clear();
    // The parameters are the last good ones even after a failure: export them either way.
    let net = pollster::block_on(trainer.backend.network())
        .map_err(learn_err)?
        .clone();
    let tuned = Model {
        net,
        preprocessor: run.pre.clone(),
        layout: run.layout,
    };
    let exported = tuned.export().map_err(|e| CliError::Other(e.to_string()))?;
    for (name, bytes) in [
        ("model.safetensors", exported.weights.as_slice()),
        ("config.json", exported.config.as_bytes()),
        ("preprocessor_config.json", exported.preprocessor.as_bytes()),
    ] {
        let p = run.out.join(name);
        std::fs::write(&p, bytes).map_err(|e| CliError::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
    }
    if let Some(e) = failure {
        return Err(CliError::Other(format!(
            "{e}; the last good model is in {}",
            run.out.display()
        )));
    }
    let v = last_val.map(|v| v.accuracy).unwrap_or(f32::NAN);
    eprintln!(
        "done: {} steps, {} queries (clean passes included), validation accuracy {:.3}; model and log.jsonl in {}",
        trainer.step,
        trainer.queries,
        v,
        run.out.display()
    );
    Ok(())
}

#[derive(Serialize)]
struct EvalOut<'a> {
    images: usize,
    loss: f32,
    accuracy: f32,
    labels: &'a [String],
    per_class_accuracy: Vec<f32>,
    confusion: &'a [Vec<usize>],
}

pub fn run_eval(args: EvalArgs) -> Result<(), CliError> {
    let (model, _train, val) = {
        // Evaluate with the model's own head when its labels match the data's.
        let model = load_model_with(args.data.model.as_deref(), &LoadOptions::default())?;
        let (train, val) = match &args.data.data {
            None => Dataset::animal_shape().map_err(learn_err)?,
            Some(dir) => {
                let (ds, _) = read_folder(dir)?;
                (Dataset::default(), ds)
            }
        };
        if model.labels() != val.classes {
            return Err(CliError::Other(format!(
                "the model's labels {:?} differ from the data's classes {:?}",
                model.labels(),
                val.classes
            )));
        }
        (model, train, val)
    };
    let labels = model.labels();
    let val_p = Examples::prepare(&val, &model.preprocessor).map_err(learn_err)?;
    let mut backend = CpuBackend::fast(model.net);
    let r = pollster::block_on(evaluate(&mut backend, &val_p, 64)).map_err(learn_err)?;
    let per_class = r
        .confusion
        .iter()
        .enumerate()
        .map(|(i, row)| row[i] as f32 / row.iter().sum::<usize>().max(1) as f32)
        .collect();
    let out = EvalOut {
        images: val.len(),
        loss: r.loss,
        accuracy: r.accuracy,
        labels: &labels,
        per_class_accuracy: per_class,
        confusion: &r.confusion,
    };
    println!(
        "{}",
        serde_json::to_string(&out).map_err(|e| CliError::Other(e.to_string()))?
    );
    Ok(())
}

//! `flops bench learn`: how the allocators compare at equal cost, on the embedded model and
//! Animal-Shape, for the site-wise last-block recipe (the `best` preset's settings unless
//! flags say otherwise). Prints one JSON object (and writes it with `--out`).
//!
//! (a) Gradient variance: a reference run (uniform over cells) is trained to each checkpoint;
//!     there every variant estimates the gradient of the same fixed batches `repeats` times
//!     (after `warmup` estimates on other batches, so the learned allocators have learned).
//!     The estimators are unbiased, so each variant's MSE against the exact batch gradient is
//!     its trace covariance, estimated by the sample variance of the repeats around their
//!     mean: reported per batch, with the ratio to uniform over cells and a
//!     bootstrap 90% interval over batches, and the site-level gain an exact Neyman split of
//!     the measured per-group variances would give, `sum V_g sum c_g / (sum sqrt(V_g c_g))^2`.
//! (b) Learning at equal FLOPs: uniform over cells trains `seeds` runs of `steps` steps, every
//!     other variant as many steps as the same FLOPs buy it (one step of each is costed on the
//!     same batch first); validation accuracy `steps / eval_every` times along the run against
//!     cumulative forward passes and FLOPs; mean and spread over seeds; the FLOPs each variant
//!     needs to reach uniform over cells' final mean accuracy, as a share of uniform's, with a
//!     bootstrap interval over seeds.

use std::path::PathBuf;

use clap::Args;
use flops_web::backend::cpu::CpuBackend;
use flops_web::learn::data::{Dataset, Examples};
use flops_web::learn::options::TrainOptions;
use flops_web::learn::trainer::Trainer;
use flops_web::learn::LearnError;
use flops_web::model::{LoadOptions, Model, ModelFiles, ViTForImageClassification};
use pollster::block_on;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::model_dir::CliError;

#[derive(Args)]
pub struct LearnArgs {
    /// Checkpoints (steps of the reference run) where the gradient variance is measured.
    #[arg(long, value_delimiter = ',', default_values_t = [0usize, 100, 400])]
    checkpoints: Vec<usize>,
    /// Fixed batches per checkpoint.
    #[arg(long, default_value_t = 8)]
    batches: usize,
    /// Estimates per batch and variant.
    #[arg(long, default_value_t = 8)]
    repeats: usize,
    /// Estimates on other batches before measuring, for the learned allocators.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Learning runs per variant (0: skip part b).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Steps of each learning run.
    #[arg(long, default_value_t = 400)]
    steps: usize,
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Queries per image (n_bar).
    #[arg(long, default_value_t = 64)]
    budget: usize,
    /// Learning rate of the learning runs.
    #[arg(long, default_value_t = 0.003)]
    lr: f32,
    /// Variants: joint (LR, uniform over images, every site per query: the old reference),
    /// uniform, flops, neyman, bernoulli (site-wise LR over cells), exact (uniform over the
    /// blocks' cells, the head's gradient exact from the clean pass), single (site-wise, one
    /// query per cell and step: the "multi-query paradox" baseline), spsa, es (weight space,
    /// uniform over images, noise 0.01).
    #[arg(long, value_delimiter = ',', default_values = ["joint", "uniform", "flops", "neyman"])]
    variants: Vec<String>,
    /// Stress set: this share of the training labels replaced by a different class (seeded),
    /// the validation labels kept.
    #[arg(long, default_value_t = 0.0)]
    label_noise: f64,
    /// Also write the JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report {
    command: String,
    settings: Settings,
    variance: Vec<Checkpoint>,
    learning: Vec<Curve>,
    machine: String,
}

#[derive(Serialize)]
struct Settings {
    batch: usize,
    queries_per_image: usize,
    noise: f32,
    tuning: &'static str,
    batches: usize,
    repeats: usize,
    warmup: usize,
    label_noise: f64,
}

#[derive(Serialize)]
struct Checkpoint {
    step: usize,
    variants: Vec<VarianceRow>,
    /// Per site group: the uniform-over-cells trace covariance and the query cost.
    group_variance: Vec<f64>,
    group_cost: Vec<f64>,
    /// The exact Neyman split of those variances over sites, against uniform.
    predicted_site_gain: f64,
}

#[derive(Serialize)]
struct VarianceRow {
    variant: String,
    /// Mean over batches of the trace covariance of one estimate (= its MSE).
    mse: f64,
    /// uniform-over-cells MSE / this MSE, and a bootstrap 90% interval over batches.
    gain: f64,
    gain_interval: [f64; 2],
    /// Mean cosine of one estimate with its batch's mean estimate.
    cosine: f64,
    /// Forward FLOPs of one estimate: clean passes and queries (frozen prefixes not counted).
    flops_per_estimate: f64,
    /// The gain per FLOP: `gain` x uniform's FLOPs per estimate / this variant's.
    gain_equal_flops: f64,
}

#[derive(Serialize)]
struct Curve {
    variant: String,
    /// Steps of each run: as many as uniform over cells' FLOPs buy this variant.
    steps: usize,
    points: Vec<CurvePoint>,
    final_accuracy: Stat,
    /// Per seed, per evaluation: `[cumulative FLOPs, validation accuracy]`.
    seeds: Vec<Vec<[f64; 2]>>,
    /// Cost to reach uniform over cells' final mean accuracy.
    reach: Option<Reach>,
    seconds: Stat,
}

#[derive(Serialize)]
struct Reach {
    /// Uniform over cells' final mean accuracy.
    target: f64,
    /// FLOPs where the seed-mean curve first reaches it (interpolated between evaluations);
    /// null if it never does.
    flops: Option<f64>,
    /// Those FLOPs over uniform's, and a bootstrap 90% interval over seeds (null: a bound
    /// never reached).
    share_of_uniform: Option<f64>,
    share_interval: [Option<f64>; 2],
}

#[derive(Serialize)]
struct CurvePoint {
    step: usize,
    passes: u64,
    flops: f64,
    accuracy: Stat,
}

#[derive(Serialize, Clone, Copy)]
struct Stat {
    mean: f64,
    sd: f64,
}

fn stat(v: &[f64]) -> Stat {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Stat { mean, sd: var.sqrt() }
}

fn err(e: LearnError) -> CliError {
    CliError::Other(e.to_string())
}

/// A variant's options; `sites` is the number of site groups (one query per cell for
/// `single`).
fn options(args: &LearnArgs, variant: &str, steps: usize, sites: usize) -> Result<TrainOptions, CliError> {
    let mut o = TrainOptions::preset("best").map_err(err)?;
    o.batch = args.batch;
    o.queries_per_point = args.budget;
    o.steps = steps.max(1);
    o.learning_rate = args.lr;
    o.eval_every = 0;
    match variant {
        "joint" => {
            o.perturb = "joint".into();
            o.allocator = "uniform".into();
        }
        a @ ("uniform" | "flops" | "neyman" | "bernoulli") => o.allocator = a.into(),
        "exact" => {
            o.allocator = "uniform".into();
            o.exact_head = true;
        }
        "single" => {
            o.allocator = "uniform".into();
            o.queries_per_point = sites;
        }
        e @ ("spsa" | "es") => {
            o.estimator = e.into();
            o.perturb = "joint".into();
            o.relative_noise = false;
            o.allocator = "uniform".into();
        }
        other => return Err(CliError::Other(format!("unknown variant `{other}`"))),
    }
    Ok(o)
}

fn trainer(net: ViTForImageClassification, o: &TrainOptions, train: &Examples, seed: u64) -> Result<Trainer, CliError> {
    let config = o.to_config(seed).map_err(err)?;
    Trainer::new(Box::new(CpuBackend::fast(net)), config, train.clone()).map_err(err)
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y;
        aa += (x as f64).powi(2);
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-300)
}

/// Per-group element ranges of the flat gradient: the weight and bias of each group's linear
/// sites (the LayerNorms' affine tensors, which several groups feed, are left out).
fn group_ranges(t: &Trainer) -> Result<Vec<Vec<std::ops::Range<usize>>>, CliError> {
    let plan = t.plan();
    let table = t.backend.table();
    let layout = table.layout(&plan.tensors).map_err(CliError::Other)?;
    Ok(plan
        .groups
        .iter()
        .map(|g| {
            g.iter()
                .filter_map(|&s| table.linear(s))
                .flat_map(|l| [Some(l.weight), l.bias])
                .flatten()
                .filter_map(|id| layout.range(id))
                .collect()
        })
        .collect())
}

/// The CPU model and core count (Linux), for the record.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{name}, {cores} cores; one thread used")
}

/// One evaluation of a learning run: step, forward passes, FLOPs, validation accuracy.
type Eval = (usize, u64, f64, f64);

/// A variant's learning curve from its seeds' evaluations.
fn curve(variant: &str, steps: usize, runs: &[Vec<Eval>], secs: &[f64]) -> Curve {
    let mean = |f: &dyn Fn(&Eval) -> f64, i: usize| runs.iter().map(|r| f(&r[i])).sum::<f64>() / runs.len() as f64;
    Curve {
        variant: variant.to_string(),
        steps,
        points: (0..runs[0].len())
            .map(|i| CurvePoint {
                step: runs[0][i].0,
                passes: mean(&|p| p.1 as f64, i) as u64,
                flops: mean(&|p| p.2, i),
                accuracy: stat(&runs.iter().map(|r| r[i].3).collect::<Vec<_>>()),
            })
            .collect(),
        final_accuracy: stat(&runs.iter().map(|r| r.last().map_or(0.0, |p| p.3)).collect::<Vec<_>>()),
        seeds: runs.iter().map(|r| r.iter().map(|p| [p.2, p.3]).collect()).collect(),
        reach: None,
        seconds: stat(secs),
    }
}

/// The FLOPs at which the seed-mean curve of `seeds` (per seed: `[flops, accuracy]` per
/// evaluation, evaluations aligned, the first at 0 FLOPs) first reaches `target`,
/// interpolated linearly between evaluations; `None` if it never does.
fn flops_to(seeds: &[&Vec<[f64; 2]>], target: f64) -> Option<f64> {
    let k = seeds.len() as f64;
    let mut prev: Option<(f64, f64)> = None;
    for i in 0..seeds[0].len() {
        let f = seeds.iter().map(|s| s[i][0]).sum::<f64>() / k;
        let a = seeds.iter().map(|s| s[i][1]).sum::<f64>() / k;
        if a >= target {
            return Some(match prev {
                Some((f0, a0)) if a > a0 => f0 + (target - a0).max(0.0) / (a - a0) * (f - f0),
                _ => f,
            });
        }
        prev = Some((f, a));
    }
    None
}

/// Each curve's FLOPs to reach uniform over cells' final mean accuracy, as a share of
/// uniform's FLOPs, with a bootstrap 90% interval over seeds (uniform's seeds and the
/// variant's resampled apart; a resample that never reaches counts as infinite).
fn reach_uniform_final(learning: &mut [Curve], rng: &mut StdRng) {
    let Some(u) = learning.iter().find(|c| c.variant == "uniform") else {
        return;
    };
    let useeds = u.seeds.clone();
    let final_of = |s: &[&Vec<[f64; 2]>]| {
        let k = s.len() as f64;
        let last = s[0].len() - 1;
        (
            s.iter().map(|x| x[last][1]).sum::<f64>() / k,
            s.iter().map(|x| x[last][0]).sum::<f64>() / k,
        )
    };
    let all_u: Vec<&Vec<[f64; 2]>> = useeds.iter().collect();
    let (target, budget) = final_of(&all_u);
    for c in learning.iter_mut() {
        let all: Vec<&Vec<[f64; 2]>> = c.seeds.iter().collect();
        let share = |s: &[&Vec<[f64; 2]>], u: &[&Vec<[f64; 2]>]| {
            let (t, b) = final_of(u);
            flops_to(s, t).map_or(f64::INFINITY, |f| f / b)
        };
        let mut boot: Vec<f64> = (0..2000)
            .map(|_| {
                let pick =
                    |n: usize, rng: &mut StdRng| -> Vec<usize> { (0..n).map(|_| rng.random_range(0..n)).collect() };
                let s: Vec<&Vec<[f64; 2]>> = pick(all.len(), rng).into_iter().map(|i| all[i]).collect();
                let us: Vec<&Vec<[f64; 2]>> = pick(all_u.len(), rng).into_iter().map(|i| all_u[i]).collect();
                share(&s, &us)
            })
            .collect();
        boot.sort_by(f64::total_cmp);
        let flops = flops_to(&all, target);
        c.reach = Some(Reach {
            target,
            flops,
            share_of_uniform: flops.map(|f| f / budget),
            share_interval: [boot[100], boot[1899]].map(|x| x.is_finite().then_some(x)),
        });
    }
}

pub fn run(args: LearnArgs) -> Result<(), CliError> {
    if args.repeats < 2 || args.batches == 0 || args.batch == 0 {
        return Err(CliError::Other(format!(
            "--repeats must be at least 2 and --batches and --batch at least 1 (got {}, {}, {})",
            args.repeats, args.batches, args.batch
        )));
    }
    let (train, val) = Dataset::animal_shape().map_err(err)?;
    let model = Model::load(
        ModelFiles::embedded(),
        &LoadOptions {
            labels: Some(train.classes.clone()),
            head_seed: 1,
        },
    )
    .map_err(|e| CliError::Other(e.to_string()))?;
    let pre = model.preprocessor.clone();
    let mut train = Examples::prepare(&train, &pre).map_err(err)?;
    let val = Examples::prepare(&val, &pre).map_err(err)?;
    if args.label_noise > 0.0 {
        let classes = model.net.config.num_labels();
        let mut noise = StdRng::seed_from_u64(23);
        for y in &mut train.labels {
            if noise.random_bool(args.label_noise.min(1.0)) {
                *y = (*y + noise.random_range(1..classes)) % classes;
            }
        }
    }

    let tuning = TrainOptions::preset("best")
        .and_then(|o| o.to_config(0))
        .map_err(err)?
        .tuning;
    let sites = tuning.lr_sites(model.net.vit.layers.len()).len();

    // (a) Gradient variance at checkpoints of a uniform-over-cells reference run.
    let mut variance = Vec::new();
    let mut checkpoints = args.checkpoints.clone();
    checkpoints.sort_unstable();
    let last = checkpoints.last().copied().unwrap_or(0);
    let mut reference = trainer(model.net.clone(), &options(&args, "uniform", last, sites)?, &train, 0)?;
    let mut rng = StdRng::seed_from_u64(17);
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rng);
    let fixed: Vec<Vec<usize>> = order
        .chunks(args.batch)
        .take(args.batches)
        .map(|c| c.to_vec())
        .collect();
    for &cp in &checkpoints {
        while reference.step < cp {
            block_on(reference.step()).map_err(err)?;
        }
        let net = block_on(reference.backend.network()).map_err(err)?.clone();
        eprintln!("checkpoint {cp}: measuring {} variants", args.variants.len());
        let mut rows: Vec<(String, Vec<f64>, f64, f64)> = Vec::new();
        let (mut group_variance, mut group_cost) = (Vec::new(), Vec::new());
        for v in &args.variants {
            let mut t = trainer(net.clone(), &options(&args, v, last.max(1), sites)?, &train, 1)?;
            for w in 0..args.warmup {
                let idx: Vec<usize> = (0..args.batch).map(|_| rng.random_range(0..t.train_len())).collect();
                block_on(t.estimate(&idx, 1_000_000 + w as u32)).map_err(err)?;
            }
            let ranges = group_ranges(&t)?;
            let (mut per_batch, mut cos, mut flops) = (Vec::new(), Vec::new(), 0.0);
            let mut groups = vec![0.0f64; ranges.len()];
            for (bi, idx) in fixed.iter().enumerate() {
                let mut est = Vec::new();
                for r in 0..args.repeats {
                    let e = block_on(t.estimate(idx, (bi * 1000 + r) as u32)).map_err(err)?;
                    flops += e.flops;
                    est.push(e.gradient);
                }
                let n = est[0].len();
                let k = est.len() as f64;
                let mean: Vec<f64> = (0..n)
                    .map(|j| est.iter().map(|e| e[j] as f64).sum::<f64>() / k)
                    .collect();
                let var_of = |j: usize| est.iter().map(|e| (e[j] as f64 - mean[j]).powi(2)).sum::<f64>() / (k - 1.0);
                per_batch.push((0..n).map(var_of).sum::<f64>());
                for (g, rs) in ranges.iter().enumerate() {
                    groups[g] += rs.iter().flat_map(|r| r.clone()).map(var_of).sum::<f64>() / fixed.len() as f64;
                }
                cos.extend(est.iter().map(|e| cosine(e, &mean)));
            }
            if v == "uniform" {
                group_variance = groups;
                group_cost = (0..ranges.len()).map(|g| t.query_cost(g)).collect();
            }
            let c = cos.iter().sum::<f64>() / cos.len().max(1) as f64;
            let per = flops / (fixed.len() * args.repeats).max(1) as f64;
            rows.push((v.clone(), per_batch, c, per));
        }
        let uniform = rows.iter().find(|r| r.0 == "uniform").map(|r| r.1.clone());
        let uniform_flops = rows.iter().find(|r| r.0 == "uniform").map_or(f64::NAN, |r| r.3);
        let mut out = Vec::new();
        for (name, per_batch, cos, per) in &rows {
            let mse = per_batch.iter().sum::<f64>() / per_batch.len().max(1) as f64;
            let (gain, interval) = match &uniform {
                Some(u) => {
                    let ratio = |ix: &[usize]| {
                        ix.iter().map(|&i| u[i]).sum::<f64>() / ix.iter().map(|&i| per_batch[i]).sum::<f64>()
                    };
                    let all: Vec<usize> = (0..u.len()).collect();
                    let mut boot: Vec<f64> = (0..1000)
                        .map(|_| {
                            let ix: Vec<usize> = (0..u.len()).map(|_| rng.random_range(0..u.len())).collect();
                            ratio(&ix)
                        })
                        .collect();
                    boot.sort_by(f64::total_cmp);
                    (ratio(&all), [boot[50], boot[949]])
                }
                None => (f64::NAN, [f64::NAN; 2]),
            };
            out.push(VarianceRow {
                variant: name.clone(),
                mse,
                gain,
                gain_interval: interval,
                cosine: *cos,
                flops_per_estimate: *per,
                gain_equal_flops: gain * uniform_flops / per,
            });
        }
        let c_sum: f64 = group_cost.iter().sum();
        let v_sum: f64 = group_variance.iter().sum();
        let root: f64 = group_variance
            .iter()
            .zip(&group_cost)
            .map(|(v, c)| (v * c).sqrt())
            .sum();
        variance.push(Checkpoint {
            step: cp,
            variants: out,
            predicted_site_gain: v_sum * c_sum / (root * root).max(1e-300),
            group_variance,
            group_cost,
        });
    }

    // (b) Learning curves at equal FLOPs: uniform over cells first, for `steps` steps; every
    // other variant for as many steps as that budget buys it.
    let mut learning = Vec::new();
    let mut order: Vec<&String> = args.variants.iter().filter(|v| *v == "uniform").collect();
    order.extend(args.variants.iter().filter(|v| *v != "uniform"));
    let evals = (args.steps / args.eval_every.max(1)).max(1);
    let probe: Vec<usize> = (0..args.batch.min(train.len())).collect();
    let mut uniform_step = None;
    for v in order {
        if args.seeds == 0 {
            break;
        }
        let mut o = options(&args, v, args.steps, sites)?;
        // The forward FLOPs of one step (frozen prefixes apart: every variant pays those once
        // per image).
        let step_flops = block_on(trainer(model.net.clone(), &o, &train, 0)?.estimate(&probe, 0))
            .map_err(err)?
            .flops;
        let reference = *uniform_step.get_or_insert(step_flops);
        o.steps = ((args.steps as f64 * reference / step_flops).round() as usize).max(1);
        let mut runs: Vec<Vec<Eval>> = Vec::new();
        let mut secs = Vec::new();
        for seed in 0..args.seeds {
            eprintln!("learning: {v}, seed {seed}, {} steps", o.steps);
            let t0 = std::time::Instant::now();
            let mut t = trainer(model.net.clone(), &o, &train, seed)?;
            // The untrained accuracy at 0 FLOPs, where every curve starts.
            let acc = block_on(t.evaluate(&val)).map_err(err)?.accuracy as f64;
            let mut pts = vec![(0, 0, 0.0, acc)];
            for j in 1..=evals {
                let until = (o.steps * j).div_ceil(evals);
                while t.step < until {
                    block_on(t.step()).map_err(err)?;
                }
                let acc = block_on(t.evaluate(&val)).map_err(err)?.accuracy as f64;
                pts.push((t.step, t.queries, t.flops, acc));
            }
            secs.push(t0.elapsed().as_secs_f64());
            runs.push(pts);
        }
        learning.push(curve(v, o.steps, &runs, &secs));
    }
    reach_uniform_final(&mut learning, &mut rng);
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        settings: Settings {
            batch: args.batch,
            queries_per_image: args.budget,
            noise: 0.01,
            tuning: "last:1, site-wise, one-sided LR, noise 0.01 x activation RMS",
            batches: args.batches,
            repeats: args.repeats,
            warmup: args.warmup,
            label_noise: args.label_noise,
        },
        variance,
        learning,
        machine: machine(),
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| CliError::Other(e.to_string()))?;
    if let Some(p) = &args.out {
        std::fs::write(p, &json).map_err(|e| CliError::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
    }
    println!("{json}");
    Ok(())
}

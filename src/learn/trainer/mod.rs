//! The training loop: clean pass, allocation, queries, unbiased estimate, optimiser step,
//! allocator update; per-step metrics as a typed event. `recovery`: checkpoints, moving a
//! run to another backend, the divergence guard.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::allocate::{make_allocator, Allocator, AllocatorKind, BatchStats, Budget, Feedback};
use super::backend::{Backend, Batch, StepPlan};
use super::cells::SiteSplit;
use super::data::Examples;
use super::error::LearnError;
use super::estimate::{Estimator, EstimatorKind, Results, Space};
use super::exact_head::ExactHead;
use super::optim::{Optimizer, OptimizerConfig};
use super::tuning::{Perturb, Tuning};
use crate::model::nn::softmax;
use crate::model::perturb::site_stats;
use crate::model::{LinearSite, ViTForImageClassification};

mod recovery;

pub use recovery::DivergenceGuard;

/// Everything that defines a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub estimator: EstimatorKind,
    pub allocator: AllocatorKind,
    /// Perturbed queries per data point on average (`n_bar`); the budget is `B * n_bar`.
    pub queries_per_point: usize,
    pub batch: usize,
    pub steps: usize,
    pub tuning: Tuning,
    /// LR: which sites one query perturbs (all, or one: the budget is then split over
    /// data point x site cells).
    #[serde(default)]
    pub perturb: Perturb,
    /// LR: the noise scale relative to each site's clean activation RMS (measured on the
    /// first training images at the start), not absolute.
    #[serde(default)]
    pub relative_noise: bool,
    /// The classifier head's base learning rate when it differs from the rest's
    /// (`optimizer.lr`); the schedule scales both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_lr: Option<f32>,
    /// LR, blocks tuned: the head's (and final LayerNorm's) gradient exactly from the clean
    /// pass ([`super::exact_head`]); every query goes to the blocks.
    #[serde(default)]
    pub exact_head: bool,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
}

/// Images whose activations set the per-site noise scales of a `relative_noise` run.
const RMS_IMAGES: usize = 32;

/// One training step's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub step: usize,
    pub epoch: usize,
    /// Mean clean loss of the batch (before the update).
    pub loss: f32,
    /// Batch accuracy of the clean pass.
    pub accuracy: f32,
    /// Cumulative forward passes: perturbed queries plus clean passes.
    pub queries: u64,
    /// Cumulative forward FLOPs of those passes, each counted from where it starts (frozen
    /// prefixes once per image, a late site's query from that site).
    pub flops: f64,
    pub queries_per_second: f64,
    /// Queries of each data point, with the point's clean loss.
    pub allocation: Vec<usize>,
    /// Site-wise runs: queries of each site group this step (empty when joint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub site_allocation: Vec<usize>,
    pub clean_losses: Vec<f32>,
    pub allocator_params: Vec<(String, f64)>,
    pub grad_norm: f32,
    pub lr: f32,
    /// Training images met so far: each one's frozen prefix is computed when first met (and
    /// kept by the backend up to its cache's size), so steps are slower until all are.
    #[serde(default)]
    pub images_seen: usize,
}

/// Evaluation on a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub loss: f32,
    pub accuracy: f32,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Wall-clock seconds (monotonic natively; `performance.now()`-free fallback on wasm).
fn now_seconds() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() / 1000.0
    }
}

pub struct Trainer {
    pub backend: Box<dyn Backend>,
    pub config: TrainConfig,
    estimator: Box<dyn Estimator>,
    allocator: Box<dyn Allocator + Send>,
    /// Site-wise runs: the site factor of the cell allocation.
    sites: Option<SiteSplit>,
    /// `exact_head` runs: the head, stepped from its exact gradient.
    head: Option<ExactHead>,
    /// Every tuned tensor (the plan's, and the exact head's), sorted.
    tuned: Vec<u32>,
    /// FLOPs of one query of each site group; of one image's clean pass from the first tuned
    /// block; of its frozen prefix.
    query_cost: Vec<f64>,
    clean_cost: f64,
    prefix_cost: f64,
    /// Images whose frozen prefix was counted.
    prefixed: Vec<bool>,
    optimizer: Optimizer,
    plan_template: StepPlan,
    tuned_parameters: usize,
    budget: Budget,
    train: Examples,
    num_labels: usize,
    order: Vec<usize>,
    cursor: usize,
    rng: StdRng,
    pub step: usize,
    pub epoch: usize,
    pub queries: u64,
    pub flops: f64,
    started: f64,
    /// The step of the last [`Trainer::checkpoint`] (0: the start) and the tuned tensors then,
    /// flat in `tuned` order: what [`Trainer::move_to`] continues from.
    last_good: (usize, Vec<f32>),
    /// Take a [`Trainer::checkpoint`] every this many steps, of the weights a step starts from
    /// when its loss is sane (0: never; a device backend pays one readback for each).
    pub checkpoint_every: usize,
    /// Stops a run whose loss grows far past its start ([`DivergenceGuard`]); `None`: off.
    pub guard: Option<DivergenceGuard>,
    /// The first step's batch loss and a moving average of it since, for the guard.
    loss_start: Option<f32>,
    loss_average: f32,
}

/// A gradient estimate without an update ([`Trainer::estimate`]).
#[derive(Debug, Clone)]
pub struct Estimate {
    /// Flat over the tuned tensors.
    pub gradient: Vec<f32>,
    /// Queries per cell (`point * groups + group`).
    pub cells: Vec<usize>,
    /// Forward FLOPs of its clean passes and queries (frozen prefixes of new images not
    /// counted, so that estimates of the same batch compare).
    pub flops: f64,
}

/// One step's queries on a batch, up to the estimate's coefficients.
struct Queried {
    plan: StepPlan,
    coeffs: Vec<f32>,
    /// Per cell, for the allocators.
    measured: Vec<f32>,
    clean_losses: Vec<f32>,
    /// For the exact head: the clean logits, CLS streams entering the final LayerNorm, labels.
    clean_logits: Vec<f32>,
    head_streams: Vec<f32>,
    labels: Vec<usize>,
    proxy: Vec<f32>,
    /// Queries per point (the point allocator's) and per cell.
    alloc: Vec<usize>,
    cells: Vec<usize>,
    correct: usize,
    budget: Budget,
    /// Forward passes (queries and clean) and their FLOPs; the frozen prefixes of images seen
    /// for the first time, apart.
    passes: usize,
    flops: f64,
    prefix_flops: f64,
}

/// The exact head on a backend whose clean pass does not return the head's inputs.
fn exact_head_unsupported(backend: &str) -> LearnError {
    LearnError::Config {
        message: format!(
            "the exact head needs the clean pass's head inputs, which the {backend} backend does not return \
             (use the CPU backend)"
        ),
    }
}

/// Each group's query cost: the forward from its earliest site (with the first tuned block's
/// clean projections reused), as the CPU backend runs it. The cost model of the allocator and
/// the logs; the GPU backend runs every row from the first tuned block.
fn group_costs(net: &ViTForImageClassification, plan: &StepPlan) -> Vec<f64> {
    plan.group_starts(net.vit.layers.len())
        .into_iter()
        .map(|start| net.flops_from(start, start == plan.first_tuned))
        .collect()
}

impl Trainer {
    pub fn new(mut backend: Box<dyn Backend>, config: TrainConfig, train: Examples) -> Result<Self, LearnError> {
        config.estimator.validate()?;
        let estimator = config.estimator.build();
        let layers = backend.host_network().vit.layers.len();
        config.tuning.check(layers)?;
        backend.freeze_below(config.tuning.first_tuned_block(layers));
        let net = backend.host_network();
        if train.len() < 2 {
            return Err(LearnError::Data {
                message: format!("{} training images; need at least 2", train.len()),
            });
        }
        if config.batch == 0 || config.queries_per_point == 0 {
            return Err(LearnError::Config {
                message: "batch and queries per point must be at least 1".into(),
            });
        }
        let unit = estimator.unit();
        let budget = Budget {
            total: config.batch * config.queries_per_point,
            min_per_point: unit,
            unit,
        };
        budget.check(config.batch)?;
        let table = backend.table();
        let mut plan_template = StepPlan::new(estimator.as_ref(), config.tuning, table, config.seed, 0, Vec::new());
        let activation = matches!(plan_template.space, Space::Activation { .. });
        if !activation && (config.perturb != Perturb::Joint || config.relative_noise) {
            return Err(LearnError::Config {
                message: "site-wise perturbation and relative noise need the lr estimator (activation noise)".into(),
            });
        }
        let tuned = plan_template.tensors.clone();
        let head = if config.exact_head {
            if !activation || config.tuning == Tuning::Head {
                return Err(LearnError::Config {
                    message: "the exact head needs the lr estimator and tuned blocks (with the head only tuned, \
                              nothing would be left to perturb)"
                        .into(),
                });
            }
            if !backend.returns_head_streams() {
                return Err(exact_head_unsupported(backend.name()));
            }
            let head_lr = config.head_lr.unwrap_or(config.optimizer.lr) / config.optimizer.lr;
            let head = ExactHead::new(table, config.optimizer, head_lr)?;
            plan_template.sites.retain(|s| *s != LinearSite::Classifier);
            plan_template.tensors.retain(|t| !head.tensors.contains(t));
            Some(head)
        } else {
            None
        };
        plan_template.groups = config.perturb.groups(&plan_template.sites);
        let site_wise = plan_template.groups.len() > 1;
        let stats = (config.relative_noise || site_wise).then(|| {
            let idx: Vec<usize> = (0..train.len().min(RMS_IMAGES)).collect();
            let (pixels, _) = train.gather(&idx);
            site_stats(net, &pixels, &plan_template.sites)
        });
        if let (true, Some(stats)) = (config.relative_noise, &stats) {
            plan_template.site_scales = stats.iter().map(|s| s.rms).collect();
        }
        // Each group's gradient variance per unit of its loss proxy, at its noise scale.
        let sigma = config.estimator.scale();
        let dims: Vec<f64> = plan_template
            .groups
            .iter()
            .map(|g| {
                g.iter()
                    .filter_map(|&site| {
                        let i = plan_template.sites.iter().position(|&x| x == site)?;
                        let s = stats.as_ref()?.get(i)?;
                        Some(s.variance_factor(sigma * plan_template.site_scale(site)))
                    })
                    .sum()
            })
            .collect();
        if let Some(h) = config.head_lr {
            if !(h.is_finite() && h > 0.0) {
                return Err(LearnError::Config {
                    message: format!("head learning rate must be positive, got {h}"),
                });
            }
            let head = [Some(table.classifier.weight), table.classifier.bias];
            plan_template.lr_scales = plan_template
                .tensors
                .iter()
                .map(|t| {
                    if head.contains(&Some(*t)) {
                        h / config.optimizer.lr
                    } else {
                        1.0
                    }
                })
                .collect();
        }
        let query_cost = match plan_template.space {
            Space::Activation { .. } => group_costs(net, &plan_template),
            // A perturbed copy runs the tuned blocks whole.
            Space::Weight { .. } => vec![net.flops_from(plan_template.first_tuned, false)],
        };
        let sites = site_wise.then(|| {
            let adaptive = matches!(config.allocator, AllocatorKind::Flops | AllocatorKind::Neyman);
            SiteSplit::new(query_cost.clone(), dims, adaptive, config.seed ^ 0x517E)
        });
        if let Some(split) = &sites {
            // Every step's batch (the training set's size at most) needs a query in every cell.
            let b = config.batch.min(train.len());
            split.check(
                b,
                Budget {
                    total: b * config.queries_per_point,
                    ..budget
                },
            )?;
        }
        let clean_cost = net.flops_from(plan_template.first_tuned, false);
        let prefix_cost = net.embedding_flops() + net.flops_from(0, false) - clean_cost;
        let n_params = table
            .layout(&tuned)
            .map_err(|message| LearnError::Config { message })?
            .total;
        let num_labels = net.config.num_labels();
        // The host copy is exact before any step.
        let start = {
            let params = net.params();
            tuned
                .iter()
                .flat_map(|&t| params[t as usize].data.iter().copied())
                .collect()
        };
        Ok(Self {
            last_good: (0, start),
            checkpoint_every: 0,
            guard: None,
            loss_start: None,
            loss_average: 0.0,
            allocator: make_allocator(config.allocator, config.seed ^ 0xA110C),
            sites,
            query_cost,
            clean_cost,
            prefix_cost,
            prefixed: vec![false; train.len()],
            estimator,
            optimizer: Optimizer::new(
                config.optimizer,
                table
                    .layout(&plan_template.tensors)
                    .map_err(|message| LearnError::Config { message })?
                    .total,
            )?,
            head,
            tuned,
            tuned_parameters: n_params,
            rng: StdRng::seed_from_u64(config.seed),
            order: Vec::new(),
            cursor: usize::MAX,
            num_labels,
            budget,
            plan_template,
            backend,
            config,
            train,
            step: 0,
            epoch: 0,
            queries: 0,
            flops: 0.0,
            started: now_seconds(),
        })
    }

    /// Tensor ids being tuned.
    pub fn tuned_tensors(&self) -> &[u32] {
        &self.tuned
    }

    /// The number of scalar parameters being tuned.
    pub fn tuned_parameters(&self) -> usize {
        self.tuned_parameters
    }

    fn next_batch(&mut self) -> Vec<usize> {
        let b = self.config.batch.min(self.train.len());
        if self.cursor == usize::MAX || self.cursor + b > self.order.len() {
            if self.cursor != usize::MAX {
                self.epoch += 1;
                self.allocator.set_epoch(self.epoch);
            }
            self.order = (0..self.train.len()).collect();
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        let idx = self.order[self.cursor..self.cursor + b].to_vec();
        self.cursor += b;
        idx
    }

    /// The queries of one step on the training images `idx`, with noise of step id `step`, up
    /// to the estimate's coefficients.
    async fn run_queries(&mut self, idx: &[usize], step: u32) -> Result<Queried, LearnError> {
        let (pixels, labels) = self.train.gather(idx);
        let batch = Batch {
            pixels: &pixels,
            labels: &labels,
        };
        let b = labels.len();
        let budget = Budget {
            total: b * self.config.queries_per_point,
            ..self.budget
        };
        let non_finite = LearnError::NonFinite { step: step as usize };
        let clean = self.backend.clean(&batch).await?;
        if clean.losses.iter().any(|l| !l.is_finite()) {
            return Err(non_finite);
        }
        let head_streams = match (&self.head, clean.head_streams) {
            (None, _) => Vec::new(),
            (Some(_), Some(s)) => s,
            (Some(_), None) => return Err(exact_head_unsupported(self.backend.name())),
        };
        let mut proxy = Vec::with_capacity(b);
        let mut correct = 0usize;
        for (z, &y) in clean.logits.chunks_exact(self.num_labels).zip(&labels) {
            let p = softmax(z);
            proxy.push(
                p.iter()
                    .enumerate()
                    .map(|(k, &pk)| (pk - (k == y) as u8 as f32).powi(2))
                    .sum::<f32>(),
            );
            let argmax = (0..p.len()).max_by(|&a, &c| p[a].total_cmp(&p[c])).unwrap_or(0);
            correct += (argmax == y) as usize;
        }
        let stats = BatchStats {
            losses: &clean.losses,
            variance_proxy: &proxy,
        };
        let alloc = self.allocator.allocate(&stats, budget)?;
        let groups = self.plan_template.groups.len().max(1);
        let cells = match &mut self.sites {
            Some(split) => split.split(&alloc, budget)?,
            None => alloc.clone(),
        };
        let mut plan = self.plan_template.clone();
        plan.step = step;
        plan.queries = self.estimator.plan(&cells, groups);
        let losses = self.backend.query_losses(&batch, &plan).await?;
        if losses.iter().any(|l| !l.is_finite()) {
            return Err(non_finite);
        }
        let results = Results {
            queries: &plan.queries,
            losses: &losses,
            baselines: &clean.losses,
            alloc: &cells,
            groups,
        };
        let coeffs = self.estimator.coefficients(&results);
        let measured = self.estimator.measured_variance(&results);
        let fresh = idx
            .iter()
            .filter(|&&i| !std::mem::replace(&mut self.prefixed[i], true))
            .count();
        let prefix_flops = fresh as f64 * self.prefix_cost;
        let head_flops = if self.head.is_some() {
            ExactHead::flops_per_image(self.backend.host_network())
        } else {
            0.0
        };
        let flops = b as f64 * (self.clean_cost + head_flops)
            + plan
                .queries
                .iter()
                .map(|q| self.query_cost[(q.group as usize).min(self.query_cost.len() - 1)])
                .sum::<f64>();
        Ok(Queried {
            prefix_flops,
            passes: losses.len() + b,
            plan,
            coeffs,
            measured,
            clean_losses: clean.losses,
            clean_logits: clean.logits,
            head_streams,
            labels,
            proxy,
            alloc,
            cells,
            correct,
            budget,
            flops,
        })
    }

    /// The allocators learn from a step's queries (no model queries); returns the queries per
    /// site group (empty when joint).
    fn learn_allocation(&mut self, q: &Queried) -> Vec<usize> {
        let groups = q.plan.groups.len().max(1);
        let mut measured = q.measured.clone();
        let mut site_allocation = Vec::new();
        if let Some(split) = &mut self.sites {
            split.update(&measured);
            measured = split.point_measured(&measured, &q.cells, &q.alloc);
            site_allocation = (0..groups)
                .map(|g| q.cells.iter().skip(g).step_by(groups).sum())
                .collect();
        }
        self.allocator.update(
            &Feedback {
                stats: BatchStats {
                    losses: &q.clean_losses,
                    variance_proxy: &q.proxy,
                },
                allocation: &q.alloc,
                measured: &measured,
            },
            q.budget,
        );
        site_allocation
    }

    /// One gradient estimate on the training images `idx` with the noise of step id `step`,
    /// flat over the tuned tensors, without an update (the allocators still learn from it):
    /// for benchmarks of the estimate's variance (`flops bench learn`).
    pub async fn estimate(&mut self, idx: &[usize], step: u32) -> Result<Estimate, LearnError> {
        let q = self.run_queries(idx, step).await?;
        let mut gradient = self.backend.gradient(&q.plan, &q.coeffs).await?;
        if let Some(head) = &self.head {
            let params = self.backend.read_params(&head.tensors).await?;
            let exact = head.gradient(
                self.backend.host_network(),
                &params,
                &q.head_streams,
                &q.clean_logits,
                &q.labels,
            )?;
            gradient = self.merge(&[(&q.plan.tensors, &gradient), (&head.tensors, &exact)])?;
        }
        self.learn_allocation(&q);
        Ok(Estimate {
            gradient,
            cells: q.cells,
            flops: q.flops,
        })
    }

    /// Flat vectors over sorted tensor lists, merged into one over [`Self::tuned_tensors`].
    fn merge(&self, parts: &[(&[u32], &[f32])]) -> Result<Vec<f32>, LearnError> {
        let table = self.backend.table();
        let layout = |t: &[u32]| table.layout(t).map_err(|message| LearnError::Config { message });
        let full = layout(&self.tuned)?;
        let mut out = vec![0.0f32; full.total];
        for (tensors, flat) in parts {
            let part = layout(tensors)?;
            for (i, &t) in tensors.iter().enumerate() {
                if let Some(r) = full.range(t) {
                    out[r].copy_from_slice(&flat[part.range_at(i)]);
                }
            }
        }
        Ok(out)
    }

    /// The forward FLOPs of one query of site group `g`.
    pub fn query_cost(&self, g: usize) -> f64 {
        self.query_cost.get(g).copied().unwrap_or(0.0)
    }

    /// The number of training images.
    pub fn train_len(&self) -> usize {
        self.train.len()
    }

    /// The plan every step starts from (tuned tensors, sites, groups).
    pub fn plan(&self) -> &StepPlan {
        &self.plan_template
    }

    /// One step. On a non-finite loss or parameter the previous parameters are kept.
    pub async fn step(&mut self) -> Result<StepEvent, LearnError> {
        let idx = self.next_batch();
        let q = self.run_queries(&idx, self.step as u32).await?;
        let loss = q.clean_losses.iter().sum::<f32>() / idx.len() as f32;
        self.watch_loss(loss)?;
        // Checkpoint the weights this loss was measured on (before the update), when sane.
        self.checkpoint_if_due(loss).await?;
        let lr = self.optimizer.config.lr_at(self.step, self.config.steps);
        let non_finite = |r: Result<f32, LearnError>, step| match r {
            Err(LearnError::NonFinite { .. }) => Err(LearnError::NonFinite { step }),
            r => r,
        };
        // The head's new values are written only once the blocks' step succeeded, so that a
        // non-finite step on either side leaves every tensor as it was.
        let head_step = match &mut self.head {
            Some(head) => {
                let r = head
                    .step(
                        self.backend.as_ref(),
                        &q.head_streams,
                        &q.clean_logits,
                        &q.labels,
                        lr,
                        self.step,
                    )
                    .await;
                Some(match r {
                    Err(LearnError::NonFinite { .. }) => return Err(LearnError::NonFinite { step: self.step }),
                    r => r?,
                })
            }
            None => None,
        };
        let r = self.backend.step(&q.plan, &q.coeffs, &mut self.optimizer, lr).await;
        let mut grad_norm = non_finite(r, self.step)?;
        if let (Some(head), Some((params, norm))) = (&self.head, head_step) {
            self.backend.write_params(&head.tensors, &params)?;
            grad_norm = grad_norm.hypot(norm);
        }
        let site_allocation = self.learn_allocation(&q);
        self.queries += q.passes as u64;
        self.flops += q.flops + q.prefix_flops;
        self.step += 1;
        let elapsed = (now_seconds() - self.started).max(1e-9);
        let (b, groups) = (idx.len(), q.plan.groups.len().max(1));
        Ok(StepEvent {
            step: self.step,
            epoch: self.epoch,
            loss,
            accuracy: q.correct as f32 / b as f32,
            queries: self.queries,
            flops: self.flops,
            queries_per_second: self.queries as f64 / elapsed,
            allocation: (0..b)
                .map(|i| q.cells[i * groups..(i + 1) * groups].iter().sum())
                .collect(),
            site_allocation,
            clean_losses: q.clean_losses,
            allocator_params: self
                .allocator
                .params()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .chain(self.sites.iter().flat_map(|s| s.params()))
                .collect(),
            grad_norm,
            lr,
            images_seen: self.prefixed.iter().filter(|&&p| p).count(),
        })
    }

    /// Loss, accuracy and confusion matrix on `data`, in batches on the backend.
    pub async fn evaluate(&mut self, data: &Examples) -> Result<EvalResult, LearnError> {
        evaluate(self.backend.as_mut(), data, self.config.batch.max(16)).await
    }
}

/// Loss, accuracy and confusion matrix of `backend`'s network on `data` (its labels must be
/// the network's classes).
pub async fn evaluate(backend: &mut dyn Backend, data: &Examples, batch: usize) -> Result<EvalResult, LearnError> {
    let num_labels = backend.host_network().config.num_labels();
    let mut confusion = vec![vec![0usize; num_labels]; num_labels];
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(batch.max(1)) {
        let (pixels, labels) = data.gather(idx);
        let out = backend
            .clean(&Batch {
                pixels: &pixels,
                labels: &labels,
            })
            .await?;
        for ((z, &y), &l) in out.logits.chunks_exact(num_labels).zip(&labels).zip(&out.losses) {
            let pred = (0..num_labels).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap_or(0);
            confusion[y][pred] += 1;
            correct += (pred == y) as usize;
            loss += l as f64;
        }
    }
    let n = data.len().max(1) as f64;
    Ok(EvalResult {
        loss: (loss / n) as f32,
        accuracy: (correct as f64 / n) as f32,
        confusion,
    })
}

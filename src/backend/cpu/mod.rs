//! The CPU backend: the reference forward with the same regenerated perturbations as the GPU
//! kernels (crate::noise). It is the test oracle of the GPU backend and the fallback where no
//! WebGPU exists. Blocks below the first tuned block run once per image (frozen prefix).

mod grad;

use std::collections::HashMap;
use std::rc::Rc;

use self::grad::{tuned_norms, Scratch};
use super::{read_host, write_host, FeatureCache};
use crate::learn::backend::{Backend, Batch, BoxFuture, CleanOut, StepPlan};
use crate::learn::estimate::{Query, Space};
use crate::learn::LearnError;
use crate::model::nn::{cross_entropy, Kernels, LayerNorm};
use crate::model::perturb::{perturbed_copy, LrNoiseHook};
use crate::model::{ForwardHook, LinearSite, NoHook, NormSite, ParamTable, ViTForImageClassification};
use crate::noise::Stream;

pub struct CpuBackend {
    /// Its values may change; its structure must not (`ids` are of it).
    pub net: ViTForImageClassification,
    ids: ParamTable,
    /// Per query (LR): what the gradient needs, and the (seed, step, queries) it is of.
    recorded: Vec<QueryRecord>,
    recorded_for: Option<(u64, u32, Vec<Query>)>,
    /// Blocks below `features.first` are not tuned in this run, so each image's residual
    /// stream entering that block is computed once and kept across steps.
    features: FeatureCache<Vec<f32>>,
    /// The last clean pass's streams, for its batch's site-wise queries.
    streams: Option<CleanStreams>,
    /// Whether clean passes keep their streams: set once a plan's queries start past the first
    /// tuned block (joint runs and evaluation keep none).
    keep_streams: bool,
    /// Buffers of the gradient pass, reused across steps.
    scratch: Scratch,
    /// The f64 gradient accumulator, reused across steps.
    grad: Vec<f64>,
}

/// A clean pass's streams ([`StreamCapture`]) per image, with the split and pixels they are of.
struct CleanStreams {
    first: usize,
    pixels: Vec<f32>,
    streams: Vec<Vec<Vec<f32>>>,
}

/// What the gradient needs of one perturbed site in one query.
struct Recorded {
    /// `[rows, in]`: `input[..len]` (the queries of one image share the first tuned block's
    /// clean projection input: one `Rc`, not a copy per query).
    input: Rc<Vec<f32>>,
    len: usize,
    /// `[rows, out]`, unsigned (shared by the two rows of an antithetic pair).
    eps: Rc<Vec<f32>>,
}

/// What the gradient needs of one query.
#[derive(Default)]
struct QueryRecord {
    linear: HashMap<LinearSite, Recorded>,
    /// `x_hat` `[rows, D]` of every LayerNorm that feeds a perturbed site.
    norms: HashMap<NormSite, Rc<Vec<f32>>>,
}

impl Recorded {
    fn input(&self) -> &[f32] {
        &self.input[..self.len]
    }
}

/// Adds LR noise and records what the gradient needs. `reuse`: the record of the previous row
/// when it had the same noise id (its antithetic partner): its noise is reused instead of
/// regenerated.
struct RecordingNoise<'a> {
    noise: LrNoiseHook,
    /// The LayerNorms whose affine map is tuned: their `x_hat` is recorded.
    norms: &'a [NormSite],
    reuse: Option<&'a QueryRecord>,
    /// `x_hat` of the first tuned block's `layernorm_before` on this query's clean input
    /// (computed once per image) when the query starts from its clean projections.
    clean_x_hat: Option<(NormSite, &'a Rc<Vec<f32>>)>,
    record: QueryRecord,
}

impl RecordingNoise<'_> {
    /// Adds the row's noise at `site` to `output`; the noise, when the row perturbs `site`.
    fn perturb(&mut self, site: LinearSite, output: &mut [f32]) -> Option<Rc<Vec<f32>>> {
        // Only the row's own sites (a partner's record may hold sites this row leaves alone).
        self.noise.sigma(site)?;
        let shared = self.reuse.and_then(|r| r.linear.get(&site)).map(|r| r.eps.clone());
        let eps = match shared.filter(|e| e.len() == output.len()) {
            Some(e) => e,
            None => Rc::new(self.noise.noise(site, output.len())?),
        };
        self.noise.add(site, &eps, output);
        Some(eps)
    }
}

impl ForwardHook for RecordingNoise<'_> {
    fn layer_norm(&mut self, site: NormSite, norm: &LayerNorm, input: &[f32]) {
        if self.norms.contains(&site) {
            let x_hat = match self.clean_x_hat {
                Some((clean, x_hat)) if clean == site => x_hat.clone(),
                _ => Rc::new(norm.normalize(input)),
            };
            self.record.norms.insert(site, x_hat);
        }
    }

    fn linear(&mut self, site: LinearSite, input: &[f32], output: &mut [f32]) {
        if let Some(eps) = self.perturb(site, output) {
            let (input, len) = (Rc::new(input.to_vec()), input.len());
            self.record.linear.insert(site, Recorded { input, len, eps });
        }
    }

    fn linear_shared(&mut self, site: LinearSite, shared: &Rc<Vec<f32>>, len: usize, output: &mut [f32]) {
        if let Some(eps) = self.perturb(site, output) {
            let input = shared.clone();
            self.record.linear.insert(site, Recorded { input, len, eps });
        }
    }
}

impl CpuBackend {
    /// The fast CPU path: the same backend with every dense product through a GEMM library
    /// ([`Kernels::Gemm`]); tested against [`CpuBackend::new`] (the plain-loop oracle).
    pub fn fast(mut net: ViTForImageClassification) -> Self {
        net.set_kernels(Kernels::Gemm);
        Self::new(net)
    }

    /// `net` with the kernels it has (plain loops after loading: the reference); the gradient's
    /// products follow them.
    pub fn new(net: ViTForImageClassification) -> Self {
        Self {
            ids: ParamTable::of(&net),
            net,
            recorded: Vec::new(),
            recorded_for: None,
            features: FeatureCache::default(),
            streams: None,
            keep_streams: false,
            scratch: Scratch::default(),
            grad: Vec::new(),
        }
    }

    /// The network's kernels ([`ViTForImageClassification::set_kernels`] sets every module's);
    /// the gradient's products follow them.
    fn kernels(&self) -> Kernels {
        self.net.classifier.kernels
    }

    fn image_len(&self) -> usize {
        self.net.config.image_numel()
    }

    /// The residual stream entering block `first` of one image `[C, H, W]`.
    pub fn prefix(&self, pixels: &[f32], first: usize) -> Vec<f32> {
        let x = self.net.vit.embeddings.forward(pixels, &mut NoHook);
        self.net.vit.run_blocks(x, 0..first, &mut NoHook)
    }

    fn check(&self, batch: &Batch) -> Result<(), LearnError> {
        batch.check(self.image_len(), self.net.config.num_labels())
    }

    /// The residual stream entering block `first`, from the feature cache when `first` is the
    /// frozen boundary (the stream is then a pure function of the pixels).
    fn prefix_cached(&mut self, pixels: &[f32], first: usize) -> Vec<f32> {
        if !self.features.serves(first) {
            return self.prefix(pixels, first);
        }
        if let Some(stream) = self.features.get(pixels) {
            return stream.clone();
        }
        let stream = self.prefix(pixels, first);
        self.features.insert(pixels, stream.clone(), 4 * stream.len());
        stream
    }

    fn prefixes(&mut self, batch: &Batch, first: usize) -> Vec<Vec<f32>> {
        let n = self.image_len();
        batch
            .pixels
            .chunks_exact(n)
            .map(|img| self.prefix_cached(img, first))
            .collect()
    }
}

/// Captures a clean forward's residual streams entering each block after the first it runs
/// (`streams[l]`) and the CLS stream entering the final LayerNorm (`streams[layers]`).
struct StreamCapture {
    streams: Vec<Vec<f32>>,
}

impl ForwardHook for StreamCapture {
    fn hidden(&mut self, index: usize, hidden: &[f32]) {
        if let Some(s) = self.streams.get_mut(index) {
            *s = hidden.to_vec();
        }
    }

    fn layer_norm(&mut self, site: NormSite, _norm: &LayerNorm, input: &[f32]) {
        if site == NormSite::Final {
            if let Some(s) = self.streams.last_mut() {
                *s = input.to_vec();
            }
        }
    }
}

/// Captures the CLS stream entering the final LayerNorm.
struct FinalNormInput(Vec<f32>);

impl ForwardHook for FinalNormInput {
    fn layer_norm(&mut self, site: NormSite, _norm: &LayerNorm, input: &[f32]) {
        if site == NormSite::Final {
            self.0 = input.to_vec();
        }
    }
}

impl CpuBackend {
    /// Each image's clean streams after block `first` ([`StreamCapture`]), from the last clean
    /// pass when it was of this batch and split, else computed now.
    fn clean_streams(&mut self, batch: &Batch, prefixes: &[Vec<f32>], first: usize) -> Vec<Vec<Vec<f32>>> {
        self.keep_streams = true;
        if let Some(c) = self.streams.take() {
            if c.first == first && c.pixels == batch.pixels {
                return c.streams;
            }
        }
        prefixes.iter().map(|x| self.capture(x, first).1).collect()
    }

    /// Logits and the clean streams of the forward from `x` entering block `first`.
    fn capture(&self, x: &[f32], first: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut hook = StreamCapture {
            streams: vec![Vec::new(); self.net.vit.layers.len() + 1],
        };
        let z = self.net.logits_from(x, first, &mut hook);
        (z, hook.streams)
    }

    fn clean_now(&mut self, batch: &Batch) -> Result<CleanOut, LearnError> {
        self.check(batch)?;
        let mut losses = Vec::with_capacity(batch.len());
        let mut logits = Vec::new();
        let mut streams = Vec::with_capacity(batch.len());
        let mut head_streams = Vec::with_capacity(batch.len() * self.net.config.hidden_size);
        let first = self.features.first;
        for (hidden, &y) in self.prefixes(batch, first).into_iter().zip(batch.labels) {
            let z = if self.keep_streams {
                let (z, s) = self.capture(&hidden, first);
                head_streams.extend_from_slice(s.last().map_or(&[][..], |v| v));
                streams.push(s);
                z
            } else {
                let mut hook = FinalNormInput(Vec::new());
                let z = self.net.logits_from(&hidden, first, &mut hook);
                head_streams.extend(hook.0);
                z
            };
            losses.push(cross_entropy(&z, y));
            logits.extend(z);
        }
        // Kept for this batch's site-wise queries, which start from them.
        self.streams = self.keep_streams.then(|| CleanStreams {
            first,
            pixels: batch.pixels.to_vec(),
            streams,
        });
        Ok(CleanOut {
            losses,
            logits,
            head_streams: Some(head_streams),
        })
    }

    fn query_losses_now(&mut self, batch: &Batch, plan: &StepPlan) -> Result<Vec<f32>, LearnError> {
        plan.check(batch, self.image_len(), self.net.config.num_labels())?;
        let prefixes = self.prefixes(batch, plan.first_tuned);
        let mut losses = vec![0.0f32; plan.queries.len()];
        self.recorded.clear();
        self.recorded_for = Some((plan.seed, plan.step, plan.queries.clone()));
        match plan.space {
            Space::Activation { sigma } => {
                let norms = tuned_norms(plan, &self.ids);
                let first = plan.first_tuned;
                let layers = self.net.vit.layers.len();
                // A query starts where its group's earliest site is (site-wise: a late site's
                // query runs only what follows it), from that point's clean stream there.
                let starts = plan.group_starts(layers);
                let late = starts.iter().any(|&s| s > first);
                let streams = if late {
                    self.clean_streams(batch, &prefixes, first)
                } else {
                    Vec::new()
                };
                // The first tuned block's clean Q, K, V do not depend on the noise, nor does the
                // x_hat of its first LayerNorm: once per image.
                let net = &self.net;
                let before = NormSite::Before(first);
                let projected: Vec<_> = match net.vit.layers.get(first) {
                    Some(block) if starts.contains(&first) => prefixes
                        .iter()
                        .map(|x| {
                            let x_hat = norms
                                .contains(&before)
                                .then(|| Rc::new(block.layernorm_before.normalize(x)));
                            Some((block.project(x, net.queries_of(first)), x_hat))
                        })
                        .collect(),
                    _ => vec![None; prefixes.len()],
                };
                for (r, q) in plan.queries.iter().enumerate() {
                    let start = starts[q.group as usize];
                    let partner = r.checked_sub(1).filter(|&p| {
                        let prev = plan.queries[p];
                        prev.noise == q.noise && prev.point == q.point
                    });
                    let mut hook = RecordingNoise {
                        norms: &norms,
                        reuse: partner.map(|p| &self.recorded[p]),
                        clean_x_hat: match &projected[q.point] {
                            Some((_, Some(x_hat))) if start == first => Some((before, x_hat)),
                            _ => None,
                        },
                        record: QueryRecord::default(),
                        noise: LrNoiseHook {
                            seed: plan.seed,
                            step: plan.step,
                            row: q.noise,
                            sites: plan.noise_sites(q, sigma),
                        },
                    };
                    let z = match &projected[q.point] {
                        _ if start > first => net.logits_from(&streams[q.point][start], start, &mut hook),
                        Some((qkv, _)) => net.logits_projected(&prefixes[q.point], first, qkv.clone(), &mut hook),
                        None => net.logits_from(&prefixes[q.point], first, &mut hook),
                    };
                    losses[r] = cross_entropy(&z, batch.labels[q.point]);
                    self.recorded.push(hook.record);
                }
            }
            Space::Weight { scale } => {
                // One perturbed copy per (direction, side), shared by every point using it.
                let mut by_dir: HashMap<(u32, i32), Vec<usize>> = HashMap::new();
                for (r, q) in plan.queries.iter().enumerate() {
                    by_dir.entry((q.noise, q.sign as i32)).or_default().push(r);
                }
                for ((k, side), rows) in by_dir {
                    let net = perturbed_copy(&self.net, plan.seed, plan.step, k, side as f32 * scale, &plan.tensors)?;
                    for r in rows {
                        let q = plan.queries[r];
                        let z = net.logits_from(&prefixes[q.point], plan.first_tuned, &mut NoHook);
                        losses[r] = cross_entropy(&z, batch.labels[q.point]);
                    }
                }
            }
        }
        Ok(losses)
    }

    fn gradient_now(&mut self, plan: &StepPlan, coefficients: &[f32]) -> Result<Vec<f32>, LearnError> {
        let params = self.net.params();
        let layout = self
            .ids
            .layout(&plan.tensors)
            .map_err(|message| LearnError::Config { message })?;
        let offsets = &layout.offsets;
        let mut grad = std::mem::take(&mut self.grad);
        grad.clear();
        grad.resize(layout.total, 0.0);
        let slot = |t: u32| layout.offset(t);
        match plan.space {
            Space::Activation { .. } => self.lr_gradient(plan, coefficients, &slot, &mut grad)?,
            Space::Weight { .. } => {
                for (k, &c) in coefficients.iter().enumerate() {
                    for (i, &t) in plan.tensors.iter().enumerate() {
                        let n = params[t as usize].numel();
                        let mut z = vec![0.0f32; n];
                        Stream::weight(plan.seed, plan.step, t, k as u32).fill(0, &mut z);
                        for (g, &zv) in grad[offsets[i]..offsets[i] + n].iter_mut().zip(&z) {
                            *g += c as f64 * zv as f64;
                        }
                    }
                }
            }
        }
        let out = grad.iter().map(|&g| g as f32).collect();
        self.grad = grad;
        Ok(out)
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn returns_head_streams(&self) -> bool {
        true
    }

    fn clean<'a>(&'a mut self, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<CleanOut, LearnError>> {
        Box::pin(std::future::ready(self.clean_now(batch)))
    }

    fn query_losses<'a>(
        &'a mut self,
        batch: &'a Batch<'a>,
        plan: &'a StepPlan,
    ) -> BoxFuture<'a, Result<Vec<f32>, LearnError>> {
        Box::pin(std::future::ready(self.query_losses_now(batch, plan)))
    }

    fn gradient<'a>(
        &'a mut self,
        plan: &'a StepPlan,
        coefficients: &'a [f32],
    ) -> BoxFuture<'a, Result<Vec<f32>, LearnError>> {
        Box::pin(std::future::ready(self.gradient_now(plan, coefficients)))
    }

    fn read_params<'a>(&'a self, tensors: &'a [u32]) -> BoxFuture<'a, Result<Vec<f32>, LearnError>> {
        Box::pin(std::future::ready(read_host(&self.net, tensors)))
    }

    fn write_params(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError> {
        // A frozen tensor changed: the kept features are stale; the clean streams always are.
        self.features.invalidate_for(&self.ids, tensors);
        self.streams = None;
        write_host(&mut self.net, tensors, flat, |_, _| Ok(()))
    }

    fn freeze_below(&mut self, block: usize) {
        self.streams = None;
        if block != self.features.first {
            self.features.reset(block);
        }
    }

    fn host_network(&self) -> &ViTForImageClassification {
        &self.net
    }

    fn table(&self) -> &ParamTable {
        &self.ids
    }

    fn network<'a>(&'a mut self) -> BoxFuture<'a, Result<&'a ViTForImageClassification, LearnError>> {
        Box::pin(std::future::ready(Ok(&self.net)))
    }
}

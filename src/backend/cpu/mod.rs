//! The CPU backend: the reference forward with the same regenerated perturbations as the GPU
//! kernels (crate::noise). It is the test oracle of the GPU backend and the fallback where no
//! WebGPU exists. Blocks below the first tuned block run once per image (frozen prefix).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::{read_host, write_host, FeatureCache};
use crate::learn::backend::{Backend, Batch, BoxFuture, CleanOut, StepPlan};
use crate::learn::estimate::{Query, Space};
use crate::learn::LearnError;
use crate::model::nn::{cross_entropy, sgemm, Kernels, LayerNorm, GEMM_MIN_ROWS};
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
}

/// A clean pass's streams ([`StreamCapture`]) per image, with the split and pixels they are of.
struct CleanStreams {
    first: usize,
    pixels: Vec<f32>,
    streams: Vec<Vec<Vec<f32>>>,
}

/// What the gradient needs of one perturbed site in one query.
struct Recorded {
    /// `[rows, in]`.
    input: Vec<f32>,
    /// `[rows, out]`, unsigned (shared by the two rows of an antithetic pair).
    eps: Rc<Vec<f32>>,
}

/// What the gradient needs of one query.
#[derive(Default)]
struct QueryRecord {
    linear: HashMap<LinearSite, Recorded>,
    /// `x_hat` `[rows, D]` of every LayerNorm that feeds a perturbed site.
    norms: HashMap<NormSite, Vec<f32>>,
}

/// Adds LR noise and records what the gradient needs. `reuse`: the record of the previous row
/// when it had the same noise id (its antithetic partner): its noise is reused instead of
/// regenerated.
struct RecordingNoise<'a> {
    noise: LrNoiseHook,
    /// The LayerNorms whose affine map is tuned: their `x_hat` is recorded.
    norms: &'a [NormSite],
    reuse: Option<&'a QueryRecord>,
    record: QueryRecord,
}

impl ForwardHook for RecordingNoise<'_> {
    fn layer_norm(&mut self, site: NormSite, norm: &LayerNorm, input: &[f32]) {
        if self.norms.contains(&site) {
            self.record.norms.insert(site, norm.normalize(input));
        }
    }

    fn linear(&mut self, site: LinearSite, input: &[f32], output: &mut [f32]) {
        // Only the row's own sites (a partner's record may hold sites this row leaves alone).
        if self.noise.sigma(site).is_none() {
            return;
        }
        let shared = self.reuse.and_then(|r| r.linear.get(&site)).map(|r| r.eps.clone());
        let eps = match shared.filter(|e| e.len() == output.len()) {
            Some(e) => e,
            None => match self.noise.noise(site, output.len()) {
                Some(e) => Rc::new(e),
                None => return,
            },
        };
        self.noise.add(site, &eps, output);
        self.record.linear.insert(
            site,
            Recorded {
                input: input.to_vec(),
                eps,
            },
        );
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

impl CpuBackend {
    /// LR: `G_W += sum_r c_r sum_t eps_rt u_rt^T`, `G_b += sum_r c_r sum_t eps_rt` for every
    /// perturbed site, and for every LayerNorm feeding perturbed sites
    /// `d_y = sum_sites W^T (c_r eps_r)`, `G_gamma += sum_rt d_y x_hat`, `G_beta += sum_rt d_y`.
    /// `slot(t)`: the offset of tensor `t` in `grad`, if tuned.
    fn lr_gradient(
        &self,
        plan: &StepPlan,
        coefficients: &[f32],
        slot: &dyn Fn(u32) -> Option<usize>,
        grad: &mut [f64],
    ) -> Result<(), LearnError> {
        let same_forward = self
            .recorded_for
            .as_ref()
            .is_some_and(|(seed, step, q)| *seed == plan.seed && *step == plan.step && *q == plan.queries);
        if !same_forward || self.recorded.len() != plan.queries.len() || coefficients.len() != plan.queries.len() {
            return Err(LearnError::Config {
                message: format!(
                    "gradient of step {} ({} queries, {} coefficients) without that step's query forward",
                    plan.step,
                    plan.queries.len(),
                    coefficients.len()
                ),
            });
        }
        let params = self.net.params();
        let ids = &self.ids;
        let points = plan.queries.iter().map(|q| q.point + 1).max().unwrap_or(0);
        let rows_of = |point: usize| -> Vec<usize> {
            (0..plan.queries.len())
                .filter(|&r| plan.queries[r].point == point)
                .collect()
        };
        // A point's rows that all see the same input (`same`: the first tuned block reads the
        // frozen prefix) share one product of their summed noise; otherwise rows go one by one.
        let groups = |rows: Vec<usize>, same: &dyn Fn(usize, usize) -> bool| -> Vec<Vec<usize>> {
            match rows.first() {
                Some(&r0) if rows.iter().all(|&r| same(r0, r)) => vec![rows],
                _ => rows.into_iter().map(|r| vec![r]).collect(),
            }
        };
        // sum_{r in group} c_r eps_r / scale_s of `site` over the group's rows that perturbed it
        // (none: `None`; site-wise rows perturb one site each). The sums of a site that feeds a
        // tuned LayerNorm are kept until that LayerNorm's pass takes them (it needs them again).
        let norms = tuned_norms(plan, ids);
        let sums: RefCell<SummedNoise> = RefCell::default();
        let summed = |group: &[usize], site: LinearSite| -> Option<Rc<Vec<f64>>> {
            if let Some(e) = sums.borrow_mut().remove(&(site, group.to_vec())) {
                return e;
            }
            let scale = plan.site_scale(site) as f64;
            let mut e: Option<Vec<f64>> = None;
            for &r in group {
                let Some(rec) = self.recorded[r].linear.get(&site) else {
                    continue;
                };
                let e = e.get_or_insert_with(|| vec![0.0f64; rec.eps.len()]);
                let c = coefficients[r] as f64 / scale;
                for (e, &x) in e.iter_mut().zip(rec.eps.iter()) {
                    *e += c * x as f64;
                }
            }
            e.map(Rc::new)
        };
        let keep = |group: &[usize], site: LinearSite, e: &Option<Rc<Vec<f64>>>| {
            if NormSite::feeding(site).is_some_and(|n| norms.contains(&n)) {
                sums.borrow_mut().insert((site, group.to_vec()), e.clone());
            }
        };
        for &site in &plan.sites {
            let Some(lin) = ids.linear(site) else { continue };
            let Some(w_off) = slot(lin.weight) else { continue };
            let w = &params[lin.weight as usize];
            let (dout, din) = (w.shape[0], w.numel() / w.shape[0]);
            let b_off = lin.bias.and_then(slot);
            let input = |r: usize| self.recorded[r].linear.get(&site).map(|x| &x.input);
            // sum_t e[t] (x) u[t] sums over tokens, so every group's tokens stack into one product
            // (one large GEMM on the fast path instead of one small one per query row).
            let (mut e_all, mut u_all) = (Vec::new(), Vec::new());
            for point in 0..points {
                let rows: Vec<usize> = rows_of(point).into_iter().filter(|&r| input(r).is_some()).collect();
                for group in groups(rows, &|a, b| same_values(input(a), input(b))) {
                    let e = summed(&group, site);
                    keep(&group, site, &e);
                    if let Some(e) = e {
                        e_all.extend_from_slice(&e);
                        u_all.extend_from_slice(&self.recorded[group[0]].linear[&site].input);
                    }
                }
            }
            accumulate_outer(self.kernels(), grad, w_off, b_off, &e_all, &u_all, dout, din);
        }
        for norm in norms.iter().copied() {
            let Some((gamma, beta)) = ids.norm(norm) else { continue };
            let (Some(g_off), Some(b_off)) = (slot(gamma), slot(beta)) else {
                continue;
            };
            let d = params[gamma as usize].numel();
            let consumers: Vec<LinearSite> = plan
                .sites
                .iter()
                .copied()
                .filter(|&s| NormSite::feeding(s) == Some(norm))
                .collect();
            let x_hat = |r: usize| self.recorded[r].norms.get(&norm);
            for point in 0..points {
                let rows: Vec<usize> = rows_of(point).into_iter().filter(|&r| x_hat(r).is_some()).collect();
                for group in groups(rows, &|a, b| same_values(x_hat(a), x_hat(b))) {
                    let xh = &self.recorded[group[0]].norms[&norm];
                    let mut dy = vec![0.0f64; xh.len()];
                    for &site in &consumers {
                        let Some(lin) = ids.linear(site) else { continue };
                        let Some(e) = summed(&group, site) else { continue };
                        let w = &params[lin.weight as usize].data;
                        let dout = w.len() / d;
                        accumulate_back(self.kernels(), &mut dy, &e, w, dout, d);
                    }
                    for (dyt, xt) in dy.chunks_exact(d).zip(xh.chunks_exact(d)) {
                        for i in 0..d {
                            grad[g_off + i] += dyt[i] * xt[i] as f64;
                            grad[b_off + i] += dyt[i];
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A gradient's `sum_r c_r eps_r` per (site, group of rows): `None` where no row perturbed it.
type SummedNoise = HashMap<(LinearSite, Vec<usize>), Option<Rc<Vec<f64>>>>;

/// Whether two recorded tensors hold the same values, bit for bit (one `memcmp`: the rows of an
/// image that read the frozen prefix hold copies of one tensor). Only decides whether rows
/// share a product, so a false "different" (`-0.0` vs `0.0`) merely costs time.
fn same_values(a: Option<&Vec<f32>>, b: Option<&Vec<f32>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => bytemuck::cast_slice::<f32, u8>(a) == bytemuck::cast_slice::<f32, u8>(b),
        (None, None) => true,
        _ => false,
    }
}

/// The LayerNorms feeding `plan`'s perturbed sites whose affine map `plan` tunes.
fn tuned_norms(plan: &StepPlan, ids: &ParamTable) -> Vec<NormSite> {
    let mut norms: Vec<NormSite> = plan
        .sites
        .iter()
        .filter_map(|&s| NormSite::feeding(s))
        .filter(|&n| ids.norm(n).is_some_and(|(gamma, _)| plan.tensors.contains(&gamma)))
        .collect();
    norms.sort_unstable();
    norms.dedup();
    norms
}

/// `G_W[o, i] += sum_t e[t, o] u[t, i]`, `G_b[o] += sum_t e[t, o]` at the given offsets.
/// `d_y[t] += sum_o e[t, o] W[o, :]` for the rows of `e` (a site may see fewer rows than the
/// norm: the last block's query is the CLS token's only). Under [`Kernels::Gemm`] with enough
/// rows: one f32 GEMM `e [T, dout] x W [dout, d]` added into the f64 `d_y`.
fn accumulate_back(kernels: Kernels, dy: &mut [f64], e: &[f64], w: &[f32], dout: usize, d: usize) {
    let t = (e.len() / dout.max(1)).min(dy.len() / d.max(1));
    if kernels == Kernels::Gemm && t >= GEMM_MIN_ROWS {
        let e32: Vec<f32> = e[..t * dout].iter().map(|&v| v as f32).collect();
        let mut g = vec![0.0f32; t * d];
        sgemm((t, dout, d), 1.0, (&e32, dout, 1), (w, d, 1), 0.0, (&mut g, d, 1));
        for (acc, &v) in dy.iter_mut().zip(&g) {
            *acc += v as f64;
        }
        return;
    }
    for (et, dyt) in e.chunks_exact(dout).zip(dy.chunks_exact_mut(d)) {
        for (o, &eo) in et.iter().enumerate() {
            for (y, &wv) in dyt.iter_mut().zip(&w[o * d..(o + 1) * d]) {
                *y += eo * wv as f64;
            }
        }
    }
}

/// Under [`Kernels::Gemm`] with enough tokens the weight part is one f32 GEMM
/// `E^T [dout, T] x U [T, din]` added into the f64 gradient.
#[allow(clippy::too_many_arguments)]
fn accumulate_outer(
    kernels: Kernels,
    grad: &mut [f64],
    w_off: usize,
    b_off: Option<usize>,
    e: &[f64],
    u: &[f32],
    dout: usize,
    din: usize,
) {
    let t = e.len() / dout.max(1);
    if kernels == Kernels::Gemm && t >= GEMM_MIN_ROWS {
        let e32: Vec<f32> = e.iter().map(|&v| v as f32).collect();
        let mut g = vec![0.0f32; dout * din];
        sgemm((dout, t, din), 1.0, (&e32, 1, dout), (u, din, 1), 0.0, (&mut g, din, 1));
        for (acc, &v) in grad[w_off..w_off + dout * din].iter_mut().zip(&g) {
            *acc += v as f64;
        }
        if let Some(b) = b_off {
            for et in e.chunks_exact(dout) {
                for (acc, &v) in grad[b..b + dout].iter_mut().zip(et) {
                    *acc += v;
                }
            }
        }
        return;
    }
    for (et, ut) in e.chunks_exact(dout).zip(u.chunks_exact(din)) {
        for (o, &eo) in et.iter().enumerate() {
            let row = &mut grad[w_off + o * din..w_off + (o + 1) * din];
            for (g, &x) in row.iter_mut().zip(ut) {
                *g += eo * x as f64;
            }
            if let Some(b) = b_off {
                grad[b + o] += eo;
            }
        }
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
                // The first tuned block's clean Q, K, V do not depend on the noise: once per image.
                let net = &self.net;
                let projected: Vec<_> = match net.vit.layers.get(first) {
                    Some(block) if starts.contains(&first) => prefixes
                        .iter()
                        .map(|x| Some(block.project(x, net.queries_of(first))))
                        .collect(),
                    _ => vec![None; prefixes.len()],
                };
                for (r, q) in plan.queries.iter().enumerate() {
                    let partner = r.checked_sub(1).filter(|&p| {
                        let prev = plan.queries[p];
                        prev.noise == q.noise && prev.point == q.point
                    });
                    let mut hook = RecordingNoise {
                        norms: &norms,
                        reuse: partner.map(|p| &self.recorded[p]),
                        record: QueryRecord::default(),
                        noise: LrNoiseHook {
                            seed: plan.seed,
                            step: plan.step,
                            row: q.noise,
                            sites: plan.noise_sites(q, sigma),
                        },
                    };
                    let start = starts[q.group as usize];
                    let z = match &projected[q.point] {
                        _ if start > first => net.logits_from(&streams[q.point][start], start, &mut hook),
                        Some(qkv) => net.logits_projected(&prefixes[q.point], first, qkv.clone(), &mut hook),
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
        let mut grad = vec![0.0f64; layout.total];
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
        Ok(grad.into_iter().map(|g| g as f32).collect())
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

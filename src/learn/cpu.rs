//! The CPU backend: the reference forward with the same regenerated perturbations as the GPU
//! kernels (crate::noise). It is the test oracle of the GPU backend and the fallback where no
//! WebGPU exists. Blocks below the first tuned block run once per image (frozen prefix).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::backend::{Backend, Batch, CleanOut, StepPlan};
use super::error::LearnError;
use super::estimate::EstimatorKind;
use crate::model::nn::cross_entropy;
use crate::model::perturb::{perturbed_copy, LrNoiseHook};
use crate::model::{ForwardHook, LinearSite, NoHook, ViTForImageClassification};
use crate::noise::Stream;

pub struct CpuBackend {
    pub net: ViTForImageClassification,
    /// Per query (LR): the input `[T, in]` of every perturbed site, kept for the gradient.
    inputs: Vec<HashMap<LinearSite, Vec<f32>>>,
    /// Blocks below `frozen` are not tuned in this run, so each image's residual stream
    /// entering block `frozen` is computed once and kept across steps (0: nothing cached).
    frozen: usize,
    /// Image pixel hash -> (pixels, stream entering block `frozen`).
    features: HashMap<u64, (Vec<f32>, Vec<f32>)>,
    cached_bytes: usize,
}

/// The feature cache stops growing here; images beyond it are recomputed every time.
const FEATURE_CACHE_BYTES: usize = 256 << 20;

/// Adds LR noise and records the perturbed sites' inputs.
struct RecordingNoise<'a> {
    noise: LrNoiseHook,
    inputs: &'a mut HashMap<LinearSite, Vec<f32>>,
}

impl ForwardHook for RecordingNoise<'_> {
    fn linear(&mut self, site: LinearSite, input: &[f32], output: &mut [f32]) {
        if self.noise.sites.contains(&site) {
            self.inputs.insert(site, input.to_vec());
        }
        self.noise.linear(site, input, output);
    }
}

impl CpuBackend {
    pub fn new(net: ViTForImageClassification) -> Self {
        Self {
            net,
            inputs: Vec::new(),
            frozen: 0,
            features: HashMap::new(),
            cached_bytes: 0,
        }
    }

    fn image_len(&self) -> usize {
        self.net.config.image_numel()
    }

    /// The residual stream entering block `first` of one image `[C, H, W]`.
    pub fn prefix(&self, pixels: &[f32], first: usize) -> Vec<f32> {
        let x = self.net.vit.embeddings.forward(pixels, &mut NoHook);
        self.net.vit.run_blocks(x, 0..first, &mut NoHook)
    }

    /// Logits from the residual stream entering block `first`.
    pub fn suffix(
        net: &ViTForImageClassification,
        hidden: Vec<f32>,
        first: usize,
        hook: &mut dyn ForwardHook,
    ) -> Vec<f32> {
        let x = net.vit.run_blocks(hidden, first..net.vit.layers.len(), hook);
        net.head(&net.vit.layernorm.forward(&x), hook)
    }

    fn check(&self, batch: &Batch) -> Result<(), LearnError> {
        if batch.pixels.len() != batch.len() * self.image_len() || batch.is_empty() {
            return Err(LearnError::Config {
                message: format!(
                    "batch of {} labels has {} pixel values",
                    batch.len(),
                    batch.pixels.len()
                ),
            });
        }
        Ok(())
    }

    /// The residual stream entering block `first`, from the feature cache when `first` is the
    /// frozen boundary (the stream is then a pure function of the pixels).
    fn prefix_cached(&mut self, pixels: &[f32], first: usize) -> Vec<f32> {
        if first == 0 || first != self.frozen {
            return self.prefix(pixels, first);
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        pixels.iter().for_each(|p| p.to_bits().hash(&mut h));
        let key = h.finish();
        if let Some((px, stream)) = self.features.get(&key) {
            if px.as_slice() == pixels {
                return stream.clone();
            }
        }
        let stream = self.prefix(pixels, first);
        let bytes = 4 * (pixels.len() + stream.len());
        if self.cached_bytes + bytes <= FEATURE_CACHE_BYTES {
            self.cached_bytes += bytes;
            self.features.insert(key, (pixels.to_vec(), stream.clone()));
        }
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

impl Backend for CpuBackend {
    async fn clean(&mut self, batch: &Batch<'_>) -> Result<CleanOut, LearnError> {
        self.check(batch)?;
        let mut losses = Vec::with_capacity(batch.len());
        let mut logits = Vec::new();
        let first = self.frozen;
        for (hidden, &y) in self.prefixes(batch, first).into_iter().zip(batch.labels) {
            let z = Self::suffix(&self.net, hidden, first, &mut NoHook);
            losses.push(cross_entropy(&z, y));
            logits.extend(z);
        }
        Ok(CleanOut { losses, logits })
    }

    fn freeze_below(&mut self, block: usize) {
        if block != self.frozen {
            self.frozen = block;
            self.features.clear();
            self.cached_bytes = 0;
        }
    }

    async fn query_losses(&mut self, batch: &Batch<'_>, plan: &StepPlan) -> Result<Vec<f32>, LearnError> {
        self.check(batch)?;
        let prefixes = self.prefixes(batch, plan.first_tuned);
        let mut losses = vec![0.0f32; plan.queries.len()];
        self.inputs.clear();
        match plan.kind {
            EstimatorKind::Lr { sigma, .. } => {
                for (r, q) in plan.queries.iter().enumerate() {
                    let mut inputs = HashMap::new();
                    let noise = LrNoiseHook {
                        seed: plan.seed,
                        step: plan.step,
                        row: q.noise,
                        sigma: q.sign * sigma,
                        sites: plan.sites.clone(),
                    };
                    let mut hook = RecordingNoise {
                        noise,
                        inputs: &mut inputs,
                    };
                    let z = Self::suffix(&self.net, prefixes[q.point].clone(), plan.first_tuned, &mut hook);
                    losses[r] = cross_entropy(&z, batch.labels[q.point]);
                    self.inputs.push(inputs);
                }
            }
            EstimatorKind::Spsa { eps } => {
                // One perturbed copy per (direction, side), shared by every point using it.
                let mut by_dir: HashMap<(u32, i32), Vec<usize>> = HashMap::new();
                for (r, q) in plan.queries.iter().enumerate() {
                    by_dir.entry((q.noise, q.sign as i32)).or_default().push(r);
                }
                for ((k, side), rows) in by_dir {
                    let net = perturbed_copy(&self.net, plan.seed, plan.step, k, side as f32 * eps, &plan.tensors)?;
                    for r in rows {
                        let q = plan.queries[r];
                        let z = Self::suffix(&net, prefixes[q.point].clone(), plan.first_tuned, &mut NoHook);
                        losses[r] = cross_entropy(&z, batch.labels[q.point]);
                    }
                }
            }
        }
        Ok(losses)
    }

    async fn gradient(&mut self, plan: &StepPlan, coefficients: &[f32]) -> Result<Vec<f32>, LearnError> {
        let params = self.net.params();
        let offsets: Vec<usize> = plan
            .tensors
            .iter()
            .scan(0usize, |o, &t| {
                let start = *o;
                *o += params[t as usize].numel();
                Some(start)
            })
            .collect();
        let total: usize = plan.tensors.iter().map(|&t| params[t as usize].numel()).sum();
        let mut grad = vec![0.0f64; total];
        let slot = |t: u32| plan.tensors.iter().position(|&x| x == t).map(|i| offsets[i]);
        match plan.kind {
            EstimatorKind::Lr { .. } => {
                let ids = crate::model::perturb::TensorIds::of(&self.net);
                for (r, q) in plan.queries.iter().enumerate() {
                    let c = coefficients[r] as f64;
                    for &site in &plan.sites {
                        let Some(lin) = ids.linear(site) else { continue };
                        let (Some(u), Some(w_off)) = (self.inputs[r].get(&site), slot(lin.weight)) else {
                            continue;
                        };
                        let w = &params[lin.weight as usize];
                        let (dout, din) = (w.shape[0], w.numel() / w.shape[0]);
                        let t = u.len() / din;
                        let mut eps = vec![0.0f32; t * dout];
                        Stream::lr(plan.seed, plan.step, site, q.noise).fill(0, &mut eps);
                        let b_off = lin.bias.and_then(slot);
                        for tok in 0..t {
                            let ut = &u[tok * din..(tok + 1) * din];
                            for o in 0..dout {
                                let e = c * eps[tok * dout + o] as f64;
                                let row = &mut grad[w_off + o * din..w_off + (o + 1) * din];
                                for (g, &x) in row.iter_mut().zip(ut) {
                                    *g += e * x as f64;
                                }
                                if let Some(b) = b_off {
                                    grad[b + o] += e;
                                }
                            }
                        }
                    }
                }
            }
            EstimatorKind::Spsa { .. } => {
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

    async fn read_params(&self, tensors: &[u32]) -> Result<Vec<f32>, LearnError> {
        let params = self.net.params();
        let mut out = Vec::new();
        for &t in tensors {
            let p = params.get(t as usize).ok_or_else(|| LearnError::Config {
                message: format!("no tensor {t}"),
            })?;
            out.extend_from_slice(&p.data);
        }
        Ok(out)
    }

    fn write_params(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError> {
        let mut params = self.net.params_mut();
        let mut off = 0;
        for &t in tensors {
            let p = params.get_mut(t as usize).ok_or_else(|| LearnError::Config {
                message: format!("no tensor {t}"),
            })?;
            let n = p.data.len();
            let src = flat.get(off..off + n).ok_or_else(|| LearnError::Config {
                message: "parameter vector too short".into(),
            })?;
            p.data.copy_from_slice(src);
            off += n;
        }
        Ok(())
    }

    fn host_network(&self) -> &ViTForImageClassification {
        &self.net
    }

    async fn network(&mut self) -> Result<&ViTForImageClassification, LearnError> {
        Ok(&self.net)
    }
}

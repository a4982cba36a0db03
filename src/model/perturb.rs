//! CPU perturbations for the oracle, with the same noise addressing as the GPU kernels
//! ([`crate::noise`]): LR activation noise through a [`ForwardHook`], and weight-perturbed
//! copies of a model `theta + s * z_k`.
//!
//! Tensor ids and noise site ids come from the parameter table ([`super::params::ParamTable`]).

use super::error::{ModelError, Result};
use super::params::ParamTable;
use super::vit::{ForwardHook, LinearSite, ViTForImageClassification};
use crate::noise::Stream;

/// How many leading tokens of `site`'s output LR perturbs, in a model of `layers` blocks and
/// `tokens` tokens: 1 (the CLS token) for the last block's query, attention output, fc1 and fc2,
/// whose other tokens never reach the classifier (their gradient is exactly 0, so noise there
/// would only add variance); all `tokens` elsewhere. The CPU forward computes only those rows
/// ([`ViTForImageClassification::queries_of`]); the GPU computes every row and masks its noise.
pub fn lr_noise_tokens(site: LinearSite, layers: usize, tokens: usize) -> usize {
    match site {
        LinearSite::Query(l) | LinearSite::AttnOut(l) | LinearSite::Fc1(l) | LinearSite::Fc2(l) if l + 1 == layers => 1,
        LinearSite::Classifier => 1,
        _ => tokens,
    }
}

/// Adds `sigma_s * eps` to the output of each site `s` of `sites` for query row `row`:
/// `eps = Stream::lr(seed, step, ParamTable::site_id(site), row).normal(token * out_dim + unit)`, on every row of the
/// output it is given (the classification forward gives only the rows of [`lr_noise_tokens`]).
#[derive(Debug, Clone)]
pub struct LrNoiseHook {
    pub seed: u64,
    pub step: u32,
    pub row: u32,
    /// Each perturbed site with its signed noise scale `sigma_s` (negative: the antithetic side).
    pub sites: Vec<(LinearSite, f32)>,
}

impl LrNoiseHook {
    /// The signed noise scale of `site`, if it is perturbed.
    pub fn sigma(&self, site: LinearSite) -> Option<f32> {
        self.sites.iter().find(|(s, _)| *s == site).map(|&(_, sigma)| sigma)
    }

    /// The unscaled noise `eps` of `site` over `len` output values, if `site` is perturbed.
    pub fn noise(&self, site: LinearSite, len: usize) -> Option<Vec<f32>> {
        self.sigma(site)?;
        let mut eps = vec![0.0f32; len];
        Stream::lr(self.seed, self.step, ParamTable::site_id(site), self.row).fill(0, &mut eps);
        Some(eps)
    }

    /// `output += sigma_site * eps`.
    pub fn add(&self, site: LinearSite, eps: &[f32], output: &mut [f32]) {
        let sigma = self.sigma(site).unwrap_or(0.0);
        for (o, e) in output.iter_mut().zip(eps) {
            *o += sigma * e;
        }
    }
}

impl ForwardHook for LrNoiseHook {
    fn linear(&mut self, site: LinearSite, _input: &[f32], output: &mut [f32]) {
        if let Some(eps) = self.noise(site, output.len()) {
            self.add(site, &eps, output);
        }
    }
}

/// A copy of `net` with `theta_t + scale * z_k` for each tensor id `t` in `tensors`,
/// `z_k = Stream::weight(seed, step, t, direction)` over the tensor's flat elements.
pub fn perturbed_copy(
    net: &ViTForImageClassification,
    seed: u64,
    step: u32,
    direction: u32,
    scale: f32,
    tensors: &[u32],
) -> Result<ViTForImageClassification> {
    let mut out = net.clone();
    let mut params = out.params_mut();
    for &t in tensors {
        let count = params.len();
        let p = params.get_mut(t as usize).ok_or_else(|| ModelError::Input {
            reason: format!("tensor id {t} out of range (the model has {count} tensors)"),
        })?;
        let stream = Stream::weight(seed, step, t, direction);
        let mut z = vec![0.0f32; p.data.len()];
        stream.fill(0, &mut z);
        for (w, z) in p.data.iter_mut().zip(&z) {
            *w += scale * z;
        }
    }
    Ok(out)
}

/// What a site's clean activations look like, averaged over images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteStats {
    /// Root mean square of the output (as the classification forward computes it: the last
    /// block's query, attention output and MLP for the CLS token only).
    pub rms: f32,
    /// Output values per image (tokens x units): the noise dimensions of an LR query there.
    pub outputs: usize,
    /// Tokens of the output.
    pub tokens: usize,
    /// `sum_t |u_t|^2` of the input, per image.
    pub input_sq: f64,
}

impl SiteStats {
    /// The per-query variance of the site's weight and bias estimate per unit of
    /// `E[(L - b)^2]`, at noise `sigma`: `E |eps (x) u|^2 / sigma^2 = outputs / tokens *
    /// (sum_t |u_t|^2 + tokens) / sigma^2` (the `+ tokens`: the bias).
    pub fn variance_factor(&self, sigma: f32) -> f64 {
        let units = self.outputs as f64 / self.tokens.max(1) as f64;
        units * (self.input_sq + self.tokens as f64) / (sigma as f64).powi(2).max(1e-300)
    }
}

/// [`SiteStats`] of each of `sites` over `images` (`[N, C, H, W]`).
pub fn site_stats(net: &ViTForImageClassification, images: &[f32], sites: &[LinearSite]) -> Vec<SiteStats> {
    struct Acc<'a> {
        sites: &'a [LinearSite],
        /// Each site's input width.
        in_dims: Vec<usize>,
        /// sum of squares, values, tokens, input sum of squares.
        sum: Vec<(f64, usize, usize, f64)>,
    }
    impl ForwardHook for Acc<'_> {
        fn linear(&mut self, site: LinearSite, input: &[f32], output: &mut [f32]) {
            if let Some(i) = self.sites.iter().position(|&s| s == site) {
                let (s, n, t, u) = &mut self.sum[i];
                *s += output.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
                *n += output.len();
                *t += input.len() / self.in_dims[i].max(1);
                *u += input.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
            }
        }
    }
    let table = ParamTable::of(net);
    let params = net.params();
    let in_dims = sites
        .iter()
        .map(|&s| {
            table.linear(s).map_or(1, |l| {
                let w = &params[l.weight as usize];
                w.numel() / w.shape[0].max(1)
            })
        })
        .collect();
    let mut hook = Acc {
        sites,
        in_dims,
        sum: vec![(0.0, 0, 0, 0.0); sites.len()],
    };
    let per = net.config.image_numel().max(1);
    let images_n = (images.len() / per).max(1);
    for img in images.chunks_exact(per) {
        net.forward(img, &mut hook);
    }
    hook.sum
        .iter()
        .map(|&(s, n, t, u)| SiteStats {
            rms: if n > 0 { (s / n as f64).sqrt() as f32 } else { 1.0 },
            outputs: n / images_n,
            tokens: t / images_n,
            input_sq: u / images_n as f64,
        })
        .collect()
}

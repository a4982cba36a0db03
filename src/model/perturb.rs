//! CPU perturbations for the oracle, with the same noise addressing as the GPU kernels
//! ([`crate::noise`]): LR activation noise through a [`ForwardHook`], and weight-perturbed
//! copies of a model `theta + s * z_k`.
//!
//! Tensor ids are indices into [`ViTForImageClassification::params`] (HF checkpoint order);
//! [`TensorIds`] names them by structure so callers need not know the order.

use super::error::{ModelError, Result};
use super::nn::Param;
use super::vit::{ForwardHook, LinearSite, NormSite, ViTForImageClassification};
use crate::noise::Stream;

/// Ids of a linear layer's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearIds {
    pub weight: u32,
    pub bias: Option<u32>,
}

/// Ids of one encoder block's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerIds {
    pub ln_before: (u32, u32),
    pub query: LinearIds,
    pub key: LinearIds,
    pub value: LinearIds,
    pub attn_out: LinearIds,
    pub ln_after: (u32, u32),
    pub fc1: LinearIds,
    pub fc2: LinearIds,
}

impl LayerIds {
    /// Every tensor id of the block.
    pub fn all(&self) -> Vec<u32> {
        let mut v = vec![self.ln_before.0, self.ln_before.1, self.ln_after.0, self.ln_after.1];
        for l in [self.query, self.key, self.value, self.attn_out, self.fc1, self.fc2] {
            v.push(l.weight);
            v.extend(l.bias);
        }
        v
    }
}

/// The id of every tensor of a model, by structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorIds {
    pub cls_token: u32,
    pub position_embeddings: u32,
    pub patch: LinearIds,
    pub layers: Vec<LayerIds>,
    pub final_ln: (u32, u32),
    pub classifier: LinearIds,
    pub count: u32,
}

impl TensorIds {
    pub fn of(net: &ViTForImageClassification) -> Self {
        let params = net.params();
        let id = |p: &Param| {
            params
                .iter()
                .position(|q| std::ptr::eq(*q, p))
                .expect("a parameter of this network") as u32
        };
        let lin = |l: &super::nn::Linear| LinearIds {
            weight: id(&l.weight),
            bias: l.bias.as_ref().map(id),
        };
        let emb = &net.vit.embeddings;
        Self {
            cls_token: id(&emb.cls_token),
            position_embeddings: id(&emb.position_embeddings),
            patch: lin(&emb.patch_embeddings.projection),
            layers: net
                .vit
                .layers
                .iter()
                .map(|l| LayerIds {
                    ln_before: (id(&l.layernorm_before.weight), id(&l.layernorm_before.bias)),
                    query: lin(&l.attention.attention.query),
                    key: lin(&l.attention.attention.key),
                    value: lin(&l.attention.attention.value),
                    attn_out: lin(&l.attention.output),
                    ln_after: (id(&l.layernorm_after.weight), id(&l.layernorm_after.bias)),
                    fc1: lin(&l.intermediate.dense),
                    fc2: lin(&l.output.dense),
                })
                .collect(),
            final_ln: (id(&net.vit.layernorm.weight), id(&net.vit.layernorm.bias)),
            classifier: lin(&net.classifier),
            count: params.len() as u32,
        }
    }

    /// The linear layer at `site`.
    pub fn linear(&self, site: LinearSite) -> Option<LinearIds> {
        let layer = |l: usize| self.layers.get(l);
        match site {
            LinearSite::PatchEmbed => Some(self.patch),
            LinearSite::Query(l) => layer(l).map(|x| x.query),
            LinearSite::Key(l) => layer(l).map(|x| x.key),
            LinearSite::Value(l) => layer(l).map(|x| x.value),
            LinearSite::AttnOut(l) => layer(l).map(|x| x.attn_out),
            LinearSite::Fc1(l) => layer(l).map(|x| x.fc1),
            LinearSite::Fc2(l) => layer(l).map(|x| x.fc2),
            LinearSite::Classifier => Some(self.classifier),
        }
    }

    /// `(weight, bias)` of the LayerNorm at `site`.
    pub fn norm(&self, site: NormSite) -> Option<(u32, u32)> {
        match site {
            NormSite::Before(l) => self.layers.get(l).map(|x| x.ln_before),
            NormSite::After(l) => self.layers.get(l).map(|x| x.ln_after),
            NormSite::Final => Some(self.final_ln),
        }
    }

    /// Where tensor `id` lives: `Some(block)` for encoder blocks, `None` for the final
    /// LayerNorm and the classifier; `Err` for the embeddings (shared by all query rows of an image).
    pub fn block_of(&self, id: u32) -> std::result::Result<Option<usize>, &'static str> {
        if id == self.cls_token
            || id == self.position_embeddings
            || id == self.patch.weight
            || Some(id) == self.patch.bias
        {
            return Err("embeddings");
        }
        match self.layers.iter().position(|l| l.all().contains(&id)) {
            Some(b) => Ok(Some(b)),
            None if id < self.count => Ok(None),
            None => Err("out of range"),
        }
    }
}

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

/// Adds `sigma * eps` to the outputs of `sites` for query row `row`:
/// `eps = Stream::lr(seed, step, site, row).normal(token * out_dim + unit)`, on every row of the
/// output it is given (the classification forward gives only the rows of [`lr_noise_tokens`]).
#[derive(Debug, Clone)]
pub struct LrNoiseHook {
    pub seed: u64,
    pub step: u32,
    pub row: u32,
    pub sigma: f32,
    pub sites: Vec<LinearSite>,
}

impl LrNoiseHook {
    /// The unscaled noise `eps` of `site` over `len` output values, if `site` is perturbed.
    pub fn noise(&self, site: LinearSite, len: usize) -> Option<Vec<f32>> {
        if !self.sites.contains(&site) {
            return None;
        }
        let mut eps = vec![0.0f32; len];
        Stream::lr(self.seed, self.step, site, self.row).fill(0, &mut eps);
        Some(eps)
    }

    /// `output += sigma * eps`.
    pub fn add(&self, eps: &[f32], output: &mut [f32]) {
        for (o, e) in output.iter_mut().zip(eps) {
            *o += self.sigma * e;
        }
    }
}

impl ForwardHook for LrNoiseHook {
    fn linear(&mut self, site: LinearSite, _input: &[f32], output: &mut [f32]) {
        if let Some(eps) = self.noise(site, output.len()) {
            self.add(&eps, output);
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

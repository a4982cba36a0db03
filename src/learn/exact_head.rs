//! The `exactHead` option: the classifier head's gradient (and the final LayerNorm's, which
//! feeds only the head) taken exactly from the clean pass, so every query goes to the tuned
//! blocks. No backward pass through the network: with `h = LN(s)` the head's input for the
//! CLS stream `s` entering the final LayerNorm and `d = (softmax(z) - onehot(y)) / B` the
//! exact gradient of the mean loss at the logits,
//! `g_W = sum_i d_i h_i^T`, `g_b = sum_i d_i`, and through `d_h = W^T d_i`:
//! `g_gamma = sum_i d_h * x_hat_i`, `g_beta = sum_i d_h`.
//!
//! The head's tensors leave the backend's step plan; the trainer steps them with their own
//! optimiser (the run's kind and settings over these tensors only: clipping applies to each
//! part apart) and writes them to the backend once the blocks' step succeeded.

use std::ops::Range;

use super::backend::Backend;
use super::error::LearnError;
use super::optim::{Optimizer, OptimizerConfig};
use crate::model::nn::softmax;
use crate::model::{ParamTable, ViTForImageClassification};

#[derive(Debug, Clone)]
struct Parts {
    ln_w: Range<usize>,
    ln_b: Range<usize>,
    w: Range<usize>,
    b: Option<Range<usize>>,
}

pub struct ExactHead {
    /// Final LayerNorm weight and bias, classifier weight (and bias), sorted.
    pub tensors: Vec<u32>,
    /// Each tensor's range in the flat vector, in `tensors` order.
    ranges: Vec<Range<usize>>,
    /// The ranges of the final LayerNorm's weight and bias and the classifier's weight and bias.
    parts: Parts,
    /// Each tensor's learning rate relative to the step's, in `tensors` order.
    lr_scales: Vec<f32>,
    optimizer: Optimizer,
}

/// Which of `tensors` (a sorted list) `ExactHead` owns, in `table`.
pub fn head_tensors(table: &ParamTable) -> Vec<u32> {
    let mut t = vec![table.final_ln.0, table.final_ln.1, table.classifier.weight];
    t.extend(table.classifier.bias);
    t.sort_unstable();
    t
}

impl ExactHead {
    /// Forgets the optimiser's moments ([`Optimizer::reset`]).
    pub fn reset_optimizer(&mut self) {
        self.optimizer.reset();
    }

    /// `head_lr`: the classifier's learning rate relative to the step's (the final LayerNorm
    /// moves at the step's).
    pub fn new(table: &ParamTable, config: OptimizerConfig, head_lr: f32) -> Result<Self, LearnError> {
        let tensors = head_tensors(table);
        let layout = table
            .layout(&tensors)
            .map_err(|message| LearnError::Config { message })?;
        let ranges = (0..tensors.len()).map(|i| layout.range_at(i)).collect();
        let at = |t: u32| {
            layout.range(t).ok_or_else(|| LearnError::Config {
                message: format!("exact head: tensor {t} missing from its layout"),
            })
        };
        let parts = Parts {
            ln_w: at(table.final_ln.0)?,
            ln_b: at(table.final_ln.1)?,
            w: at(table.classifier.weight)?,
            b: table.classifier.bias.map(at).transpose()?,
        };
        let classifier = [Some(table.classifier.weight), table.classifier.bias];
        let lr_scales = tensors
            .iter()
            .map(|t| if classifier.contains(&Some(*t)) { head_lr } else { 1.0 })
            .collect();
        Ok(Self {
            optimizer: Optimizer::new(config, layout.total)?,
            tensors,
            ranges,
            parts,
            lr_scales,
        })
    }

    /// The exact gradient of the batch's mean loss over `self.tensors` (flat), from each
    /// image's CLS stream entering the final LayerNorm (`streams`, `[B, D]`), its logits and
    /// label; `params` are the tensors' values (flat, as [`Backend::read_params`] gives).
    pub fn gradient(
        &self,
        net: &ViTForImageClassification,
        params: &[f32],
        streams: &[f32],
        logits: &[f32],
        labels: &[usize],
    ) -> Result<Vec<f32>, LearnError> {
        let Parts {
            ln_w: r_lw,
            ln_b: r_lb,
            w: r_w,
            b: r_b,
        } = self.parts.clone();
        let (ln_w, ln_b, w) = (&params[r_lw.clone()], &params[r_lb.clone()], &params[r_w.clone()]);
        let (d, c, n) = (ln_w.len(), net.config.num_labels(), labels.len());
        if streams.len() != n * d || logits.len() != n * c || w.len() != c * d {
            return Err(LearnError::Config {
                message: format!(
                    "exact head: {} stream and {} logit values for {n} images of width {d} and {c} classes",
                    streams.len(),
                    logits.len()
                ),
            });
        }
        let x_hat = net.vit.layernorm.normalize(streams);
        let mut g = vec![0.0f64; params.len()];
        for ((xh, z), &y) in x_hat.chunks_exact(d).zip(logits.chunks_exact(c)).zip(labels) {
            let p = softmax(z);
            let h: Vec<f32> = xh.iter().zip(ln_w).zip(ln_b).map(|((x, g), b)| x * g + b).collect();
            let mut d_h = vec![0.0f64; d];
            for (k, &pk) in p.iter().enumerate() {
                let dk = (pk - (k == y) as u8 as f32) as f64 / n as f64;
                if let Some(r) = &r_b {
                    g[r.start + k] += dk;
                }
                let row = &w[k * d..(k + 1) * d];
                for j in 0..d {
                    g[r_w.start + k * d + j] += dk * h[j] as f64;
                    d_h[j] += dk * row[j] as f64;
                }
            }
            for j in 0..d {
                g[r_lw.start + j] += d_h[j] * xh[j] as f64;
                g[r_lb.start + j] += d_h[j];
            }
        }
        Ok(g.into_iter().map(|v| v as f32).collect())
    }

    /// One optimiser step of the head from its exact gradient at learning rate `lr`: the new
    /// values (flat over `self.tensors`, for the caller to write once the rest of the step
    /// succeeded) and the gradient's norm.
    pub async fn step(
        &mut self,
        backend: &dyn Backend,
        streams: &[f32],
        logits: &[f32],
        labels: &[usize],
        lr: f32,
        step: usize,
    ) -> Result<(Vec<f32>, f32), LearnError> {
        let mut params = backend.read_params(&self.tensors).await?;
        let grad = self.gradient(backend.host_network(), &params, streams, logits, labels)?;
        let segments: Vec<(usize, f32)> = self
            .ranges
            .iter()
            .zip(&self.lr_scales)
            .map(|(r, s)| (r.len(), lr * s))
            .collect();
        let norm = self.optimizer.step_segments(&mut params, &grad, &segments);
        if !norm.is_finite() || params.iter().any(|p| !p.is_finite()) {
            return Err(LearnError::NonFinite { step });
        }
        Ok((params, norm))
    }

    /// Forward-equivalent FLOPs of the gradient per image: the outer product, `W^T d` and the
    /// LayerNorm's affine terms.
    pub fn flops_per_image(net: &ViTForImageClassification) -> f64 {
        let (d, c) = (net.config.hidden_size as f64, net.config.num_labels() as f64);
        4.0 * c * d + 6.0 * d
    }
}

//! Validation: loss, accuracy and confusion on the run's validation set (where
//! [`EVALUATE_ON_GPU`] says), and the gallery of validation images with their predictions on
//! the current weights.

use js_sys::{Array, Object};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::device::EVALUATE_ON_GPU;
use super::reports::Evaluation;
use super::{image_object, images, js_err, predict, retry_on_lost_device, set, to_js, with_trainer, Learner};
use crate::backend::cpu::CpuBackend;
use crate::learn::data::Examples;
use crate::learn::trainer::{evaluate, EvalResult, Trainer};

/// Evaluates the trainer's current network: on its own backend, except on WebGPU while
/// [`EVALUATE_ON_GPU`] is false (then on the CPU after reading the weights back); returns where.
async fn evaluate_trainer(t: &mut Trainer, val: &Examples) -> Result<(EvalResult, &'static str), JsError> {
    if t.backend.name() != "webgpu" || EVALUATE_ON_GPU {
        let r = t.evaluate(val).await.map_err(js_err)?;
        return Ok((r, t.backend.name()));
    }
    let net = t.backend.network().await.map_err(js_err)?;
    let mut cpu = CpuBackend::new(net.clone());
    let r = evaluate(&mut cpu, val, 64).await.map_err(js_err)?;
    Ok((r, "cpu"))
}

#[wasm_bindgen]
impl Learner {
    /// Loss, accuracy, confusion matrix and per-class accuracy on the validation set; `backend`
    /// says where it ran (the device panel's `evaluationBackend` during training).
    pub fn evaluate(&self) -> js_sys::Promise {
        let state = self.state.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            let val = {
                let s = state.borrow();
                match (&s.run, s.validation.is_empty()) {
                    (Some(r), _) if !r.validation.is_empty() => r.validation.clone(),
                    (_, false) => s.validation.clone(),
                    _ => return Err(JsError::new("no validation data").into()),
                }
            };
            // During a run, on its weights (a lost WebGPU device: on the CPU, where the run moved).
            let during = retry_on_lost_device(&state, &device, async || {
                with_trainer(&state, async |t| {
                    let r = evaluate_trainer(t, &val).await;
                    r.map(|(r, backend)| (r, t.step, t.queries, backend))
                })
                .await?
                .transpose()
            })
            .await?;
            let (res, step, queries, backend) = match during {
                Some(r) => r,
                None => {
                    let mut b = CpuBackend::new(state.borrow().model.net.clone());
                    let r = evaluate(&mut b, &val, 64).await.map_err(js_err)?;
                    (r, 0, 0, "cpu")
                }
            };
            let per_class = res
                .confusion
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    let total: usize = row.iter().sum();
                    (total > 0).then(|| row[i] as f32 / total as f32)
                })
                .collect();
            to_js(&Evaluation {
                loss: res.loss,
                accuracy: res.accuracy,
                confusion: res.confusion,
                per_class_accuracy: per_class,
                size: val.len(),
                step,
                queries,
                backend,
            })
            .map_err(Into::into)
        })
    }

    /// Up to `max` validation images with their predictions on the current weights:
    /// resolves to `[{image: {width, height, data}, label, predicted, prob}]`.
    pub fn gallery(&self, max: usize) -> js_sys::Promise {
        let state = self.state.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            let picks = {
                let s = state.borrow();
                let val = match &s.run {
                    Some(r) => &r.validation,
                    None => &s.validation,
                };
                // Spread the picks over the set (it is ordered by class).
                let step = (val.len() / max.max(1)).max(1);
                let idx: Vec<usize> = (0..val.len()).step_by(step).take(max).collect();
                val.select(&idx)
            };
            let out = Array::new();
            if picks.is_empty() {
                return Ok(out.into());
            }
            let (logits, _) = retry_on_lost_device(&state, &device, async || {
                predict::logits(&state, &device, &picks.pixels).await
            })
            .await?;
            let s = state.borrow();
            let (h, w) = s.model.config().image_size.hw();
            let ch = s.model.config().num_channels;
            let classes = logits.len() / picks.len();
            for (i, z) in logits.chunks_exact(classes).enumerate() {
                let p = crate::model::nn::softmax(z);
                let pred = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
                let o = Object::new();
                let rgba = images::tensor_to_rgba(&s.model.preprocessor, picks.image(i), ch, h * w);
                set(&o, "image", image_object(w, h, &rgba));
                set(&o, "label", picks.labels[i] as u32);
                set(&o, "predicted", pred as u32);
                set(&o, "prob", p[pred]);
                out.push(&o);
            }
            Ok(out.into())
        })
    }
}

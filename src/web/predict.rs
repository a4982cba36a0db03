//! Classification on the current weights: during a run on the trainer's backend (its device
//! holds the newest parameters; the host copy may be older), otherwise on WebGPU where present
//! (the model uploaded once per version of the weights) or the CPU.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::device::Device;
use super::reports::{Prediction, TopK};
use super::{images, js_err, put_trainer, retry_on_lost_device, take_trainer, to_js, Learner, State};
use crate::gpu::{GpuForward, GpuModel, RowPlan};
use crate::learn::backend::Batch;
use crate::model::nn::softmax;
use crate::model::{Image, NoHook};

/// Logits `[B, classes]` of preprocessed images `pixels: [B, C, H, W]` on the current weights,
/// and where they ran.
pub(super) async fn logits(
    state: &RefCell<State>,
    device: &Device,
    pixels: &[f32],
) -> Result<(Vec<f32>, &'static str), JsError> {
    let n = pixels.len() / state.borrow().image_len().max(1);
    if let Some(mut t) = take_trainer(state)? {
        let labels = vec![0; n];
        let out = t
            .backend
            .clean(&Batch {
                pixels,
                labels: &labels,
            })
            .await;
        let backend = t.backend.name();
        put_trainer(state, t);
        return Ok((out.map_err(js_err)?.logits, backend));
    }
    let Some(g) = device.training_gpu() else {
        let s = state.borrow();
        let net = &s.model.net;
        let logits = pixels
            .chunks_exact(s.image_len())
            .flat_map(|img| net.forward(img, &mut NoHook))
            .collect();
        return Ok((logits, "cpu"));
    };
    let (version, layers) = {
        let s = state.borrow();
        (s.version, s.model.config().num_hidden_layers)
    };
    let model = {
        let mut up = g.uploaded.borrow_mut();
        match &*up {
            Some((v, m)) if *v == version => m.clone(),
            _ => {
                let m = Rc::new(GpuModel::upload(&g.ctx, &state.borrow().model.net).map_err(js_err)?);
                *up = Some((version, m.clone()));
                m
            }
        }
    };
    let plan = RowPlan::clean(&vec![0; n], layers);
    let out = GpuForward::run(&g.ctx, &model, pixels, &plan).await.map_err(js_err)?;
    Ok((out.logits, "webgpu"))
}

/// The prediction record of one image's logits.
pub(super) fn prediction(labels: Vec<String>, logits: &[f32], device: &'static str) -> Prediction {
    let probabilities = softmax(logits);
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let top = order
        .iter()
        .take(5)
        .map(|&i| TopK {
            label: labels.get(i).cloned().unwrap_or_default(),
            prob: probabilities[i],
        })
        .collect();
    Prediction {
        labels,
        probabilities,
        top,
        logits: logits.to_vec(),
        device,
    }
}

#[wasm_bindgen]
impl Learner {
    /// Classifies raw pixels at any size (RGBA `ImageData`, gray or RGB), preprocessed exactly
    /// as `flops predict` does.
    #[wasm_bindgen(js_name = predictPixels)]
    pub fn predict_pixels(&self, width: u32, height: u32, data: Vec<u8>) -> js_sys::Promise {
        let img = images::raw_image(width, height, data);
        self.predict_image(img)
    }

    /// Classifies encoded bytes (PNG, JPEG, ...), decoded and preprocessed exactly as
    /// `flops predict` does.
    #[wasm_bindgen(js_name = predictEncoded)]
    pub fn predict_encoded(&self, bytes: &[u8]) -> js_sys::Promise {
        self.predict_image(Image::decode(bytes))
    }

    fn predict_image(&self, img: crate::model::Result<Image>) -> js_sys::Promise {
        let state = self.state.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            let img = img.map_err(js_err)?;
            let pixels = state.borrow().preprocess(&img)?;
            let (logits, backend) =
                retry_on_lost_device(&state, &device, async || logits(&state, &device, &pixels).await).await?;
            let labels = state.borrow().net().config.labels();
            to_js(&prediction(labels, &logits, backend)).map_err(Into::into)
        })
    }
}

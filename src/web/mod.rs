//! The browser API (wasm32 only), used from a Web Worker (`web/worker.js`) and wrapped by the
//! hand-written ES module `web/flops-web.js`, whose `flops-web.d.ts` documents it for JS users.
//!
//! A [`Learner`] owns the model files, the examples (as preprocessed tensors), the trainer and,
//! where the browser has WebGPU, a [`GpuContext`] used for training and predictions. Training is
//! driven step by step from JS (`beginTraining`, `trainStep`, `evaluate`, `finishTraining`, all
//! returning promises) so the worker yields between steps and `stopTraining` takes effect at
//! once. The trainer is the native one (`Trainer`): each step is awaited, on WebGPU
//! where an adapter exists, else on the CPU reference. Every fallible call returns
//! `Result<_, JsError>`, so JS sees an `Error` with the core's message; panics print through
//! `console_error_panic_hook`.

mod images;
mod reports;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Array, Object, Reflect, Uint8Array, Uint8ClampedArray};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use reports::{DataSummary, DeviceInfo, Evaluation, Limits, ModelInfo, Prediction, TopK, TrainingStarted};

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::gpu::{GpuContext, GpuForward, GpuModel, GpuOptions, Perturbation, QueryRow, RowPlan};
use crate::learn::backend::Backend;
use crate::learn::data::Dataset;
use crate::learn::data::Examples;
use crate::learn::options::TrainOptions;
use crate::learn::trainer::Trainer;
use crate::model::nn::softmax;
use crate::model::{Image, LoadOptions, Model, ModelFiles, ViTForImageClassification};

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js_err)
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// The bytes of the model folder the learner was made from (kept to rebuild the head when the
/// classes change).
#[derive(Clone)]
struct OwnedFiles {
    config: Vec<u8>,
    weights: Vec<u8>,
    preprocessor: Option<Vec<u8>>,
}

impl OwnedFiles {
    fn files(&self) -> ModelFiles<'_> {
        ModelFiles {
            config: Some(&self.config),
            weights: Some(&self.weights),
            preprocessor: self.preprocessor.as_deref(),
        }
    }
}

/// The WebGPU device and the model's weights on it (re-uploaded when the weights change).
struct Gpu {
    ctx: Arc<GpuContext>,
    uploaded: RefCell<Option<(u64, Rc<GpuModel>)>>,
}

struct State {
    files: OwnedFiles,
    model: Model,
    /// Bumped whenever `model.net` changes (to re-upload it to the GPU).
    version: u64,
    classes: Vec<String>,
    train: Examples,
    /// An explicit validation set (Animal-Shape's test split); else one is split off.
    validation: Examples,
    trainer: Option<Trainer>,
    /// The trainer is out of `trainer` while one of its awaits runs (a step, a readback).
    busy: bool,
    validation_prepared: Option<Examples>,
    seed: u64,
}

impl State {
    fn image_len(&self) -> usize {
        self.model.config().image_numel()
    }

    fn net(&self) -> &ViTForImageClassification {
        match &self.trainer {
            // The GPU's host copy is as of the last readback (evaluation or `finishTraining`).
            Some(t) => t.backend.host_network(),
            None => &self.model.net,
        }
    }

    fn preprocess(&self, image: &Image) -> Result<Vec<f32>, JsError> {
        self.model.preprocessor.apply(image).map_err(js_err)
    }

    fn check_class(&self, class: usize) -> Result<(), JsError> {
        if class >= self.classes.len() {
            return Err(JsError::new(&format!(
                "class index {class} out of range: {} classes ({}); call addClass first",
                self.classes.len(),
                self.classes.join(", ")
            )));
        }
        Ok(())
    }

    fn summary(&self) -> DataSummary {
        DataSummary {
            classes: self.classes.clone(),
            counts: self.train.counts(self.classes.len()),
            validation_counts: self.validation.counts(self.classes.len()),
        }
    }

    fn classify(&self, pixels: &[f32]) -> Prediction {
        let logits = self.net().forward(pixels, &mut crate::model::NoHook);
        self.prediction(&logits, "cpu")
    }

    fn prediction(&self, logits: &[f32], device: &'static str) -> Prediction {
        let labels = self.net().config.labels();
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
            device,
        }
    }
}

/// A fine-tuning session: one model, its examples, its device.
#[wasm_bindgen]
pub struct Learner {
    state: Rc<RefCell<State>>,
    gpu: Rc<Option<Gpu>>,
    device: Rc<DeviceInfo>,
}

/// Makes a learner. `model`: `undefined` for the embedded default model, or
/// `{config, weights, preprocessor?}` as `Uint8Array`s (a HF model folder). `device`:
/// `"auto"` (WebGPU where present, else CPU), `"webgpu"` (error without it) or `"cpu"`.
#[wasm_bindgen(js_name = createLearner)]
pub async fn create_learner(
    config: Option<Vec<u8>>,
    weights: Option<Vec<u8>>,
    preprocessor: Option<Vec<u8>>,
    device: Option<String>,
) -> Result<Learner, JsError> {
    console_error_panic_hook::set_once();
    let files = match (config, weights) {
        (Some(config), Some(weights)) => OwnedFiles {
            config,
            weights,
            preprocessor,
        },
        (None, None) => OwnedFiles {
            config: crate::model::embedded::CONFIG.to_vec(),
            weights: crate::model::embedded::WEIGHTS.to_vec(),
            preprocessor: Some(crate::model::embedded::PREPROCESSOR.to_vec()),
        },
        (None, Some(_)) => return Err(JsError::new("model: config.json is missing")),
        (Some(_), None) => return Err(JsError::new("model: model.safetensors is missing")),
    };
    let model = Model::load(files.files(), &LoadOptions::default()).map_err(js_err)?;
    let device = device.unwrap_or_else(|| "auto".into());
    let (gpu, reason) = match device.as_str() {
        "cpu" => (None, Some("CPU requested (device: \"cpu\")".to_string())),
        "auto" | "webgpu" => match GpuContext::new(&GpuOptions::default()).await {
            Ok(ctx) => (Some(ctx), None),
            Err(e) if device == "webgpu" => return Err(JsError::new(&format!("device \"webgpu\": {e}"))),
            Err(e) => (None, Some(format!("WebGPU unavailable: {e}"))),
        },
        other => {
            return Err(JsError::new(&format!(
                "unknown device `{other}`; one of: auto, webgpu, cpu"
            )))
        }
    };
    let info = DeviceInfo {
        webgpu: gpu.is_some(),
        reason,
        adapter: gpu.as_ref().map(|g| g.summary()),
        limits: gpu.as_ref().map(|g| Limits {
            max_compute_invocations_per_workgroup: g.limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: g.limits.max_compute_workgroup_size_x,
            max_compute_workgroup_storage_size: g.limits.max_compute_workgroup_storage_size,
            max_storage_buffer_binding_size: g.limits.max_storage_buffer_binding_size,
            max_buffer_size: g.limits.max_buffer_size,
            max_storage_buffers_per_shader_stage: g.limits.max_storage_buffers_per_shader_stage,
            max_compute_workgroups_per_dimension: g.limits.max_compute_workgroups_per_dimension,
        }),
        training_backend: if gpu.is_some() { "webgpu" } else { "cpu" },
        evaluation_backend: if gpu.is_some() && EVALUATE_ON_GPU {
            "webgpu"
        } else {
            "cpu"
        },
        predict_backend: if gpu.is_some() { "webgpu" } else { "cpu" },
    };
    let image_len = model.config().image_numel();
    let state = State {
        files,
        model,
        version: 0,
        classes: Vec::new(),
        train: Examples::new(image_len),
        validation: Examples::new(image_len),
        trainer: None,
        busy: false,
        validation_prepared: None,
        seed: 0,
    };
    Ok(Learner {
        state: Rc::new(RefCell::new(state)),
        gpu: Rc::new(gpu.map(|ctx| Gpu {
            // `GpuBackend` shares the context through an `Arc` on every target; on wasm32 there
            // is one thread, so the missing `Send` does not matter.
            #[allow(clippy::arc_with_non_send_sync)]
            ctx: Arc::new(ctx),
            uploaded: RefCell::new(None),
        })),
        device: Rc::new(info),
    })
}

#[wasm_bindgen]
impl Learner {
    /// The adapter, its limits and where training and predictions run.
    #[wasm_bindgen(js_name = deviceInfo)]
    pub fn device_info(&self) -> Result<JsValue, JsError> {
        to_js(&*self.device)
    }

    /// The model's labels, input size and shape.
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> Result<JsValue, JsError> {
        let s = self.state.borrow();
        let c = s.net().config.clone();
        let (h, w) = c.image_size.hw();
        to_js(&ModelInfo {
            labels: c.labels(),
            image_size: [h, w],
            channels: c.num_channels,
            hidden_size: c.hidden_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            parameters: s.net().params().iter().map(|p| p.numel()).sum(),
        })
    }

    /// Seeds the head initialisation, the validation split and training.
    #[wasm_bindgen(js_name = setSeed)]
    pub fn set_seed(&self, seed: f64) -> Result<(), JsError> {
        if !(seed >= 0.0 && seed.fract() == 0.0 && seed <= 9_007_199_254_740_991.0) {
            return Err(JsError::new(&format!(
                "seed must be a non-negative integer, got {seed}"
            )));
        }
        self.state.borrow_mut().seed = seed as u64;
        Ok(())
    }

    /// Adds a class; returns its index.
    #[wasm_bindgen(js_name = addClass)]
    pub fn add_class(&self, name: String) -> Result<usize, JsError> {
        let mut s = self.state.borrow_mut();
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(JsError::new("a class needs a non-empty name"));
        }
        if s.classes.contains(&name) {
            return Err(JsError::new(&format!("class `{name}` already exists")));
        }
        s.classes.push(name);
        Ok(s.classes.len() - 1)
    }

    /// Removes a class and its examples; classes above it shift down by one.
    #[wasm_bindgen(js_name = removeClass)]
    pub fn remove_class(&self, class: usize) -> Result<(), JsError> {
        let mut s = self.state.borrow_mut();
        s.check_class(class)?;
        s.classes.remove(class);
        s.train.remove_class(class);
        s.validation.remove_class(class);
        Ok(())
    }

    /// Adds one example from raw pixels (`ImageData`: RGBA; or gray/RGB bytes).
    #[wasm_bindgen(js_name = addExamplePixels)]
    pub fn add_example_pixels(&self, class: usize, width: u32, height: u32, data: Vec<u8>) -> Result<usize, JsError> {
        let img = images::raw_image(width, height, data).map_err(js_err)?;
        self.add_image(class, &img)
    }

    /// Adds one example from encoded bytes (PNG, JPEG, BMP, GIF, WebP).
    #[wasm_bindgen(js_name = addExampleEncoded)]
    pub fn add_example_encoded(&self, class: usize, bytes: &[u8]) -> Result<usize, JsError> {
        let img = Image::decode(bytes).map_err(js_err)?;
        self.add_image(class, &img)
    }

    fn add_image(&self, class: usize, img: &Image) -> Result<usize, JsError> {
        let mut s = self.state.borrow_mut();
        s.check_class(class)?;
        let px = s.preprocess(img)?;
        s.train.push(&px, class);
        Ok(s.train.len())
    }

    /// Replaces classes and examples with the embedded Animal-Shape split: up to `trainPerClass`
    /// training and `validationPerClass` validation images per class (its test split).
    #[wasm_bindgen(js_name = loadAnimalShape)]
    pub fn load_animal_shape(&self, train_per_class: usize, validation_per_class: usize) -> Result<JsValue, JsError> {
        let (train, test) = Dataset::animal_shape().map_err(js_err)?;
        let mut s = self.state.borrow_mut();
        let image_len = s.image_len();
        let fill = |ds: &Dataset, n: usize| -> Result<Examples, JsError> {
            let ds = ds.take_per_class(n);
            let mut ex = Examples::new(image_len);
            for (img, &l) in ds.images.iter().zip(&ds.labels) {
                ex.push(&s.model.preprocessor.apply(img).map_err(js_err)?, l);
            }
            Ok(ex)
        };
        let tr = fill(&train, train_per_class)?;
        let va = fill(&test, validation_per_class)?;
        s.classes = train.classes.clone();
        s.train = tr;
        s.validation = va;
        to_js(&s.summary())
    }

    /// Classes and example counts.
    pub fn summary(&self) -> Result<JsValue, JsError> {
        to_js(&self.state.borrow().summary())
    }

    /// Up to `max` examples of `class` for display: `[{width, height, data}]` (RGBA, model size).
    pub fn thumbnails(&self, class: usize, max: usize) -> Result<Array, JsError> {
        let s = self.state.borrow();
        s.check_class(class)?;
        let out = Array::new();
        let (h, w) = s.model.config().image_size.hw();
        let ch = s.model.config().num_channels;
        for i in (0..s.train.len()).filter(|&i| s.train.labels[i] == class).take(max) {
            let rgba = images::tensor_to_rgba(&s.model.preprocessor, s.train.image(i), ch, h * w);
            out.push(&image_object(w, h, &rgba));
        }
        Ok(out)
    }

    /// Prepares a run: (re)builds the head when the classes differ from the model's labels,
    /// splits off validation data when none was given, and makes the trainer (on WebGPU where
    /// the learner has it). Resolves to `{steps, trainSize, validationSize, backend, ...}`.
    #[wasm_bindgen(js_name = beginTraining)]
    pub fn begin_training(&self, params: JsValue) -> js_sys::Promise {
        let state = self.state.clone();
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let params: TrainOptions = if params.is_undefined() || params.is_null() {
                TrainOptions::default()
            } else {
                serde_wasm_bindgen::from_value(params).map_err(|e| JsError::new(&format!("train params: {e}")))?
            };
            // An unfinished run: keep what it learned.
            if let Some(net) = take_trained(&state).await? {
                let mut s = state.borrow_mut();
                s.model.net = net;
                s.version += 1;
            }
            let mut guard = state.borrow_mut();
            let s = &mut *guard;
            let config = params.to_config(s.seed).map_err(js_err)?;
            let n = s.classes.len();
            if n < 2 {
                return Err(JsError::new(&format!(
                    "a classifier needs at least 2 classes, have {n}; add classes and examples first"
                ))
                .into());
            }
            let counts = s.train.counts(n);
            if let Some(c) = counts.iter().position(|&c| c == 0) {
                return Err(JsError::new(&format!("class `{}` has no examples", s.classes[c])).into());
            }
            if s.model.labels() != s.classes {
                s.model = Model::load(
                    s.files.files(),
                    &LoadOptions {
                        labels: Some(s.classes.clone()),
                        head_seed: config.seed,
                    },
                )
                .map_err(js_err)?;
                s.version += 1;
            }
            let (train, val) = if s.validation.is_empty() {
                s.train.split(n, params.validation_fraction, config.seed)
            } else {
                (s.train.clone(), s.validation.clone())
            };
            let steps = config.steps;
            let backend: Box<dyn Backend> = match gpu.as_ref() {
                Some(g) => Box::new(GpuBackend::new(g.ctx.clone(), s.model.net.clone()).map_err(js_err)?),
                None => Box::new(CpuBackend::new(s.model.net.clone())),
            };
            let backend_name = backend.name();
            let trainer = Trainer::new(backend, config, train.clone()).map_err(js_err)?;
            let net = trainer.backend.host_network();
            let tuned = trainer
                .tuned_tensors()
                .iter()
                .map(|&t| net.params()[t as usize].numel())
                .sum();
            let started = TrainingStarted {
                steps,
                train_size: train.len(),
                validation_size: val.len(),
                backend: backend_name,
                tuned_parameters: tuned,
                classes: s.classes.clone(),
            };
            s.validation_prepared = (!val.is_empty()).then(|| val.clone());
            s.trainer = Some(trainer);
            to_js(&started).map_err(Into::into)
        })
    }

    /// One training step, awaited on the trainer's backend; resolves to the step's metrics
    /// (loss, accuracy, allocation, ..., `backend`).
    #[wasm_bindgen(js_name = trainStep)]
    pub fn train_step(&self) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let mut t = take_trainer(&state)?
                .ok_or_else(|| JsError::new("no training in progress; call beginTraining first"))?;
            let ev = t.step().await;
            let backend = t.backend.name();
            put_trainer(&state, t);
            let v = to_js(&ev.map_err(js_err)?)?;
            set(v.unchecked_ref(), "backend", backend);
            Ok(v)
        })
    }

    /// Loss, accuracy, confusion matrix and per-class accuracy on the validation set; `backend`
    /// says where it ran (the device panel's `evaluationBackend` during training).
    pub fn evaluate(&self) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let val = {
                let s = state.borrow();
                match (&s.validation_prepared, s.validation.is_empty()) {
                    (Some(v), _) => v.clone(),
                    (None, false) => s.validation.clone(),
                    (None, true) => return Err(JsError::new("no validation data").into()),
                }
            };
            let (res, step, queries, backend) = match take_trainer(&state)? {
                Some(mut t) => {
                    let r = evaluate_trainer(&mut t, &val).await;
                    let (step, queries) = (t.step, t.queries);
                    put_trainer(&state, t);
                    let (r, backend) = r?;
                    (r, step, queries, backend)
                }
                None => {
                    let mut b = CpuBackend::new(state.borrow().model.net.clone());
                    let r = crate::learn::trainer::evaluate(&mut b, &val, 64)
                        .await
                        .map_err(js_err)?;
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

    /// Up to `max` validation images with their predictions:
    /// `[{image: {width, height, data}, label, predicted, prob}]`.
    pub fn gallery(&self, max: usize) -> Result<Array, JsError> {
        let s = self.state.borrow();
        let val = match &s.validation_prepared {
            Some(v) => v.clone(),
            None => s.validation.clone(),
        };
        let (h, w) = s.model.config().image_size.hw();
        let ch = s.model.config().num_channels;
        let out = Array::new();
        // Spread the picks over the set (it is ordered by class).
        let step = (val.len() / max.max(1)).max(1);
        for i in (0..val.len()).step_by(step).take(max) {
            let px = val.image(i);
            let p = s.classify(px);
            let pred = (0..p.probabilities.len())
                .max_by(|&a, &b| p.probabilities[a].total_cmp(&p.probabilities[b]))
                .unwrap_or(0);
            let o = Object::new();
            let rgba = images::tensor_to_rgba(&s.model.preprocessor, px, ch, h * w);
            set(&o, "image", image_object(w, h, &rgba));
            set(&o, "label", val.labels[i] as u32);
            set(&o, "predicted", pred as u32);
            set(&o, "prob", p.probabilities[pred]);
            out.push(&o);
        }
        Ok(out)
    }

    /// Ends the run, keeping the trained weights in the model (read back from the GPU).
    /// Resolves to whether a run was in progress.
    #[wasm_bindgen(js_name = finishTraining)]
    pub fn finish_training(&self) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            match take_trained(&state).await? {
                Some(net) => {
                    let mut s = state.borrow_mut();
                    s.model.net = net;
                    s.version += 1;
                    Ok(JsValue::TRUE)
                }
                None => Ok(JsValue::FALSE),
            }
        })
    }

    /// Classifies raw pixels (RGBA `ImageData`, gray or RGB); on WebGPU where present.
    #[wasm_bindgen(js_name = predictPixels)]
    pub fn predict_pixels(&self, width: u32, height: u32, data: Vec<u8>) -> js_sys::Promise {
        let img = images::raw_image(width, height, data);
        self.predict_image(img)
    }

    /// Classifies encoded bytes (PNG, JPEG, ...); on WebGPU where present.
    #[wasm_bindgen(js_name = predictEncoded)]
    pub fn predict_encoded(&self, bytes: &[u8]) -> js_sys::Promise {
        self.predict_image(Image::decode(bytes))
    }

    fn predict_image(&self, img: crate::model::Result<Image>) -> js_sys::Promise {
        let state = self.state.clone();
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let img = img.map_err(js_err)?;
            let (pixels, version, layers) = {
                let s = state.borrow();
                (s.preprocess(&img)?, s.version, s.net().config.num_hidden_layers)
            };
            let Some(g) = gpu.as_ref() else {
                return to_js(&state.borrow().classify(&pixels)).map_err(Into::into);
            };
            // During training the trainer's network is the current one: predict on the CPU then.
            if state.borrow().trainer.is_some() {
                return to_js(&state.borrow().classify(&pixels)).map_err(Into::into);
            }
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
            let plan = RowPlan {
                rows: vec![QueryRow {
                    image: 0,
                    label: 0,
                    perturbation: Perturbation::Clean,
                }],
                first_tuned: layers,
            };
            let out = GpuForward::run(&g.ctx, &model, &pixels, &plan).await.map_err(js_err)?;
            to_js(&state.borrow().prediction(&out.logits, "webgpu")).map_err(Into::into)
        })
    }

    /// The model as a HF folder: `{config, weights, preprocessor}` (`config.json`,
    /// `model.safetensors`, `preprocessor_config.json` bytes); during a run, the trainer's
    /// current weights.
    #[wasm_bindgen(js_name = exportModel)]
    pub fn export_model(&self) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let net = match take_trainer(&state)? {
                Some(mut t) => {
                    let net = t.backend.network().await.cloned();
                    put_trainer(&state, t);
                    net.map_err(js_err)?
                }
                None => state.borrow().model.net.clone(),
            };
            let mut model = state.borrow().model.clone();
            model.net = net;
            let e = model.export().map_err(js_err)?;
            let o = Object::new();
            set(&o, "config", Uint8Array::from(e.config.as_bytes()));
            set(&o, "weights", Uint8Array::from(e.weights.as_slice()));
            set(&o, "preprocessor", Uint8Array::from(e.preprocessor.as_bytes()));
            Ok(o.into())
        })
    }

    /// Drops the trainer and the examples (the GPU device goes with the learner's `free()`).
    pub fn clear(&self) {
        let mut s = self.state.borrow_mut();
        s.trainer = None;
        s.validation_prepared = None;
        s.train = Examples::new(s.image_len());
        s.validation = Examples::new(s.image_len());
        s.classes.clear();
    }
}

/// Validation during a GPU run: on the GPU (`true`) or, after reading the tuned tensors back,
/// on the CPU reference (`false`). SwiftShader (the CI's WebGPU) runs the full forward of a
/// validation set slower than wasm on the CPU does.
const EVALUATE_ON_GPU: bool = false;

/// Takes the trainer out of `state` for the length of an await, so that calls arriving
/// meanwhile (predictions, summaries) find `state` unborrowed. Errors while another await has it.
fn take_trainer(state: &RefCell<State>) -> Result<Option<Trainer>, JsError> {
    let mut s = state.borrow_mut();
    if s.busy {
        return Err(JsError::new("a training step is running; await it first"));
    }
    let t = s.trainer.take();
    s.busy = t.is_some();
    Ok(t)
}

fn put_trainer(state: &RefCell<State>, t: Trainer) {
    let mut s = state.borrow_mut();
    s.trainer = Some(t);
    s.busy = false;
}

/// Ends the run in `state`, if any, and returns its network as it is now.
async fn take_trained(state: &RefCell<State>) -> Result<Option<ViTForImageClassification>, JsError> {
    let Some(mut t) = take_trainer(state)? else {
        return Ok(None);
    };
    let net = t.backend.network().await.cloned();
    state.borrow_mut().busy = false;
    Ok(Some(net.map_err(js_err)?))
}

/// Evaluates the trainer's current network where [`EVALUATE_ON_GPU`] says; returns the backend.
async fn evaluate_trainer(
    t: &mut Trainer,
    val: &Examples,
) -> Result<(crate::learn::trainer::EvalResult, &'static str), JsError> {
    if t.backend.name() == "cpu" || EVALUATE_ON_GPU {
        let r = t.evaluate(val).await.map_err(js_err)?;
        return Ok((r, t.backend.name()));
    }
    let net = t.backend.network().await.map_err(js_err)?;
    let mut cpu = CpuBackend::new(net.clone());
    let r = crate::learn::trainer::evaluate(&mut cpu, val, 64)
        .await
        .map_err(js_err)?;
    Ok((r, "cpu"))
}

/// `{width, height, data: Uint8ClampedArray}` (an `ImageData`-like object; workers can post it).
fn image_object(width: usize, height: usize, rgba: &[u8]) -> Object {
    let o = Object::new();
    set(&o, "width", width as u32);
    set(&o, "height", height as u32);
    set(&o, "data", Uint8ClampedArray::from(rgba));
    o
}

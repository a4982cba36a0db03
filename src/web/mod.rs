//! The browser API (wasm32 only), used from a Web Worker (`web/worker.js`) and wrapped by the
//! hand-written ES module `web/flops-web.js`, whose `flops-web.d.ts` documents it for JS users.
//!
//! A [`Learner`] owns the model files, the examples (as preprocessed tensors), the trainer and,
//! where the browser has WebGPU, a [`GpuContext`](crate::gpu::GpuContext) used for training and
//! predictions. Training is driven step by step from JS (`beginTraining`, `trainStep`,
//! `evaluate`, `finishTraining`, all returning promises) so the worker yields between steps and
//! `stopTraining` takes effect at once. The trainer is the native one, over a
//! `Box<dyn Backend>`: WebGPU where an adapter exists, else the CPU reference. Every fallible
//! call returns `Result<_, JsError>`, so JS sees an `Error` with the core's message; panics print
//! through `console_error_panic_hook`.
//!
//! One file per job: [`device`] (which device, and what it is), [`dataset`] (classes and
//! examples), [`training`] (a run, step by step), [`evaluation`] (validation and the gallery),
//! [`predict`] (classification, on the current weights), [`export`] (the HF folder); [`images`]
//! and [`reports`] hold the conversions and the records JS sees; [`bench`] times our forward
//! paths for `make bench` (not used by the page).

mod bench;
mod dataset;
mod device;
mod evaluation;
mod export;
mod images;
mod predict;
mod reports;
mod training;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Object, Reflect, Uint8ClampedArray};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use device::Device;
use reports::ModelInfo;

use crate::backend::cpu::CpuBackend;
use crate::learn::data::Examples;
use crate::learn::trainer::Trainer;
use crate::model::nn::Kernels;
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

/// `{width, height, data: Uint8ClampedArray}` (an `ImageData`-like object; workers can post it).
fn image_object(width: usize, height: usize, rgba: &[u8]) -> Object {
    let o = Object::new();
    set(&o, "width", width as u32);
    set(&o, "height", height as u32);
    set(&o, "data", Uint8ClampedArray::from(rgba));
    o
}

/// The bytes of the model folder the learner was made from (kept to rebuild the head when the
/// classes change).
#[derive(Clone)]
struct OwnedFiles {
    config: Vec<u8>,
    weights: Vec<u8>,
    preprocessor: Option<Vec<u8>>,
}

/// The model of `files`, with the fast CPU kernels: wherever the page computes on the CPU
/// (training without WebGPU, validation, predictions) it uses the GEMM path.
fn load(files: &OwnedFiles, options: &LoadOptions) -> Result<Model, JsError> {
    let mut model = Model::load(files.files(), options).map_err(js_err)?;
    model.net.set_kernels(Kernels::Gemm);
    Ok(model)
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

/// A run in progress: its trainer (out of here while one of its awaits runs) and what the run
/// validates on.
struct Run {
    trainer: Option<Trainer>,
    validation: Examples,
    /// Evaluate every this many steps (0: only at the end); the page follows `trainStep`'s
    /// `evaluate` flag, so this is its one owner.
    eval_every: usize,
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
    run: Option<Run>,
    seed: u64,
    /// A message for the page not yet taken ([`Learner::take_notice`]): the device was lost.
    notice: Option<String>,
}

impl State {
    fn image_len(&self) -> usize {
        self.model.config().image_numel()
    }

    fn preprocess(&self, image: &Image) -> Result<Vec<f32>, JsError> {
        self.model.preprocessor.apply(image).map_err(js_err)
    }

    /// The network's structure and labels (values: see [`predict`]).
    fn net(&self) -> &ViTForImageClassification {
        match self.run.as_ref().and_then(|r| r.trainer.as_ref()) {
            Some(t) => t.backend.host_network(),
            None => &self.model.net,
        }
    }
}

/// A fine-tuning session: one model, its examples, its device.
#[wasm_bindgen]
pub struct Learner {
    state: Rc<RefCell<State>>,
    device: Rc<Device>,
}

/// Makes a learner from a HF model folder's files (`config.json`, `model.safetensors`,
/// optionally `preprocessor_config.json`, as bytes; the worker fetches the default model's from
/// beside itself when the caller gives none). `device`:
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
        (None, _) => return Err(JsError::new("model: config.json is missing")),
        (Some(_), None) => return Err(JsError::new("model: model.safetensors is missing")),
    };
    let model = load(&files, &LoadOptions::default())?;
    let device = Device::choose(device.as_deref().unwrap_or("auto"), &model.net).await?;
    let image_len = model.config().image_numel();
    let state = State {
        files,
        model,
        version: 0,
        classes: Vec::new(),
        train: Examples::new(image_len),
        validation: Examples::new(image_len),
        run: None,
        seed: 0,
        notice: None,
    };
    Ok(Learner {
        state: Rc::new(RefCell::new(state)),
        device: Rc::new(device),
    })
}

#[wasm_bindgen]
impl Learner {
    /// The adapter, its limits and where training and predictions run.
    #[wasm_bindgen(js_name = deviceInfo)]
    pub fn device_info(&self) -> Result<JsValue, JsError> {
        to_js(&*self.device.info())
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
            parameters: s.net().num_params(),
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

    /// Switches the device of the next runs and of predictions (`"auto"`, `"webgpu"`, `"cpu"`)
    /// without touching the examples or the trained weights; refused while a run is in
    /// progress (it stays on its device). Returns the new `deviceInfo()`.
    #[wasm_bindgen(js_name = setDevice)]
    pub fn set_device(&self, device: &str) -> Result<JsValue, JsError> {
        if let Some(run) = self.state.borrow().run.as_ref() {
            let on = run.trainer.as_ref().map_or("its device", |t| t.backend.name());
            return Err(JsError::new(&format!(
                "a run is in progress on {on}; stop it before switching the device"
            )));
        }
        self.device.switch(device).map_err(|e| JsError::new(&e))?;
        self.device_info()
    }

    /// The message of an event the page should show, once (the WebGPU device was lost and
    /// the work moved to the CPU), or `null`. The worker asks after every call that may have
    /// moved it.
    #[wasm_bindgen(js_name = takeNotice)]
    pub fn take_notice(&self) -> Option<String> {
        self.state.borrow_mut().notice.take()
    }

    /// Bytes of the tensors on the WebGPU device (`{liveBytes, peakBytes}`: weights,
    /// activations, kept features, optimiser state), or `null` without WebGPU.
    #[wasm_bindgen(js_name = gpuMemory)]
    pub fn gpu_memory(&self) -> Result<JsValue, JsError> {
        match &self.device.gpu {
            Some(g) => to_js(&g.ctx.memory()),
            None => Ok(JsValue::NULL),
        }
    }

    /// The test hook for a lost device: destroys the WebGPU device, as a driver reset or the
    /// browser reclaiming the GPU would. The next step moves the run to the CPU. Returns
    /// whether there was a device.
    #[wasm_bindgen(js_name = destroyDeviceForTesting)]
    pub fn destroy_device_for_testing(&self) -> bool {
        self.device.destroy_for_testing()
    }

    /// Drops the run and the examples (the GPU device goes with the learner's `free()`).
    pub fn clear(&self) {
        let mut s = self.state.borrow_mut();
        s.run = None;
        s.train = Examples::new(s.image_len());
        s.validation = Examples::new(s.image_len());
        s.classes.clear();
    }
}

/// Takes the trainer out of `state` for the length of an await, so that calls arriving
/// meanwhile (summaries, thumbnails) find `state` unborrowed. `Ok(None)`: no run. Errors while
/// another await has it (the worker serialises the calls that need it).
fn take_trainer(state: &RefCell<State>) -> Result<Option<Trainer>, JsError> {
    let mut s = state.borrow_mut();
    let Some(run) = s.run.as_mut() else {
        return Ok(None);
    };
    match run.trainer.take() {
        Some(t) => Ok(Some(t)),
        None => Err(JsError::new("a training step is running; await it first")),
    }
}

fn put_trainer(state: &RefCell<State>, t: Trainer) {
    if let Some(run) = state.borrow_mut().run.as_mut() {
        run.trainer = Some(t);
    }
}

/// After a failure: when the WebGPU device is gone, moves everything to the CPU (a run from
/// its last checkpoint), keeps the message that says so for [`Learner::take_notice`] and
/// returns true: the failed call may be tried again. False when nothing moved (the device is
/// fine, or everything was on the CPU already): the failure stands. The trainer must be in
/// `state`.
async fn recover_from_lost_device(state: &RefCell<State>, device: &Device) -> Result<bool, JsError> {
    let Some(reason) = device.lost().await else {
        return Ok(false);
    };
    let first = device.info().lost.is_none();
    device.mark_lost(&reason);
    let mut s = state.borrow_mut();
    let moved = match s.run.as_mut().and_then(|r| r.trainer.as_mut()) {
        Some(t) if t.backend.name() == "webgpu" => {
            let at = t.step;
            let cpu = CpuBackend::new(t.backend.host_network().clone());
            Some((at, t.move_to(Box::new(cpu)).map_err(js_err)?))
        }
        _ => None,
    };
    let message = match moved {
        Some((at, from)) if at > from => format!(
            "The WebGPU device was lost after step {at} ({reason}). Training goes on on the CPU from the \
             weights of step {from}; {} after it {} lost.",
            if at - from == 1 {
                "the update of the step".to_string()
            } else {
                format!("the updates of the {} steps", at - from)
            },
            if at - from == 1 { "is" } else { "are" }
        ),
        Some((at, _)) => format!(
            "The WebGPU device was lost after step {at} ({reason}). Training goes on on the CPU; nothing was lost."
        ),
        None if first => {
            format!("The WebGPU device was lost ({reason}). Everything runs on the CPU now; nothing was lost.")
        }
        None => return Ok(false),
    };
    s.notice = Some(message);
    Ok(true)
}

/// Lends the run's trainer to `f` for the length of its awaits ([`take_trainer`]) and puts it
/// back; `Ok(None)`: no run.
async fn with_trainer<R>(state: &RefCell<State>, f: impl AsyncFnOnce(&mut Trainer) -> R) -> Result<Option<R>, JsError> {
    let Some(mut t) = take_trainer(state)? else {
        return Ok(None);
    };
    let r = f(&mut t).await;
    put_trainer(state, t);
    Ok(Some(r))
}

/// Runs `call`; when it fails because the WebGPU device is gone, moves everything to the CPU
/// ([`recover_from_lost_device`]) and runs it once more there. Every call that reads the
/// device goes through here.
async fn retry_on_lost_device<T>(
    state: &RefCell<State>,
    device: &Device,
    mut call: impl AsyncFnMut() -> Result<T, JsError>,
) -> Result<T, JsError> {
    match call().await {
        Err(_) if recover_from_lost_device(state, device).await? => call().await,
        r => r,
    }
}

/// The run's network as it is now (read back from its device), or `Ok(None)` without a run.
async fn trained_network(
    state: &RefCell<State>,
    device: &Device,
) -> Result<Option<ViTForImageClassification>, JsError> {
    retry_on_lost_device(state, device, async || {
        with_trainer(state, async |t| t.backend.network().await.cloned())
            .await?
            .transpose()
            .map_err(js_err)
    })
    .await
}

/// Ends the run in `state`, if any, and returns its network as it is now (from its last
/// checkpoint when the WebGPU device was lost meanwhile).
async fn take_trained(state: &RefCell<State>, device: &Device) -> Result<Option<ViTForImageClassification>, JsError> {
    let net = trained_network(state, device).await;
    state.borrow_mut().run = None;
    net
}

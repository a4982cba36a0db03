//! A run, step by step: `beginTraining` (options -> config, head for the classes, validation
//! split, the backend on the learner's device), `trainStep`, `finishTraining`.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::reports::TrainingStarted;
use super::{js_err, retry_on_lost_device, set, take_trained, to_js, with_trainer, Learner, Run};
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::learn::backend::Backend;
use crate::learn::options::TrainOptions;
use crate::learn::trainer::{DivergenceGuard, Trainer};
use crate::model::LoadOptions;

/// A run keeps its tuned tensors every this many steps (on WebGPU one readback): the weights
/// it goes on from on the CPU if the device is lost, or stops at if it diverges.
const CHECKPOINT_EVERY: usize = 10;

/// The training options of a named recipe (`quick`, `best`; `learn::options::TrainOptions::preset`),
/// camelCase: what `beginTraining` takes, for a form to show.
#[wasm_bindgen(js_name = trainPreset)]
pub fn train_preset(name: &str) -> Result<JsValue, JsError> {
    to_js(&TrainOptions::preset(name).map_err(js_err)?)
}

#[wasm_bindgen]
impl Learner {
    /// Prepares a run: (re)builds the head when the classes differ from the model's labels,
    /// splits off validation data when none was given, and makes the trainer (on WebGPU where
    /// the learner has it). `params`: the options of `learn::options::TrainOptions` (camelCase;
    /// unknown keys are refused), on top of the recipe its `preset` key names (`quick`, `best`).
    /// Resolves to `{steps, trainSize, validationSize, backend,
    /// evalEvery, ...}`.
    #[wasm_bindgen(js_name = beginTraining)]
    pub fn begin_training(&self, params: JsValue) -> js_sys::Promise {
        let state = self.state.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            let params: TrainOptions = if params.is_undefined() || params.is_null() {
                TrainOptions::default()
            } else {
                let value: serde_json::Value =
                    serde_wasm_bindgen::from_value(params).map_err(|e| JsError::new(&format!("train params: {e}")))?;
                TrainOptions::from_json(value).map_err(js_err)?
            };
            // An unfinished run: keep what it learned.
            if let Some(net) = take_trained(&state, &device).await? {
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
                s.model = super::load(
                    &s.files,
                    &LoadOptions {
                        labels: Some(s.classes.clone()),
                        head_seed: config.seed,
                    },
                )?;
                s.version += 1;
            }
            let (train, validation) = if s.validation.is_empty() {
                s.train.split(n, params.validation_fraction, config.seed)
            } else {
                (s.train.clone(), s.validation.clone())
            };
            let steps = config.steps;
            let backend: Box<dyn Backend> = match device.training_gpu() {
                Some(g) => Box::new(GpuBackend::new(g.ctx.clone(), s.model.net.clone()).map_err(js_err)?),
                None => Box::new(CpuBackend::new(s.model.net.clone())),
            };
            let mut trainer = Trainer::new(backend, config, train.clone()).map_err(js_err)?;
            trainer.checkpoint_every = CHECKPOINT_EVERY;
            trainer.guard = Some(DivergenceGuard::default());
            let started = TrainingStarted {
                steps,
                train_size: train.len(),
                validation_size: validation.len(),
                backend: trainer.backend.name(),
                tuned_parameters: trainer.tuned_parameters(),
                classes: s.classes.clone(),
                eval_every: params.eval_every,
            };
            s.run = Some(Run {
                trainer: Some(trainer),
                validation,
                eval_every: params.eval_every,
            });
            to_js(&started).map_err(Into::into)
        })
    }

    /// One training step, awaited on the trainer's backend; resolves to the step's metrics
    /// (loss, accuracy, allocation, ..., `backend`, and `evaluate`: whether the run's
    /// `evalEvery` asks for a validation pass now, before the last step).
    #[wasm_bindgen(js_name = trainStep)]
    pub fn train_step(&self) -> js_sys::Promise {
        let state = self.state.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            // A lost WebGPU device: the run moves to the CPU from its last checkpoint and this
            // step runs there (the message waits in `takeNotice`).
            let ev = retry_on_lost_device(&state, &device, async || {
                with_trainer(&state, async |t| t.step().await)
                    .await?
                    .ok_or_else(|| JsError::new("no training in progress; call beginTraining first"))?
                    .map_err(js_err)
            })
            .await?;
            let (backend, steps) = {
                let s = state.borrow();
                let t = s.run.as_ref().and_then(|r| r.trainer.as_ref());
                t.map_or(("cpu", 0), |t| (t.backend.name(), t.config.steps))
            };
            let evaluate = {
                let s = state.borrow();
                let run = s.run.as_ref();
                let every = run.map_or(0, |r| r.eval_every);
                let has_validation = run.is_some_and(|r| !r.validation.is_empty());
                every > 0 && ev.step % every == 0 && ev.step < steps && has_validation
            };
            let v = to_js(&ev)?;
            set(v.unchecked_ref(), "backend", backend);
            set(v.unchecked_ref(), "evaluate", evaluate);
            Ok(v)
        })
    }

    /// Ends the run, keeping the trained weights in the model (read back from the GPU).
    /// Resolves to whether a run was in progress.
    #[wasm_bindgen(js_name = finishTraining)]
    pub fn finish_training(&self) -> js_sys::Promise {
        let state = self.state.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            match take_trained(&state, &device).await? {
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
}

//! Which device the learner uses, and what the device panel reports about it. `"auto"` times a
//! short forward of the model on the fast CPU path and on WebGPU and trains where it is faster:
//! a software adapter (SwiftShader) loses to the CPU by two orders of magnitude.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use wasm_bindgen::{JsCast, JsError};

use super::js_err;
use super::reports::{Calibration, DeviceInfo, Limits};
use crate::gpu::{GpuContext, GpuForward, GpuModel, GpuOptions, RowPlan};
use crate::model::nn::Kernels;
use crate::model::ViTForImageClassification;

/// Validation during a GPU run: on the GPU (`true`) or, after reading the tuned tensors back,
/// on the CPU reference (`false`). SwiftShader (the CI's WebGPU) runs the full forward of a
/// validation set slower than wasm on the CPU does.
pub(super) const EVALUATE_ON_GPU: bool = false;

/// The WebGPU device and the model's weights on it for predictions outside a run
/// (re-uploaded when the weights change: keyed by the state's version).
pub(super) struct Gpu {
    pub ctx: Arc<GpuContext>,
    pub uploaded: RefCell<Option<(u64, Rc<GpuModel>)>>,
}

pub(super) struct Device {
    /// The WebGPU device, when the browser has one (used only when `on_gpu`).
    pub gpu: Option<Gpu>,
    /// Whether training and predictions run on WebGPU (forced, or the calibration's choice;
    /// false for good once the device is lost).
    on_gpu: Cell<bool>,
    info: RefCell<DeviceInfo>,
}

/// Milliseconds since an arbitrary origin (`performance.now()` of the page or worker).
pub(super) fn now_ms() -> f64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = perf
        .as_ref()
        .and_then(|p| js_sys::Reflect::get(p, &"now".into()).ok())
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    match (perf, now) {
        (Some(p), Some(f)) => f
            .call0(&p)
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or_else(js_sys::Date::now),
        _ => js_sys::Date::now(),
    }
}

/// Images per timed forward of the calibration.
const CALIBRATION_IMAGES: usize = 4;

/// Times the clean forward of [`CALIBRATION_IMAGES`] images of `net` on the fast CPU path and,
/// when there is one, on WebGPU (after one warm-up image, which compiles the pipelines). Returns
/// the device copy of `net` too: predictions reuse it instead of uploading the model again.
async fn calibrate(
    net: &ViTForImageClassification,
    gpu: Option<&GpuContext>,
) -> Result<(Calibration, Option<GpuModel>), JsError> {
    let n = CALIBRATION_IMAGES;
    let pixels = super::bench::bench_pixels(n, net.config.image_numel());
    let mut fast = net.clone();
    fast.set_kernels(Kernels::Gemm);
    let t0 = now_ms();
    fast.forward_batch(&pixels).map_err(js_err)?;
    let cpu = (now_ms() - t0) / n as f64;
    let (webgpu, uploaded) = match gpu {
        None => (None, None),
        Some(ctx) => {
            let model = GpuModel::upload(ctx, net).map_err(js_err)?;
            let plan = |rows: usize| RowPlan::clean(&vec![0; rows], net.config.num_hidden_layers);
            let one = &pixels[..net.config.image_numel()];
            GpuForward::run(ctx, &model, one, &plan(1)).await.map_err(js_err)?;
            let t0 = now_ms();
            GpuForward::run(ctx, &model, &pixels, &plan(n)).await.map_err(js_err)?;
            (Some((now_ms() - t0) / n as f64), Some(model))
        }
    };
    let calibration = Calibration {
        images: n,
        cpu_ms_per_image: cpu,
        webgpu_ms_per_image: webgpu,
    };
    Ok((calibration, uploaded))
}

impl Device {
    /// `device`: `"auto"` (WebGPU when an adapter exists and the calibration finds it faster
    /// than the CPU for `net`, else the CPU), `"webgpu"` (an error without it) or `"cpu"`.
    /// `net` is the learner's network as loaded (version 0 of its state).
    pub async fn choose(device: &str, net: &ViTForImageClassification) -> Result<Self, JsError> {
        let (gpu, mut reason) = match device {
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
        let (calibration, uploaded) = calibrate(net, gpu.as_ref()).await?;
        let on_gpu = match (device, verdict(&calibration)) {
            ("webgpu", _) => true,
            ("auto", Some((faster, why))) => {
                reason = Some(why);
                faster
            }
            _ => false,
        };
        let mut info = DeviceInfo {
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
            training_backend: "cpu",
            evaluation_backend: "cpu",
            predict_backend: "cpu",
            requested: match device {
                "webgpu" => "webgpu",
                "cpu" => "cpu",
                _ => "auto",
            },
            calibration,
            lost: None,
        };
        place(&mut info, on_gpu);
        Ok(Self {
            gpu: gpu.map(|ctx| Gpu {
                // `GpuBackend` shares the context through an `Arc` on every target; on wasm32
                // there is one thread, so the missing `Send` does not matter.
                #[allow(clippy::arc_with_non_send_sync)]
                ctx: Arc::new(ctx),
                // The network at version 0 of the learner's state (see `predict::logits`).
                uploaded: RefCell::new(uploaded.map(|m| (0, Rc::new(m)))),
            }),
            on_gpu: Cell::new(on_gpu),
            info: RefCell::new(info),
        })
    }

    /// The WebGPU device when training and predictions run there.
    pub fn training_gpu(&self) -> Option<&Gpu> {
        self.gpu.as_ref().filter(|_| self.on_gpu.get())
    }

    /// What the device panel shows.
    pub fn info(&self) -> std::cell::Ref<'_, DeviceInfo> {
        self.info.borrow()
    }

    /// Why the WebGPU device is gone, once it is: checked after a failure, after letting the
    /// browser run the device's `lost` callback (it resolves a promise, so it lands after the
    /// failed readback's rejection).
    pub async fn lost(&self) -> Option<String> {
        let gpu = self.gpu.as_ref()?;
        if gpu.ctx.lost().is_none() {
            yield_to_browser().await;
        }
        gpu.ctx.lost()
    }

    /// From now on everything runs on the CPU: the WebGPU device is gone (`reason`, for the
    /// device panel). The model copy on the device goes too.
    pub fn mark_lost(&self, reason: &str) {
        if let Some(g) = &self.gpu {
            g.uploaded.borrow_mut().take();
        }
        self.run_on(false);
        let mut info = self.info.borrow_mut();
        info.reason = Some(format!(
            "the WebGPU device was lost ({reason}); everything runs on the CPU now"
        ));
        info.lost = Some(reason.to_string());
    }

    /// Switches where the next runs and predictions go: `"cpu"`, `"webgpu"` (an error without
    /// a working WebGPU device: none, or lost) or `"auto"` (the calibration's choice). The
    /// calibration figures stay those measured when the learner was made.
    pub fn switch(&self, device: &str) -> Result<(), String> {
        let (gpu_ok, auto) = {
            let info = self.info.borrow();
            (self.gpu.is_some() && info.lost.is_none(), verdict(&info.calibration))
        };
        let (on_gpu, requested, reason) = match (device, auto) {
            ("cpu", _) => (false, "cpu", "CPU chosen (device: \"cpu\")".to_string()),
            ("webgpu", _) if gpu_ok => (true, "webgpu", "WebGPU chosen (device: \"webgpu\")".to_string()),
            ("webgpu", _) => {
                let info = self.info.borrow();
                let why = match &info.lost {
                    Some(lost) => format!("the WebGPU device was lost ({lost})"),
                    None => info.reason.clone().unwrap_or_else(|| "no WebGPU adapter".into()),
                };
                return Err(format!("device \"webgpu\": not available here: {why}"));
            }
            ("auto", Some((faster, why))) if gpu_ok => (faster, "auto", why),
            ("auto", _) => (false, "auto", "no working WebGPU device: the CPU".to_string()),
            (other, _) => return Err(format!("unknown device `{other}`; one of: auto, webgpu, cpu")),
        };
        self.run_on(on_gpu);
        let mut info = self.info.borrow_mut();
        info.requested = requested;
        if info.lost.is_none() {
            info.reason = Some(reason);
        }
        Ok(())
    }

    /// Training and predictions on WebGPU (`true`) or the CPU, and the panel says so.
    fn run_on(&self, on_gpu: bool) {
        self.on_gpu.set(on_gpu);
        place(&mut self.info.borrow_mut(), on_gpu);
    }

    /// The test hook for device loss: destroys the WebGPU device (as a driver reset or the
    /// browser reclaiming the GPU would). Returns whether there was one.
    pub fn destroy_for_testing(&self) -> bool {
        match &self.gpu {
            Some(g) => {
                g.ctx.destroy_for_testing();
                true
            }
            None => false,
        }
    }
}

/// Whether the calibration found WebGPU faster, and that in words; `None` without WebGPU.
fn verdict(c: &Calibration) -> Option<(bool, String)> {
    let g = c.webgpu_ms_per_image?;
    let faster = g < c.cpu_ms_per_image;
    Some((
        faster,
        format!(
            "calibration: a forward takes {:.2} ms per image on the CPU and {g:.2} ms on WebGPU: {} is faster",
            c.cpu_ms_per_image,
            if faster { "WebGPU" } else { "the CPU" }
        ),
    ))
}

/// Where training, validation and predictions run, in `info`.
fn place(info: &mut DeviceInfo, on_gpu: bool) {
    let chosen = if on_gpu { "webgpu" } else { "cpu" };
    info.training_backend = chosen;
    info.predict_backend = chosen;
    info.evaluation_backend = if on_gpu && EVALUATE_ON_GPU { "webgpu" } else { "cpu" };
}

/// Resolves after the browser has run a macrotask turn (a `setTimeout(0)`), so that promise
/// callbacks queued by the browser (the device's `lost`) have run.
async fn yield_to_browser() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &"setTimeout".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&global, &resolve, &0.into());
            }
            None => {
                let _ = resolve.call0(&wasm_bindgen::JsValue::UNDEFINED);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

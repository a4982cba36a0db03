//! Which device the learner uses: WebGPU where the browser has an adapter (or when asked for),
//! else the CPU; and what the device panel reports about it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use wasm_bindgen::JsError;

use super::reports::{DeviceInfo, Limits};
use crate::gpu::{GpuContext, GpuModel, GpuOptions};

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
    pub gpu: Option<Gpu>,
    pub info: DeviceInfo,
}

impl Device {
    /// `device`: `"auto"`, `"webgpu"` or `"cpu"`.
    pub async fn choose(device: &str) -> Result<Self, JsError> {
        let (gpu, reason) = match device {
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
        Ok(Self {
            gpu: gpu.map(|ctx| Gpu {
                // `GpuBackend` shares the context through an `Arc` on every target; on wasm32
                // there is one thread, so the missing `Send` does not matter.
                #[allow(clippy::arc_with_non_send_sync)]
                ctx: Arc::new(ctx),
                uploaded: RefCell::new(None),
            }),
            info,
        })
    }
}

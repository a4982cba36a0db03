//! What the browser API reports to JS: plain serialisable records (camelCase field names, as
//! `web/flops-web.d.ts` declares them).

use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeviceInfo {
    pub(super) webgpu: bool,
    /// Why there is no WebGPU (missing API, no adapter, or `device: "cpu"`).
    pub(super) reason: Option<String>,
    pub(super) adapter: Option<crate::gpu::AdapterSummary>,
    pub(super) limits: Option<Limits>,
    /// Where training runs: `webgpu` or `cpu` (forced, or the faster by the calibration).
    pub(super) training_backend: &'static str,
    /// Where validation runs during and after training.
    pub(super) evaluation_backend: &'static str,
    /// Where predictions run.
    pub(super) predict_backend: &'static str,
    /// What the learner was asked for: `auto`, `webgpu` or `cpu`.
    pub(super) requested: &'static str,
    /// The figures behind the choice.
    pub(super) calibration: Calibration,
    /// Why the WebGPU device was lost, once it was (everything runs on the CPU since).
    pub(super) lost: Option<String>,
}

/// The timed forward behind the device choice.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Calibration {
    /// Images per timed forward.
    pub(super) images: usize,
    /// Milliseconds per image of the clean forward on the fast CPU path (wasm, one thread).
    pub(super) cpu_ms_per_image: f64,
    /// The same on WebGPU (pipelines already compiled), where an adapter exists.
    pub(super) webgpu_ms_per_image: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Limits {
    pub(super) max_compute_invocations_per_workgroup: u32,
    pub(super) max_compute_workgroup_size_x: u32,
    pub(super) max_compute_workgroup_storage_size: u32,
    pub(super) max_storage_buffer_binding_size: u64,
    pub(super) max_buffer_size: u64,
    pub(super) max_storage_buffers_per_shader_stage: u32,
    pub(super) max_compute_workgroups_per_dimension: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelInfo {
    pub(super) labels: Vec<String>,
    pub(super) image_size: [usize; 2],
    pub(super) channels: usize,
    pub(super) hidden_size: usize,
    pub(super) layers: usize,
    pub(super) heads: usize,
    pub(super) parameters: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DataSummary {
    pub(super) classes: Vec<String>,
    pub(super) counts: Vec<usize>,
    pub(super) validation_counts: Vec<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TrainingStarted {
    pub(super) steps: usize,
    pub(super) train_size: usize,
    pub(super) validation_size: usize,
    pub(super) backend: &'static str,
    pub(super) tuned_parameters: usize,
    pub(super) classes: Vec<String>,
    /// Validation every this many steps (0: only at the end); `trainStep` says when.
    pub(super) eval_every: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Evaluation {
    pub(super) loss: f32,
    pub(super) accuracy: f32,
    pub(super) confusion: Vec<Vec<usize>>,
    pub(super) per_class_accuracy: Vec<Option<f32>>,
    pub(super) size: usize,
    pub(super) step: usize,
    pub(super) queries: u64,
    /// Where this evaluation ran: `cpu` or `webgpu`.
    pub(super) backend: &'static str,
}

#[derive(Serialize)]
pub(super) struct TopK {
    pub(super) label: String,
    pub(super) prob: f32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Prediction {
    pub(super) labels: Vec<String>,
    pub(super) probabilities: Vec<f32>,
    pub(super) top: Vec<TopK>,
    /// The raw scores the probabilities are the softmax of.
    pub(super) logits: Vec<f32>,
    pub(super) device: &'static str,
}

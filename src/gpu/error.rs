//! Errors of the GPU path. Every reachable failure is a variant; nothing here panics.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GpuError {
    #[error("no GPU adapter found ({reason}); natively, install lavapipe: `apt-get install mesa-vulkan-drivers libvulkan1` (scripts/setup.sh)")]
    NoAdapter { reason: String },

    #[error("the adapter `{adapter}` refused the device: {reason}")]
    RequestDevice { adapter: String, reason: String },

    #[error("buffer `{label}` needs {bytes} bytes, above this device's limit of {limit} bytes per storage binding")]
    BufferTooLarge { label: String, bytes: u64, limit: u64 },

    #[error("{op}: shape mismatch: {message}")]
    Shape { op: &'static str, message: String },

    #[error("row plan: {reason}")]
    Plan { reason: String },

    #[error("unsupported on the GPU path: {reason}")]
    Unsupported { reason: String },

    #[error("model tensor `{name}` missing from the GPU model")]
    MissingTensor { name: String },

    #[error("GPU validation error: {message}")]
    Validation { message: String },

    #[error("the GPU device is gone: {reason}")]
    DeviceLost { reason: String },

    #[error("reading results back from the GPU failed: {reason}")]
    Readback { reason: String },
}

pub type Result<T> = std::result::Result<T, GpuError>;

//! The ViT forward on wgpu (WebGPU natively and in the browser): a [`GpuContext`] owning the
//! device and pipeline cache, weights uploaded once ([`GpuModel`]), recorded kernels
//! ([`ops`]), and the batched forward over query rows with in-shader perturbation
//! ([`GpuForward`], [`RowPlan`]).
//!
//! Shapes: `T = 1 + patches` tokens, `D` hidden, `I` MLP width, `R` query rows, `B` images.
//! This is the runtime: it imports the model only. The learning backend built on it (gradient
//! accumulation, optimiser step) is [`crate::backend::gpu::GpuBackend`]. Not provided here:
//! perturbation of the embeddings, f16.

pub mod context;
pub mod encode;
pub mod error;
pub mod forward;
pub mod model;
pub mod ops;
pub mod plan;
pub mod readback;
pub mod shaders;
pub mod tensor;

pub use context::{AdapterSummary, GpuContext, GpuOptions, PipelineKey};
pub use error::{GpuError, Result};
pub use forward::{ForwardOptions, GpuForward, KeptInput, LrInputs, PendingForward, RowOutputs};
pub use model::GpuModel;
pub use plan::{Perturbation, QueryRow, RowPlan};
pub use tensor::GpuTensor;

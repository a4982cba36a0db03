//! The learning backend the browser trains on: the WebGPU backend where an adapter exists,
//! else the CPU reference. One enum, so [`super::Learner`] keeps a single `Trainer` type and
//! the trainer's step logic is the same code as natively (the trait is async; the worker
//! awaits each step).

use crate::gpu::GpuBackend;
use crate::learn::backend::{Backend, Batch, CleanOut, StepPlan};
use crate::learn::cpu::CpuBackend;
use crate::learn::optim::Optimizer;
use crate::learn::LearnError;
use crate::model::ViTForImageClassification;

pub enum WebBackend {
    /// The CPU reference (wasm32, single thread): where the browser has no WebGPU, or the
    /// learner was made with `device: "cpu"`.
    Cpu(Box<CpuBackend>),
    /// Forwards, gradient estimate and optimiser step on WebGPU (both variants are boxed: the backends are large).
    Gpu(Box<GpuBackend>),
}

impl WebBackend {
    /// What the device panel and step events report: `"cpu"` or `"webgpu"`.
    pub fn name(&self) -> &'static str {
        match self {
            WebBackend::Cpu(_) => "cpu",
            WebBackend::Gpu(_) => "webgpu",
        }
    }
}

impl Backend for WebBackend {
    async fn clean(&mut self, batch: &Batch<'_>) -> Result<CleanOut, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.clean(batch).await,
            WebBackend::Gpu(b) => b.clean(batch).await,
        }
    }

    async fn query_losses(&mut self, batch: &Batch<'_>, plan: &StepPlan) -> Result<Vec<f32>, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.query_losses(batch, plan).await,
            WebBackend::Gpu(b) => b.query_losses(batch, plan).await,
        }
    }

    async fn gradient(&mut self, plan: &StepPlan, coefficients: &[f32]) -> Result<Vec<f32>, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.gradient(plan, coefficients).await,
            WebBackend::Gpu(b) => b.gradient(plan, coefficients).await,
        }
    }

    async fn read_params(&self, tensors: &[u32]) -> Result<Vec<f32>, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.read_params(tensors).await,
            WebBackend::Gpu(b) => b.read_params(tensors).await,
        }
    }

    fn write_params(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError> {
        match self {
            WebBackend::Cpu(b) => b.write_params(tensors, flat),
            WebBackend::Gpu(b) => b.write_params(tensors, flat),
        }
    }

    fn freeze_below(&mut self, block: usize) {
        match self {
            WebBackend::Cpu(b) => b.freeze_below(block),
            WebBackend::Gpu(b) => b.freeze_below(block),
        }
    }

    fn host_network(&self) -> &ViTForImageClassification {
        match self {
            WebBackend::Cpu(b) => b.host_network(),
            WebBackend::Gpu(b) => b.host_network(),
        }
    }

    async fn network(&mut self) -> Result<&ViTForImageClassification, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.network().await,
            WebBackend::Gpu(b) => b.network().await,
        }
    }

    async fn step(
        &mut self,
        plan: &StepPlan,
        coefficients: &[f32],
        optimizer: &mut Optimizer,
        lr: f32,
    ) -> Result<f32, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.step(plan, coefficients, optimizer, lr).await,
            WebBackend::Gpu(b) => b.step(plan, coefficients, optimizer, lr).await,
        }
    }
}

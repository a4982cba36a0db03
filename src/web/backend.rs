//! The learning backend the browser trains on. One enum so that switching the worker from the
//! CPU reference to the WebGPU backend is one match arm here and one line in
//! [`super::Learner::begin_training`].

use crate::learn::backend::{Backend, Batch, CleanOut, StepPlan};
use crate::learn::cpu::CpuBackend;
use crate::learn::LearnError;
use crate::model::ViTForImageClassification;

pub enum WebBackend {
    /// The CPU reference (wasm32, single thread). Used until the GPU backend's async API lands.
    Cpu(CpuBackend),
}

impl WebBackend {
    /// What the device panel and step events report: `"cpu"` or `"webgpu"`.
    pub fn name(&self) -> &'static str {
        match self {
            WebBackend::Cpu(_) => "cpu",
        }
    }
}

impl Backend for WebBackend {
    fn clean(&mut self, batch: &Batch) -> Result<CleanOut, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.clean(batch),
        }
    }

    fn query_losses(&mut self, batch: &Batch, plan: &StepPlan) -> Result<Vec<f32>, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.query_losses(batch, plan),
        }
    }

    fn gradient(&mut self, plan: &StepPlan, coefficients: &[f32]) -> Result<Vec<f32>, LearnError> {
        match self {
            WebBackend::Cpu(b) => b.gradient(plan, coefficients),
        }
    }

    fn read_params(&self, tensors: &[u32]) -> Vec<f32> {
        match self {
            WebBackend::Cpu(b) => b.read_params(tensors),
        }
    }

    fn write_params(&mut self, tensors: &[u32], flat: &[f32]) -> Result<(), LearnError> {
        match self {
            WebBackend::Cpu(b) => b.write_params(tensors, flat),
        }
    }

    fn network(&self) -> &ViTForImageClassification {
        match self {
            WebBackend::Cpu(b) => b.network(),
        }
    }
}

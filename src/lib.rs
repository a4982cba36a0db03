//! flops-web: fine-tune a Vision Transformer with forward passes only.
//!
//! - [`model`]: ViT configuration, HF/timm checkpoint loading, preprocessing and the CPU
//!   reference forward (the oracle every other path is tested against).
//! - [`gpu`]: the same forward in WGSL on wgpu, batched over query rows with in-shader
//!   perturbation (native via lavapipe/Vulkan, browser via WebGPU).
//! - [`noise`]: the counter-based Gaussian noise (Philox4x32-10) shared by CPU and GPU.
//! - [`learn`]: allocators, estimators, optimisers, the trainer and the [`learn::Backend`]
//!   trait, backend-agnostic.
//! - [`backend`]: the CPU and GPU implementations of that trait.
//! - `web` (wasm32 only): the wasm-bindgen API of the browser product.
//!
//! Layering (nothing imports upward): `model` <- `learn` <- `backend` <- `web` and the CLI;
//! `gpu` (the WGSL runtime) imports `model` only.
//!
//! Not provided (by design): backpropagation, training of anything but ViT image classifiers,
//! file access in the library (the CLI reads files; the library takes bytes).

pub mod backend;
pub mod gpu;
pub mod learn;
pub mod model;
pub mod noise;
#[cfg(target_arch = "wasm32")]
pub mod web;

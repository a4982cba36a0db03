//! flops-web: fine-tune a Vision Transformer with forward passes only.
//!
//! - [`model`]: ViT configuration, HF/timm checkpoint loading, preprocessing and the CPU
//!   reference forward (the oracle every other path is tested against).
//!
//! Not provided (by design): backpropagation, training of anything but ViT image classifiers,
//! file access in the library (the CLI reads files; the library takes bytes).

pub mod model;

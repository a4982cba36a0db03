//! Forward learning, backend-agnostic: query allocators, gradient estimators, optimisers and
//! the trainer. The method is specified in `../shared/docs/flops-method.md`.

pub mod allocate;
pub mod backend;
pub mod cpu;
pub mod data;
pub mod error;
pub mod estimate;
pub mod optim;
pub mod trainer;
pub mod tuning;

pub use allocate::{make_allocator, Allocator, AllocatorKind, BatchStats, Budget, Feedback};
pub use error::LearnError;

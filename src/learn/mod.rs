//! Forward learning, backend-agnostic: query allocators, gradient estimators, optimisers and
//! the trainer. The method is specified in `../shared/docs/flops-method.md`.

pub mod allocate;
pub mod backend;
pub mod cells;
pub mod data;
pub mod error;
pub mod es;
pub mod estimate;
pub mod exact_head;
pub mod lr;
pub mod optim;
pub mod options;
pub mod spsa;
pub mod trainer;
pub mod tuning;

pub use allocate::{make_allocator, Allocator, AllocatorKind, BatchStats, Budget, Feedback};
pub use backend::{Backend, Batch, StepPlan};
pub use error::LearnError;
pub use estimate::{Estimator, EstimatorKind, Space};

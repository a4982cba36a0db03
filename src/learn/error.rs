//! Errors of the learning core.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LearnError {
    #[error("invalid training setting: {message}")]
    Config { message: String },
    #[error("non-finite loss at step {step}; stopped and kept the last good parameters")]
    NonFinite { step: usize },
    #[error(
        "training diverged at step {step}: the batch loss rose to {loss:.4} from {start:.4} at the start; \
         stopped and kept the weights of step {kept}. Try a lower learning rate or noise scale"
    )]
    Diverged {
        step: usize,
        loss: f32,
        start: f32,
        kept: usize,
    },
    #[error("dataset: {message}")]
    Data { message: String },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A compute backend's own failure (a GPU error, a lost device), kept as its source.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

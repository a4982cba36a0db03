//! Errors of the model layer: configuration, checkpoint loading, preprocessing.
//!
//! Every variant names the offending file, tensor or field, and for shape and
//! dtype problems both what was expected and what was found.

use thiserror::Error;

/// Which of a model folder's files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFile {
    Config,
    Preprocessor,
    Weights,
}

impl std::fmt::Display for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelFile::Config => "config.json",
            ModelFile::Preprocessor => "preprocessor_config.json",
            ModelFile::Weights => "model.safetensors",
        })
    }
}

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{file}: missing (a model folder needs config.json and model.safetensors; preprocessor_config.json is optional)")]
    MissingFile { file: ModelFile },

    #[error("{file}: not valid JSON: {message}")]
    ConfigJson { file: ModelFile, message: String },

    #[error("{file}: invalid value for `{field}`: {message}")]
    ConfigValue {
        file: ModelFile,
        field: &'static str,
        message: String,
    },

    #[error("model.safetensors: not a safetensors file ({reason})")]
    NotSafetensors { reason: String },

    #[error("model.safetensors: truncated: {reason}")]
    Truncated { reason: String },

    #[error("model.safetensors: header claims {header_len} bytes but the file has only {file_len} bytes after the 8-byte length prefix")]
    HeaderBeyondFile { header_len: u64, file_len: usize },

    #[error("model.safetensors: invalid: {reason}")]
    InvalidSafetensors { reason: String },

    #[error("model.safetensors: missing tensor `{name}`")]
    MissingTensor { name: String },

    #[error("model.safetensors: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("model.safetensors: tensor `{name}` has dtype {found}, expected F32, F16 or BF16")]
    TensorDtype { name: String, found: String },

    #[error("model.safetensors: unrecognised weight layout: {reason}")]
    UnknownLayout { reason: String },

    #[error("unsupported model: {reason}")]
    Unsupported { reason: String },

    #[error("image: {reason}")]
    Image { reason: String },

    #[error("input: {reason}")]
    Input { reason: String },
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

//! Reading a model folder from disk (the library itself takes bytes).

use std::path::{Path, PathBuf};

use flops_web::model::{LoadOptions, Model, ModelFiles};

/// Errors of the CLI: a file that cannot be read, or anything the library reports.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Model {
        path: PathBuf,
        source: flops_web::model::ModelError,
    },
    #[error("{0}")]
    Other(String),
}

/// Reads a file, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, CliError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        }),
    }
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Loads `dir` (config.json, model.safetensors, optional preprocessor_config.json), or the
/// embedded default when `dir` is `None`.
pub fn load_model(dir: Option<&Path>) -> Result<Model, CliError> {
    let Some(dir) = dir else {
        return Model::embedded_default().map_err(|source| CliError::Model {
            path: "<embedded default>".into(),
            source,
        });
    };
    if !dir.is_dir() {
        return Err(CliError::Io {
            path: dir.to_owned(),
            message: "not a directory (expected a model folder)".into(),
        });
    }
    let config = read_optional(&dir.join("config.json"))?;
    let weights = read_optional(&dir.join("model.safetensors"))?;
    let preprocessor = read_optional(&dir.join("preprocessor_config.json"))?;
    let files = ModelFiles {
        config: config.as_deref(),
        weights: weights.as_deref(),
        preprocessor: preprocessor.as_deref(),
    };
    Model::load(files, &LoadOptions::default()).map_err(|source| CliError::Model {
        path: dir.to_owned(),
        source,
    })
}

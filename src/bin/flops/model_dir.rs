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
    load_model_with(dir, &LoadOptions::default())
}

/// [`load_model`] with options (e.g. a new head for other labels).
pub fn load_model_with(dir: Option<&Path>, opts: &LoadOptions) -> Result<Model, CliError> {
    let (owned, name): ([Option<Vec<u8>>; 3], PathBuf) = match dir {
        None => ([None, None, None], "<embedded default>".into()),
        Some(dir) if !dir.is_dir() => {
            return Err(CliError::Io {
                path: dir.to_owned(),
                message: "not a directory (expected a model folder)".into(),
            })
        }
        Some(dir) => (
            [
                read_optional(&dir.join("config.json"))?,
                read_optional(&dir.join("model.safetensors"))?,
                read_optional(&dir.join("preprocessor_config.json"))?,
            ],
            dir.to_owned(),
        ),
    };
    let files = match dir {
        None => ModelFiles::embedded(),
        Some(_) => ModelFiles {
            config: owned[0].as_deref(),
            weights: owned[1].as_deref(),
            preprocessor: owned[2].as_deref(),
        },
    };
    Model::load(files, opts).map_err(|source| CliError::Model { path: name, source })
}

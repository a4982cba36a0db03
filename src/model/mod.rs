//! The ViT model: configuration, checkpoint loading (HF and timm layouts), preprocessing and
//! the CPU reference forward. No file access here: callers hand in bytes, so this builds for
//! `wasm32-unknown-unknown`.

pub mod config;
pub mod error;
pub mod fast_math;
pub mod nn;
pub mod params;
pub mod perturb;
pub mod preprocess;
pub mod vit;
pub mod weights;

use std::collections::HashMap;

pub use config::{TimmConfig, ViTConfig};
pub use error::{ModelError, ModelFile, Result};
pub use params::{FlatLayout, ParamTable};
pub use preprocess::{Image, Preprocessor, PreprocessorConfig};
pub use vit::{ForwardHook, LinearSite, NoHook, NormSite, ViTForImageClassification};
pub use weights::{Checkpoint, Layout, VarBuilder};

/// The bytes of a model folder: `config.json`, `model.safetensors`, `preprocessor_config.json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelFiles<'a> {
    pub config: Option<&'a [u8]>,
    pub weights: Option<&'a [u8]>,
    pub preprocessor: Option<&'a [u8]>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ModelFiles<'static> {
    /// The embedded default model's files (see [`embedded`]).
    pub fn embedded() -> Self {
        ModelFiles {
            config: Some(embedded::CONFIG),
            weights: Some(embedded::WEIGHTS),
            preprocessor: Some(embedded::PREPROCESSOR),
        }
    }
}

/// How to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Class labels for a new classification head; `None` keeps the checkpoint's.
    pub labels: Option<Vec<String>>,
    /// Seed of a new head's initialisation.
    pub head_seed: u64,
}

/// The embedded default model: a tiny ViT pretrained on MNIST (see `assets/default/README.md`).
/// Native builds only: the browser fetches the same files as same-origin assets.
#[cfg(not(target_arch = "wasm32"))]
pub mod embedded {
    pub const CONFIG: &[u8] = include_bytes!("../../assets/default/config.json");
    pub const WEIGHTS: &[u8] = include_bytes!("../../assets/default/model.safetensors");
    pub const PREPROCESSOR: &[u8] = include_bytes!("../../assets/default/preprocessor_config.json");
}

/// A loaded classifier: the network, its preprocessing, and where it came from.
#[derive(Debug, Clone)]
pub struct Model {
    pub net: ViTForImageClassification,
    pub preprocessor: Preprocessor,
    /// The weight layout of the checkpoint it was loaded from.
    pub layout: Layout,
}

impl Model {
    /// Loads a model folder's bytes. HF `config.json` with HF weights (with or without the
    /// classifier), or a timm hub `config.json` with timm weights.
    pub fn load(files: ModelFiles, opts: &LoadOptions) -> Result<Self> {
        let config_bytes = files.config.ok_or(ModelError::MissingFile {
            file: ModelFile::Config,
        })?;
        let weights = files.weights.ok_or(ModelError::MissingFile {
            file: ModelFile::Weights,
        })?;
        let ckpt = Checkpoint::parse(weights)?;
        let layout = Layout::detect(&ckpt)?;
        let (mut config, timm_pre) = if TimmConfig::looks_like_timm(config_bytes) {
            let timm = TimmConfig::from_json(config_bytes)?;
            if layout != Layout::Timm {
                return Err(ModelError::UnknownLayout {
                    reason: "config.json is timm's but the weights use HF names".into(),
                });
            }
            (timm.to_vit_config(&Layout::timm_shapes(&ckpt)?)?, timm.pretrained_cfg)
        } else {
            (ViTConfig::from_json(config_bytes)?, None)
        };
        let mut reuse_head = true;
        if let Some(labels) = &opts.labels {
            if labels.is_empty() {
                return Err(ModelError::Input {
                    reason: "a classification head needs at least one label".into(),
                });
            }
            if *labels != config.labels() {
                config.set_labels(labels);
                reuse_head = false;
            }
        }
        let preprocessor = match (files.preprocessor, timm_pre) {
            (Some(bytes), _) => Preprocessor::from_json(bytes, &config)?,
            (None, Some(p)) => Preprocessor::new(timm_preprocessor(&p)?, &config)?,
            (None, None) => Preprocessor::default_for(&config)?,
        };
        let net = ViTForImageClassification::load(config, &VarBuilder::new(&ckpt, layout), reuse_head, opts.head_seed)?;
        Ok(Self {
            net,
            preprocessor,
            layout,
        })
    }

    /// The embedded default model (MNIST digits).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embedded_default() -> Result<Self> {
        Self::load(ModelFiles::embedded(), &LoadOptions::default())
    }

    pub fn config(&self) -> &ViTConfig {
        &self.net.config
    }

    pub fn labels(&self) -> Vec<String> {
        self.net.config.labels()
    }

    /// Logits of one image.
    pub fn logits(&self, image: &Image) -> Result<Vec<f32>> {
        Ok(self.net.forward(&self.preprocessor.apply(image)?, &mut NoHook))
    }

    /// The model as HF-layout files: `model.safetensors` (f32), `config.json`,
    /// `preprocessor_config.json`, loadable here and by `transformers`.
    pub fn export(&self) -> Result<ExportedModel> {
        let params = self.net.params();
        let views = params
            .iter()
            .map(|p| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    p.shape.clone(),
                    bytemuck::cast_slice(&p.data),
                )
                .map(|v| (p.name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ModelError::InvalidSafetensors { reason: e.to_string() })?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let weights = safetensors::serialize(views, Some(meta))
            .map_err(|e| ModelError::InvalidSafetensors { reason: e.to_string() })?;
        Ok(ExportedModel {
            weights,
            config: self.net.config.to_hf_json(),
            preprocessor: self.preprocessor.to_json(),
        })
    }
}

/// A model folder's contents, ready to write or download.
#[derive(Debug, Clone)]
pub struct ExportedModel {
    pub weights: Vec<u8>,
    pub config: String,
    pub preprocessor: String,
}

impl ExportedModel {
    pub fn files(&self) -> ModelFiles<'_> {
        ModelFiles {
            config: Some(self.config.as_bytes()),
            weights: Some(&self.weights),
            preprocessor: Some(self.preprocessor.as_bytes()),
        }
    }
}

/// timm's `pretrained_cfg` as a HF preprocessor config (resize straight to the input size).
fn timm_preprocessor(p: &config::TimmPretrainedCfg) -> Result<PreprocessorConfig> {
    let resample = match p.interpolation.as_deref().unwrap_or("bicubic") {
        "nearest" => 0,
        "lanczos" => 1,
        "bilinear" => 2,
        "bicubic" => 3,
        other => {
            return Err(ModelError::ConfigValue {
                file: ModelFile::Config,
                field: "pretrained_cfg.interpolation",
                message: format!("`{other}` is not supported (nearest, lanczos, bilinear, bicubic)"),
            })
        }
    };
    let mut cfg: PreprocessorConfig = serde_json::from_str("{}").expect("defaults");
    cfg.resample = resample;
    if let Some([_, h, w]) = p.input_size {
        cfg.size = Some(preprocess::SizeSpec::HeightWidth {
            height: h as u32,
            width: w as u32,
        });
    }
    if let Some(m) = &p.mean {
        cfg.image_mean = m.clone();
    }
    if let Some(s) = &p.std {
        cfg.image_std = s.clone();
    }
    Ok(cfg)
}

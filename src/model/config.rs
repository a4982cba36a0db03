//! `ViTConfig`: the architecture, read from a Hugging Face `config.json`
//! (field names as in `transformers.ViTConfig`) or from a timm hub config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{ModelError, ModelFile, Result};

/// The activation of the MLP. Only the exact (erf) GELU, which HF calls `"gelu"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Gelu,
}

/// An integer or a `[height, width]` pair, as HF configs allow for sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    Square(usize),
    Pair([usize; 2]),
}

impl Size2 {
    pub fn hw(self) -> (usize, usize) {
        match self {
            Size2::Square(s) => (s, s),
            Size2::Pair([h, w]) => (h, w),
        }
    }
}

fn default_eps() -> f64 {
    1e-12
}
fn default_true() -> bool {
    true
}
fn default_act() -> String {
    "gelu".into()
}
fn default_channels() -> usize {
    3
}

/// The widest hidden size (and most heads) a config may ask for; the MLP may be 4x wider.
pub const MAX_WIDTH: usize = 16_384;
/// The most encoder blocks.
pub const MAX_LAYERS: usize = 256;
/// The largest input image side and patch side.
pub const MAX_IMAGE_SIDE: usize = 4_096;
/// The most class labels (ImageNet-21k has 21,843).
pub const MAX_LABELS: usize = 100_000;
/// The most patches (tokens before CLS) per image.
pub const MAX_PATCHES: usize = 16_384;

/// The subset of HF `ViTConfig` this crate uses; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViTConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub image_size: Size2,
    pub patch_size: Size2,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Class index (as a decimal string, HF's convention) to label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, usize>>,
}

impl ViTConfig {
    /// Parses and validates a HF `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let mut cfg: ViTConfig = serde_json::from_slice(bytes).map_err(|e| ModelError::ConfigJson {
            file: ModelFile::Config,
            message: e.to_string(),
        })?;
        cfg.validate()?;
        // `id2label` is the source of truth; HF derives `label2id` from it the same way.
        if cfg.id2label.is_some() {
            cfg.set_labels(&cfg.labels());
        }
        Ok(cfg)
    }

    /// Serialises as a HF `config.json` that `transformers` loads as `ViTForImageClassification`.
    pub fn to_hf_json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("ViTConfig serialises");
        let obj = v.as_object_mut().expect("object");
        obj.insert("model_type".into(), "vit".into());
        obj.insert("architectures".into(), serde_json::json!(["ViTForImageClassification"]));
        let labels = self.labels();
        obj.insert(
            "id2label".into(),
            serde_json::to_value(
                labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (i.to_string(), l.clone()))
                    .collect::<BTreeMap<_, _>>(),
            )
            .expect("map"),
        );
        obj.insert(
            "label2id".into(),
            serde_json::to_value(
                labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.clone(), i))
                    .collect::<BTreeMap<_, _>>(),
            )
            .expect("map"),
        );
        serde_json::to_string_pretty(&v).expect("json")
    }

    fn bad(field: &'static str, message: impl Into<String>) -> ModelError {
        ModelError::ConfigValue {
            file: ModelFile::Config,
            field,
            message: message.into(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        // Upper bounds far above any ViT checkpoint (ViT-G: hidden 1,664, 48 blocks, MLP 8,192),
        // so that shapes computed from a damaged config cannot overflow or ask for exabytes.
        for (field, v, max) in [
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, 4 * MAX_WIDTH),
            ("num_channels", self.num_channels, 3),
        ] {
            if v == 0 {
                return Err(Self::bad(field, "must be positive"));
            }
            if v > max {
                return Err(Self::bad(field, format!("{v} is above the supported maximum of {max}")));
            }
        }
        if self.num_channels == 2 {
            return Err(Self::bad(
                "num_channels",
                "2 channels: only 1 (gray) or 3 (RGB) are supported",
            ));
        }
        if let Some((field, v)) = [
            ("image_size", self.image_size.hw()),
            ("patch_size", self.patch_size.hw()),
        ]
        .into_iter()
        .find(|(_, (h, w))| *h > MAX_IMAGE_SIDE || *w > MAX_IMAGE_SIDE)
        {
            return Err(Self::bad(
                field,
                format!(
                    "{}x{} is above the supported maximum of {MAX_IMAGE_SIDE} a side",
                    v.0, v.1
                ),
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Self::bad(
                "num_attention_heads",
                format!(
                    "{} heads do not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        let (ih, iw) = self.image_size.hw();
        let (ph, pw) = self.patch_size.hw();
        if ph == 0 || pw == 0 {
            return Err(Self::bad("patch_size", "must be positive"));
        }
        if ih == 0 || iw == 0 || ih % ph != 0 || iw % pw != 0 {
            return Err(Self::bad(
                "image_size",
                format!("image {ih}x{iw} is not divisible into {ph}x{pw} patches"),
            ));
        }
        if (ih / ph) * (iw / pw) > MAX_PATCHES {
            return Err(Self::bad(
                "patch_size",
                format!(
                    "{}x{} patches of {ph}x{pw}: above the supported maximum of {MAX_PATCHES} patches",
                    ih / ph,
                    iw / pw
                ),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Self::bad(
                "layer_norm_eps",
                format!("must be a positive number, got {}", self.layer_norm_eps),
            ));
        }
        self.activation()?;
        if let Some(map) = &self.id2label {
            if map.is_empty() {
                return Err(Self::bad("id2label", "is empty"));
            }
            if map.len() > MAX_LABELS {
                return Err(Self::bad(
                    "id2label",
                    format!("{} labels: above the supported maximum of {MAX_LABELS}", map.len()),
                ));
            }
            for i in 0..map.len() {
                if !map.contains_key(&i.to_string()) {
                    return Err(Self::bad(
                        "id2label",
                        format!("keys must be 0..{} without gaps; {i} is missing", map.len() - 1),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn activation(&self) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::Gelu),
            other => Err(Self::bad(
                "hidden_act",
                format!("unsupported activation `{other}`; supported: \"gelu\" (exact, erf)"),
            )),
        }
    }

    /// Class labels in index order; `LABEL_i` when the config has none (HF's default, two labels).
    pub fn labels(&self) -> Vec<String> {
        match &self.id2label {
            Some(map) => (0..map.len()).map(|i| map[&i.to_string()].clone()).collect(),
            None => vec!["LABEL_0".into(), "LABEL_1".into()],
        }
    }

    pub fn num_labels(&self) -> usize {
        self.id2label.as_ref().map_or(2, |m| m.len())
    }

    /// Replaces the label set (a new classification head).
    pub fn set_labels(&mut self, labels: &[String]) {
        self.id2label = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
        );
        self.label2id = Some(labels.iter().enumerate().map(|(i, l)| (l.clone(), i)).collect());
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Patch grid (rows, columns).
    pub fn grid(&self) -> (usize, usize) {
        let (ih, iw) = self.image_size.hw();
        let (ph, pw) = self.patch_size.hw();
        (ih / ph, iw / pw)
    }

    pub fn num_patches(&self) -> usize {
        let (gh, gw) = self.grid();
        gh * gw
    }

    /// Tokens per image: the patches plus the CLS token.
    pub fn seq_len(&self) -> usize {
        self.num_patches() + 1
    }

    /// Pixels per image, `C * H * W`.
    pub fn image_numel(&self) -> usize {
        let (h, w) = self.image_size.hw();
        self.num_channels * h * w
    }

    /// Multiply-adds x 2 of one image's full forward (every token through every block, as
    /// ONNX Runtime and PyTorch run it): the patch embedding, the blocks and the head. The
    /// benchmarks' GFLOP/s of every path count this, so they compare.
    pub fn forward_flop_per_image(&self) -> f64 {
        let (t, d, i, l) = (
            self.seq_len() as f64,
            self.hidden_size as f64,
            self.intermediate_size as f64,
            self.num_hidden_layers as f64,
        );
        let (ph, pw) = self.patch_size.hw();
        let patch = 2.0 * self.num_patches() as f64 * (self.num_channels * ph * pw) as f64 * d;
        let block = 2.0 * t * (4.0 * d * d + 2.0 * d * i) + 4.0 * t * t * d;
        patch + l * block + 2.0 * d * self.num_labels() as f64
    }
}

/// A timm Hugging Face hub `config.json` (`architecture`, `num_classes`, `pretrained_cfg`, ...).
/// The architecture comes from `model_args` when present, else from the architecture name
/// (`vit_{tiny,small,base,large}_patch{P}_{S}`, `deit_*`) and the tensor shapes.
#[derive(Debug, Clone, Deserialize)]
pub struct TimmConfig {
    pub architecture: String,
    #[serde(default)]
    pub num_classes: Option<usize>,
    #[serde(default)]
    pub global_pool: Option<String>,
    #[serde(default)]
    pub model_args: Option<TimmModelArgs>,
    #[serde(default)]
    pub pretrained_cfg: Option<TimmPretrainedCfg>,
    #[serde(default)]
    pub label_names: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TimmModelArgs {
    pub img_size: Option<usize>,
    pub patch_size: Option<usize>,
    pub in_chans: Option<usize>,
    pub embed_dim: Option<usize>,
    pub depth: Option<usize>,
    pub num_heads: Option<usize>,
    pub mlp_ratio: Option<f64>,
    /// Our explicit MLP width, for ratios that do not give an integer cleanly.
    pub mlp_hidden_dim: Option<usize>,
    pub qkv_bias: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TimmPretrainedCfg {
    pub input_size: Option<[usize; 3]>,
    pub interpolation: Option<String>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
}

impl TimmConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| ModelError::ConfigJson {
            file: ModelFile::Config,
            message: e.to_string(),
        })
    }

    /// True when a `config.json` is in timm's style rather than HF's.
    pub fn looks_like_timm(bytes: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| {
                v.as_object()
                    .map(|o| o.contains_key("architecture") && !o.contains_key("hidden_size"))
            })
            .unwrap_or(false)
    }

    /// Heads of the standard timm ViT sizes, by architecture name.
    fn heads_from_name(&self) -> Option<usize> {
        let a = self.architecture.as_str();
        [("tiny", 3), ("small", 6), ("base", 12), ("large", 16), ("huge", 16)]
            .iter()
            .find(|(k, _)| a.contains(&format!("_{k}_")))
            .map(|&(_, h)| h)
    }

    /// The ViT architecture; `shapes` gives what the weights imply
    /// (embed dim, patch size, channels, depth, mlp width, tokens) and wins over names.
    pub fn to_vit_config(&self, shapes: &TimmShapes) -> Result<ViTConfig> {
        let bad = |field: &'static str, m: String| ModelError::ConfigValue {
            file: ModelFile::Config,
            field,
            message: m,
        };
        if let Some(pool) = &self.global_pool {
            if pool != "token" {
                return Err(ModelError::Unsupported {
                    reason: format!("timm global_pool `{pool}`; only class-token pooling (\"token\") is supported"),
                });
            }
        }
        let args = self.model_args.clone().unwrap_or_default();
        let hidden = shapes.embed_dim;
        if let Some(e) = args.embed_dim {
            if e != hidden {
                return Err(bad("model_args.embed_dim", format!("says {e}, weights have {hidden}")));
            }
        }
        let heads = args.num_heads.or_else(|| self.heads_from_name()).ok_or_else(|| {
            bad(
                "model_args.num_heads",
                format!("not given and not implied by `{}`", self.architecture),
            )
        })?;
        let grid = ((shapes.num_tokens - 1) as f64).sqrt().round() as usize;
        if grid * grid + 1 != shapes.num_tokens {
            return Err(ModelError::Unsupported {
                reason: format!("non-square token grid ({} tokens)", shapes.num_tokens),
            });
        }
        let img = args.img_size.unwrap_or(grid * shapes.patch_size);
        let mut cfg = ViTConfig {
            hidden_size: hidden,
            num_hidden_layers: shapes.depth,
            num_attention_heads: heads,
            intermediate_size: shapes.mlp_dim,
            image_size: Size2::Square(img),
            patch_size: Size2::Square(shapes.patch_size),
            num_channels: shapes.in_chans,
            layer_norm_eps: 1e-6,
            qkv_bias: shapes.qkv_bias,
            hidden_act: "gelu".into(),
            id2label: None,
            label2id: None,
        };
        if let Some(names) = &self.label_names {
            cfg.set_labels(names);
        } else if let Some(n) = self.num_classes.filter(|&n| n > 0) {
            if n > MAX_LABELS {
                return Err(bad(
                    "num_classes",
                    format!("{n} is above the supported maximum of {MAX_LABELS}"),
                ));
            }
            cfg.set_labels(&(0..n).map(|i| format!("LABEL_{i}")).collect::<Vec<_>>());
        }
        cfg.validate()?;
        if cfg.num_patches() + 1 != shapes.num_tokens {
            return Err(bad(
                "model_args.img_size",
                format!(
                    "{img} px / patch {} gives {} tokens, pos_embed has {}",
                    shapes.patch_size,
                    cfg.seq_len(),
                    shapes.num_tokens
                ),
            ));
        }
        Ok(cfg)
    }
}

/// What a timm checkpoint's tensor shapes say about its architecture.
#[derive(Debug, Clone, Copy)]
pub struct TimmShapes {
    pub embed_dim: usize,
    pub patch_size: usize,
    pub in_chans: usize,
    pub depth: usize,
    pub mlp_dim: usize,
    pub num_tokens: usize,
    pub qkv_bias: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 128, "image_size": 28, "patch_size": 4, "num_channels": 1,
            "hidden_act": "gelu", "id2label": {"0": "a", "1": "b"}, "some_unknown_field": [1, 2]
        })
    }

    fn parse(v: serde_json::Value) -> Result<ViTConfig> {
        ViTConfig::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn parses_and_ignores_unknown_fields() {
        let c = parse(base()).unwrap();
        assert_eq!(c.seq_len(), 50);
        assert_eq!(c.labels(), vec!["a", "b"]);
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert!(c.qkv_bias);
    }

    #[test]
    fn rejects_nonsense() {
        let cases: [(&str, serde_json::Value, &str); 5] = [
            ("num_attention_heads", serde_json::json!(5), "do not divide"),
            ("patch_size", serde_json::json!(5), "not divisible"),
            ("hidden_act", serde_json::json!("relu"), "unsupported activation"),
            ("layer_norm_eps", serde_json::json!(-1.0), "positive"),
            ("id2label", serde_json::json!({"0": "a", "2": "c"}), "missing"),
        ];
        for (field, value, needle) in cases {
            let mut v = base();
            v[field] = value;
            let err = parse(v).unwrap_err().to_string();
            assert!(err.contains(needle), "{field}: {err}");
        }
        let err = ViTConfig::from_json(b"{not json").unwrap_err().to_string();
        assert!(err.starts_with("config.json: not valid JSON"), "{err}");
        let mut v = base();
        v.as_object_mut().unwrap().remove("hidden_size");
        let err = parse(v).unwrap_err().to_string();
        assert!(err.contains("hidden_size"), "{err}");
    }

    #[test]
    fn hf_json_roundtrip() {
        let c = parse(base()).unwrap();
        let back = ViTConfig::from_json(c.to_hf_json().as_bytes()).unwrap();
        assert_eq!(back, c);
    }
}

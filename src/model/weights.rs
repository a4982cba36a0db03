//! Reading tensors from a safetensors checkpoint by HF `ViTForImageClassification` names,
//! whatever the file's own layout (HF with or without the `vit.` prefix, or timm).
//!
//! The model structs ask a [`VarBuilder`] for `vit.encoder.layer.3.attention.attention.query.weight`
//! with the shape they expect; the [`Layout`] maps that to the file's own name (and, for timm, to
//! a row slice of the fused `qkv` tensor). Every error names the file's tensor.

use std::collections::BTreeSet;

use safetensors::{Dtype, SafeTensorError, SafeTensors};

use super::config::TimmShapes;
use super::error::{ModelError, Result};

/// A parsed safetensors file; tensors are converted to f32 only when asked for.
pub struct Checkpoint<'a> {
    st: SafeTensors<'a>,
}

impl<'a> Checkpoint<'a> {
    /// Parses the header, checking the framing first so that each kind of damage gets its own error.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 8 {
            return Err(ModelError::Truncated {
                reason: format!("{} bytes, shorter than the 8-byte header length", bytes.len()),
            });
        }
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let rest = bytes.len() - 8;
        let starts_like_json = bytes.get(8) == Some(&b'{');
        if !starts_like_json {
            return Err(ModelError::NotSafetensors {
                reason: "the header after the 8-byte length prefix is not a JSON object".into(),
            });
        }
        if header_len > rest as u64 {
            return Err(ModelError::HeaderBeyondFile {
                header_len,
                file_len: rest,
            });
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| match e {
            SafeTensorError::MetadataIncompleteBuffer => ModelError::Truncated {
                reason: "the tensor data ends before the offsets in the header say".into(),
            },
            SafeTensorError::InvalidHeader(_)
            | SafeTensorError::InvalidHeaderDeserialization(_)
            | SafeTensorError::HeaderTooSmall => ModelError::NotSafetensors { reason: e.to_string() },
            other => ModelError::InvalidSafetensors {
                reason: other.to_string(),
            },
        })?;
        Ok(Self { st })
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.st.names().into_iter().map(str::to_owned).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.st.tensor(name).ok().map(|t| t.shape().to_vec())
    }

    /// The tensor as f32, checking its shape.
    pub fn get(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let view = self
            .st
            .tensor(name)
            .map_err(|_| ModelError::MissingTensor { name: name.into() })?;
        if view.shape() != expected {
            return Err(ModelError::TensorShape {
                name: name.into(),
                expected: expected.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data = view.data();
        Ok(match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::TensorDtype {
                    name: name.into(),
                    found: format!("{other:?}"),
                })
            }
        })
    }
}

/// How a checkpoint names its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `ViTForImageClassification`: `vit.` prefix and `classifier.*`.
    HfClassification,
    /// `ViTModel`: no prefix, no classifier (a new head is made).
    HfBackbone,
    /// timm `VisionTransformer`: `patch_embed.proj`, `blocks.i.attn.qkv`, `norm`, `head`.
    Timm,
}

impl Layout {
    pub fn detect(ckpt: &Checkpoint) -> Result<Self> {
        if ckpt.contains("vit.embeddings.cls_token") {
            Ok(Layout::HfClassification)
        } else if ckpt.contains("embeddings.cls_token") {
            Ok(Layout::HfBackbone)
        } else if ckpt.contains("cls_token") && ckpt.contains("pos_embed") {
            for (name, what) in [
                ("dist_token", "a distillation token (DeiT distilled)"),
                ("reg_token", "register tokens"),
                ("fc_norm.weight", "global average pooling (fc_norm)"),
            ] {
                if ckpt.contains(name) {
                    return Err(ModelError::Unsupported {
                        reason: format!("timm checkpoint with {what}: tensor `{name}`"),
                    });
                }
            }
            Ok(Layout::Timm)
        } else {
            let mut names: Vec<_> = ckpt.names().into_iter().take(5).collect();
            if names.is_empty() {
                names.push("(no tensors)".into());
            }
            Err(ModelError::UnknownLayout {
                reason: format!(
                    "expected `vit.embeddings.cls_token` (HF ViTForImageClassification), `embeddings.cls_token` (HF ViTModel) or `cls_token` + `pos_embed` (timm); found {}",
                    names.join(", ")
                ),
            })
        }
    }

    /// The architecture a timm checkpoint's shapes imply (heads excepted).
    pub fn timm_shapes(ckpt: &Checkpoint) -> Result<TimmShapes> {
        let need = |name: &str, rank: usize| -> Result<Vec<usize>> {
            let s = ckpt
                .shape(name)
                .ok_or_else(|| ModelError::MissingTensor { name: name.into() })?;
            if s.len() != rank {
                return Err(ModelError::TensorShape {
                    name: name.into(),
                    expected: vec![0; rank],
                    found: s,
                });
            }
            Ok(s)
        };
        let proj = need("patch_embed.proj.weight", 4)?;
        let pos = need("pos_embed", 3)?;
        let fc1 = need("blocks.0.mlp.fc1.weight", 2)?;
        let depth = (0..)
            .take_while(|i| ckpt.contains(&format!("blocks.{i}.norm1.weight")))
            .count();
        Ok(TimmShapes {
            embed_dim: proj[0],
            in_chans: proj[1],
            patch_size: proj[2],
            num_tokens: pos[1],
            mlp_dim: fc1[0],
            depth,
            qkv_bias: ckpt.contains("blocks.0.attn.qkv.bias"),
        })
    }

    /// Maps a HF `ViTForImageClassification` name to this layout's tensor, plus a row range for
    /// tensors that are slices of a fused one (timm `qkv`). `None`: the layout has no such tensor.
    fn map(self, hf: &str) -> Option<(String, Option<usize>)> {
        match self {
            Layout::HfClassification => Some((hf.to_owned(), None)),
            Layout::HfBackbone => hf.strip_prefix("vit.").map(|s| (s.to_owned(), None)),
            Layout::Timm => timm_name(hf),
        }
    }
}

/// HF name -> (timm name, which third of `qkv` when fused).
fn timm_name(hf: &str) -> Option<(String, Option<usize>)> {
    let fixed = match hf {
        "vit.embeddings.cls_token" => Some("cls_token"),
        "vit.embeddings.position_embeddings" => Some("pos_embed"),
        "vit.embeddings.patch_embeddings.projection.weight" => Some("patch_embed.proj.weight"),
        "vit.embeddings.patch_embeddings.projection.bias" => Some("patch_embed.proj.bias"),
        "vit.layernorm.weight" => Some("norm.weight"),
        "vit.layernorm.bias" => Some("norm.bias"),
        "classifier.weight" => Some("head.weight"),
        "classifier.bias" => Some("head.bias"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some((f.into(), None));
    }
    let rest = hf.strip_prefix("vit.encoder.layer.")?;
    let (layer, sub) = rest.split_once('.')?;
    let (module, param) = sub.rsplit_once('.')?;
    let (timm, third) = match module {
        "attention.attention.query" => ("attn.qkv", Some(0)),
        "attention.attention.key" => ("attn.qkv", Some(1)),
        "attention.attention.value" => ("attn.qkv", Some(2)),
        "attention.output.dense" => ("attn.proj", None),
        "intermediate.dense" => ("mlp.fc1", None),
        "output.dense" => ("mlp.fc2", None),
        "layernorm_before" => ("norm1", None),
        "layernorm_after" => ("norm2", None),
        _ => return None,
    };
    Some((format!("blocks.{layer}.{timm}.{param}"), third))
}

/// Hands out tensors by HF name, scoped by a path prefix (`vb.pp("encoder").pp("layer").pp(3)`).
#[derive(Clone)]
pub struct VarBuilder<'c, 'a> {
    ckpt: &'c Checkpoint<'a>,
    layout: Layout,
    path: String,
}

impl<'c, 'a> VarBuilder<'c, 'a> {
    pub fn new(ckpt: &'c Checkpoint<'a>, layout: Layout) -> Self {
        Self {
            ckpt,
            layout,
            path: String::new(),
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// A sub-scope: `pp("encoder")`, `pp(3)`.
    pub fn pp(&self, s: impl std::fmt::Display) -> Self {
        let path = if self.path.is_empty() {
            s.to_string()
        } else {
            format!("{}.{s}", self.path)
        };
        Self { path, ..self.clone() }
    }

    /// The scope's own path (`vit.encoder.layer.0.intermediate.dense.weight`).
    pub fn path_name(&self) -> String {
        self.path.clone()
    }

    fn full(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Whether the checkpoint has this tensor.
    pub fn contains(&self, name: &str) -> bool {
        self.layout
            .map(&self.full(name))
            .is_some_and(|(n, _)| self.ckpt.contains(&n))
    }

    /// The tensor `name` in this scope, as f32 with the given shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let hf = self.full(name);
        let (file_name, third) = self
            .layout
            .map(&hf)
            .ok_or_else(|| ModelError::MissingTensor { name: hf.clone() })?;
        match third {
            None => self.ckpt.get(&file_name, shape),
            Some(k) => {
                // timm fuses Q, K and V: rows [k*D, (k+1)*D) of a [3D, ...] tensor.
                let mut fused = shape.to_vec();
                fused[0] *= 3;
                let all = self.ckpt.get(&file_name, &fused)?;
                let n: usize = shape.iter().product();
                Ok(all[k * n..(k + 1) * n].to_vec())
            }
        }
    }
}

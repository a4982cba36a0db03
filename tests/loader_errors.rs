//! Every kind of broken checkpoint gets its own error naming the problem; none panics.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashMap;

use common::{fixture, read};
use flops_web::model::{LoadOptions, Model, ModelError, ModelFile, ModelFiles};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

struct Dir {
    config: Vec<u8>,
    weights: Vec<u8>,
}

fn tiny() -> Dir {
    let d = fixture("tiny_vit_hf");
    Dir {
        config: read(&d.join("config.json")),
        weights: read(&d.join("model.safetensors")),
    }
}

fn load(config: Option<&[u8]>, weights: Option<&[u8]>) -> Result<Model, ModelError> {
    Model::load(
        ModelFiles {
            config,
            weights,
            preprocessor: None,
        },
        &LoadOptions::default(),
    )
}

/// Re-serialises the tiny checkpoint with `edit` applied to each (name, dtype, shape, bytes).
fn rewrite(
    weights: &[u8],
    edit: impl Fn(&str, Dtype, Vec<usize>, Vec<u8>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) -> Vec<u8> {
    let st = SafeTensors::deserialize(weights).unwrap();
    let kept: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, t)| edit(&n, t.dtype(), t.shape().to_vec(), t.data().to_vec()).map(|(d, s, b)| (n, d, s, b)))
        .collect();
    let views: Vec<(String, TensorView)> = kept
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None::<HashMap<String, String>>).unwrap()
}

#[test]
fn intact_fixture_loads() {
    let d = tiny();
    load(Some(&d.config), Some(&d.weights)).unwrap();
}

#[test]
fn missing_tensor() {
    let d = tiny();
    let w = rewrite(&d.weights, |n, dt, s, b| {
        (n != "vit.encoder.layer.1.output.dense.bias").then_some((dt, s, b))
    });
    let err = load(Some(&d.config), Some(&w)).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensor { name } if name == "vit.encoder.layer.1.output.dense.bias"),
        "{err}"
    );
    assert!(err.to_string().contains("vit.encoder.layer.1.output.dense.bias"));
}

#[test]
fn wrong_shape() {
    let d = tiny();
    let w = rewrite(&d.weights, |n, dt, s, b| {
        Some((dt, if n == "classifier.weight" { vec![48, 5] } else { s }, b))
    });
    let err = load(Some(&d.config), Some(&w)).unwrap_err();
    match &err {
        ModelError::TensorShape { name, expected, found } => {
            assert_eq!(
                (name.as_str(), expected.as_slice(), found.as_slice()),
                ("classifier.weight", &[5, 48][..], &[48, 5][..])
            );
        }
        other => panic!("expected TensorShape, got {other}"),
    }
    assert!(
        err.to_string().contains("[48, 5]") && err.to_string().contains("[5, 48]"),
        "{err}"
    );
}

#[test]
fn wrong_dtype() {
    let d = tiny();
    let w = rewrite(&d.weights, |n, dt, s, b| {
        Some((if n == "vit.layernorm.weight" { Dtype::I32 } else { dt }, s, b))
    });
    let err = load(Some(&d.config), Some(&w)).unwrap_err();
    assert!(
        matches!(&err, ModelError::TensorDtype { name, found } if name == "vit.layernorm.weight" && found == "I32"),
        "{err}"
    );
}

#[test]
fn truncated_file() {
    let d = tiny();
    let cut = &d.weights[..d.weights.len() - 100];
    let err = load(Some(&d.config), Some(cut)).unwrap_err();
    assert!(matches!(err, ModelError::Truncated { .. }), "{err}");
    let err = load(Some(&d.config), Some(&d.weights[..5])).unwrap_err();
    assert!(matches!(err, ModelError::Truncated { .. }), "{err}");
}

#[test]
fn not_a_safetensors_file() {
    let d = tiny();
    let png = read(&common::root().join("assets/samples/digit-0.png"));
    for bytes in [png.as_slice(), d.config.as_slice(), b"\0\0\0\0\0\0\0\0 hello"] {
        let err = load(Some(&d.config), Some(bytes)).unwrap_err();
        assert!(matches!(err, ModelError::NotSafetensors { .. }), "{err}");
        assert!(
            err.to_string().starts_with("model.safetensors: not a safetensors file"),
            "{err}"
        );
    }
}

#[test]
fn header_larger_than_file() {
    let d = tiny();
    let mut w = d.weights.clone();
    let real = u64::from_le_bytes(w[..8].try_into().unwrap());
    let claimed = real + w.len() as u64;
    w[..8].copy_from_slice(&claimed.to_le_bytes());
    let err = load(Some(&d.config), Some(&w)).unwrap_err();
    assert!(
        matches!(err, ModelError::HeaderBeyondFile { header_len, .. } if header_len == claimed),
        "{err}"
    );
}

#[test]
fn missing_files() {
    let d = tiny();
    let err = load(None, Some(&d.weights)).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::MissingFile {
                file: ModelFile::Config
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("config.json: missing"));
    let err = load(Some(&d.config), None).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::MissingFile {
                file: ModelFile::Weights
            }
        ),
        "{err}"
    );
}

#[test]
fn config_that_does_not_match_the_weights() {
    let d = tiny();
    let mut cfg: serde_json::Value = serde_json::from_slice(&d.config).unwrap();
    cfg["intermediate_size"] = 64.into();
    let err = load(Some(cfg.to_string().as_bytes()), Some(&d.weights)).unwrap_err();
    assert!(
        matches!(&err, ModelError::TensorShape { name, .. } if name == "vit.encoder.layer.0.intermediate.dense.weight"),
        "{err}"
    );
    let err = load(Some(b"[1, 2"), Some(&d.weights)).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::ConfigJson {
                file: ModelFile::Config,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn timm_fused_qkv_of_wrong_shape_names_the_timm_tensor() {
    let dir = fixture("tiny_vit_timm");
    let (config, weights) = (read(&dir.join("config.json")), read(&dir.join("model.safetensors")));
    let w = rewrite(&weights, |n, dt, s, b| {
        Some((
            dt,
            if n == "blocks.1.attn.qkv.weight" {
                vec![48, 144]
            } else {
                s
            },
            b,
        ))
    });
    let err = load(Some(&config), Some(&w)).unwrap_err();
    assert!(
        matches!(&err, ModelError::TensorShape { name, .. } if name == "blocks.1.attn.qkv.weight"),
        "{err}"
    );
}

#[test]
fn unknown_layout() {
    let d = tiny();
    let w = rewrite(&d.weights, |n, dt, s, b| {
        (!n.contains("cls_token")).then_some((dt, s, b))
    });
    let err = load(Some(&d.config), Some(&w)).unwrap_err();
    assert!(matches!(err, ModelError::UnknownLayout { .. }), "{err}");
}

/// A config whose sizes would ask for absurd memory is refused by field, before any tensor
/// is read (each found by tests/fuzz.rs: `num_channels` 2^32 took 23 GB, 2 channels panicked,
/// a timm `num_classes` of 2^40 tried to allocate its labels).
#[test]
fn absurd_config_sizes_are_refused_by_field() {
    let d = tiny();
    let with = |key: &str, value: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_slice(&d.config).unwrap();
        v[key] = value;
        load(Some(&serde_json::to_vec(&v).unwrap()), Some(&d.weights))
            .unwrap_err()
            .to_string()
    };
    for (key, value, says) in [
        ("num_channels", serde_json::json!(1u64 << 32), "num_channels"),
        ("num_channels", serde_json::json!(2), "only 1 (gray) or 3 (RGB)"),
        ("hidden_size", serde_json::json!(1u64 << 40), "hidden_size"),
        ("num_hidden_layers", serde_json::json!(100_000), "num_hidden_layers"),
        ("image_size", serde_json::json!(1u64 << 20), "image_size"),
        ("image_size", serde_json::json!(4096), "patches"),
    ] {
        let e = with(key, value.clone());
        assert!(e.contains(says) && e.contains("config.json"), "{key} = {value}: {e}");
    }
}

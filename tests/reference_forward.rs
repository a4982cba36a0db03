//! The CPU reference forward against golden outputs of HF `transformers` (scripts/make_fixtures.py).
//!
//! Tolerances: logits and per-sample losses max abs error <= 1e-4 (the bar); hidden states
//! <= 1e-4 + 1e-4 * |ref|; preprocessed pixels are compared separately in `preprocess.rs`.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{assert_close, fixture, load_dir, Golden};
use flops_web::model::nn::cross_entropy;
use flops_web::model::vit::HiddenRecorder;
use flops_web::model::{Layout, Model, NoHook};

const LOGIT_TOL: f32 = 1e-4;

fn check_logits(model: &Model, golden: &Golden, logits_name: &str, what: &str) {
    let (shape, pixels) = golden.f32("pixel_values");
    let (_, want) = golden.f32(logits_name);
    let got = model.net.forward_batch(&pixels).expect("forward");
    assert_eq!(got.len(), shape[0] * model.labels().len());
    assert_close(&format!("{what} {logits_name}"), &got, &want, LOGIT_TOL, 0.0);
}

fn check_losses(model: &Model, golden: &Golden, what: &str) {
    let (_, pixels) = golden.f32("pixel_values");
    let (_, labels) = golden.i64("labels");
    let (_, want) = golden.f32("losses");
    let logits = model.net.forward_batch(&pixels).unwrap();
    let n = model.labels().len();
    let got: Vec<f32> = logits
        .chunks_exact(n)
        .zip(&labels)
        .map(|(z, &y)| cross_entropy(z, y as usize))
        .collect();
    assert_close(&format!("{what} losses"), &got, &want, LOGIT_TOL, 0.0);
}

fn check_hidden(model: &Model, golden: &Golden, what: &str) {
    let (shape, pixels) = golden.f32("pixel_values");
    let per = pixels.len() / shape[0];
    let layers = model.config().num_hidden_layers;
    let mut got: Vec<Vec<f32>> = vec![Vec::new(); layers + 1];
    for img in pixels.chunks_exact(per) {
        let mut rec = HiddenRecorder::default();
        model.net.vit.forward(img, &mut rec);
        for (k, h) in rec.hidden_states.into_iter().enumerate() {
            got[k].extend(h);
        }
    }
    for (k, g) in got.iter().enumerate() {
        let (_, want) = golden.f32(&format!("hidden_states.{k}"));
        assert_close(&format!("{what} hidden_states.{k}"), g, &want, 1e-4, 1e-4);
    }
}

#[test]
fn default_model_matches_transformers() {
    let model = Model::embedded_default().expect("embedded default loads");
    let golden = Golden::open("default_golden.safetensors");
    check_logits(&model, &golden, "logits", "default");
    check_losses(&model, &golden, "default");
    check_hidden(&model, &golden, "default");
    // The final LayerNorm's output (HF last_hidden_state).
    let (shape, pixels) = golden.f32("pixel_values");
    let per = pixels.len() / shape[0];
    let got: Vec<f32> = pixels
        .chunks_exact(per)
        .flat_map(|img| model.net.vit.forward(img, &mut NoHook))
        .collect();
    assert_close("default final_norm", &got, &golden.f32("final_norm").1, 1e-4, 1e-4);
}

#[test]
fn tiny_hf_layout_matches_transformers() {
    let model = load_dir(&fixture("tiny_vit_hf"));
    assert_eq!(model.layout, Layout::HfClassification);
    assert_eq!(model.labels(), ["ant", "bee", "cat", "dog", "eel"]);
    let golden = Golden::open("tiny_vit_golden.safetensors");
    check_logits(&model, &golden, "logits", "tiny HF");
    check_losses(&model, &golden, "tiny HF");
    check_hidden(&model, &golden, "tiny HF");
}

#[test]
fn tiny_timm_layout_matches_transformers() {
    let model = load_dir(&fixture("tiny_vit_timm"));
    assert_eq!(model.layout, Layout::Timm);
    assert_eq!(model.config().num_attention_heads, 3);
    assert_eq!(model.config().intermediate_size, 100);
    assert_eq!(model.labels(), ["ant", "bee", "cat", "dog", "eel"]);
    let golden = Golden::open("tiny_vit_golden.safetensors");
    check_logits(&model, &golden, "logits", "tiny timm");
    check_hidden(&model, &golden, "tiny timm");
}

#[test]
fn half_precision_checkpoints_become_f32() {
    let golden = Golden::open("tiny_vit_golden.safetensors");
    check_logits(
        &load_dir(&fixture("tiny_vit_hf_f16")),
        &golden,
        "logits_f16",
        "tiny f16",
    );
    check_logits(
        &load_dir(&fixture("tiny_vit_hf_bf16")),
        &golden,
        "logits_bf16",
        "tiny bf16",
    );
}

#[test]
fn export_roundtrips_exactly() {
    let model = load_dir(&fixture("tiny_vit_timm"));
    let exported = model.export().expect("export");
    let back = Model::load(exported.files(), &Default::default()).expect("reload");
    assert_eq!(back.layout, Layout::HfClassification);
    assert_eq!(back.labels(), model.labels());
    assert_eq!(back.preprocessor, model.preprocessor);
    let golden = Golden::open("tiny_vit_golden.safetensors");
    let (_, pixels) = golden.f32("pixel_values");
    assert_eq!(
        back.net.forward_batch(&pixels).unwrap(),
        model.net.forward_batch(&pixels).unwrap()
    );
}

#[test]
fn new_head_for_new_labels_is_seeded() {
    let dir = fixture("tiny_vit_hf");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let (c, w) = (read("config.json"), read("model.safetensors"));
    let files = flops_web::model::ModelFiles {
        config: Some(&c),
        weights: Some(&w),
        preprocessor: None,
    };
    let labels: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
    let opts = |seed| flops_web::model::LoadOptions {
        labels: Some(labels.clone()),
        head_seed: seed,
    };
    let a = Model::load(files, &opts(7)).unwrap();
    let b = Model::load(files, &opts(7)).unwrap();
    let c2 = Model::load(files, &opts(8)).unwrap();
    assert_eq!(a.labels(), labels);
    assert_eq!(a.net.classifier.weight.shape, vec![3, 48]);
    assert_eq!(a.net.classifier.weight.data, b.net.classifier.weight.data);
    assert_ne!(a.net.classifier.weight.data, c2.net.classifier.weight.data);
    let std = (a.net.classifier.weight.data.iter().map(|v| v * v).sum::<f32>() / 144.0).sqrt();
    assert!((0.01..0.03).contains(&std), "new head std {std}, expected about 0.02");
}

//! `flops predict`, run as a process: sample digits, the JSON contract, and bad input.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::PathBuf;

use common::{fixture, flops};

fn samples() -> Vec<(String, String)> {
    (0..10)
        .map(|d| (format!("assets/samples/digit-{d}.png"), d.to_string()))
        .collect()
}

#[test]
fn classifies_the_sample_digits() {
    let s = samples();
    let mut args = vec!["predict", "--json", "--top", "2"];
    args.extend(s.iter().map(|(p, _)| p.as_str()));
    let out = flops(&args);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("exactly one JSON object");
    assert_eq!(v["labels"].as_array().unwrap().len(), 10);
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 10);
    let mut correct = 0;
    for (p, (path, truth)) in preds.iter().zip(&s) {
        assert_eq!(p["image"], path.as_str(), "order and path as given");
        assert_eq!(p["logits"].as_array().unwrap().len(), 10);
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert!(top[0]["prob"].as_f64().unwrap() >= top[1]["prob"].as_f64().unwrap());
        correct += (top[0]["label"] == truth.as_str()) as usize;
    }
    assert!(correct >= 9, "{correct}/10 sample digits correct");
}

#[test]
fn text_output_and_explicit_model_dir() {
    let out = flops(&[
        "predict",
        "--model",
        "tests/fixtures/tiny_vit_timm",
        "--top",
        "9",
        "assets/samples/digit-3.png",
    ]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("assets/samples/digit-3.png: "), "{text}");
    assert_eq!(text.matches('%').count(), 5, "top is capped at the 5 labels: {text}");
}

/// Fails with a non-zero status and exactly one clear line on stderr, no panic.
fn assert_clean_failure(args: &[&str], needle: &str) {
    let out = flops(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "{args:?}: expected `{needle}` in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "no partial output");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let tmp = std::env::temp_dir().join(format!("flops-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let not_image = tmp.join("notes.png");
    std::fs::write(&not_image, b"this is text").unwrap();
    let broken_model = tmp.join("broken");
    std::fs::create_dir_all(&broken_model).unwrap();
    std::fs::copy(fixture("tiny_vit_hf/config.json"), broken_model.join("config.json")).unwrap();
    let w = std::fs::read(fixture("tiny_vit_hf/model.safetensors")).unwrap();
    std::fs::write(broken_model.join("model.safetensors"), &w[..w.len() / 2]).unwrap();
    let no_config = tmp.join("no-config");
    std::fs::create_dir_all(&no_config).unwrap();
    std::fs::write(no_config.join("model.safetensors"), &w).unwrap();
    let p = |b: &PathBuf| b.to_str().unwrap().to_owned();
    let digit = "assets/samples/digit-1.png";

    assert_clean_failure(&["predict", "assets/samples/no-such.png"], "no-such.png");
    assert_clean_failure(&["predict", digit, &p(&not_image)], "cannot decode");
    assert_clean_failure(&["predict", "--model", &p(&broken_model), digit], "truncated");
    assert_clean_failure(&["predict", "--model", &p(&no_config), digit], "config.json: missing");
    assert_clean_failure(&["predict", "--model", "no/such/dir", digit], "not a directory");
    std::fs::remove_dir_all(&tmp).ok();
}

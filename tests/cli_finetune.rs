//! `flops finetune` / `flops eval` as processes: a short run writes a model that loads back and
//! a JSON-lines log; bad datasets fail with one clear line.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;

use common::{flops, root};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("flops-ft-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_png(from: &str, to: &Path) {
    std::fs::copy(root().join(from), to).unwrap();
}

#[test]
fn short_run_on_a_folder_exports_a_loadable_model_and_a_log() {
    let data = tmp("data");
    for (class, files) in [
        ("one", ["digit-1.png", "digit-7.png"]),
        ("zero", ["digit-0.png", "digit-6.png"]),
    ] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for f in files {
            copy_png(&format!("assets/samples/{f}"), &data.join(class).join(f));
        }
    }
    std::fs::write(data.join("one/broken.png"), b"not an image").unwrap();
    let out = tmp("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let run = flops(&[
        "finetune",
        "--data",
        d,
        "--val-fraction",
        "0.5",
        "--steps",
        "3",
        "--batch",
        "2",
        "--budget",
        "4",
        "--allocator",
        "neyman",
        "--tune",
        "last:1",
        "--out",
        o,
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped") && stderr.contains("broken.png"),
        "bad files are reported by name: {stderr}"
    );
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["event"], "config");
    assert_eq!(lines.iter().filter(|l| l["event"] == "step").count(), 3);
    let step = lines.iter().find(|l| l["event"] == "step").unwrap();
    assert_eq!(
        step["allocation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        8
    );
    assert_eq!(step["queries"], 10, "8 perturbed queries + 2 clean passes");
    assert!(lines.iter().any(|l| l["event"] == "eval"));
    // The exported model loads in `flops predict` with the data's labels.
    let p = flops(&["predict", "--json", "--model", o, "assets/samples/digit-1.png"]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let v: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(v["labels"], serde_json::json!(["one", "zero"]));
    // And `flops eval` scores it on the folder.
    let e = flops(&["eval", "--model", o, "--data", d]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let v: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(v["images"], 4);
    let acc = v["accuracy"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&acc) && v["confusion"].as_array().unwrap().len() == 2,
        "{v}"
    );
    std::fs::remove_dir_all(&data).ok();
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn bad_datasets_fail_cleanly() {
    let empty = tmp("empty");
    let single = tmp("single");
    std::fs::create_dir_all(single.join("only")).unwrap();
    copy_png("assets/samples/digit-1.png", &single.join("only/a.png"));
    let out = tmp("out2");
    for (dir, needle) in [(&empty, "no usable images"), (&single, "at least 2")] {
        let r = flops(&[
            "finetune",
            "--data",
            dir.to_str().unwrap(),
            "--steps",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success());
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{stderr}");
    }
    let r = flops(&[
        "finetune",
        "--tune",
        "last:9",
        "--steps",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("cannot tune the last 9 blocks"));
    for d in [empty, single, out] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn eval_rejects_a_model_whose_labels_differ_from_the_data() {
    let r = flops(&["eval", "--model", "tests/fixtures/tiny_vit_hf"]);
    // The fixture's labels are not Animal-Shape's classes: a clear error, not a wrong number.
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("differ from the data's classes"));
}

#[test]
fn gpu_backend_runs_the_same_command() {
    let out = tmp("gpu");
    let o = out.to_str().unwrap();
    let r = flops(&[
        "finetune",
        "--backend",
        "gpu",
        "--steps",
        "2",
        "--batch",
        "4",
        "--budget",
        "4",
        "--out",
        o,
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(stderr.contains("training on"), "{stderr}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"event\":\"step\"")).count(), 2);
    assert!(out.join("model.safetensors").exists());
    std::fs::remove_dir_all(&out).ok();
}

/// `--preset best` sets the recipe; flags given on the command line override it, others keep it.
#[test]
fn preset_with_overrides_reaches_the_run_config() {
    let data = tmp("preset-data");
    for (class, files) in [
        ("one", ["digit-1.png", "digit-7.png"]),
        ("zero", ["digit-0.png", "digit-6.png"]),
    ] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for f in files {
            copy_png(&format!("assets/samples/{f}"), &data.join(class).join(f));
        }
    }
    let out = tmp("preset-out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let run = flops(&[
        "finetune",
        "--data",
        d,
        "--val-fraction",
        "0.5",
        "--preset",
        "best",
        "--steps",
        "1",
        "--batch",
        "2",
        "--budget",
        "14",
        "--antithetic",
        "--clip-norm",
        "0",
        "--eval-every",
        "0",
        "--out",
        o,
        "--quiet",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let config: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let c = &config["config"];
    // Overridden:
    assert_eq!(
        (
            c["steps"].as_u64(),
            c["batch"].as_u64(),
            c["queries_per_point"].as_u64()
        ),
        (Some(1), Some(2), Some(14))
    );
    assert_eq!(c["estimator"]["antithetic"], true, "{c}");
    assert!(c["optimizer"]["clip_norm"].is_null(), "{c}");
    // Kept from the preset:
    assert_eq!(
        (c["perturb"].as_str(), c["relative_noise"].as_bool()),
        (Some("site"), Some(true)),
        "{c}"
    );
    assert_eq!(c["tuning"]["blocks"], 1, "{c}");
    assert_eq!(
        c["estimator"]["sigma"].as_f64().map(|s| (s * 1e4).round()),
        Some(100.0),
        "{c}"
    );
}

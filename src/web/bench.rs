//! `benchForward`: the clean forward of a model timed in the browser on each of our paths, for
//! `make bench` (`tests/bench/`), which runs ONNX Runtime Web on the same model, batch and
//! pixels beside it. Not used by the page.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::device::now_ms;
use super::{js_err, to_js, OwnedFiles};
use crate::gpu::{GpuContext, GpuForward, GpuModel, GpuOptions, RowPlan};
use crate::model::nn::Kernels;
use crate::model::{LoadOptions, Model};

/// One path's timing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timing {
    /// `cpu-reference`, `cpu-fast` or `wgsl`.
    path: &'static str,
    rows: usize,
    /// Median of the timed samples (after the warm-up), milliseconds per forward.
    ms: f64,
    gflop_per_s: f64,
    /// Each sample, milliseconds per forward.
    samples_ms: Vec<f64>,
    /// The logits of the batch, row-major `[rows, labels]` (to compare against the other side).
    logits: Vec<f32>,
    /// The adapter, for `wgsl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    adapter: Option<crate::gpu::AdapterSummary>,
}

/// The pixels of the benchmark and of the device calibration: `rows` images of `len` values in
/// [-1, 1), a fixed pattern that `tests/bench/page/page.mjs` computes identically (in u64: on
/// wasm32 `usize` products wrap from ViT-Tiny's sizes on, and JS's do not).
pub(super) fn bench_pixels(rows: usize, len: usize) -> Vec<f32> {
    (0..(rows * len) as u64)
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Times the clean forward of `rows` images ([`bench_pixels`]) of the HF model in `config` and
/// `weights` on each of `paths` (`cpu-reference`, `cpu-fast`: this wasm on the CPU; `wgsl`:
/// WebGPU), `repeats` samples of `inner` forwards each (the page's clock is coarsened to 0.1
/// ms) after a warm-up of at least one forward and `warmup_ms` (V8 first runs wasm from its
/// baseline compiler and swaps in optimised code later). Resolves to a list of timings.
#[wasm_bindgen(js_name = benchForward)]
pub async fn bench_forward(
    config: Vec<u8>,
    weights: Vec<u8>,
    rows: usize,
    repeats: usize,
    inner: usize,
    warmup_ms: f64,
    paths: Vec<String>,
) -> Result<JsValue, JsError> {
    console_error_panic_hook::set_once();
    let files = OwnedFiles {
        config,
        weights,
        preprocessor: None,
    };
    let net = Model::load(files.files(), &LoadOptions::default()).map_err(js_err)?.net;
    let rows = rows.max(1);
    let repeats = repeats.max(1);
    let inner = inner.max(1);
    let pixels = bench_pixels(rows, net.config.image_numel());
    let flop = net.config.forward_flop_per_image() * rows as f64;
    let mut out = Vec::new();
    for path in &paths {
        let mut samples = Vec::with_capacity(repeats);
        let (path, logits, adapter): (&'static str, Vec<f32>, _) = match path.as_str() {
            "cpu-reference" | "cpu-fast" => {
                let (name, kernels) = if path == "cpu-fast" {
                    ("cpu-fast", Kernels::Gemm)
                } else {
                    ("cpu-reference", Kernels::Reference)
                };
                let mut n = net.clone();
                n.set_kernels(kernels);
                let start = now_ms();
                let mut logits = n.forward_batch(&pixels).map_err(js_err)?;
                while now_ms() - start < warmup_ms {
                    logits = n.forward_batch(&pixels).map_err(js_err)?;
                }
                for _ in 0..repeats {
                    let t0 = now_ms();
                    for _ in 0..inner {
                        logits = n.forward_batch(&pixels).map_err(js_err)?;
                    }
                    samples.push((now_ms() - t0) / inner as f64);
                }
                (name, logits, None)
            }
            "wgsl" => {
                let ctx = GpuContext::new(&GpuOptions::default()).await.map_err(js_err)?;
                let model = GpuModel::upload(&ctx, &net).map_err(js_err)?;
                let plan = RowPlan::clean(&vec![0; rows], net.config.num_hidden_layers);
                let run = || GpuForward::run(&ctx, &model, &pixels, &plan);
                let start = now_ms();
                let mut logits = run().await.map_err(js_err)?.logits;
                while now_ms() - start < warmup_ms {
                    logits = run().await.map_err(js_err)?.logits;
                }
                for _ in 0..repeats {
                    let t0 = now_ms();
                    for _ in 0..inner {
                        logits = run().await.map_err(js_err)?.logits;
                    }
                    samples.push((now_ms() - t0) / inner as f64);
                }
                ("wgsl", logits, Some(ctx.summary()))
            }
            other => {
                return Err(JsError::new(&format!(
                    "unknown path `{other}`; one of: cpu-reference, cpu-fast, wgsl"
                )))
            }
        };
        let ms = median(&samples);
        out.push(Timing {
            path,
            rows,
            ms,
            gflop_per_s: flop / ms / 1e6,
            samples_ms: samples,
            logits,
            adapter,
        });
    }
    to_js(&out)
}

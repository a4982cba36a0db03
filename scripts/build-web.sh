#!/usr/bin/env bash
# Builds the browser module: the wasm in release, then wasm-bindgen (--target web) into
# target/web/wasm/ (served at /wasm/ by web/serve.mjs; copied into pkg/wasm/ by package.sh).
# No wasm-opt: Debian's binaryen 108 produces modules that fail at load (docs/toolchain.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# Two builds of the same code; the worker loads one (web/worker.js probes the browser):
#   flops_web        simd128 (.cargo/config.toml): every browser with WebAssembly SIMD
#   flops_web_relaxed simd128 + relaxed-simd: the GEMM kernel's fused multiply-add
#                    (f32x4.relaxed_madd; Chrome 114+), a ViT-Tiny forward 10-16% faster (make bench)
out="${1:-target/web/wasm}"
cargo build --locked --release --target wasm32-unknown-unknown --lib
RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" CARGO_TARGET_DIR=target/wasm-relaxed \
  cargo build --locked --release --target wasm32-unknown-unknown --lib
mkdir -p "$out"
wasm-bindgen --target web --out-dir "$out" target/wasm32-unknown-unknown/release/flops_web.wasm
wasm-bindgen --target web --out-dir "$out" --out-name flops_web_relaxed \
  target/wasm-relaxed/wasm32-unknown-unknown/release/flops_web.wasm
for name in flops_web flops_web_relaxed; do
  raw=$(stat -c %s "$out/${name}_bg.wasm")
  gz=$(gzip -9 -c "$out/${name}_bg.wasm" | wc -c)
  echo "build-web: $out/${name}_bg.wasm: $raw bytes ($gz gzipped)" >&2
done

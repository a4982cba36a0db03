#!/usr/bin/env bash
# Builds the browser module: the wasm in release, then wasm-bindgen (--target web) into
# target/web/wasm/ (served at /wasm/ by web/serve.mjs; copied into pkg/wasm/ by package.sh).
# No wasm-opt: Debian's binaryen 108 produces modules that fail at load (docs/toolchain.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/web/wasm}"
cargo build --locked --release --target wasm32-unknown-unknown --lib
mkdir -p "$out"
wasm-bindgen --target web --out-dir "$out" target/wasm32-unknown-unknown/release/flops_web.wasm
raw=$(stat -c %s "$out/flops_web_bg.wasm")
gz=$(gzip -9 -c "$out/flops_web_bg.wasm" | wc -c)
echo "build-web: $out/flops_web_bg.wasm: $raw bytes ($gz gzipped)" >&2

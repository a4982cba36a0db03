# The two commands of the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all setup test test-native test-wasm-build test-web demo web package test-e2e test-npm bench bench-native bench-web bench-deps fuzz fmt clean

all: test

# `test` runs its prerequisites in order (setup first): never in parallel, even under -j.
.NOTPARALLEL:

# Idempotent and quiet: installs only what is missing.
setup:
	@scripts/setup.sh

test: setup test-native test-wasm-build test-web test-e2e test-npm

test-native:
	$(CARGO) test --locked

# The core must build for the browser.
test-wasm-build:
	$(CARGO) build --locked --target wasm32-unknown-unknown --lib

# The GPU forward in headless Chromium on WebGPU (SwiftShader), through wasm-bindgen-test.
test-web:
	CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=300 \
		$(CARGO) test --locked --target wasm32-unknown-unknown --test web_forward

# The browser product: build the wasm (release) and serve web/ on 127.0.0.1 (prints the URL).
demo: setup web
	node web/serve.mjs $${PORT:-8080}

# wasm (release) + wasm-bindgen --target web -> target/web/wasm/ (served at /wasm/).
web:
	scripts/build-web.sh

# The npm package `flops-web` in pkg/ (ESM, .wasm, .d.ts, README).
package: web
	scripts/package.sh

# playwright-core drives Debian's Chromium (WebGPU on SwiftShader) through the real page.
test-e2e: web
	$(CARGO) build --locked --bin flops
	node tests/e2e/e2e.mjs
	node tests/e2e/bad_input.mjs
	node tests/e2e/scale.mjs

# A Vite 7 app imports the package; the built bundle must contain the wasm.
test-npm: package
	node tests/npm/check.mjs

# Benchmarks (not part of `make test`; speed never goes in assertions). Both print one JSON
# object; docs/results.md records their runs.
#   bench-native: `flops bench speed` (cpu-reference, cpu-fast, wgsl on lavapipe) beside ONNX
#                 Runtime's native CPU EP and PyTorch, same shapes, in one run -> target/bench/speed.json
#   bench-web:    one headless Chromium run: our wasm CPU and WGSL forward beside ONNX Runtime
#                 Web's WASM EP (1 thread) and WebGPU EP (SwiftShader), same models, batch and
#                 pixels; cold starts; wasm bytes -> target/bench/web.json
# The Python side (torch, transformers, onnx, onnxruntime) and tests/bench's npm packages
# (onnxruntime-web) are installed here, only when missing.
BENCH_PIP = -r scripts/requirements.txt onnxruntime==1.32.0 onnx==1.23.2 onnxscript==0.7.2
bench: bench-native bench-web

bench-deps: setup
	@python3 -c 'import torch, transformers, onnx, onnxscript, onnxruntime' 2>/dev/null || \
		pip install -q $(BENCH_PIP)
	@[ -d tests/bench/node_modules/onnxruntime-web ] || \
		(cd tests/bench && npm ci --no-audit --no-fund --loglevel=error)

bench-native: bench-deps
	$(CARGO) build --locked --release --bin flops
	mkdir -p target/bench
	set -o pipefail; python3 scripts/bench_speed.py --repeats 7 | tee target/bench/speed.json

bench-web: bench-deps web
	python3 scripts/bench_web_models.py target/bench/models
	node tests/bench/bench.mjs

# The long fuzz run of every parser of untrusted input (tests/fuzz.rs; `make test` runs a short
# one): 10^6 executions per target, one JSON line each; inputs that fail land in
# target/fuzz-crashes/.
FUZZ_EXECS ?= 1000000
fuzz:
	FUZZ_EXECS=$(FUZZ_EXECS) $(CARGO) test --locked --profile fuzz --test fuzz -- --nocapture --test-threads 2

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean

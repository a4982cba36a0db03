# The two commands of the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all setup test test-native test-wasm-build test-web demo web package test-e2e test-npm fmt clean

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

# A Vite 7 app imports the package; the built bundle must contain the wasm.
test-npm: package
	node tests/npm/check.mjs

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean

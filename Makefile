# The two commands of the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all setup test test-native test-wasm-build test-web demo fmt clean

all: test

# Idempotent and quiet: installs only what is missing.
setup:
	@scripts/setup.sh

test: setup test-native test-wasm-build test-web

test-native:
	$(CARGO) test --locked

# The core must build for the browser.
test-wasm-build:
	$(CARGO) build --locked --target wasm32-unknown-unknown --lib

# The GPU forward in headless Chromium on WebGPU (SwiftShader), through wasm-bindgen-test.
test-web:
	CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=300 \
		$(CARGO) test --locked --target wasm32-unknown-unknown --test web_forward

demo: setup
	$(CARGO) run --locked --release --quiet --bin flops -- predict assets/samples/*.png

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean

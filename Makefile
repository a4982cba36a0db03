# The two commands of the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all setup test test-native test-wasm-build demo fmt clean

all: test

# Idempotent and quiet: installs only what is missing.
setup:
	@scripts/setup.sh

test: setup test-native test-wasm-build

test-native:
	$(CARGO) test --locked

# The core must build for the browser.
test-wasm-build:
	$(CARGO) build --locked --target wasm32-unknown-unknown --lib

demo: setup
	$(CARGO) run --locked --release --quiet --bin flops -- predict assets/samples/*.png

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean

#!/usr/bin/env bash
# Installs what `make test` and `make demo` need, only when missing. Safe to run repeatedly.
set -euo pipefail

say() { echo "setup: $*" >&2; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown >/dev/null
fi

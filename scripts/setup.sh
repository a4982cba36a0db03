#!/usr/bin/env bash
# Installs what `make test` and `make demo` need, only when missing. Idempotent and quiet: a second
# run does nothing and takes well under a second.
#   - Debian packages (one `apt-get update`, only when something must be installed): Mesa's lavapipe
#     (Vulkan on the CPU: the native GPU tests run on it without a GPU), Chromium and chromedriver
#     (the in-browser tests, WebGPU on SwiftShader)
#   - the rustup target wasm32-unknown-unknown
#   - wasm-bindgen-cli at exactly the version of the pinned `wasm-bindgen` crate (provides
#     wasm-bindgen-test-runner, the cargo runner set in .cargo/config.toml)
#   - npm dependencies of tests/e2e (playwright-core) and tests/npm (vite)
set -euo pipefail

WASM_BINDGEN_VERSION="${WASM_BINDGEN_VERSION:-0.2.130}"

say() { echo "setup: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    say "need root to run: $*"; return 1
  fi
}

# 1. Debian packages ("installed" per dpkg's status, not merely known: a removed package keeps
#    its config-files entry).
missing=()
for pkg in mesa-vulkan-drivers libvulkan1 chromium chromium-driver; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >/dev/null
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The rust target.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown >/dev/null
fi

# 3. wasm-bindgen-cli, same version as the crate (a mismatch makes the runner refuse the module).
have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have" != "$WASM_BINDGEN_VERSION" ] || ! command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (was: ${have:-none}); this takes a few minutes"
  # No --locked: the registry mirror lacks one locked dependency of wasm-bindgen-cli.
  cargo install --quiet --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# 4. npm dependencies of the browser tests (tests/e2e: playwright-core; tests/npm: vite), only
#    when node_modules is missing or the lockfile changed since the last install.
for dir in tests/e2e tests/npm; do
  d="$(dirname "$0")/../$dir"
  [ -f "$d/package-lock.json" ] || continue
  stamp="$d/node_modules/.flops-lock.sha256"
  want="$(sha256sum "$d/package-lock.json" | awk '{print $1}')"
  if [ ! -d "$d/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "npm ci in $dir"
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
  fi
done

#!/usr/bin/env bash
# Installs what `make test` and `make demo` need, only when missing. Safe to run repeatedly.
set -euo pipefail

say() { echo "setup: $*" >&2; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown >/dev/null
fi

# lavapipe (Vulkan on the CPU): the native GPU tests run on it when the machine has no GPU.
missing=()
for pkg in mesa-vulkan-drivers libvulkan1; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (lavapipe)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Headless Chromium, chromedriver and wasm-bindgen-cli for the in-browser tests.
"$(dirname "$0")/setup-browser.sh"

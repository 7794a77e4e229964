#!/usr/bin/env bash
# Interop suite: the real libraries (safetensors, gguf-py, torch, numpy, onnx,
# onnxruntime) read
# what modelconv writes and write what modelconv reads. Installs them into a
# venv under target/ on first use.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/target/interop-venv"
req="$root/tests/interop/requirements.txt"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
  echo "interop: installing $(grep -v '^#' "$req" | tr '\n' ' ') into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi
cargo build --quiet --manifest-path "$root/Cargo.toml" --bin modelconv
MODELCONV="$root/target/debug/modelconv" FIXTURES="$root/fixtures" "$venv/bin/python" "$root/tests/interop/interop.py"

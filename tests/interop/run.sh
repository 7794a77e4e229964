#!/usr/bin/env bash
# Interop suite: the real libraries (safetensors, gguf-py, torch, numpy, onnx,
# onnxruntime, transformers, sentence-transformers, h5py, keras) read what modelconv
# writes and write what modelconv reads, and llama.cpp (built from the
# llama-cpp-python source package) converts, quantizes and runs the same
# Hugging Face folders. Installs them into a venv under target/ on first use.
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
status=0
MODELCONV="$root/target/debug/modelconv" FIXTURES="$root/fixtures" "$venv/bin/python" "$root/tests/interop/interop.py" || status=1
# The peer scanners on the bypass corpus (SECURITY.md's comparison table),
# in a venv of their own (their pins differ from ours).
peers="$root/target/peers-venv"
preq="$root/tests/interop/peers-requirements.txt"
if [ ! -x "$peers/bin/picklescan" ] || ! cmp -s "$preq" "$peers/requirements.txt"; then
  rm -rf "$peers"
  python3 -m venv "$peers"
  "$peers/bin/pip" install --quiet --disable-pip-version-check -r "$preq"
  cp "$preq" "$peers/requirements.txt"
fi
if "$peers/bin/python" "$root/tests/interop/peers.py" "$peers/bin" "$root/target/debug/modelconv" "$root/fixtures" \
    >"$root/target/peers.md" 2>"$root/target/peers.log"; then
  echo "interop: peers: $(tail -6 "$root/target/peers.md" | tr '\n' ' ')"
else
  tail -20 "$root/target/peers.md"
  echo "interop: peers.py: modelconv missed a payload or flagged a benign file (target/peers.md)"
  status=1
fi
# Hugging Face folders → GGUF against llama.cpp's converter and tools (built
# once from the llama-cpp-python source package, cached under target/).
# The transformers the converter pins, for the classes transformers 5 breaks
# (reference-tf-requirements.txt), beside the venv rather than in it.
reftf="$root/target/reference-tf"
rreq="$root/tests/interop/reference-tf-requirements.txt"
if ! cmp -s "$rreq" "$reftf/requirements.txt"; then
  rm -rf "$reftf"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$reftf" -r "$rreq"
  cp "$rreq" "$reftf/requirements.txt"
fi
llama=$(bash "$root/tests/interop/llama_cpp.sh")
models="$root/target/hf-models"
stamp="$(sha256sum "$root/tests/interop/hf_models.py" | cut -c1-16)"
if [ "$(cat "$models/stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$models"
  mkdir -p "$models"
  if ! "$venv/bin/python" "$root/tests/interop/hf_models.py" "$llama" "$models" >"$models.log" 2>&1; then
    tail -40 "$models.log"
    exit 1
  fi
  echo "$stamp" > "$models/stamp"
fi
MODELCONV="$root/target/debug/modelconv" REFERENCE_TF="$reftf" "$venv/bin/python" "$root/tests/interop/hf_gguf.py" \
  "$llama" "$(dirname "$llama")/../../build/bin" "$models" || status=1
exit $status

#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) on the stable
# compiler (RUSTC_BOOTSTRAP=1: cargo-fuzz needs nightly flags; no nightly
# toolchain is downloaded), seeded with the fixtures. Exits non-zero on the
# first finding; the input is left in fuzz/artifacts/<target>/. Prints one
# line per target: executions, executions/s, corpus size.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pickle_vm scan torch zip safetensors gguf onnx hf_files numpy flax paddle tf hdf5 jinja joblib torchscript)
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
seeds=(../fixtures/torch ../fixtures/malicious ../fixtures/gguf ../fixtures/safetensors ../fixtures/onnx ../fixtures/numpy ../fixtures/flax ../fixtures/paddle ../fixtures/tf/ckpt ../fixtures/hdf5 ../fixtures/keras ../fixtures/hf/tiny-llama ../fixtures/joblib ../fixtures/chat_templates/hostile)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dirs=("corpus/$t")
  for s in "${seeds[@]}"; do [ -d "$s" ] && dirs+=("$s"); done
  log="target/fuzz-$t.log"
  mkdir -p target
  if ! cargo fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=1048576 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t found a failure (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  stats=$(grep -E "^Done [0-9]+ runs" "$log" | tail -1)
  corpus=$(ls "corpus/$t" | wc -l)
  echo "fuzz: $t ok: ${stats:-?}; corpus $corpus inputs"
done

#!/usr/bin/env bash
# Byte-for-byte: two builds of modelconv write the same GGUF for every
# Hugging Face folder here, at every convert_hf_to_gguf.py output type and
# one quantization mix. For refactors that must not change outputs:
#
#   bash tests/interop/same_outputs.sh OLD_BINARY NEW_BINARY MODELS_DIR
#
# MODELS_DIR is what hf_models.py builds (target/hf-models after the
# interop suite); ONLY=GLOB limits the folders. Exit 1 naming each folder
# and type that differs.
set -uo pipefail
old=$1 new=$2 models=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0 compared=0 written=0
for dir in "$models"/${ONLY:-*}/; do
  [ -f "$dir/config.json" ] || continue
  name=$(basename "$dir")
  for ty in source F16 BF16 Q8_0 Q4_K_M; do
    for build in old new; do
      bin=${!build}
      out="$work/$name.$ty.$build.gguf"
      case $ty in
        source) "$bin" convert "$dir" "$out" -q ;;
        Q4_K_M) "$bin" quantize "$dir" -o "$out" --type Q4_K_M -q >/dev/null ;;
        *) "$bin" convert "$dir" "$out" --dtype "$ty" -q ;;
      esac
      echo "$?" > "$out.rc"
    done
    if ! cmp -s "$work/$name.$ty.old.gguf.rc" "$work/$name.$ty.new.gguf.rc"; then
      echo "DIFFERS $name $ty: exit $(cat "$work/$name.$ty.old.gguf.rc") before, $(cat "$work/$name.$ty.new.gguf.rc") after"
      status=1
    elif [ -f "$work/$name.$ty.old.gguf" ] && ! cmp -s "$work/$name.$ty.old.gguf" "$work/$name.$ty.new.gguf"; then
      echo "DIFFERS $name $ty: $(cmp "$work/$name.$ty.old.gguf" "$work/$name.$ty.new.gguf" 2>&1 | head -1)"
      status=1
    else
      compared=$((compared + 1))
      [ -f "$work/$name.$ty.old.gguf" ] && written=$((written + 1))
    fi
    rm -f "$work/$name.$ty".*
  done
done
echo "same_outputs: $compared identical ($written written, the rest refused alike), status $status"
exit $status

#!/bin/sh
# One shard of a split conversion or quantization, for one task of an array
# job. Every task runs the same modelconv command on the same input (a shared
# filesystem or an object-store mount) and writes only its own shard; the
# layout is decided from the headers, so the shards are those of a single run.
#
#   shard.sh MODELCONV-ARGS…      e.g. shard.sh quantize /models/in --type Q4_K_M -o /out/m.gguf --split-max-size 50G
#
# The shard number comes from the scheduler: SLURM_ARRAY_TASK_ID (Slurm,
# --array=1-N, counting from 1 as the file names do) or JOB_COMPLETION_INDEX
# (a Kubernetes Indexed Job, counting from 0). The task's JSON report (file
# name, size, SHA-256) goes to $REPORT_DIR/shard-K.json when REPORT_DIR is set.
set -eu
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  k=$SLURM_ARRAY_TASK_ID
elif [ -n "${JOB_COMPLETION_INDEX:-}" ]; then
  k=$((JOB_COMPLETION_INDEX + 1))
else
  echo "shard.sh: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set" >&2
  exit 2
fi
modelconv=${MODELCONV:-modelconv}
if [ -n "${REPORT_DIR:-}" ]; then
  mkdir -p "$REPORT_DIR"
  exec "$modelconv" -q "$@" --split-only "$k" --json > "$REPORT_DIR/shard-$k.json"
fi
exec "$modelconv" -q "$@" --split-only "$k"

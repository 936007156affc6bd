#!/usr/bin/env bash
# Everything that needs CUDA, in one prepared run of under 10 minutes (bench/README in
# docs/benchmarks.md): the device, a QLoRA 4-bit NF4 job (double quantization, bf16 compute) of the
# bundled model through a real worker, the training-throughput bench, and the serving bench
# (batched vs taking turns). Each part has its own time limit, so one stuck part cannot eat the rest.
#
#     bench/gpu.sh                 # PYTHON defaults to .venv/bin/python, else python3
#
# Record the figures it prints in docs/benchmarks.md with the device line.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$(dirname "$PY"):$PATH"   # the `tunedeck` command beside that Python
status=0
part() {  # part <title> <seconds> <command…>
  local title=$1 limit=$2; shift 2
  echo; echo "=== $title (at most ${limit}s) ==="
  local start=$SECONDS
  timeout --signal=INT --kill-after=20 "$limit" "$@" 2>&1 | grep -v -E "Loading weights|Writing model shards|FutureWarning|warnings.warn"
  local rc=${PIPESTATUS[0]}
  echo "--- $title: exit $rc after $((SECONDS - start))s"
  [ "$rc" -eq 0 ] || status=1
}

echo "=== device ==="
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
"$PY" - <<'PY' || { echo "torch with CUDA is needed"; exit 2; }
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"bf16 {torch.cuda.is_bf16_supported()}")
PY
# The QLoRA job's `tunedeck run` converts the bundled SmolLM2 once (~/.cache/tunedeck/models); the
# benches after it load that copy.

part "QLoRA job through a real worker" 240 "$PY" bench/gpu_job.py --epochs 3 --timeout 200
part "training throughput (seed recipe, SFTTrainer defaults, tunedeck)" 180 "$PY" bench/train_throughput.py --rows 64
part "serving: batched vs taking turns" 150 "$PY" bench/serving.py --only batching --tokens 32 --requests 16 --prompts 50 --repeats 3
exit $status

#!/usr/bin/env bash
# make gpu-check: on a machine with a CUDA GPU, the test suite on the GPU (no interpreter)
# and `mixlab bench --device cuda` (do_bench with the L2 flushed, host cost per call, and a
# CUDA-graph replay of a whole Mixup + loss step), written to reports/bench/gpu/.
# Budget: under 8 minutes; each part has its own time limit and the script goes on to
# the next part (and says so) when one fails or runs out, so a blind run still reports.
set -u
OUT=reports/bench/gpu
PY=.venv/bin/python
mkdir -p "$OUT"
status=0

if ! $PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu-check: no CUDA device visible to torch; nothing run" | tee "$OUT/status.txt"
    exit 2
fi
$PY -c 'import torch; p = torch.cuda.get_device_properties(0); print(p.name, p.multi_processor_count, "SMs", p.total_memory // 2**30, "GiB")' | tee "$OUT/device.txt"
workers=$($PY -c 'import os; print(max(1, min(8, (os.cpu_count() or 2) // 2)))')

echo "== tests on CUDA (MIXLAB_TEST_DEVICE=cuda, TRITON_INTERPRET=0), limit 270 s"
TRITON_INTERPRET=0 MIXLAB_TEST_DEVICE=cuda MIXLAB_EQUIVALENCE_OUT="$OUT/equivalence.json" \
    timeout -k 10 270 .venv/bin/pytest -q -n "$workers" -p no:cacheprovider \
    --junitxml="$OUT/tests.xml" tests 2>&1 | tail -n 40 | tee "$OUT/tests.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "gpu-check: tests exited $rc (124: time limit)"; status=1; }

echo "== mixlab bench --device cuda, limit 180 s"
TRITON_INTERPRET=0 timeout -k 10 180 .venv/bin/mixlab bench --device cuda --quick \
    --sizes 1024x3x32x32,128x3x224x224 --dtypes float32,bfloat16 --out "$OUT" 2>&1 \
    | tee "$OUT/bench.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "gpu-check: bench exited $rc (124: time limit)"; status=1; }

echo "gpu-check: done (status $status); results in $OUT/" | tee "$OUT/status.txt"
exit $status

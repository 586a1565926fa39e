#!/usr/bin/env bash
# The GPU check of issue 13: reflectkit's batched scorer vs the literal per-sample reference on one GPU, at float32
# (samples/s of each, the worst relative difference, bf16 agreement) and at bfloat16. Self-contained: `python3`,
# no venv; needs torch (CUDA), transformers, numpy, scipy; the repo's src/ goes on PYTHONPATH.
#
#   1. here (dev machine), once:   bash benchmarks/gpu_score_check.sh prep
#      writes test-artifacts/gpu-check/ (6.2 MB): the embedded student's config + tokenizer and the Alpaca rows.
#   2. on the GPU machine, from the repo root, with test-artifacts/gpu-check carried:
#                                  OUT=/some/dir bash benchmarks/gpu_score_check.sh
#      writes $OUT/env.txt, $OUT/gpu_float32.{json,log}, $OUT/gpu_bfloat16.{json,log}; about 2-3 minutes, under 6.
#
# The embedded student's weights cannot travel (98 MB as the shipped Q4_1 GGUF, 514 MB as the float32 HF directory;
# a machine is reached with 64 MiB): the model is the SmolLM2-135M architecture with seeded random weights
# (bench_score.py --student random:DIR). Throughput and exactness do not depend on the weights; the bf16 agreement
# does, so the bf16 figure that counts is the one measured on the real student on CPU (benchmarks/RESULTS.md).
# If an HF directory with real weights is carried as test-artifacts/gpu-check/student (model.safetensors), it is used.
# vLLM cannot run there (its wheel cannot travel), so the endpoint-vs-vLLM comparison is not part of this check.
set -euo pipefail
CHECK=test-artifacts/gpu-check
if [ "${1:-}" = "prep" ]; then
  rm -rf "$CHECK" && mkdir -p "$CHECK/student"
  # the suite's converted student, when there is one (else the GGUF is converted once, 1-10 minutes)
  [ -d test-artifacts/student-cache/students ] && export REFLECTKIT_STUDENT_CACHE=${REFLECTKIT_STUDENT_CACHE:-$PWD/test-artifacts/student-cache/students}
  .venv/bin/python - "$CHECK" <<'PY'
import shutil, sys
from pathlib import Path
from reflectkit.student import resolve_student
src = resolve_student("embedded").hf_dir
dst = Path(sys.argv[1])
for f in src.iterdir():
    if f.name != "model.safetensors":
        shutil.copy(f, dst / "student" / f.name)
shutil.copy(Path("..") / "shared" / "data" / "instructions" / "alpaca_cherry_5pct.json", dst / "alpaca.json")
PY
  du -sh "$CHECK"
  exit 0
fi
: "${OUT:?set OUT to the results directory}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
STUDENT="random:$CHECK/student"
[ -f "$CHECK/student/model.safetensors" ] && STUDENT="$CHECK/student"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  python3 -c "import sys, torch, transformers, numpy, scipy; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
  echo "student: $STUDENT"; } > "$OUT/env.txt" 2>&1
ROWS=${ROWS:-500}
# float32: reflectkit vs the reference (exactness to 1e-4, samples/s of each), then bf16 agreement with float32
timeout 200 python3 benchmarks/bench_score.py --device cuda --dtype float32 --rows "$ROWS" --student "$STUDENT" \
  --data "$CHECK/alpaca.json" --bf16 --json "$OUT/gpu_float32.json" > /dev/null 2> "$OUT/gpu_float32.log" || echo "float32 run failed: rc=$?" >> "$OUT/env.txt"
# bfloat16: both methods in bf16 (what a GPU user runs), samples/s of each
timeout 120 python3 benchmarks/bench_score.py --device cuda --dtype bfloat16 --rows "$ROWS" --student "$STUDENT" \
  --data "$CHECK/alpaca.json" --json "$OUT/gpu_bfloat16.json" > /dev/null 2> "$OUT/gpu_bfloat16.log" || echo "bfloat16 run failed: rc=$?" >> "$OUT/env.txt"
cat "$OUT/env.txt"; for f in "$OUT"/gpu_*.json; do [ -f "$f" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], {k: d.get(k) for k in ('dtype','reference_samples_per_s','reflectkit_samples_per_s','speedup','worst_relative_difference')}, d.get('half'))" "$f"; done

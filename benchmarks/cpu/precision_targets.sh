#!/usr/bin/env bash
# The precision measurements of docs/deployment.md in one go, on a CPU with AVX512_BF16 or AMX (refused elsewhere,
# where bfloat16 is emulated and slower): hardnet68 and hardnet39ds in every precision against the original
# network and the convolution ceilings; LR-ASPP and SSDLite deployed against torchvision's deployed, each precision;
# the demo detector trained with and without bfloat16 autocast (train img/s and mAP). About 90 minutes on 2 vCPUs.
# Writes benchmarks/cpu/original_*.md, precision_*.{json,md} and runs/demo_{float32,bf16}/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/cpu

$PY - <<'PYTHON' || exit 3
from hardnet_backbones.utils.cpu import cpu_supports_bfloat16, describe_cpu
supported, why = cpu_supports_bfloat16()
print(describe_cpu(), '-', why)
raise SystemExit(0 if supported else 'measure on a CPU with AVX512_BF16 or AMX')
PYTHON

for model in hardnet68 hardnet39ds; do
  $PY $OUT/original_hardnet68.py "$model"
done

deployed() {  # deployed NAME BASELINE OUTPUT ARGS...: both models in float32 (fused, channels_last), bf16, int8
  local ours=$1 theirs=$2 output=$3
  shift 3
  $PY tools/benchmark.py --models "$theirs+fused+cl" "$ours+fused+cl" "$theirs+bf16" "$ours+bf16" \
    "$theirs+int8" "$ours+int8" --baseline "$theirs+fused+cl" --warmup 2 --iters 3 --interleave 9 \
    --output "$OUT/$output" "$@"
}
deployed lraspp_hardnet39ds torchvision:lraspp_mobilenet_v3_large precision_lraspp --batch-size 2 --image-size 512 512
deployed ssdlite320_hardnet39ds torchvision:ssdlite320_mobilenet_v3_large precision_ssdlite \
  --batch-size 4 --image-size 480 640

[ -d data/shapes ] || $PY tools/make_shapes_dataset.py --out data/shapes
for dtype in float32 bf16; do
  amp=false; [ "$dtype" = bf16 ] && amp=true
  $PY tools/train.py configs/detection/shapes_ssdlite320_hardnet39ds.yaml --output-dir "runs/demo_$dtype" \
    --overwrite --set train.amp=$amp --set train.amp_dtype=bfloat16
done
$PY - <<'PYTHON'
import json
for run in ('runs/demo_float32', 'runs/demo_bf16'):
    lines = [json.loads(line) for line in open(f'{run}/metrics.jsonl')]
    speed = max(line.get('images_per_second', 0) for line in lines)
    result = json.load(open(f'{run}/results.json'))
    print(f"{run}: mAP {result['metrics']['mAP']:.4f}, fastest epoch {speed:.1f} train img/s")
PYTHON

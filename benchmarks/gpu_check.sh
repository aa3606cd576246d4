#!/usr/bin/env bash
# A GPU smoke check in under 5 minutes: trains each latent-variant component for a few hundred steps on CUDA under
# bf16 and fp16 autocast (fp16 with loss scaling, through accelerate), and a flow generator, composes, samples,
# loads the folders in diffusers' StableDiffusionPipeline on the GPU, and prints steps/s beside the same
# generator's on this machine's CPU (20 steps, the same batch).
#
#     bash benchmarks/gpu_check.sh [OUT]        # default OUT: outputs/gpu_check
#
# It has not run yet: no GPU was lent to the session that wrote it (BENCHMARKS.md records figures when one is).
# Needs: CUDA-enabled torch in the environment; the bundled MiniLM (installed with t2i). Nothing is downloaded.
set -euo pipefail

OUT=${1:-outputs/gpu_check}
PY=${PYTHON:-python}
STEPS=${STEPS:-300}       # optimiser steps per GPU run
N=${N:-4000}              # shapes images
# ALLOW_CPU=1 STEPS=3 N=256 checks this script itself on a machine without a GPU (fp16 then trains in fp32).
export ALLOW_CPU=${ALLOW_CPU:-0}
rm -rf "$OUT" && mkdir -p "$OUT"

"$PY" - <<'EOF'
import torch
import os
if not torch.cuda.is_available():
    assert os.environ["ALLOW_CPU"] == "1", "no CUDA device: this script checks t2i on a GPU"
    print("no GPU: checking the script on the CPU (ALLOW_CPU=1)")
    raise SystemExit(0)
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF

"$PY" -m t2i.cli data shapes --out "$OUT/data" --n "$N" --size 32
"$PY" -m t2i.cli train text-encoder --layers 3 --out "$OUT/text_encoder"

run() {  # NAME, then a `t2i train ...` command line; prints steps/s from the run's log.csv
  local name=$1; shift
  local start=$SECONDS
  "$PY" -m t2i.cli "$@" > "$OUT/$name.log" 2>&1 || { echo "FAILED: $name (see $OUT/$name.log)"; tail -20 "$OUT/$name.log"; exit 1; }
  "$PY" - "$OUT" "$name" "$((SECONDS - start))" <<'EOF'
import csv, sys
from pathlib import Path
out, name, wall = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = list(csv.DictReader(open(out / name / "log.csv")))
steps, seconds = int(rows[-1]["step"]), float(rows[-1]["seconds"])
print(f"{name:<28} {steps:>5} steps  {steps / seconds:>8.1f} steps/s  final logged loss {float(rows[-1]['loss']):.4f}"
      f"  ({wall} s with start-up)")
EOF
}

for mp in bf16 fp16; do
  run "autoencoder-$mp" train autoencoder --data "$OUT/data" --out "$OUT/autoencoder-$mp" --steps "$STEPS" \
      --mixed-precision "$mp" --checkpoint-every 0
done
AE="$OUT/autoencoder-bf16"
GEN=(--data "$OUT/data" --autoencoder "$AE" --text-encoder "$OUT/text_encoder" --max-length 16
     --cache-dir "$OUT/cache" --checkpoint-every 0)
for mp in bf16 fp16; do
  run "generator-$mp" train generator "${GEN[@]}" --out "$OUT/generator-$mp" --steps "$STEPS" --mixed-precision "$mp" \
      --pipeline-out "$OUT/pipeline-$mp"
  run "generator-flow-$mp" train generator "${GEN[@]}" --out "$OUT/generator-flow-$mp" --objective flow \
      --steps "$STEPS" --mixed-precision "$mp" --pipeline-out "$OUT/pipeline-flow-$mp"
done
# The same generator on the CPU, 20 steps, one thread per core as everywhere else here.
CUDA_VISIBLE_DEVICES= run "generator-cpu-fp32" train generator "${GEN[@]}" --out "$OUT/generator-cpu-fp32" --steps 20

for p in pipeline-bf16 pipeline-flow-bf16; do
  "$PY" -m t2i.cli generate "a red circle" --model "$OUT/$p" --out "$OUT/images-$p" --seed 0
done

"$PY" - "$OUT" <<'EOF'
import sys
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

out = Path(sys.argv[1])
device, dtype = ("cuda", torch.float16) if torch.cuda.is_available() else ("cpu", torch.float32)
for name in ("pipeline-bf16", "pipeline-flow-bf16", "pipeline-fp16"):
    sd = StableDiffusionPipeline.from_pretrained(out / name, safety_checker=None, torch_dtype=dtype).to(device)
    if not hasattr(sd.scheduler, "init_noise_sigma"):  # FlowMatchEulerDiscreteScheduler (docs/training.md)
        sd.scheduler.init_noise_sigma = 1.0
    g = [torch.Generator(device).manual_seed(k) for k in range(4)]
    images = sd(["a red circle"] * 4, num_inference_steps=20, guidance_scale=2.0, generator=g).images
    images[0].save(out / f"diffusers-{name}.png")
    print(f"diffusers StableDiffusionPipeline ran {name} on {device} in {dtype} ({type(sd.scheduler).__name__}): "
          f"{len(images)} images of {images[0].size}")
EOF
echo "gpu_check: all passed; logs and images in $OUT"

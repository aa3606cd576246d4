#!/usr/bin/env bash
# The emoji model that ships with t2i (src/t2i/models/emoji/), trained with t2i's own commands:
#   data → autoencoder → generator (checkpoints; rerun to resume) → compose → in-domain CLIP → evaluation.
#
#   bash recipes/emoji.sh [OUT]          # default OUT = outputs/emoji; rerun the same line to resume
#   OMP_NUM_THREADS=1 bash recipes/emoji.sh   # on a machine shared with other busy processes
#
# Every stage that finished is skipped on a rerun; an interrupted training stage continues from its last
# checkpoint (--resume), with bitwise the same result. The sizes below are the recipe: they were chosen
# by measured per-step CPU cost (benchmarks/model_step_cost.py) to fit about an hour on 2 CPU cores and
# 25 MB of weights. Each stage's wall, user and system seconds go to OUT/times.tsv, with the load average
# (other processes on the machine make wall time longer; user + system seconds much less so).
# Environment overrides (for smoke tests only; the shipped model used the defaults): T2I, LIMIT, SIZE,
# AE_STEPS, GEN_STEPS, AE_PRESET, GEN_PRESET, CLIP_STEPS, EVAL_N.
set -euo pipefail

OUT=${1:-outputs/emoji}
T2I=${T2I:-t2i}
SIZE=${SIZE:-32}
LIMIT=${LIMIT:-}                # render only the first N emoji (smoke tests)
AE_PRESET=${AE_PRESET:-medium}  # AutoencoderKL (32, 64, 64): f = 4, 4 latent channels
AE_STEPS=${AE_STEPS:-600}
GEN_PRESET=${GEN_PRESET:-medium}  # UNet2DConditionModel (64, 128), cross-attention at 4×4
GEN_STEPS=${GEN_STEPS:-1500}

mkdir -p "$OUT"
TIMES="$OUT/times.tsv"
[ -f "$TIMES" ] || printf 'stage\twall_s\tuser_s\tsys_s\tload_before\tload_after\tthreads\n' > "$TIMES"

stage() {  # stage NAME COMMAND...: run, timing wall and CPU seconds of it and its children
    local name=$1; shift
    echo "== $name: $*"
    local load_before; load_before=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f "%e %U %S" -o "$OUT/.time" "$@"
    read -r wall user sys < "$OUT/.time"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$wall" "$user" "$sys" "$load_before" \
        "$(cut -d' ' -f1 /proc/loadavg)" "${OMP_NUM_THREADS:-all}" >> "$TIMES"
    rm -f "$OUT/.time"
}

if [ ! -f "$OUT/data/info.json" ]; then
    stage data "$T2I" data emoji --out "$OUT/data" --size "$SIZE" ${LIMIT:+--limit "$LIMIT"}
fi

# The decoder sees the training split only (--split train is the default): held-out emoji stay unseen.
if [ ! -f "$OUT/autoencoder/t2i_component.json" ]; then
    stage autoencoder "$T2I" train autoencoder --data "$OUT/data" --split train --out "$OUT/autoencoder" \
        --preset "$AE_PRESET" --size "$SIZE" --steps "$AE_STEPS" --batch-size 32 --lr 2e-3 \
        --checkpoint-every 100 --resume
fi

# MiniLM embeddings of every caption of an image (name, Unicode name, aliases); one is drawn per step.
if [ ! -f "$OUT/generator/t2i_component.json" ]; then
    stage generator "$T2I" train generator --data "$OUT/data" --split train --autoencoder "$OUT/autoencoder" \
        --out "$OUT/generator" --text-encoder minilm --max-length 20 --preset "$GEN_PRESET" \
        --steps "$GEN_STEPS" --batch-size 64 --lr 2e-3 --ema 0.999 --checkpoint-every 100 --resume
fi

stage compose "$T2I" compose --generator "$OUT/generator" --out "$OUT/pipeline" --text-encoder minilm
echo "wrote $OUT/pipeline; stage times in $TIMES"

#!/usr/bin/env bash
# The 32-px emoji model t2i shipped until the 64-px one replaced it (recipes/emoji64.sh); its folder and card
# are in git history (git checkout 80573b2 -- src/t2i/models/emoji). Trained with t2i's own commands:
#   data → autoencoder → generator (checkpoints; rerun to resume) → compose → in-domain CLIP → evaluation
#   on the held-out emoji → a grid of held-out prompts beside the real emoji.
#
#   bash recipes/emoji.sh [OUT]          # default OUT = outputs/emoji; rerun the same line to resume
#   OMP_NUM_THREADS=1 bash recipes/emoji.sh   # on a machine shared with other busy processes
#
# Every stage that finished is skipped on a rerun; an interrupted training stage continues from its last
# checkpoint (--resume), with bitwise the same result. The sizes below are the recipe: they were chosen
# by measured per-step CPU cost (benchmarks/model_step_cost.py) to fit about an hour on 2 CPU cores and
# 25 MB of weights. Each stage's wall, user and system seconds go to OUT/times.tsv, with the load average
# (other processes on the machine make wall time longer; user + system seconds much less so).
# Environment overrides (for smoke tests only; the shipped model used the defaults): T2I and PYTHON (the
# programs), LIMIT, SIZE, AE_STEPS, GEN_STEPS, AE_PRESET, GEN_PRESET, GUIDANCE, EVAL_GUIDANCE, EVAL_N.
set -euo pipefail

OUT=${1:-outputs/emoji}
T2I=${T2I:-t2i}
SIZE=${SIZE:-32}
LIMIT=${LIMIT:-}                # render only the first N emoji (smoke tests)
AE_PRESET=${AE_PRESET:-medium}  # AutoencoderKL (32, 64, 64): f = 4, 4 latent channels
AE_STEPS=${AE_STEPS:-600}
GEN_PRESET=${GEN_PRESET:-medium}  # UNet2DConditionModel (64, 128), cross-attention at 4×4
GEN_STEPS=${GEN_STEPS:-1500}
GUIDANCE=${GUIDANCE:-2}                 # the default guidance scale: the best of the sweep below (FID, KID, CLIP score)
EVAL_GUIDANCE=${EVAL_GUIDANCE:-"1 2 4"}  # the guidance scales the evaluation sweeps
PYTHON=${PYTHON:-python3}

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
    # Split rule v1: the one the shipped weights were trained and evaluated on (its card says so).
    stage data "$T2I" data emoji --out "$OUT/data" --size "$SIZE" ${LIMIT:+--limit "$LIMIT"} --split-rule v1
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
        --out "$OUT/generator" --text-encoder minilm --max-length 20 --preset "$GEN_PRESET" --beta-schedule scaled_linear \
        --steps "$GEN_STEPS" --batch-size 64 --lr 2e-3 --ema 0.999 --checkpoint-every 100 --resume
fi

# MiniLM is named, not copied (87 MB): the folder holds the U-Net, the autoencoder and the scheduler.
stage compose "$T2I" compose --generator "$OUT/generator" --out "$OUT/pipeline" --text-encoder minilm \
    --reference-text-encoder --guidance "$GUIDANCE"

# The judge: a small CLIP trained on the same training split (held-out emoji unseen), for FID features and
# CLIP score. Independent of the model, so it may also run beside the generator stage.
if [ ! -f "$OUT/clip/t2i_component.json" ]; then
    stage clip "$T2I" train clip --data "$OUT/data" --split train --out "$OUT/clip" --checkpoint-every 100 --resume
fi

# FID, KID and CLIP score (with shuffled captions beside it) on every held-out emoji: prompts are their
# names, real images the emoji themselves; one setting per guidance scale.
HELD=$(grep -c '"split": "held_out"' "$OUT/data/metadata.jsonl")
stage eval "$T2I" eval "$OUT/pipeline" --data "$OUT/data" --split held_out --n "${EVAL_N:-$HELD}" \
    --n-real "$HELD" --clip "$OUT/clip" --guidance $EVAL_GUIDANCE --out "$OUT/eval-held-out" \
    --cache-dir "$OUT/eval-cache"

stage grid "$PYTHON" "$(dirname "$0")/emoji_grid.py" --model "$OUT/pipeline" --data "$OUT/data" \
    --out "$OUT/held_out_grid.png" --rows 16 --n 6
echo "wrote $OUT/pipeline, $OUT/eval-held-out/report.html, $OUT/held_out_grid.png; stage times in $TIMES"
echo "to use it: t2i generate --model $OUT/pipeline PROMPT"

#!/usr/bin/env bash
# The 64-px model that ships with t2i (src/t2i/models/emoji64/), trained with t2i's own commands on the
# multi-style emoji corpus, and the measurement that chose its variant:
#
#   corpus at 64 px ─┬─ lane "base":    base (16 px, text-conditioned) ─────────────────────┬─ compose "cascade"
#                    ├─ lane "clip":    in-domain CLIP (the judge) → upsampler (16→64 px) ──┘
#                    └─ lane "latent":  autoencoder (the decoder, + its preview decoder) → generator → compose
#                                       (only with VARIANTS="latent cascade": the candidate not shipped)
#   then the pipelines (and, with OLD_MODEL, the 32-px model it replaces) are judged on the same prompts by
#   the same CLIP (t2i compare); the one with the lower held-out FID is copied to OUT/pipeline; a grid of 8 seen
#   and 8 held-out prompts beside the real emoji (recipes/emoji64_grid.py).
#
#   bash recipes/emoji64.sh [OUT]                            # the shipped cascade; rerun the same line to resume
#   VARIANTS="latent cascade" bash recipes/emoji64.sh OUT    # also the latent candidate, and the choice (3 lanes)
#
# The lanes run side by side, one thread each: on a 2-core machine two lanes are both cores, without the
# stalls of two multi-threaded processes (with the latent lane, three share the two cores: about 3 h).
# The text encoder is the pretrained MiniLM (nothing to train).
# Every stage that finished is skipped on a rerun; an interrupted training stage continues from its last
# checkpoint (--resume). Every minute the recipe prints each lane's stage, its step and an estimate
# of the time left (from the stage budgets below, measured on an Intel Xeon, the base's on an AMD EPYC).
# Each stage's wall, user and system seconds go to OUT/times.tsv; each lane's full output to OUT/logs/LANE.log.
# On a GPU the same commands run unchanged under accelerate (prefix T2I="accelerate launch -m t2i.cli").
# Environment overrides (smoke tests and the experiments in BENCHMARKS.md; the shipped model used the defaults):
# T2I, PYTHON, SIZE, LOW, AE_STEPS, GEN_STEPS, BASE_STEPS, BASE_LR, BASE_PRECISION, BASE_FLIP, BASE_SAMPLE_STEPS,
# UP_STEPS, CLIP_STEPS, AE_PRESET, GEN_PRESET, BASE_PRESET, UP_PRESET, UP_TEXT, UP_GUIDANCE, CLIP_PRESET, EVAL_N,
# SEEN_N, GUIDANCE, UP_SAMPLE_STEPS, OLD_MODEL, DATA_ARGS, PROGRESS_EVERY, JUDGE_THREADS.
set -euo pipefail

OUT=${1:-outputs/emoji64}
T2I=${T2I:-t2i}
PYTHON=${PYTHON:-python3}
SIZE=${SIZE:-64}
LOW=${LOW:-16}                        # the cascade base's side in pixels
VARIANTS=${VARIANTS:-cascade}         # add "latent" to train and judge the latent candidate too
AE_PRESET=${AE_PRESET:-medium}        # AutoencoderKL (32, 64, 64): f = 4, 16×16×4 latents at 64 px
AE_STEPS=${AE_STEPS:-800}             # × 32 images; 2.7 s of one core per step
GEN_PRESET=${GEN_PRESET:-medium}      # UNet2DConditionModel (64, 128), cross-attention at 8×8
GEN_STEPS=${GEN_STEPS:-1600}          # × 64 latents
BASE_PRESET=${BASE_PRESET:-medium}    # UNet2DConditionModel (64, 128), cross-attention at 8×8, on 16×16 pixels
BASE_STEPS=${BASE_STEPS:-6000}        # × 64 images; 1.1 s of one core per step in bf16 (AMD EPYC, AVX-512 BF16)
BASE_LR=${BASE_LR:-2e-3}              # the `base` preset (2.5× wider) takes 1e-3: it diverged at 2e-3 (BENCHMARKS.md)
BASE_PRECISION=${BASE_PRECISION:-auto} # bf16 where the CPU or GPU has it natively, else float32
BASE_FLIP=${BASE_FLIP:-0.5}           # random left-right flips of the base's training images (never of those whose
                                      # captions name a direction or text): held-out FID 4.67 vs 5.60 without (`base`)
BASE_SAMPLE_STEPS=${BASE_SAMPLE_STEPS:-20}  # the base's sampling steps (the medium base draws 4 images × 20 steps
                                            # within 1 s on 2 cores; the `base` preset's were judged at 10)
UP_PRESET=${UP_PRESET:-small}         # UNet2DModel (32, 64) on 64×64 (+ the enlarged 16-px image)
UP_STEPS=${UP_STEPS:-1500}            # × 32 images; 2.8 s of one core per step
UP_TEXT=${UP_TEXT:-}                  # a text encoder (the base's: minilm) makes the upsampler text-conditioned
UP_GUIDANCE=${UP_GUIDANCE:-}          # with UP_TEXT: the upsampler's stored guidance scale (BENCHMARKS.md: 4)
CLIP_PRESET=${CLIP_PRESET:-small}
CLIP_STEPS=${CLIP_STEPS:-2000}      # × 128 pairs; 0.4 s per step
GUIDANCE=${GUIDANCE:-3}
UP_SAMPLE_STEPS=${UP_SAMPLE_STEPS:-5}   # the upsampler's sampling steps: 5 judged as good as 10 (held-out FID 5.69
                                        # vs 5.90, t2i compare, N = 500) at about 3/4 of the time
EVAL_N=${EVAL_N:-500}                 # held-out images generated per model (prompts: their first captions)
SEEN_N=${SEEN_N:-500}                 # training-split prompts per model for recognition of seen concepts
OLD_MODEL=${OLD_MODEL:-}              # a 32-px pipeline folder to judge beside (the model this one replaces)
DATA_ARGS=${DATA_ARGS:-}              # extra flags of t2i data emoji-sets (e.g. "--limit 40 --offline" for smoke tests)
PROGRESS_EVERY=${PROGRESS_EVERY:-60}
JUDGE_THREADS=${JUDGE_THREADS:-2}     # threads of the judging stages, which run alone

mkdir -p "$OUT/logs"
TIMES="$OUT/times.tsv"
[ -f "$TIMES" ] || printf 'stage\twall_s\tuser_s\tsys_s\tload_before\tload_after\tthreads\n' > "$TIMES"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

stage() {  # stage NAME COMMAND...: run, timing wall and CPU seconds of it and its children
    local name=$1; shift
    echo "== $name: $*"
    local load_before; load_before=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f "%e %U %S" -o "$OUT/.time-$name" "$@"
    read -r wall user sys < "$OUT/.time-$name"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$wall" "$user" "$sys" "$load_before" \
        "$(cut -d' ' -f1 /proc/loadavg)" "$OMP_NUM_THREADS" >> "$TIMES"
    rm -f "$OUT/.time-$name"
}

done_file() { [ -f "$1" ]; }

# -- the stages' budgets in minutes of one core (measured step costs × steps), for the time-left estimate --
declare -A BUDGET=([autoencoder]=36 [generator]=48 [compose-latent]=1 [clip]=13 [base]=112
                   [upsampler]=70 [judge]=20)
LANE_latent="autoencoder generator compose-latent"
LANE_base="base"
LANE_clip="clip upsampler"

declare -A STEPS=([autoencoder]=$AE_STEPS [generator]=$GEN_STEPS [clip]=$CLIP_STEPS [base]=$BASE_STEPS
                  [upsampler]=$UP_STEPS)

current_stage() { grep -a '^== ' "$OUT/logs/$1.log" 2>/dev/null | tail -1 | sed 's/^== \([^:]*\):.*/\1/'; }

stage_step() {  # the last step a training stage logged (its OUT/STAGE/log.csv, a row every 25 steps), or 0
    tail -n 1 "$OUT/$1/log.csv" 2>/dev/null | cut -d, -f1 | grep -E '^[0-9]+$' || echo 0
}

lane_left() {  # minutes of lane $1 not yet done: the budgets of its stages to come, the running one pro rata
    local lane=$1 left=0 s stages current
    stages=LANE_$lane; current=$(current_stage "$lane")
    for s in ${!stages}; do
        grep -q "^$s	" "$TIMES" && continue
        if [ "$s" = "$current" ] && [ -n "${STEPS[$s]:-}" ]; then
            left=$(awk -v l="$left" -v b="${BUDGET[$s]}" -v d="$(stage_step "$s")" -v n="${STEPS[$s]}" \
                   'BEGIN {f = n > 0 ? d / n : 0; if (f > 1) f = 1; printf "%d", l + b * (1 - f)}')
        else
            left=$((left + BUDGET[$s]))
        fi
    done
    echo "$left"
}

progress() {  # one line per lane: its stage, its step, the time left
    local lane total=0 left s where
    for lane in "$@"; do
        [ -f "$OUT/logs/$lane.log" ] || continue
        s=$(current_stage "$lane"); left=$(lane_left "$lane")
        [ "$left" -gt "$total" ] && total=$left
        where=$s; [ -n "${STEPS[$s]:-}" ] && where="$s step $(stage_step "$s")/${STEPS[$s]}"
        echo "  [$lane] ${where:-starting} | ~${left} min left"
    done
    echo "  $(date +%H:%M) recipe: ~$((total + BUDGET[judge])) min left (lanes side by side, then judging)"
}

# -- the corpus: six emoji sets at 64 px, split by concept family -----------------------------------------
if ! done_file "$OUT/data/info.json"; then
    stage data $T2I data emoji-sets --out "$OUT/data" --size "$SIZE" $DATA_ARGS
fi

lane_latent() {
    if ! done_file "$OUT/autoencoder/t2i_component.json"; then
        stage autoencoder $T2I train autoencoder --data "$OUT/data" --split train --out "$OUT/autoencoder" \
            --preset "$AE_PRESET" --size "$SIZE" --steps "$AE_STEPS" --batch-size 32 --lr 2e-3 \
            --checkpoint-every 100 --resume
    fi
    if ! done_file "$OUT/generator/t2i_component.json"; then
        stage generator $T2I train generator --data "$OUT/data" --split train --autoencoder "$OUT/autoencoder" \
            --out "$OUT/generator" --text-encoder minilm --max-length 24 --preset "$GEN_PRESET" \
            --steps "$GEN_STEPS" --batch-size 64 --lr 2e-3 --ema 0.999 --checkpoint-every 100 --resume
    fi
    stage compose-latent $T2I compose --generator "$OUT/generator" --out "$OUT/latent" --text-encoder minilm \
        --reference-text-encoder --guidance "$GUIDANCE"
}

has_variant() { case " $VARIANTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

lane_base() {
    if ! done_file "$OUT/base/t2i_component.json"; then
        stage base $T2I train base --data "$OUT/data" --split train --out "$OUT/base" --size "$LOW" \
            --text-encoder minilm --max-length 24 --preset "$BASE_PRESET" --steps "$BASE_STEPS" --batch-size 64 \
            --lr "$BASE_LR" --mixed-precision "$BASE_PRECISION" --random-flip "$BASE_FLIP" --ema 0.999 \
            --checkpoint-every 100 --resume
    fi
}

lane_clip() {
    if ! done_file "$OUT/clip/t2i_component.json"; then
        stage clip $T2I train clip --data "$OUT/data" --split train --out "$OUT/clip" --preset "$CLIP_PRESET" \
            --size "$SIZE" --steps "$CLIP_STEPS" --checkpoint-every 100 --resume
    fi
    has_variant cascade || return 0
    if ! done_file "$OUT/upsampler/t2i_component.json"; then
        stage upsampler $T2I train upsampler --data "$OUT/data" --split train --out "$OUT/upsampler" \
            --low-size "$LOW" --size "$SIZE" --preset "$UP_PRESET" --steps "$UP_STEPS" --batch-size 32 \
            --lr 2e-3 --ema 0.999 --checkpoint-every 100 --resume ${UP_TEXT:+--text-encoder "$UP_TEXT" --max-length 24}
    fi
}

# -- the lanes, side by side; a failed lane fails the recipe (the others run to their end) -----------------
lanes=(clip)
has_variant cascade && lanes=(base clip)
has_variant latent && lanes=(latent "${lanes[@]}")
pids=()
for lane in "${lanes[@]}"; do
    echo "== lane $lane: output in $OUT/logs/$lane.log"
    ( "lane_$lane" ) >> "$OUT/logs/$lane.log" 2>&1 &
    pids+=($!)
done
while sleep "$PROGRESS_EVERY" && kill -0 "${pids[@]}" 2>/dev/null; do progress "${lanes[@]}"; done
failed=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "lane ${lanes[$i]} failed: see $OUT/logs/${lanes[$i]}.log (rerun the same command to resume)" >&2
        tail -5 "$OUT/logs/${lanes[$i]}.log" >&2
        failed=1
    fi
done
[ "$failed" = 0 ] || exit 1
if has_variant cascade; then  # the base (lane "base") and the upsampler (lane "clip") into one pipeline
    stage compose-cascade $T2I compose --base "$OUT/base" --upsampler "$OUT/upsampler" --out "$OUT/cascade" \
        --text-encoder minilm --reference-text-encoder --guidance "$GUIDANCE" --steps "$BASE_SAMPLE_STEPS" \
        --upsampler-steps "$UP_SAMPLE_STEPS" ${UP_GUIDANCE:+--upsampler-guidance "$UP_GUIDANCE"}
fi
echo "lanes done: $(for v in $VARIANTS; do printf '%s ' "$OUT/$v"; done)"

# -- judging: every pipeline (and the model this one replaces) on the same prompts, by the same CLIP --------
# Both cores now: the lanes are done.
models=()
for v in $VARIANTS; do models+=("$OUT/$v"); done
[ -n "$OLD_MODEL" ] && models+=("$OLD_MODEL")
if ! done_file "$OUT/compare/compare.json"; then
    OMP_NUM_THREADS=$JUDGE_THREADS stage judge $T2I compare "${models[@]}" --data "$OUT/data" --clip "$OUT/clip" \
        --out "$OUT/compare" --n "$EVAL_N" --n-seen "$SEEN_N"
fi
cat "$OUT/compare/compare.md"

# The better variant by held-out FID (the concepts no style of which was trained on) becomes OUT/pipeline.
best=$("$PYTHON" - "$OUT/compare/compare.json" $VARIANTS <<'PY'
import json, sys
from pathlib import Path
models = json.loads(Path(sys.argv[1]).read_text())["models"]
trained = {k: v for k, v in models.items() if Path(k).name in sys.argv[2:]}
print(Path(min(trained, key=lambda k: trained[k]["held_out"]["fid"])).name)
PY
)
echo "== the better variant by held-out FID: $best"
rm -rf "$OUT/pipeline" && cp -r "$OUT/$best" "$OUT/pipeline"
if ! done_file "$OUT/grid.png"; then
    OMP_NUM_THREADS=$JUDGE_THREADS stage grid "$PYTHON" "$(dirname "$0")/emoji64_grid.py" --model "$OUT/pipeline" \
        --data "$OUT/data" --out "$OUT/grid.png" --n 6
fi
echo "wrote $OUT/pipeline ($best), $OUT/compare/compare.md, $OUT/grid.png; stage times in $TIMES"
echo "to ship it: python recipes/ship_model.py $OUT/pipeline src/t2i/models/emoji64 (and update its MODEL_CARD.md)"

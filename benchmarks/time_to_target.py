"""Time to target: training CPU-seconds each generator recipe needs to reach the default's final colour accuracy.

On the demo's data, autoencoder and 3-layer MiniLM (a finished `t2i demo --out DIR`), each candidate trains the
demo's generator with `train_generator` (same caches, trainer, EMA); every `--eval-every` steps its EMA weights
draw every colour × shape prompt in a form never seen in training ("a red circle", as benchmarks/colour_accuracy.py)
and the share with the prompted dominant colour is recorded with the training CPU time so far (time.process_time,
one thread; evaluation time excluded). Candidates:
    default     the recipe before REPA became its default (`--repa-weight 0`): VP cosine schedule, v-prediction,
                Min-SNR-5, float32, DPM-Solver++(2M); every other candidate is it with one change
    flow        rectified flow with logit-normal timesteps (SD3), flow Euler sampler, float32
    bf16        the default under bfloat16 autocast (only where the CPU has it natively)
    flow+bf16   both
    flow-noisier  flow with logit-normal(0.5, 1) timesteps: more training at high noise, where colour is decided
    transformer the default recipe with the transformer backbone (`--backbone transformer --preset small`: PixArt-α's
                PixArtTransformer2DModel, sized to cost about what the small U-Net costs per step)
    transformer-mask-0.5  the transformer with deferred patch masking (MicroDiT; `--patch-mask-ratio 0.5`, one
                mixer block): blocks 2–5 see half the patches, the loss covers those
    transformer-mask-0.75  the same with three quarters of the patches dropped (MicroDiT's ratio)
    repa        the default plus REPA (`--repa-weight 0.5`): the U-Net's middle block aligned to the autoencoder
                encoder's features of the clean image (now `t2i train generator`'s and `t2i demo`'s default)
    repa-0.25   repa with λ 0.25
    repa-1      repa with λ 1
    transformer-repa  the transformer with REPA (λ 0.5; its block a third of the way up aligned)
    flow-repa   flow with REPA (λ 0.5)
    repa-1-batch-32  repa-1 at batch 32 (same lr; a step cost 0.64× a batch-64 one here), up to twice the steps
    repa-1-tiny repa-1 with the `tiny` U-Net (16, 32 channels), up to twice the steps
    repa-1-lr-4e-3  repa-1 at twice the learning rate
    repa-clip   the same aligned to a CLIP's patch tokens (`--repa-target FOLDER`; give it with --repa-clip, e.g. a
                `t2i train clip` on the demo's data)

Each (candidate, seed) run writes OUT/runs/NAME-seedS.json and is skipped when that file exists, so several
processes may split the runs (--candidates) and a last call with --report-only prints the table of all of them.

    python benchmarks/time_to_target.py --demo outputs/demo --out outputs/ttt --steps 1500 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

CANDIDATES = {
    "default": {"objective": "diffusion", "mixed_precision": "no"},
    "flow": {"objective": "flow", "mixed_precision": "no"},
    "bf16": {"objective": "diffusion", "mixed_precision": "bf16"},
    "flow+bf16": {"objective": "flow", "mixed_precision": "bf16"},
    "flow-noisier": {"objective": "flow", "mixed_precision": "no", "flow_logit_mean": 0.5},
    "transformer": {"objective": "diffusion", "mixed_precision": "no", "backbone": "transformer"},
    "transformer-mask-0.5": {"objective": "diffusion", "mixed_precision": "no", "backbone": "transformer",
                             "patch_mask_ratio": 0.5},
    "transformer-mask-0.75": {"objective": "diffusion", "mixed_precision": "no", "backbone": "transformer",
                              "patch_mask_ratio": 0.75},
    "repa": {"objective": "diffusion", "mixed_precision": "no", "repa_weight": 0.5},
    "repa-clip": {"objective": "diffusion", "mixed_precision": "no", "repa_weight": 0.5, "repa_target": "clip"},
    "repa-0.25": {"objective": "diffusion", "mixed_precision": "no", "repa_weight": 0.25},
    "repa-1": {"objective": "diffusion", "mixed_precision": "no", "repa_weight": 1.0},
    "transformer-repa": {"objective": "diffusion", "mixed_precision": "no", "backbone": "transformer",
                         "repa_weight": 0.5},
    "flow-repa": {"objective": "flow", "mixed_precision": "no", "repa_weight": 0.5},
    "repa-1-batch-32": {"objective": "diffusion", "mixed_precision": "no", "repa_weight": 1.0,
                        "train": {"batch_size": 32}, "steps_factor": 2},
    "repa-1-tiny": {"objective": "diffusion", "mixed_precision": "no", "repa_weight": 1.0, "unet": "tiny",
                    "steps_factor": 2},
    "repa-1-lr-4e-3": {"objective": "diffusion", "mixed_precision": "no", "repa_weight": 1.0, "train": {"lr": 4e-3}},
}


def unseen_form_prompts() -> list[tuple[str, str]]:
    """(colour, prompt) for every colour × shape, as benchmarks/colour_accuracy.py draws them."""
    from t2i.data import COLOURS, SHAPES

    return [(c, f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}") for c in COLOURS for s in SHAPES]


def run_one(args, name: str, seed: int) -> dict:
    """Train one candidate with one seed; return its rows (step, training CPU-seconds, accuracy)."""
    import t2i.latent.train as latent_train
    from t2i.demo import DemoConfig
    from t2i.diffusion.transformer import TRANSFORMER_PRESETS
    from t2i.diffusion.unet import GENERATOR_PRESETS
    from t2i.evaluation import dominant_colour

    spec = CANDIDATES[name]
    demo = DemoConfig(out=args.demo)
    gen = demo.generator
    # The transformer keeps the recipe's objective, schedule and loss fields; only the network differs.
    transformer = TRANSFORMER_PRESETS["small"]()
    architecture = ({f: getattr(transformer, f) for f in ("backbone", "patch_size", "transformer_layers",
                                                          "transformer_heads", "transformer_head_dim")}
                    if spec.get("backbone") == "transformer" else {})
    if spec.get("unet"):
        unet = GENERATOR_PRESETS[spec["unet"]]()
        architecture = {"block_out_channels": unet.block_out_channels, "norm_num_groups": unet.norm_num_groups}
    model = replace(gen.model, **architecture, objective=spec["objective"],
                    min_snr_gamma=gen.model.min_snr_gamma if spec["objective"] == "diffusion" else 0.0,
                    flow_logit_mean=spec.get("flow_logit_mean", 0.0),
                    patch_mask_ratio=spec.get("patch_mask_ratio", 0.0))
    repa = {"repa_weight": 0.0}  # the recipe as measured before REPA was adopted, unless the candidate adds it
    if spec.get("repa_weight"):
        if spec.get("repa_target") == "clip" and args.repa_clip is None:
            raise SystemExit(f"{name} needs --repa-clip FOLDER (e.g. t2i train clip --data DEMO/data --out FOLDER)")
        repa = {"repa_weight": spec["repa_weight"],
                "repa_target": str(args.repa_clip) if spec.get("repa_target") == "clip" else "autoencoder"}
    cfg = replace(gen, model=model, text=replace(gen.text, source=str(args.demo / "text_encoder")), **repa,
                  train=replace(gen.train, **spec.get("train", {}), seed=seed, sample_every=args.eval_every,
                                steps=round(args.steps * spec.get("steps_factor", 1)),
                                mixed_precision=spec["mixed_precision"]))
    prompts = unseen_form_prompts()
    rows: list[dict] = []
    clock = {"start": None, "eval": 0.0}

    def evaluating_hook(folder, vae, gen_cfg, _prompts, text_encoder, scratch):
        def on_sample(step: int, module) -> None:
            now = time.process_time()
            pipe = latent_train.snapshot_pipeline(module, text_encoder, scratch, vae, gen_cfg)
            images = pipe([p for _, p in prompts], num_images=args.images_per_prompt, seed=0,
                          guidance=args.guidance, steps=args.sample_steps)
            colours = [c for c, _ in prompts for _ in range(args.images_per_prompt)]
            right = sum(dominant_colour(img) == c for img, c in zip(images, colours))
            rows.append({"step": step, "cpu_seconds": round(now - clock["start"] - clock["eval"], 2),
                         "accuracy": right / len(images), "sampler": pipe.defaults["sampler"]})
            print(f"{name} seed {seed} step {step}: {rows[-1]['cpu_seconds']:.0f} CPU-s, "
                  f"accuracy {rows[-1]['accuracy']:.1%}", flush=True)
            clock["eval"] += time.process_time() - now

        return on_sample

    real_train = latent_train.train

    def timed_train(*a, **k):  # the clock starts when the caches are ready and the trainer begins
        clock["start"] = time.process_time()
        return real_train(*a, **k)

    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # accelerate fixes mixed precision once per process
    latent_train.sample_grid_hook, latent_train.train = evaluating_hook, timed_train
    try:
        latent_train.train_generator(args.demo / "data", args.demo / "autoencoder", args.out / "gen" / f"{name}-{seed}",
                                     cfg, cache_dir=args.out / "cache", command="benchmarks/time_to_target.py")
    finally:
        latent_train.train = real_train
    return {"candidate": name, "seed": seed, "spec": spec, "steps": cfg.train.steps, "rows": rows,
            "guidance": args.guidance, "sample_steps": args.sample_steps,
            "images": len(prompts) * args.images_per_prompt}


def spread(values: list[float], fmt: str) -> str:
    """mean (min–max) of the seeds."""
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def report(runs: list[dict], thresholds: list[float]) -> str:
    """The table: per candidate, CPU-seconds and steps to the target (the default's mean final accuracy; the
    default itself is credited with its whole run, since on average it gets there at its end) and to each fixed
    threshold, the ratio to the default's, and accuracy at equal CPU time; mean (min–max) over seeds."""
    by = {}
    for r in runs:
        by.setdefault(r["candidate"], []).append(r)
    if "default" not in by:
        return "no default run yet: nothing to compare against"
    target = statistics.mean(r["rows"][-1]["accuracy"] for r in by["default"])
    base_cpu = statistics.mean(r["rows"][-1]["cpu_seconds"] for r in by["default"])

    def reach(run, level):  # the first evaluation at or above `level`
        return next((row for row in run["rows"] if row["accuracy"] >= level - 1e-9), None)

    def at_cpu(run, budget):  # the last evaluation within the CPU budget
        rows = [row for row in run["rows"] if row["cpu_seconds"] <= budget]
        return rows[-1]["accuracy"] if rows else float("nan")

    def to_level(rs, level, name):  # (CPU-s list, steps list, all reached)
        if name == "default" and level == target:
            return [r["rows"][-1]["cpu_seconds"] for r in rs], [r["rows"][-1]["step"] for r in rs], True
        hits = [reach(r, level) for r in rs]
        if not all(hits):
            return [r["rows"][-1]["cpu_seconds"] for r in rs], [], False
        return [h["cpu_seconds"] for h in hits], [h["step"] for h in hits], True

    levels = [target] + sorted(thresholds, reverse=True)
    base = {lv: statistics.mean(to_level(by["default"], lv, "default")[0]) for lv in levels}
    lines = [f"target: the default's mean final accuracy {target:.1%} ({len(by['default'])} seed(s), full run "
             f"{base_cpu:.0f} CPU-s). Cells 'to X': training CPU-s · steps · ratio to the default's CPU-s.", "",
             "| candidate | seeds | " + " | ".join(f"to {lv:.1%}" for lv in levels)
             + " | accuracy at 1/3 of the default's CPU-s | final accuracy |",
             "|---|---|" + "---|" * (len(levels) + 2)]
    for name in CANDIDATES:
        if name not in by:
            continue
        rs, cells = by[name], []
        for lv in levels:
            cpu, steps, ok = to_level(rs, lv, name)
            if ok:
                ratio = statistics.mean(cpu) / base[lv]
                cells.append(f"{spread(cpu, '.0f')} s · {spread(steps, '.0f')} · {ratio:.2f}×")
            else:
                cells.append(f"not reached by every seed (> {max(cpu) / base[lv]:.2f}×)")
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells)
                     + f" | {spread([100 * at_cpu(r, base_cpu / 3) for r in rs], '.1f')} %"
                     + f" | {spread([100 * r['rows'][-1]['accuracy'] for r in rs], '.1f')} % |")
    lines.append("")
    lines.append("Mean (min–max) over seeds; ratio: mean CPU-s over the default's mean to the same accuracy.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", type=Path, default=Path("outputs/demo"), help="a finished `t2i demo --out DIR`")
    p.add_argument("--out", type=Path, default=Path("outputs/time_to_target"), help="runs, caches and results")
    p.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES)[:4])
    p.add_argument("--steps", type=int, default=1500, help="training steps of every run (the demo's 1,500)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    p.add_argument("--eval-every", type=int, default=150, help="steps between colour-accuracy evaluations")
    p.add_argument("--images-per-prompt", type=int, default=4, help="images per (colour, shape) prompt, seeds 0..n-1")
    p.add_argument("--guidance", type=float, default=2.0, help="guidance scale of the evaluation (the demo's)")
    p.add_argument("--sample-steps", type=int, default=20, help="sampler steps (each candidate's default sampler)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--thresholds", type=float, nargs="*", default=[0.9, 0.8],
                   help="fixed accuracies to report the time to, besides the default's final")
    p.add_argument("--repa-clip", type=Path, default=None, help="the CLIP folder the repa-clip candidate aligns to")
    p.add_argument("--report-only", action="store_true", help="print the table of the runs already in OUT")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        from t2i.pipeline.speed import native_bf16

        for name in args.candidates:
            if CANDIDATES[name]["mixed_precision"] == "bf16" and not native_bf16():
                print(f"skipping {name}: this CPU has no native bfloat16")
                continue
            for seed in args.seeds:
                path = args.out / "runs" / f"{name}-seed{seed}.json"
                if path.exists():
                    continue
                path.write_text(json.dumps(run_one(args, name, seed), indent=2) + "\n")
    runs = [json.loads(f.read_text()) for f in sorted((args.out / "runs").glob("*.json"))]
    print(report(runs, args.thresholds))


if __name__ == "__main__":
    main()

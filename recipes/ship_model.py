"""Ship a pipeline folder inside t2i: a copy with every weight stored as float16, what loading needs and nothing
else, a SHA256SUMS file, and a check that the copy loads as float32 and draws what the original draws.

    python recipes/ship_model.py outputs/emoji64/pipeline src/t2i/models/emoji64 --card CARD.md

- Weights: every floating tensor of every .safetensors file becomes float16 (integer tensors are kept), which
  halves the folder (the repository's budget is 25 MB). float16, not bfloat16: it is what diffusers means by
  `variant="fp16"` and what its fp16 weight files hold, and its 10-bit mantissa keeps 3 more bits than bf16's 7;
  its narrow range (|w| ≤ 65504) is checked. The largest round-trip error |w − fp32(fp16(w))| is printed per file.
- t2i.load casts every network back to float32 (diffusers does the same for its models when not given a
  torch_dtype; transformers 5 would keep a text encoder in float16, hence t2i's explicit cast).
- Kept: configs (.json), weights (.safetensors), tokenizer vocabularies (.txt, .model) and cards (.md), outside
  training folders; dropped (and listed): checkpoints, caches, logs, samples, pickles, anything else.
- t2i.json gains a "shipped" record: the float16 storage, the source folder and the sha256 of its weight files.
- DEST/SHA256SUMS: sha256 of every other file, sorted by path (`sha256sum -c SHA256SUMS` in DEST checks it; so
  does t2i.models.check_digests). DEST is replaced only when it does not exist, is empty, or is an unchanged
  earlier ship (its SHA256SUMS still matches): anything else there is refused, never silently lost. Without
  --card, an earlier ship's card is kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

KEEP_SUFFIXES = {".json", ".safetensors", ".txt", ".model", ".md"}  # what a pipeline folder loads from, and cards
DROP_FOLDERS = {"checkpoints", "cache", "tensorboard", "logs", "samples", "__pycache__"}  # training by-products
FLOAT16_MAX = torch.finfo(torch.float16).max  # 65504: larger weights would become inf
# float16 weights move a 20-step image by a level or so here and there (measured: at most 1/255, mean 0.02 on the
# smoke models); a mean beyond this means the copy is not the same model (a file lost, a wrong cast).
MAX_MEAN_PIXEL_DIFF = 2.0
CARD = "MODEL_CARD.md"
PIPELINE_INFO = "t2i.json"


def split_files(pipeline: Path) -> tuple[list[Path], list[Path]]:
    """The pipeline's files to ship and the ones to drop, as paths relative to it."""
    keep, drop = [], []
    for path in sorted(p for p in pipeline.rglob("*") if p.is_file()):
        rel = path.relative_to(pipeline)
        wanted = path.suffix in KEEP_SUFFIXES and not DROP_FOLDERS.intersection(rel.parts[:-1])
        (keep if wanted and not rel.name.startswith(".") else drop).append(rel)
    return keep, drop


def to_float16(src: Path, dst: Path) -> dict:
    """Write `src`'s tensors to `dst`, floating ones as float16 (metadata kept); the round trip's figures."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    tensors, worst, largest, converted = {}, 0.0, 0.0, 0
    with safe_open(src, framework="pt") as f:
        metadata = f.metadata()
        for name in f.keys():
            t = f.get_tensor(name)
            if t.is_floating_point():
                peak = t.abs().max().item() if t.numel() else 0.0
                if not peak <= FLOAT16_MAX:  # also catches NaN
                    raise ValueError(f"{src}: tensor {name} has |w| up to {peak:g}, beyond float16's {FLOAT16_MAX:g}")
                half = t.to(torch.float16)
                if t.numel():
                    worst = max(worst, (t.double() - half.double()).abs().max().item())
                largest, converted, t = max(largest, peak), converted + 1, half
            tensors[name] = t.contiguous()
    save_file(tensors, dst, metadata=metadata)
    return {"tensors": len(tensors), "float16": converted, "max_abs_error": worst, "max_abs_weight": largest}


def refuse_unsafe_dest(pipeline: Path, dest: Path) -> None:
    """Raise unless writing `dest` loses nothing: it is new, empty, or an unchanged earlier ship."""
    from t2i.models import DIGESTS, digest_problems

    src, out = pipeline.resolve(), dest.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ValueError(f"DEST {dest} and PIPELINE {pipeline} overlap; ship to a folder of its own")
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        return
    if not dest.is_dir():
        raise FileExistsError(f"DEST {dest} exists and is not a folder")
    if not (dest / DIGESTS).is_file():
        raise FileExistsError(f"DEST {dest} exists and is not a previous ship (no {DIGESTS}); "
                              "move it away or delete it first")
    problems = digest_problems(dest)
    if problems:
        raise FileExistsError(f"DEST {dest} is a previous ship changed since ({'; '.join(problems[:5])}"
                              f"{'; ...' if len(problems) > 5 else ''}); move it away or delete it first")


def ship(pipeline: Path, dest: Path, card: Path | None = None, check_steps: int | None = None) -> dict:
    """Write the shipped copy of `pipeline` to `dest`, whole or not at all: it is checked (`compare_loaded`)
    before it takes `dest`'s place. Returns, per weight file, its round-trip figures, and the check's."""
    from t2i.files import atomic_folder
    from t2i.files import sha256_file
    from t2i.models import is_pipeline_folder, write_digests

    if not is_pipeline_folder(pipeline):
        raise FileNotFoundError(f"{pipeline} is not a pipeline folder (no model_index.json or t2i.json); "
                                "make one with t2i compose")
    if card is not None and not card.is_file():
        raise FileNotFoundError(f"model card {card} does not exist")
    refuse_unsafe_dest(pipeline, dest)
    if card is None and (dest / CARD).is_file() and not (pipeline / CARD).is_file():
        card = dest / CARD  # an earlier ship's card stays (read before DEST is replaced)
        print(f"  kept     {CARD} of the earlier ship")
    keep, drop = split_files(pipeline)
    for rel in drop:
        print(f"  dropped  {rel}")
    figures = {}
    with atomic_folder(dest) as tmp:
        for rel in keep:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            if rel.suffix == ".safetensors":
                figures[rel.as_posix()] = to_float16(pipeline / rel, tmp / rel)
            else:
                shutil.copy2(pipeline / rel, tmp / rel)
        if card is not None:
            shutil.copy2(card, tmp / CARD)
        if (tmp / PIPELINE_INFO).is_file():  # the record says what the weights are and where they came from
            info = json.loads((tmp / PIPELINE_INFO).read_text())
            info["shipped"] = {"weights_dtype": "float16", "loaded_as": "float32", "from": str(pipeline.resolve()),
                               "source_sha256": {n: sha256_file(pipeline / n) for n in figures}}
            (tmp / PIPELINE_INFO).write_text(json.dumps(info, indent=2) + "\n")
        write_digests(tmp)
        loaded = compare_loaded(pipeline, tmp, check_steps)
    return {"weights": figures, "loaded": loaded}


def float_dtypes(pipe) -> dict[str, set]:
    """The dtypes of the floating parameters and buffers of each network a loaded pipeline holds."""
    dtypes = {}
    for name, value in vars(pipe).items():
        modules = value if isinstance(value, list) else [value]
        for i, m in enumerate(modules):
            if isinstance(m, torch.nn.Module):
                tensors = [*m.parameters(), *m.buffers()]
                key = name if len(modules) == 1 else f"{name}[{i}]"
                dtypes[key] = {t.dtype for t in tensors if t.is_floating_point()}
    return dtypes


def compare_loaded(pipeline: Path, dest: Path, steps: int | None = None) -> dict:
    """Load both folders with t2i.load: every network of the shipped one must be float32, and its images (two
    prompts, the folder's defaults) are compared pixel by pixel with the original's."""
    import numpy as np

    import t2i
    from t2i.pipeline.speed import SpeedConfig

    float32 = SpeedConfig(bf16=False)  # the weights are what is checked: no bfloat16 autocast on either side
    shipped = t2i.load(dest, speed=float32)
    wrong = {k: sorted(map(str, v)) for k, v in float_dtypes(shipped).items() if v - {torch.float32}}
    if wrong:
        raise ValueError(f"t2i.load({dest}) gave networks that are not float32: {wrong}")
    prompts, seeds = ["a red apple", "grinning face"], [0, 1]
    ours = [np.asarray(im, dtype=np.int16) for im in shipped(prompts, seed=seeds, steps=steps)]
    theirs = [np.asarray(im, dtype=np.int16) for im in t2i.load(pipeline, speed=float32)(prompts, seed=seeds,
                                                                                           steps=steps)]
    diff = np.abs(np.stack(ours) - np.stack(theirs))
    if diff.mean() > MAX_MEAN_PIXEL_DIFF:
        raise ValueError(f"the float16 copy draws other images than {pipeline}: mean pixel difference "
                         f"{diff.mean():.2f}/255 (over {MAX_MEAN_PIXEL_DIFF}), max {diff.max()}")
    return {"max_pixel_diff": int(diff.max()), "mean_pixel_diff": float(diff.mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", type=Path, help="pipeline folder (t2i compose)")
    p.add_argument("dest", type=Path, help="the shipped folder to write (e.g. src/t2i/models/emoji64)")
    p.add_argument("--card", type=Path, default=None, help=f"model card, written as DEST/{CARD}")
    p.add_argument("--check-steps", type=int, default=None,
                   help="sampling steps of the float16-vs-float32 image comparison (default: the folder's)")
    args = p.parse_args(argv)
    try:
        result = ship(args.pipeline, args.dest, args.card, args.check_steps)
    except (OSError, ValueError) as e:
        print(f"ship_model: {e}", file=sys.stderr)
        return 1
    for name, f in result["weights"].items():
        print(f"  {name}: {f['float16']}/{f['tensors']} tensors as float16, max |fp32 − fp16| "
              f"{f['max_abs_error']:.2e} (largest |w| {f['max_abs_weight']:.3g})")
    if not (args.dest / CARD).is_file():
        print(f"  note: {args.dest} has no {CARD} (pass --card)")
    loaded = result["loaded"]
    print(f"  t2i.load: every network float32; images vs the float32 folder: max pixel difference "
          f"{loaded['max_pixel_diff']}/255, mean {loaded['mean_pixel_diff']:.3f}")
    files = [f for f in args.dest.rglob("*") if f.is_file()]
    weights = sum(f.stat().st_size for f in files if f.suffix == ".safetensors")
    print(f"{args.dest}: {len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB "
          f"({weights / 1e6:.1f} MB of weights), SHA256SUMS written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

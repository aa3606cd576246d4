"""Start-up, generation latency and peak memory of `t2i generate` on a pipeline folder.

Each repeat is a fresh process (so start-up includes imports and loading, as a user sees it):
    start-up     `import t2i; pipe = t2i.load(folder)`, the README's two lines
    first call   the first N images (it also pays what loading deferred, e.g. the garbage collection
                 that t2i.load pauses: t2i.startup)
    generate     N images at S steps (guidance on: one batched forward of 2N per step), median of R calls
    peak RSS     the process's maximum resident memory after all of it
Beside each, two more fresh processes:
    libraries alone  plainly imports only the libraries a latent pipeline is built on (torch, diffusers'
                 UNet2DConditionModel and AutoencoderKL, transformers' AutoTokenizer and the text encoder's
                 model class) and loads nothing: what any program built on them pays before its own work.
                 Start-up minus that, pair by pair, is t2i's own share (its modules, reading the folder,
                 loading the weights, less what pausing the garbage collector saves on the imports).
    t2i generate the whole command, `t2i generate --model FOLDER PROMPT --n N --steps S` writing its PNGs,
                 timed from outside (start-up, one call, the files and the exit), and the start-up it
                 prints itself (from its first line of Python to the loaded pipeline)

    python benchmarks/generate_speed.py --model outputs/demo/pipeline
    python benchmarks/generate_speed.py --model src/t2i/models/emoji64 --budget 1   # the shipped 64-px model
    python benchmarks/generate_speed.py --model src/t2i/models/emoji64 --budget 1 --no-bf16   # in float32
    python benchmarks/generate_speed.py --model src/t2i/models/emoji64 --budget 1 --compile   # compiled U-Nets

Images are the model's own size (printed). The CPU's name and the load average before and after are printed
too: on a machine other processes keep busy the seconds say little (the memory still holds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import t2i
from t2i.pipeline.speed import SpeedConfig
pipe = t2i.load({model!r}, speed=SpeedConfig(bf16={bf16}, compile={compile}))
bf16 = bool(getattr(pipe, "bf16", False))
startup = time.perf_counter() - t0
size = pipe.image_size
import torch
torch.set_num_threads({threads})
t = time.perf_counter()
pipe("warm-up", num_images={n}, steps={steps}, seed=0)
first = time.perf_counter() - t
times = []
for r in range({calls}):
    t = time.perf_counter()
    pipe("a red circle", num_images={n}, steps={steps}, seed=r, sampler={sampler!r})
    times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
print(json.dumps({{"startup_s": startup, "first_s": first, "generate_s": times, "peak_rss_mib": peak,
                  "image_size": size, "bf16": bf16}}))
"""

LIBRARIES = r"""
import json, time
t0 = time.perf_counter()
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import AutoTokenizer, {text_class}
print(json.dumps({{"libraries_s": time.perf_counter() - t0}}))
"""


def text_encoder_class(model: Path) -> str:
    """The transformers class name of the pipeline's text encoder (BertModel for MiniLM by reference)."""
    config = model / "text_encoder" / "config.json"
    if not config.exists():
        return "BertModel"
    architectures = json.loads(config.read_text()).get("architectures") or ["BertModel"]
    return architectures[0]


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo, else what Python's platform module says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:  # say why, not just that it failed
        raise RuntimeError(f"a timed process failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def t2i_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m t2i`."""
    script = Path(sys.executable).parent / "t2i"
    return [str(script)] if script.exists() else [sys.executable, "-m", "t2i"]


def time_command(args: argparse.Namespace) -> dict:
    out = Path(tempfile.mkdtemp(prefix="t2i-speed-"))
    try:
        t = time.perf_counter()
        done = subprocess.run([*t2i_command(), "generate", "--model", str(args.model), "a red circle",
                               "--n", str(args.n), "--steps", str(args.steps), "--sampler", args.sampler, "--seed", "0",
                               "--threads", str(args.threads), "--out", str(out),
                               *({True: ["--bf16"], False: ["--no-bf16"]}.get(args.bf16, [])),
                               *(["--compile"] if args.compile else [])],
                              capture_output=True, text=True, check=True)
        whole = time.perf_counter() - t
        startup = re.search(r"start-up ([0-9.]+) s", done.stdout)
        if startup is None:
            raise RuntimeError(f"t2i generate printed no start-up time: {done.stdout!r}")
        return {"command_s": whole, "command_startup_s": float(startup.group(1))}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"))
    p.add_argument("--n", type=int, default=4, help="images per call")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--calls", type=int, default=5, help="timed calls per process")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget", type=float, default=None,
                   help="seconds the median generate call should take at most (reported, e.g. 1 for issue 9's 4 × 20)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast on (--bf16) or off (--no-bf16), as t2i generate takes them; default: the "
                   "pipeline's own choice (a cascade: on where the CPU has native bfloat16)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the U-Nets, as t2i generate --compile does: the first call pays the compilation, "
                   "the timed calls after it run compiled")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if not any((args.model / name).is_file() for name in ("model_index.json", "t2i.json")):
        p.error(f"--model {args.model} is not a pipeline folder (no model_index.json or t2i.json)")
    code = CHILD.format(threads=args.threads, model=str(args.model), n=args.n, steps=args.steps,
                        calls=args.calls, sampler=args.sampler, bf16=args.bf16, compile=args.compile)
    libraries_code = LIBRARIES.format(text_class=text_encoder_class(args.model))
    load_before = os.getloadavg()[0]
    runs = []
    for _ in range(args.repeats):
        runs.append({**child(libraries_code), **child(code), **time_command(args)})
    startup = [r["startup_s"] for r in runs]
    size = runs[0]["image_size"]
    print(f"model {args.model}: {args.n} images of {size}×{size} px, {args.sampler} {args.steps} steps, guidance on, "
          f"{args.threads} threads, {'bfloat16 autocast' if runs[0]['bf16'] else 'float32'}"
          f"{', compiled' if args.compile else ''}; "
          f"{args.repeats} processes × {args.calls} calls")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"{'figure':<24}{'min':>9}{'median':>9}{'max':>9}")
    rows = (("start-up (s)", startup),
            ("  libraries alone (s)", [r["libraries_s"] for r in runs]),
            ("  t2i's share (s)", [r["startup_s"] - r["libraries_s"] for r in runs]),
            ("first call (s)", [r["first_s"] for r in runs]),
            ("generate (s)", [t for r in runs for t in r["generate_s"]]),
            ("peak RSS (MiB)", [r["peak_rss_mib"] for r in runs]),
            ("t2i generate, whole (s)", [r["command_s"] for r in runs]),
            ("  its start-up (s)", [r["command_startup_s"] for r in runs]))
    for name, values in rows:
        print(f"{name:<24}{min(values):>9.3f}{statistics.median(values):>9.3f}{max(values):>9.3f}")
    if args.budget is not None:
        median = statistics.median(t for r in runs for t in r["generate_s"])
        verdict = "within" if median <= args.budget else "OVER"
        print(f"generate median {median:.3f} s: {verdict} the budget of {args.budget:g} s")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cpu": cpu_name(),
                                         "runs": runs}, indent=2))


if __name__ == "__main__":
    main()

"""Start-up, generation latency and peak memory of `t2i generate` on a pipeline folder.

Each repeat is a fresh process (so start-up includes imports and loading, as a user sees it):
    start-up   import t2i + t2i.load(folder)
    generate   N images at S steps (guidance on: one batched forward of 2N per step), median of R calls
    peak RSS   the process's maximum resident memory after all of it

    python benchmarks/generate_speed.py --model outputs/demo/pipeline
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads({threads})
import t2i
pipe = t2i.load({model!r})
startup = time.perf_counter() - t0
pipe("warm-up", num_images={n}, steps={steps}, seed=0)
times = []
for r in range({calls}):
    t = time.perf_counter()
    pipe("a red circle", num_images={n}, steps={steps}, seed=r, sampler={sampler!r})
    times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
print(json.dumps({{"startup_s": startup, "generate_s": times, "peak_rss_mib": peak}}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"))
    p.add_argument("--n", type=int, default=4, help="images per call")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--calls", type=int, default=5, help="timed calls per process")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    code = CHILD.format(threads=args.threads, model=str(args.model), n=args.n, steps=args.steps,
                        calls=args.calls, sampler=args.sampler)
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    startup = [r["startup_s"] for r in runs]
    gen = [t for r in runs for t in r["generate_s"]]
    peak = [r["peak_rss_mib"] for r in runs]
    print(f"model {args.model}: {args.n} images, {args.sampler} {args.steps} steps, guidance on, "
          f"{args.threads} threads; {args.repeats} processes × {args.calls} calls")
    print(f"{'figure':<22}{'min':>9}{'median':>9}{'max':>9}")
    for name, values, unit in (("start-up (s)", startup, ""), ("generate (s)", gen, ""), ("peak RSS (MiB)", peak, "")):
        print(f"{name:<22}{min(values):>9.3f}{statistics.median(values):>9.3f}{max(values):>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()

"""Peak memory (maximum resident set size) of `t2i generate` and of `t2i train generator`, each in a fresh process.

Each command runs as a child process exactly as a user would type it; the kernel's ru_maxrss of that child
(os.wait4) is its peak resident memory, whatever allocated it (PyTorch, Python, memory-mapped cache shards
touched). Memory does not depend on machine load, so these numbers hold on a busy machine; the seconds do not.
    generate         t2i generate on the pipeline, N images at S steps
    train generator  t2i train generator on the pipeline's data and autoencoder, the demo's recipe (batch 64,
                     16-token prompts), a few steps; includes building the latent/embedding cache

    python benchmarks/peak_memory.py --model outputs/demo/pipeline --data outputs/demo/data \\
        --autoencoder outputs/demo/autoencoder
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_of(cmd: list[str], threads: int) -> dict:
    """Run `cmd`; its wall seconds and peak RSS in MiB (ru_maxrss is in KiB on Linux)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{child.stderr.read().decode()[-2000:]}")
    return {"command": " ".join(cmd[2:]), "peak_rss_mib": usage.ru_maxrss / 1024, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"), help="pipeline folder")
    p.add_argument("--data", type=Path, default=Path("outputs/demo/data"), help="training data")
    p.add_argument("--autoencoder", type=Path, default=Path("outputs/demo/autoencoder"), help="autoencoder component")
    p.add_argument("--n", type=int, default=8, help="images generated")
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--train-steps", type=int, default=20, help="generator training steps")
    p.add_argument("--batch-size", type=int, default=64, help="generator training batch")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the children")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    t2i = [sys.executable, "-m", "t2i.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "generate": peak_of([*t2i, "generate", "a red circle", "--model", str(args.model), "--n", str(args.n),
                                 "--steps", str(args.steps), "--seed", "0", "--out", f"{tmp}/images",
                                 "--threads", str(args.threads)], args.threads),
            "train generator": peak_of([*t2i, "train", "generator", "--data", str(args.data), "--autoencoder",
                                        str(args.autoencoder), "--out", f"{tmp}/generator", "--max-length", "16",
                                        "--steps", str(args.train_steps), "--batch-size", str(args.batch_size),
                                        "--cache-dir", f"{tmp}/cache"], args.threads),
        }
    print(f"{'':>16} {'peak RSS MiB':>13} {'wall s':>8}  command")
    for name, r in results.items():
        print(f"{name:>16} {r['peak_rss_mib']:>13.0f} {r['seconds']:>8.1f}  t2i {r['command']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

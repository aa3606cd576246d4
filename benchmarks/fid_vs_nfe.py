"""FID and CLIP score against the number of network evaluations (NFE), per sampler, beside a 250-step DDPM baseline.

Drives `t2i eval` twice on the same pipeline, N images per setting, the same captions and seeds:
    sweep      --sampler S1 S2 ... --steps K1 K2 ...   (every sampler at every step count)
    baseline   --sampler ddpm --steps 250
then prints FID, CLIP score and FID / baseline FID per setting, marks the fewest NFE within 10 % of the
baseline's FID, and plots FID vs NFE (one line per sampler, the baseline as a horizontal line).
NFE here is U-Net calls per image: every sampler in t2i takes one per step, and classifier-free guidance
runs conditional and unconditional halves as one batched call. FID at small N is biased upwards and noisy
(docs/evaluation.md); compare the settings of one run with each other, not with FIDs at another N.

    python benchmarks/fid_vs_nfe.py --model outputs/demo/pipeline --n 300 --plot fid_vs_nfe.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def run_eval(model: Path, out: Path, n: int, n_real: int, samplers: list[str], steps: list[int], threads: int) -> dict:
    cmd = [sys.executable, "-m", "t2i.cli", "eval", str(model), "--out", str(out), "--n", str(n),
           "--n-real", str(n_real), "--compositional-images", "0", "--threads", str(threads),
           "--sampler", *samplers, "--steps", *map(str, steps)]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((out / "metrics.json").read_text())


def plot(rows: list[dict], baseline: dict, n: int, path: Path) -> None:
    """FID vs NFE, a line per sampler, the baseline as a dashed line with its 10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        pts = sorted((r["nfe"], r["fid"]) for r in rows if r["sampler"] == sampler)
        ax.plot(*zip(*pts), marker="o", label=sampler)
    ax.axhline(baseline["fid"], color="k", ls="--", lw=1, label=f"ddpm, {baseline['steps']} steps")
    ax.axhspan(baseline["fid"], 1.1 * baseline["fid"], color="k", alpha=0.08, label="within 10 %")
    ax.set_xlabel("network evaluations per image (NFE)")
    ax.set_ylabel(f"FID (N = {n})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"), help="pipeline folder")
    p.add_argument("--out", type=Path, default=Path("outputs/fid_vs_nfe"), help="folder for the two eval reports")
    p.add_argument("--n", type=int, default=300, help="generated images per setting")
    p.add_argument("--n-real", type=int, default=2000, help="real images for the reference statistics")
    p.add_argument("--samplers", nargs="+", default=["dpmpp_2m", "ddim"], help="samplers to sweep")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 8, 10, 15, 20], help="step counts to sweep")
    p.add_argument("--baseline-steps", type=int, default=250, help="DDPM steps of the baseline")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the eval processes")
    p.add_argument("--plot", type=Path, default=None, help="write FID vs NFE as a PNG here")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args()

    sweep = run_eval(args.model, args.out / "sweep", args.n, args.n_real, args.samplers, args.steps, args.threads)
    base = run_eval(args.model, args.out / "baseline", args.n, args.n_real, ["ddpm"], [args.baseline_steps],
                    args.threads)
    reference = base["settings"][0]
    rows = [{k: s[k] for k in ("sampler", "steps", "nfe", "guidance", "fid", "clip_score", "generate_seconds")}
            | {"fid_ratio": s["fid"] / reference["fid"]} for s in sweep["settings"]]
    baseline = {k: reference[k] for k in ("sampler", "steps", "nfe", "guidance", "fid", "clip_score",
                                          "generate_seconds")}
    within = [r for r in rows if r["fid_ratio"] <= 1.10]
    best = min(within, key=lambda r: (r["nfe"], r["fid"])) if within else None

    print(f"\n{args.n} images per setting, FID features: {sweep['fid_extractor']}, guidance {baseline['guidance']}")
    print(f"{'sampler':>10} {'NFE':>5} {'FID':>8} {'/ DDPM-' + str(args.baseline_steps):>11} {'CLIP':>7} {'gen s':>7}")
    for r in [*rows, {**baseline, "fid_ratio": 1.0}]:
        print(f"{r['sampler']:>10} {r['nfe']:>5} {r['fid']:>8.2f} {r['fid_ratio']:>11.2f} {r['clip_score']:>7.2f} "
              f"{r['generate_seconds']:>7.1f}")
    print("fewest NFE within 10 % of the baseline FID: "
          + (f"{best['sampler']} at {best['nfe']}" if best else "none of the swept settings"))

    if args.plot:
        plot(rows, baseline, args.n, args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "extractor": sweep["fid_extractor"], "baseline": baseline,
                                         "rows": rows, "best_within_10_percent": best}, indent=2) + "\n")


if __name__ == "__main__":
    main()

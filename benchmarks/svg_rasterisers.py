"""Two SVG rasterisers on the emoji sets of `t2i data emoji-sets`: speed, and fidelity against a third renderer.

resvg (`resvg-py`, Rust) and CairoSVG (Python on Debian's libcairo2) each draw a fixed sample of every set at
SIZE px. Fidelity is PSNR against librsvg (`rsvg-convert`, GNOME's renderer, an independent implementation)
drawing the same SVG at 8 × SIZE and box-averaged down to SIZE: close to the exact coverage of every pixel.
All three are composited on white as the corpus is. Speed is CPU time per image in this process (render +
PNG decode), median over the sample; the machine is shared, so compare the two columns, not runs.

    python benchmarks/svg_rasterisers.py                 # packages from ~/.cache/t2i/npm (make emoji-sets)
    python benchmarks/svg_rasterisers.py --n 300 --size 32 --sets noto,twemoji
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from t2i.data.emoji_sets import EMOJI_SETS
from t2i.data.npm_packages import default_cache_dir, find_package
from t2i.data.svg import iconify_svg, render_svg

LOW_PSNR = 20.0  # dB: below this a drawing visibly differs (a missing gradient, mask or shape)


def _resvg(svg: str, size: int) -> Image.Image:
    return render_svg(svg, size)


def _cairosvg(svg: str, size: int) -> Image.Image:
    import cairosvg

    png = cairosvg.svg2png(bytestring=svg.encode(), output_width=size, output_height=size)
    return Image.open(io.BytesIO(png)).convert("RGBA")


RENDERERS = {"resvg": _resvg, "cairosvg": _cairosvg}


def _on_white(image: Image.Image) -> np.ndarray:
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, image.convert("RGBA")).convert("RGB"), dtype=np.float64)


def _reference(svg: str, size: int, tmp: Path) -> np.ndarray | None:
    """librsvg at 8 × size, box-averaged to size; None when it fails."""
    (tmp / "in.svg").write_text(svg, encoding="utf-8")
    big = size * 8
    r = subprocess.run(["rsvg-convert", "-w", str(big), "-h", str(big), str(tmp / "in.svg"), "-o", str(tmp / "o.png")],
                       capture_output=True, check=False)
    if r.returncode:
        return None
    with Image.open(tmp / "o.png") as im:
        return _on_white(im.convert("RGBA").reduce(8))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _sample(name: str, n: int) -> list[str]:
    s = EMOJI_SETS[name]
    package = find_package(s.package, s.version, source=None, cache_dir=default_cache_dir(), download=False)
    icons = package.read_json("icons.json")
    bodies = [icon for icon in icons["icons"].values() if not icon.get("hidden")]
    step = max(1, len(bodies) // n)
    return [iconify_svg(icon, icons.get("width", 16), icons.get("height", 16)) for icon in bodies[::step][:n]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="noto,noto-v1,twemoji,fluent-flat,fluent,emojione,openmoji")
    p.add_argument("--n", type=int, default=150, help="SVGs per set (every k-th icon)")
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    if not shutil.which("rsvg-convert"):
        raise SystemExit("needs rsvg-convert as the reference renderer: apt-get install librsvg2-bin")
    print(f"{'set':<12} {'renderer':<9} {'ms/img':>7} {'PSNR dB':>8} {'min dB':>7} {f'<{LOW_PSNR:.0f} dB':>7} {'failed':>6}")
    totals = {r: [] for r in RENDERERS}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            svgs = _sample(name, args.n)
            refs = [_reference(svg, args.size, Path(tmp)) for svg in svgs]
            for renderer, draw in RENDERERS.items():
                times, scores, failed = [], [], 0
                for svg, ref in zip(svgs, refs):
                    t0 = time.process_time()
                    try:
                        image = draw(svg, args.size)
                    except Exception:  # either library raises its own types for a bad SVG
                        failed += 1
                        continue
                    times.append(time.process_time() - t0)
                    if ref is not None and image.size == (args.size, args.size):
                        scores.append(_psnr(_on_white(image), ref))
                totals[renderer] += scores
                low = sum(s < LOW_PSNR for s in scores)
                print(f"{name:<12} {renderer:<9} {1000 * statistics.median(times):7.2f} {statistics.mean(scores):8.2f} "
                      f"{min(scores):7.2f} {low:7d} {failed:6d}")
    for renderer, scores in totals.items():
        print(f"all sets: {renderer} mean PSNR {statistics.mean(scores):.2f} dB over {len(scores)} SVGs, "
              f"{sum(s < LOW_PSNR for s in scores)} below {LOW_PSNR:.0f} dB")


if __name__ == "__main__":
    main()

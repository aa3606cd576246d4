"""Is the colour check fair? `dominant_colour` on ground-truth single-shape renders and on their reconstructions.

If the check misnamed real shapes (anti-aliased edges, a blurry decoder), colour accuracy would blame the
generator for the evaluation's error. Renders use the shapes source with one shape per image; reconstructions
pass them through an autoencoder (encode → posterior mean → decode), as every generated image is decoded.

    python benchmarks/colour_check.py --autoencoder outputs/demo/autoencoder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from t2i.images import to_pil
from t2i.data.shapes import COLOURS, ShapesConfig, render_shapes
from t2i.evaluation import dominant_colour


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--autoencoder", type=Path, default=None, help="autoencoder folder (omit: renders only)")
    p.add_argument("--n", type=int, default=1200, help="single-shape images")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--seed", type=int, default=123, help="shapes seed (the demo trains on seed 0)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)

    renders, colours, sizes = [], [], []
    for img, _, extra in render_shapes(ShapesConfig(n=args.n, size=args.size, seed=args.seed, p_two=0.0)):
        shape = extra["attributes"]["shapes"][0]
        renders.append(img)
        colours.append(shape["colour"])
        sizes.append(shape["size"])
    sets = {"renders": renders}
    if args.autoencoder:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.autoencoder).eval()
        x = torch.stack([torch.from_numpy(np.asarray(i, np.float32) / 127.5 - 1).permute(2, 0, 1) for i in renders])
        with torch.no_grad():
            out = torch.cat([vae.decode(vae.encode(x[i : i + 200]).latent_dist.mean).sample
                             for i in range(0, len(x), 200)])  # (N, 3, H, W) in [-1, 1]
        sets["reconstructions"] = [to_pil(o) for o in out]
    rows = []
    for name, images in sets.items():
        for size in ("all", "small"):
            keep = [k for k in range(len(images)) if size == "all" or sizes[k] == size]
            right = {c: [0, 0] for c in COLOURS}
            for k in keep:
                right[colours[k]][0] += dominant_colour(images[k]) == colours[k]
                right[colours[k]][1] += 1
            rows.append({"images": name, "sizes": size, "n": len(keep),
                         "accuracy": sum(v[0] for v in right.values()) / len(keep),
                         "per_colour": {c: v[0] / max(1, v[1]) for c, v in right.items()}})
    print(f"{'images':<16}{'sizes':<7}{'n':>6}{'right':>8}  " + " ".join(f"{c[:6]:>6}" for c in COLOURS))
    for r in rows:
        print(f"{r['images']:<16}{r['sizes']:<7}{r['n']:>6}{r['accuracy']:>8.1%}  "
              + " ".join(f"{r['per_colour'][c]:>6.0%}" for c in COLOURS))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

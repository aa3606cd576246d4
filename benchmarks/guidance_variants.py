"""Can a different guidance rule at sampling time fix a colour the model draws wrong? (issue 2, orange)

Runs the colour-accuracy prompts of benchmarks/colour_accuracy.py (every colour × every shape, unseen prompt
form, seeds 0..n-1) through one pipeline with guidance rules other than plain classifier-free guidance, by
swapping the rule the pipeline builds its denoiser with (`t2i.latent.pipeline.guided`) for this process:

    plain        x0 = u + w·(c − u)                                   (Ho & Salimans 2022; t2i's rule)
    interval:T   plain for t < T, the conditional prediction alone above (Kynkäänniemi et al. 2024)
    rescale:φ    plain, its std per image rescaled to the conditional one's, mixed by φ (Lin et al. 2024)
    apg:η        c + (w − 1)·(orthogonal part of c − u + η·its part parallel to c) (Sadat et al. 2024)

All act on the predicted clean latent x0. A measurement tool, not a t2i option.

    python benchmarks/guidance_variants.py --model outputs/demo/pipeline --rules plain interval:500 rescale:0.7 apg:0
"""

from __future__ import annotations

import argparse

import torch

import t2i
import t2i.latent.pipeline as pipeline_module
from t2i.data import COLOURS, SHAPES
from t2i.evaluation import dominant_colour


def guidance_rule(rule: str):
    """A replacement for t2i.sampling.guided that applies `rule` ("plain", "interval:T", "rescale:φ", "apg:η")."""
    name, _, value = rule.partition(":")
    if name not in ("plain", "interval", "rescale", "apg"):
        raise SystemExit(f"unknown rule {rule!r}")

    def guided(denoiser, cond, uncond, scale):
        if scale == 1:
            return lambda x_t, t: denoiser(x_t, t, cond)
        both = torch.cat([uncond.expand(cond.shape[0], -1, -1) if uncond.shape[0] == 1 else uncond, cond])

        def denoise(x_t, t):
            t = torch.as_tensor(t).reshape(-1).expand(x_t.shape[0])
            u, c = denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)
            plain = u + scale * (c - u)
            if name == "plain":
                return plain
            if name == "interval":
                return plain if int(t[0]) < float(value) else c
            if name == "rescale":
                dims = tuple(range(1, c.dim()))
                rescaled = plain * c.std(dim=dims, keepdim=True) / plain.std(dim=dims, keepdim=True)
                return float(value) * rescaled + (1 - float(value)) * plain
            diff, flat_c = (c - u).flatten(1), c.flatten(1)
            parallel = (diff * flat_c).sum(1, keepdim=True) / (flat_c * flat_c).sum(1, keepdim=True) * flat_c
            return c + (scale - 1) * ((diff - parallel) + float(value) * parallel).view_as(c)

        return denoise

    return guided


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="outputs/demo/pipeline", help="pipeline folder")
    p.add_argument("--rules", nargs="+", default=["plain", "interval:500", "interval:700", "rescale:0.7", "apg:0"])
    p.add_argument("--guidance", type=float, nargs="+", default=[2.0, 3.0], help="guidance scales")
    p.add_argument("--seeds", type=int, default=8, help="images per (colour, shape) prompt")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pipe = t2i.load(args.model)
    prompts = [(c, f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}") for c in COLOURS for s in SHAPES]
    print(f"{'rule':>12} {'guidance':>8} {'accuracy':>8}  " + " ".join(f"{c[:6]:>6}" for c in COLOURS))
    for rule in args.rules:
        pipeline_module.guided = guidance_rule(rule)
        for g in args.guidance:
            images = pipe([text for _, text in prompts], num_images=args.seeds, seed=0, guidance=g)
            right = {c: 0 for c in COLOURS}
            for k, image in enumerate(images):
                colour = prompts[k // args.seeds][0]
                right[colour] += dominant_colour(image) == colour
            per = len(SHAPES) * args.seeds
            print(f"{rule:>12} {g:>8.1f} {sum(right.values()) / len(images):>8.1%}  "
                  + " ".join(f"{right[c] / per:>6.0%}" for c in COLOURS), flush=True)


if __name__ == "__main__":
    main()

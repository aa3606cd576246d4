"""The `t2i` command: each subcommand turns flags into a config and calls one library function."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

EPILOG_TOP = """\
the recipe (Stable Diffusion's, trained from scratch):
  t2i data shapes --out data/shapes --n 4000             # 1. captioned images
  t2i train autoencoder --data data/shapes --out runs/ae  # 2. the decoder, on images alone
  t2i train generator --data data/shapes --autoencoder runs/ae --out runs/gen --pipeline-out runs/pipe
  t2i generate "a red circle" --model runs/pipe --n 4 --preview progress.gif
or all of it at once, in about five minutes on a laptop CPU:
  t2i demo
"""


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it has one (not "(default: None)" on required flags)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.required:
            return action.help
        return super()._get_help_string(action)


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _fraction(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {v}")
    return v


def _parser() -> argparse.ArgumentParser:
    fmt = _Help
    p = argparse.ArgumentParser(
        prog="t2i", description="Train a text-to-image system from scratch in three parts — text encoder, "
        "generator, decoder — and sample from it.", epilog=EPILOG_TOP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # -- data ---------------------------------------------------------------------------------------
    data = sub.add_parser("data", help="make or import a captioned image dataset",
                          description="Every source writes the same layout: DIR/metadata.jsonl (Hugging Face "
                          "imagefolder: file_name, text, extra fields) + DIR/images/*.png + DIR/info.json.")
    dsub = data.add_subparsers(dest="source", required=True, metavar="SOURCE")
    s = dsub.add_parser("shapes", formatter_class=fmt, help="procedural coloured shapes with compositional captions",
                        description="One or two coloured shapes per image with captions such as 'a small red circle "
                        "above a large blue square' and ground-truth attributes in metadata.jsonl. Same seed, same bytes.")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--n", type=_positive_int, default=4000, help="number of images")
    s.add_argument("--size", type=_positive_int, default=32, help="image side in pixels")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--p-two", type=_fraction, default=0.5, help="probability that an image holds two shapes")
    e = dsub.add_parser("emoji", formatter_class=fmt, help="a colour-emoji font rendered to captioned images",
                        description="Renders Noto Color Emoji (Debian package fonts-noto-color-emoji) one image per "
                        "code point or sequence, captioned with its Unicode name in plain words.")
    e.add_argument("--out", required=True, type=Path, help="output folder")
    e.add_argument("--size", type=_positive_int, default=32, help="image side in pixels")
    e.add_argument("--font", type=Path, default=None, help="path of a colour emoji font (default: found automatically)")
    e.add_argument("--limit", type=_positive_int, default=None, help="render only the first N emoji")
    i = dsub.add_parser("import", formatter_class=fmt, help="copy any captioned image folder into the layout",
                        description="Reads metadata.jsonl (file_name, text) or .txt caption sidecars, skips and "
                        "counts unreadable, truncated or oversized images, and writes SIZE×SIZE PNGs.")
    i.add_argument("--src", required=True, type=Path, help="folder of images with captions")
    i.add_argument("--out", required=True, type=Path, help="output folder")
    i.add_argument("--size", type=_positive_int, default=32, help="image side in pixels (short side resized, centre crop)")
    i.add_argument("--max-failure-rate", type=_fraction, default=0.1, help="abort above this share of bad images")
    c = dsub.add_parser("check", formatter_class=fmt, help="scan a dataset folder and report what is usable")
    c.add_argument("folder", type=Path)
    c.add_argument("--max-failure-rate", type=_fraction, default=0.1, help="fail above this share of bad images")

    # -- train --------------------------------------------------------------------------------------
    train = sub.add_parser("train", help="train one component",
                           description="Components are trained separately: the autoencoder on images alone, then "
                           "the generator on its latents with a text encoder's embeddings.")
    tsub = train.add_subparsers(dest="component", required=True, metavar="COMPONENT")
    a = tsub.add_parser("autoencoder", formatter_class=fmt, help="the decoder: a KL autoencoder, images only",
                        description="Trains diffusers' AutoencoderKL with MSE reconstruction + a light KL, measures "
                        "the latent scaling factor on the data and held-out PSNR, and saves a component folder.")
    a.add_argument("--data", required=True, type=Path, help="dataset folder")
    a.add_argument("--out", required=True, type=Path, help="component folder to write")
    a.add_argument("--preset", choices=["tiny", "small", "base"], default="small", help="model size")
    a.add_argument("--size", type=_positive_int, default=32, help="training resolution in pixels")
    _train_flags(a, steps=800, batch_size=16, lr=2e-3, ema=0.0)
    a.add_argument("--pixel-loss", choices=["mse", "l1"], default="mse", help="reconstruction loss")
    a.add_argument("--kl-weight", type=float, default=1e-5, help="weight of the KL term")
    a.add_argument("--normalise-channels", action="store_true",
                   help="fold per-channel latent mean/std into the weights (exact; did not help on shapes)")
    g = tsub.add_parser("generator", formatter_class=fmt, help="the latent diffusion U-Net, text-conditioned",
                        description="Caches the autoencoder's latents and the text encoder's embeddings once, then "
                        "trains a UNet2DConditionModel with caption dropout (for classifier-free guidance) and EMA.")
    g.add_argument("--data", required=True, type=Path, help="dataset folder")
    g.add_argument("--autoencoder", required=True, type=Path, help="autoencoder component folder")
    g.add_argument("--out", required=True, type=Path, help="component folder to write")
    g.add_argument("--text-encoder", default="minilm",
                   help="'minilm' (pretrained, bundled), 'scratch' (trained jointly), or a local transformers folder")
    g.add_argument("--max-length", type=_positive_int, default=32, help="prompt length in tokens")
    g.add_argument("--preset", choices=["tiny", "small", "base"], default="small", help="U-Net size")
    g.add_argument("--prediction", choices=["v_prediction", "epsilon"], default="v_prediction",
                   help="what the network predicts")
    g.add_argument("--caption-dropout", type=_fraction, default=0.1, help="share of empty-prompt training samples")
    g.add_argument("--min-snr-gamma", type=float, default=5.0, help="Min-SNR-γ loss weighting (0: plain MSE)")
    _train_flags(g, steps=1200, batch_size=64, lr=2e-3, ema=0.999)
    g.add_argument("--cache-dir", type=Path, default=None, help="where latents/embeddings are cached (default OUT/cache)")
    g.add_argument("--pipeline-out", type=Path, default=None, help="also compose a ready pipeline folder here")

    # -- compose / generate / demo -----------------------------------------------------------------
    m = sub.add_parser("compose", formatter_class=fmt, help="compose three components into a pipeline folder",
                       description="Writes a folder that both t2i.load() and diffusers' "
                       "StableDiffusionPipeline.from_pretrained() load. Refuses parts that do not fit, saying why.")
    m.add_argument("--generator", required=True, type=Path, help="generator component folder")
    m.add_argument("--out", required=True, type=Path, help="pipeline folder to write")
    m.add_argument("--text-encoder", default=None, help="text encoder (default: the one the generator trained with)")
    m.add_argument("--autoencoder", type=Path, default=None, help="autoencoder (default: the one the generator trained with)")
    m.add_argument("--force", action="store_true", help="compose even if weights differ from those trained with")
    m.add_argument("--guidance", type=float, default=None,
                   help="default guidance scale stored in the pipeline (default: t2i.pipeline.compose.DEFAULTS)")
    m.add_argument("--steps", type=_positive_int, default=None,
                   help="default sampling steps stored in the pipeline (default: t2i.pipeline.compose.DEFAULTS)")

    gen = sub.add_parser("generate", formatter_class=fmt, help="generate images from prompts",
                         description="Generates N images per prompt; image k of a run uses seed SEED+k, so any image "
                         "can be reproduced alone. PNGs carry their parameters in a 'parameters' text chunk.")
    gen.add_argument("prompts", nargs="+", metavar="PROMPT", help="text prompt(s)")
    gen.add_argument("--model", required=True, type=Path, help="pipeline folder (from t2i compose or t2i demo)")
    gen.add_argument("--out", type=Path, default=Path("outputs/generate"), help="output folder")
    gen.add_argument("--n", type=_positive_int, default=4, help="images per prompt")
    gen.add_argument("--steps", type=_positive_int, default=None, help="denoising steps (default: the pipeline's)")
    gen.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the pipeline's)")
    gen.add_argument("--sampler", choices=["dpmpp_2m", "ddim", "euler", "ddpm"], default=None,
                     help="sampler (default: the pipeline's)")
    gen.add_argument("--seed", type=int, default=None, help="base seed (default: random, printed)")
    gen.add_argument("--negative", default=None, help="negative prompt: replaces the unconditional input")
    gen.add_argument("--height", type=_positive_int, default=None, help="image height (default: training size)")
    gen.add_argument("--width", type=_positive_int, default=None, help="image width (default: training size)")
    gen.add_argument("--preview", type=Path, default=None, metavar="FILE.gif",
                     help="write the blurry-to-sharp progression (each step's predicted clean image) as a GIF")

    d = sub.add_parser("demo", formatter_class=fmt, help="the whole loop on shapes: data, training, compose, images",
                       description="Generates shapes data, trains the autoencoder and the generator (with the "
                       "pretrained MiniLM text encoder), composes them, and writes grids, a preview GIF and a summary.")
    d.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    d.add_argument("--preset", choices=["full", "quick"], default="full",
                   help="'full' (about 5 minutes on 2 CPU cores) or 'quick' (seconds; a smoke test, poor images)")
    return p


def _train_flags(p: argparse.ArgumentParser, *, steps: int, batch_size: int, lr: float, ema: float) -> None:
    p.add_argument("--steps", type=_positive_int, default=steps, help="optimiser steps")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size, help="samples per step")
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (AdamW, warmup then cosine)")
    p.add_argument("--ema", type=_fraction, default=ema, help="EMA decay of the weights (0: off)")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no", help="autocast (via accelerate)")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def _train_config(args, **extra):
    from t2i.training.trainer import TrainConfig

    warmup = min(100, max(1, args.steps // 10))
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=warmup,
                       ema_decay=args.ema, mixed_precision=args.mixed_precision, seed=args.seed, **extra)


# -- commands ------------------------------------------------------------------------------------


def cmd_data(args) -> None:
    from t2i import data

    if args.source == "shapes":
        out = data.write_shapes(args.out, data.ShapesConfig(n=args.n, size=args.size, seed=args.seed, p_two=args.p_two))
    elif args.source == "emoji":
        out = data.write_emoji(args.out, args.size, font=args.font, limit=args.limit)
    elif args.source == "import":
        records, report = data.scan_folder(args.src, max_failure_rate=args.max_failure_rate)
        print(report.summary())
        items = ((data.load_image(r.path, args.size), r.caption, r.extra) for r in records)
        out = data.write_layout(args.out, items, {"source": "import", "from": str(args.src), "size": args.size,
                                                   "scan": report.summary()})
    else:  # check
        records, report = data.scan_folder(args.folder, max_failure_rate=args.max_failure_rate)
        print(report.summary())
        print(f"fingerprint: {data.dataset_fingerprint(args.folder)}")
        return
    print(f"wrote {out}")


def cmd_train(args, command: str) -> None:
    if args.component == "autoencoder":
        from t2i.autoencoder import AUTOENCODER_PRESETS, AutoencoderTrainConfig, train_autoencoder

        cfg = AutoencoderTrainConfig(model=AUTOENCODER_PRESETS[args.preset](args.size), train=_train_config(args),
                                     kl_weight=args.kl_weight, pixel_loss=args.pixel_loss,
                                     normalise_channels=args.normalise_channels)
        info = train_autoencoder(args.data, args.out, cfg, command=command)
        print(f"autoencoder: held-out PSNR {info['metrics']['psnr_held_out']:.2f} dB, "
              f"latent scaling factor {info['latent_scaling_factor']:.4f}, wrote {args.out}")
        return
    from t2i.generator import GENERATOR_PRESETS, GeneratorTrainConfig, train_generator
    from t2i.text import TextEncoderConfig

    model = GENERATOR_PRESETS[args.preset]()
    model.prediction_type, model.caption_dropout = args.prediction, args.caption_dropout
    model.min_snr_gamma = args.min_snr_gamma
    cfg = GeneratorTrainConfig(model=model, text=TextEncoderConfig(source=args.text_encoder, max_length=args.max_length),
                               train=_train_config(args))
    info = train_generator(args.data, args.autoencoder, args.out, cfg, cache_dir=args.cache_dir, command=command)
    print(f"generator: final loss {info['metrics']['final_loss']:.4f}, wrote {args.out}")
    if args.pipeline_out:
        from t2i.pipeline import compose

        print(f"pipeline: wrote {compose(args.out, args.pipeline_out)}")


def cmd_compose(args) -> None:
    from t2i.pipeline import compose

    out = compose(args.generator, args.out, text_encoder=args.text_encoder, autoencoder_dir=args.autoencoder,
                  force=args.force, defaults={k: v for k, v in (("guidance", args.guidance), ("steps", args.steps))
                                              if v is not None})
    print(f"wrote {out}")


def cmd_generate(args) -> None:
    import secrets

    import t2i
    from t2i.pipeline.preview import save_generation

    pipe = t2i.load(args.model)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    paths = save_generation(pipe, args.prompts, args.out, n=args.n, steps=args.steps, guidance=args.guidance,
                            sampler=args.sampler, seed=seed, negative_prompt=args.negative, height=args.height,
                            width=args.width, preview=args.preview)
    print(f"seed {seed}: wrote {len(paths)} images to {args.out}" + (f", preview {args.preview}" if args.preview else ""))


def cmd_demo(args) -> None:
    from t2i.demo import DEMO_PRESETS, run_demo

    run_demo(DEMO_PRESETS[args.preset](args.out))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _quiet_libraries()
    command = "t2i " + shlex.join(argv)
    try:
        if args.command == "data":
            cmd_data(args)
        elif args.command == "train":
            cmd_train(args, command)
        elif args.command == "compose":
            cmd_compose(args)
        elif args.command == "generate":
            cmd_generate(args)
        elif args.command == "demo":
            cmd_demo(args)
    except KeyboardInterrupt:
        print("t2i: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # bad input: one clear line, no traceback
        if args.debug:
            raise
        print(f"t2i: error: {e}", file=sys.stderr)
        return 1
    return 0


def _quiet_libraries() -> None:
    """transformers/diffusers chatter (weight-loading bars, advisory warnings) hides our own progress."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    dlog.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())

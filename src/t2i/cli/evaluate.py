"""`t2i eval`: measure a pipeline (FID, KID, CLIP score, compositional accuracy) or an autoencoder (PSNR, SSIM, rFID)."""

from __future__ import annotations

import os
from pathlib import Path

from t2i.cli.common import Help, add_speed_flags, positive_int, speed_config


def default_cache_dir() -> Path:
    """Where trained evaluators and reference features are kept between runs ($XDG_CACHE_HOME/t2i)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "t2i"


def register(sub) -> None:
    e = sub.add_parser(
        "eval", formatter_class=Help, help="measure a pipeline or an autoencoder; writes metrics.json + report.html",
        description="On a pipeline folder: generates N images per setting for N captions of the data's fixed "
        "evaluation subset (image i: caption i, seed SEED+i), and reports FID and KID against the real images, CLIP "
        "score against the prompts and, on shapes data, compositional accuracy on held-out prompts. Several "
        "--guidance values draw the FID-vs-CLIP-score curve; several --sampler/--steps values draw FID vs NFE. On an "
        "autoencoder component folder: PSNR, SSIM and rFID of reconstructions of held-out images. FID features come "
        "from an in-domain CLIP (trained on the data once and cached, unless --clip is given) or from the standard "
        "Inception-v3 weights file (--inception); FIDs from different extractors are not comparable.")
    e.add_argument("model", type=Path, metavar="MODEL", help="pipeline folder (t2i compose) or autoencoder folder")
    e.add_argument("--out", type=Path, default=None, help="report folder (default: MODEL/../eval-MODELNAME)")
    e.add_argument("--data", type=Path, default=None,
                   help="real images and captions (default: the training data folder the model records)")
    e.add_argument("--n", type=positive_int, default=2000,
                   help="generated images per setting; FID is refused below 50 and warned about below 2000")
    e.add_argument("--n-real", type=positive_int, default=10000, help="real images for the reference statistics "
                   "(at most the data's size)")
    e.add_argument("--guidance", type=float, nargs="+", default=None, metavar="W",
                   help="guidance scales to sweep (≥ 2 values: FID-vs-CLIP-score curve); default: the pipeline's")
    e.add_argument("--sampler", nargs="+", default=None, metavar="NAME",
                   help="samplers to sweep with --steps (FID vs NFE); default: the pipeline's")
    e.add_argument("--steps", type=positive_int, nargs="+", default=None, metavar="S",
                   help="step counts to sweep (≥ 2 values: FID-vs-NFE curve); default: the pipeline's")
    e.add_argument("--split", default=None, metavar="NAME",
                   help="measure against the data rows of this split only, real images and prompts alike (e.g. "
                   "held_out: the emoji t2i data emoji marks and training leaves out); default: every row")
    e.add_argument("--seed", type=int, default=0, help="image i of each setting uses seed SEED+i")
    e.add_argument("--batch-size", type=positive_int, default=64, help="prompts per pipeline call")
    e.add_argument("--clip", type=Path, default=None,
                   help="a local CLIPModel folder for CLIP score and FID features (default: an in-domain CLIP "
                   "trained on the data, cached in --cache-dir)")
    e.add_argument("--inception", type=Path, default=None, metavar="FILE",
                   help="FID features from the Inception-v3 weights file pt_inception-2015-12-05-6726825d.pth "
                   "(pytorch-fid's), for FIDs comparable with published ones")
    e.add_argument("--classifier", type=Path, default=None,
                   help="shapes classifier folder (default: trained once at the pipeline's size, cached)")
    e.add_argument("--compositional-images", type=int, default=4,
                   help="images per held-out prompt for compositional accuracy on shapes data (0: skip)")
    e.add_argument("--cache-dir", type=Path, default=None,
                   help="trained evaluators and reference features (default: $XDG_CACHE_HOME/t2i or ~/.cache/t2i)")
    add_speed_flags(e)
    e.set_defaults(run=run)
    register_compare(sub)


def register_compare(sub) -> None:
    c = sub.add_parser(
        "compare", formatter_class=Help,
        help="judge pipelines side by side on a corpus: held-out FID, recognition, style",
        description="Generates the same prompts with the same seeds from every MODEL and judges them with one "
        "evaluator (a CLIPModel folder, e.g. from t2i train clip on the corpus's training split). Held-out concepts "
        "(the 'held_out' split): FID and KID against every held-out real image, CLIP score, and recognition — the "
        "prompted concept among the k concepts whose nearest corpus image is nearest the generated one (top-1, "
        "top-5). Seen concepts (the training split): recognition and style (a small network trained on the training "
        "images' pixels names the set; its accuracy on the held-out real images is reported). The real images go "
        "through the same measures: the ceilings. A model smaller than the data's images is enlarged (bicubic) "
        "first. Needs metadata with a concept, a style and a split per image, as t2i data emoji-sets writes. "
        "Writes compare.json and compare.md.",
        epilog="example:\n  t2i compare runs/latent runs/cascade --data data/emoji64 --clip runs/clip "
        "--out runs/compare")
    c.add_argument("models", type=Path, nargs="+", metavar="MODEL", help="pipeline folders (t2i compose)")
    c.add_argument("--data", type=Path, required=True, help="the corpus (t2i data emoji-sets)")
    c.add_argument("--clip", type=Path, required=True, help="the evaluator: a local CLIPModel folder")
    c.add_argument("--out", type=Path, required=True, help="folder for compare.json and compare.md")
    c.add_argument("--n", type=positive_int, default=500, help="held-out prompts (images) per model")
    c.add_argument("--n-seen", type=positive_int, default=500, help="training-split prompts (images) per model")
    c.add_argument("--guidance", type=float, default=None, help="guidance scale for every model (default: each's own)")
    c.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: each model's own)")
    c.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i")
    c.add_argument("--batch-size", type=positive_int, default=64, help="prompts per pipeline call")
    c.add_argument("--style-judge", choices=("pixels", "clip"), default="pixels",
                   help="what names an image's set: a small convolutional network trained on the training split's "
                   "real pixels (cached), or a linear classifier on the evaluator's features (the judge of "
                   "comparisons before it; it names styles less often right)")
    c.add_argument("--style-epochs", type=positive_int, default=8, help="epochs of the pixels judge")
    c.add_argument("--cache-dir", type=Path, default=None,
                   help="cached real-image features and style judges (default: $XDG_CACHE_HOME/t2i or ~/.cache/t2i)")
    add_speed_flags(c)
    c.set_defaults(run=run_compare)


def run_compare(args, command: str) -> None:
    from t2i.evaluation.compare import CompareConfig, compare_pipelines, markdown_table

    missing = [str(m) for m in args.models if not (m / "model_index.json").is_file() and not (m / "t2i.json").is_file()]
    if missing:
        raise FileNotFoundError(f"not a pipeline folder (no t2i.json or model_index.json): {', '.join(missing)}")
    cfg = CompareConfig(n_held_out=args.n, n_seen=args.n_seen, seed=args.seed, batch_size=args.batch_size,
                        guidance=args.guidance, steps=args.steps, style_judge=args.style_judge,
                        style_epochs=args.style_epochs)
    result = compare_pipelines(args.models, args.data, args.clip, args.out, cfg,
                               cache_dir=args.cache_dir or default_cache_dir(), command=command,
                               speed=speed_config(args))
    print(markdown_table(result))
    print(f"wrote {args.out / 'compare.json'} and {args.out / 'compare.md'}")


def run(args, command: str) -> None:
    cache_dir = args.cache_dir or default_cache_dir()
    if (args.model / "t2i_component.json").exists() and not (args.model / "model_index.json").exists():
        return _run_autoencoder(args, cache_dir)
    from t2i.evaluation.evaluate import EvalConfig, run_eval
    from t2i.evaluation.report import label

    cfg = EvalConfig(n=args.n, n_real=args.n_real, batch_size=args.batch_size, seed=args.seed,
                     guidance=tuple(args.guidance or ()), samplers=tuple(args.sampler or ()),
                     steps=tuple(args.steps or ()), compositional_images=args.compositional_images,
                     split=args.split)
    out = args.out or args.model.parent / f"eval-{args.model.name}"
    metrics = run_eval(args.model, out, cfg, data_dir=args.data, clip=args.clip, inception=args.inception,
                       classifier=args.classifier, cache_dir=cache_dir, command=command, speed=speed_config(args))
    print(f"FID features: {metrics['fid_extractor']}; CLIP score: {metrics['clip_model']}; "
          f"{metrics['n']} images per setting, {metrics['n_real']} real")
    for s in metrics["settings"]:
        line = (f"  {label(s)}: FID {s['fid']:.2f}, KID {s['kid']:.4f}, CLIP score {s['clip_score']:.2f} "
                f"(shuffled captions {s['clip_score_shuffled']:.2f})")
        if "compositional" in s:
            line += f", compositional exact {100 * s['compositional']['all']['exact']['accuracy']:.1f} %"
        print(line)
    print(f"real images: CLIP score {metrics['real']['clip_score']:.2f} "
          f"(shuffled captions {metrics['real']['clip_score_shuffled']:.2f})")
    print(f"wrote {out / 'metrics.json'} and {out / 'report.html'}")


def _run_autoencoder(args, cache_dir: Path) -> None:
    import json

    from t2i.components import read_component_info
    from t2i.evaluation.clip import ClipExtractor
    from t2i.evaluation.evaluate import default_clip
    from t2i.evaluation.inception import InceptionExtractor
    from t2i.evaluation.reconstruction import evaluate_autoencoder

    info = read_component_info(args.model, "autoencoder")
    data = args.data or Path(info["data"])
    extractor = (InceptionExtractor.from_file(args.inception) if args.inception
                 else ClipExtractor.from_folder(args.clip or default_clip(data, cache_dir)))
    result = evaluate_autoencoder(args.model, data, extractor, n=min(args.n, 256))
    out = args.out or args.model.parent / f"eval-{args.model.name}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"autoencoder": str(args.model), "data": str(data), **result},
                                                 indent=2) + "\n")
    print(f"autoencoder on {result['n']} held-out images: PSNR {result['psnr_db']:.2f} dB, SSIM {result['ssim']:.4f}, "
          f"rFID {result['rfid']:.2f} ({result['fid_extractor']}); wrote {out / 'metrics.json'}")

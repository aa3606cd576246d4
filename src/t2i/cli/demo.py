"""`t2i demo`: the whole loop on shapes."""

from __future__ import annotations

from pathlib import Path

from t2i.cli.common import Help


def register(sub) -> None:
    d = sub.add_parser("demo", formatter_class=Help, help="the whole loop on shapes: data, training, compose, images",
                       description="Generates shapes data, trains the autoencoder and the generator (with the "
                       "pretrained MiniLM text encoder cut to its first 3 layers), composes them, and writes grids, a preview "
                       "GIF and a summary.")
    d.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    d.add_argument("--preset", choices=["full", "quick"], default="full",
                   help="'full' (about 5 minutes on 2 CPU cores) or 'quick' (seconds; a smoke test, poor images)")
    d.add_argument("--objective", choices=["diffusion", "flow"], default="diffusion",
                   help="the generator's training objective: the VP diffusion recipe, or rectified flow (SD3)")
    d.set_defaults(run=run)


def run(args, command: str) -> None:
    from t2i.demo import DEMO_PRESETS, run_demo, with_objective

    run_demo(with_objective(DEMO_PRESETS[args.preset](args.out), args.objective))

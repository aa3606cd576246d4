"""The `t2i` command: each subcommand turns flags into a config and calls one library function.

One module per command group; each has `register(subparsers)`, which adds its parsers and sets
`run(args, command)` as their default. Nothing here imports torch until a command runs.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shlex
import sys
import time

from t2i.cli import data, demo, evaluate, experiment, sample, serve, train
from t2i.startup import paused_gc
from t2i.training.faults import TrainingDiverged

EPILOG_TOP = """\
the recipe (Stable Diffusion's, trained from scratch):
  t2i data shapes --out data/shapes --n 4000             # 1. captioned images
  t2i train autoencoder --data data/shapes --out runs/ae  # 2. the decoder, on images alone
  t2i train generator --data data/shapes --autoencoder runs/ae --out runs/gen --pipeline-out runs/pipe
  t2i generate "a red circle" --model runs/pipe --n 4 --preview progress.gif
  t2i eval runs/pipe --guidance 1 2 3 5                    # 3. FID, KID, CLIP score, compositional accuracy
or all of it at once, in about five minutes on a laptop CPU:
  t2i demo
the cascade variant (Imagen's): a small image, then super-resolution diffusion trained on images alone:
  t2i train base --data data/shapes --out runs/base --size 16
  t2i train upsampler --data data/shapes --out runs/up --low-size 16 --size 32
  t2i compose --base runs/base --upsampler runs/up --out runs/cascade
the tokens variant (DALL-E's: a VQ autoencoder's token grid, written by a GPT-2):
  t2i train vq --data data/shapes --out runs/vq
  t2i train tokens --data data/shapes --vq runs/vq --out runs/tok --pipeline-out runs/tpipe
  t2i generate "a red circle" --model runs/tpipe --n 4 --top-k 32 --preview rows.gif
"""

# The command groups, in the order `t2i --help` lists them.
COMMANDS = (data, train, sample, evaluate, experiment, demo, serve)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="t2i", description="Train a text-to-image system from scratch in three parts — text encoder, "
        "generator, decoder — and sample from it.", epilog=EPILOG_TOP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None, *, started: float | None = None, owns_process: bool = False) -> int:
    """Run one `t2i` command. `started`: the `time.perf_counter()` its process began at (for start-up times);
    `owns_process`: the process ends with this command, so the libraries' objects may be frozen (`entry`)."""
    started = time.perf_counter() if started is None else started
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.started = started
    # Under accelerate launch / torchrun, rank 0 speaks for all; the others report only problems.
    quiet = os.environ.get("RANK", "0") != "0"
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    with paused_gc():  # torch, transformers and diffusers are imported here (t2i.startup says why)
        _quiet_libraries()
    if owns_process:
        gc.freeze()
    command = "t2i " + shlex.join(argv)
    try:
        args.run(args, command)
    except KeyboardInterrupt:
        print("t2i: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, TrainingDiverged) as e:  # bad input or a diverged run: one clear line
        if args.debug:
            raise
        print(f"t2i: error: {e}", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    """The `t2i` console script: `main`, with the libraries' objects kept out of the garbage collector's way.

    Importing torch, transformers and diffusers makes ~450,000 objects that live as long as the process;
    `gc.freeze` after the imports spares every later collection from walking them, and freezing again at
    the end skips the interpreter's final collections (~1 s here). Objects are still freed when unused;
    only cycles among frozen objects wait for the exit. Not by default in `main`, which tests and other
    programs call inside a process that goes on.
    """
    started = time.perf_counter()
    code = main(started=started, owns_process=True)
    gc.freeze()
    sys.exit(code)


def _quiet_libraries() -> None:
    """transformers/diffusers chatter (weight-loading bars, advisory warnings) hides our own progress."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    dlog.disable_progress_bar()

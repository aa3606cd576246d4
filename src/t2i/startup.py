"""Start-up: most of it is importing torch, torch._dynamo (diffusers imports it), transformers and diffusers,
which t2i cannot shorten; what it can shorten is the cyclic garbage collector's work on what they create.

Those imports make ~450,000 objects (modules, classes, functions) that live as long as the process. While
they are made, the collector keeps walking all of them in full collections and frees nothing, and the first
collection after walks them once more. Pausing it and filing the objects as old took `import t2i;
t2i.load(demo pipeline)` from 5.65–5.82 s to 4.74–4.96 s on the 2-core development machine
(docs/demo-recipe.md, "What the numbers say").
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, then file what the block made under its oldest
    generation; its previous state is restored, even on error.

    For blocks that make long-lived objects (imports, loading weights). Reference counting still frees
    everything acyclic in the meantime. Filing is `gc.freeze()` then `gc.unfreeze()`, which moves every
    tracked object to the oldest generation: still collected, only in full collections instead of young
    ones. Skipped when the program has frozen objects of its own (unfreezing would release them).
    Process-wide while it lasts, as `gc.disable` is.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()

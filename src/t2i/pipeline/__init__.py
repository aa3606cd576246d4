"""What every variant's pipeline shares: the interface and request (`base.py`), the folder writer and fit checks
of compose (`folder.py`), writing a generation's files (`save.py`), and the speed options of the diffusion
variants' U-Nets (`speed.py`, `cross_attention.py`). Loading and composing by variant is
`t2i.variants`."""

from t2i.pipeline.base import DEFAULTS, Pipeline, Request, StreamEvent
from t2i.pipeline.folder import CompositionError

__all__ = ["DEFAULTS", "CompositionError", "Pipeline", "Request", "StreamEvent"]

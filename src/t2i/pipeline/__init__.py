"""Composition and the composed pipeline."""

from t2i.pipeline.compose import CompositionError, compose
from t2i.pipeline.pipeline import StreamEvent, T2IPipeline

__all__ = ["CompositionError", "StreamEvent", "T2IPipeline", "compose"]

"""Evaluation. For now: the dominant-colour check used by the demo and the colour-accuracy benchmark."""

from t2i.evaluation.colour import colour_accuracy, dominant_colour

__all__ = ["colour_accuracy", "dominant_colour"]

"""Evaluation: feature extractors (FID Inception-v3, CLIP), FID / KID / CLIP score, reconstruction metrics,
compositional accuracy on shapes, and `t2i eval`'s report. Import the submodules; this package stays light."""

from t2i.evaluation.colour import colour_accuracy, dominant_colour

__all__ = ["colour_accuracy", "dominant_colour"]

"""t2i: a text-to-image system trained from scratch in three parts — text encoder, generator, decoder."""

__version__ = "0.1.0"


def load(folder):
    """Load a composed pipeline folder of any variant; see `t2i.pipeline.load_pipeline`."""
    from t2i.pipeline import load_pipeline

    return load_pipeline(folder)

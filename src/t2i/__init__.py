"""t2i: a text-to-image system trained from scratch in three parts — text encoder, generator, decoder."""

__version__ = "0.1.0"


def load(folder, **kwargs):
    """Load a composed pipeline folder; see `t2i.pipeline.T2IPipeline.from_pretrained`."""
    from t2i.pipeline import T2IPipeline

    return T2IPipeline.from_pretrained(folder, **kwargs)

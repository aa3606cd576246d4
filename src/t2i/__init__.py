"""t2i: a text-to-image system trained from scratch in three parts — text encoder, generator, decoder."""

from t2i.version import __version__


def load(folder=None, *, speed=None):
    """Load a composed pipeline folder of any variant (see `t2i.variants.load_pipeline`); with no folder, the
    emoji model that ships inside t2i (`t2i.models.default_model()`): no training, no download. `speed`: a
    `t2i.pipeline.speed.SpeedConfig` (how a latent pipeline runs its networks), or None for the defaults."""
    from t2i.startup import paused_gc

    with paused_gc():  # loading imports diffusers and transformers (t2i.startup says why)
        from t2i.models import default_model
        from t2i.variants import load_pipeline

        return load_pipeline(default_model() if folder is None else folder, speed=speed)

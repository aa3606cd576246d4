"""The cascade variant (Imagen's): a base that draws a small image from text, and super-resolution diffusion
stages, trained on images alone, that enlarge it.

`model.py`: configurations, presets and the networks; `sample.py`: one super-resolution stage at sampling
time; `train.py`: `train_base` and `train_upsampler`; `compose.py`: the pipeline folder. Loading a pipeline
imports `model` and `sample` only, never the training code.
"""

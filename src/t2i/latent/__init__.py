"""The latent variant (Stable Diffusion's): a text-conditioned U-Net (`t2i.diffusion.unet`; or a PixArt-α
transformer, `t2i.diffusion.transformer`) denoises the latents of a KL autoencoder (`t2i.autoencoder`), whose
decoder turns them into images.

`train.py`: `t2i train generator` on cached latents and text embeddings. `compose.py`: the fit checks and
the pipeline folder (a diffusers `StableDiffusionPipeline` folder). `pipeline.py`: `LatentPipeline`, run with
the speed options of `t2i.pipeline.speed`. Loading a pipeline imports `pipeline` and `compose` only, never the
training code.
"""

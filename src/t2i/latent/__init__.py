"""The latent variant (Stable Diffusion's): a text-conditioned U-Net (`t2i.diffusion.unet`; or a PixArt-α
transformer, `t2i.diffusion.transformer`) denoises the latents of a KL autoencoder (`t2i.autoencoder`), whose
decoder turns them into images.

`train.py`: `t2i train generator` on cached latents and text embeddings. `compose.py`: the fit checks and
the pipeline folder (a diffusers `StableDiffusionPipeline` folder). `pipeline.py`: `LatentPipeline`.
`speed.py` + `cross_attention.py`: how the pipeline runs its U-Net (reused prompt keys/values, bf16,
torch.compile). Loading a pipeline imports `pipeline`, `speed` and `compose` only, never the training code.
"""

"""What the diffusion variants share below them: the text-conditioned U-Net (`unet.py`: config, presets,
`build_unet`; the latent generator and the cascade's base), the latent generator's transformer backbone
(`transformer.py`) and the denoising loss they train with
(`loss.py`). Sampling (schedules, parameterisation, samplers) is `t2i.sampling`."""

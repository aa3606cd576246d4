"""How the latent and cascade pipelines run their U-Nets: the speed options, chosen once when one is loaded.

Each option was measured against the plain path in the same run (`benchmarks/speed_options.py`,
`benchmarks/vs_diffusers.py`; BENCHMARKS.md has the ratios). On the demo, on a 2-core AVX2 CPU: reusing
the prompt's keys/values 1.20x faster (on by default); channels_last 0.92x and bfloat16 autocast 0.14x
without native bfloat16 (both off); torch.compile 1.26x more on top, after minutes of compilation (opt-in).
On the shipped 64-px cascade, on a CPU with native bfloat16: bfloat16 autocast 1.60x at equal `t2i compare`
figures, so a cascade uses it there by default (`use_bf16`); the latent pipeline only when asked (its small U-Net
trained no faster in bf16 even there, and its sampling in bf16 has not been measured against float32 on such a CPU).
Always on, not options: `torch.inference_mode`, the empty prompt's embedding computed once per pipeline,
and classifier-free guidance as one batched forward.
"""

from __future__ import annotations

from dataclasses import dataclass

from t2i.hardware import native_bf16


@dataclass
class SpeedConfig:
    reuse_text_kv: bool = True  # compute each cross-attention layer's keys/values of the prompt once per run,
    # not once per step (they do not change between steps); see t2i.pipeline.cross_attention
    channels_last: bool = False  # U-Net weights and activations in NHWC layout (oneDNN's preferred layout)
    bf16: bool | None = None  # bfloat16 autocast around the U-Nets; can pay only on CPUs with native bfloat16
    # (AVX512-BF16 or AMX, see native_bf16): on an AVX2 CPU it was measured 7x slower. None: where it measured
    # faster at equal quality — the cascade, on a CPU with native bfloat16 (1.60x, t2i compare's figures equal;
    # BENCHMARKS.md); not the latent U-Net (not measured faster). See `use_bf16`.
    compile: bool = False  # torch.compile the U-Net (inductor, weights frozen as constants): 1.45x faster U-Net
    # steps on the demo, after a compilation of minutes on a CPU repeated for each new batch shape; for long
    # runs (t2i serve, t2i eval). Replaces reuse_text_kv (the compiled graph computes K, V itself)
    fast_previews: bool = True  # decode per-step previews with the autoencoder's tiny preview decoder when
    # the folder has one (vae/preview_decoder/); else, and when False, with the real decoder


def use_bf16(speed: SpeedConfig, *, pays_on_native: bool) -> bool:
    """Whether to run under bfloat16 autocast: as `speed.bf16` says, or, when it is None, where the pipeline
    measured it faster (`pays_on_native`) and this CPU has native bfloat16."""
    if speed.bf16 is not None:
        return speed.bf16
    return pays_on_native and native_bf16()


def prepare_unet(unet, speed: SpeedConfig):
    """The module the sampler calls: `unet` with the attention processors and memory layout of `speed`, changed
    in place (the weights' values stay as they are), compiled when `speed.compile` (then a wrapper of `unet`)."""
    import torch

    from t2i.pipeline.cross_attention import ReusedTextKV

    if speed.reuse_text_kv and not speed.compile:
        unet.set_attn_processor(ReusedTextKV())
    if speed.channels_last:
        unet.to(memory_format=torch.channels_last)
    if speed.compile:
        # Freezing turns weights into constants, so inductor can pre-pack convolution weights for oneDNN.
        return torch.compile(unet, options={"freezing": True})
    return unet

"""Per-step costs behind the `corpus` experiment preset (src/t2i/experiments/presets.py): process CPU seconds of
one training step of each part at 32 px, of one sampling step of each U-Net, and of encoding captions with
each text encoder, all at one thread, on random tensors of the preset's shapes.

Like benchmarks/model_step_cost.py: candidates alternate, the fastest repeat counts (other processes only add
to it), and process CPU time, not wall time, is reported, so a busy machine distorts it less (not zero: a
busy core's caches are shared).

    OMP_NUM_THREADS=1 python benchmarks/corpus_experiment_cost.py --steps 3 --json cost.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

LATENT = (4, 8)  # channels, side: the medium autoencoder (f = 4) at 32 px
TEXT_LENGTH = 20  # the preset's max_length


def unets():
    from t2i.diffusion.unet import GeneratorConfig

    return {  # name -> (config, text width)
        "unet (32,64) minilm": (GeneratorConfig(), 384),
        "unet (32,64) mpnet": (GeneratorConfig(), 768),
        "unet (32,64) scratch": (GeneratorConfig(), 128),
        "unet (64,128)": (GeneratorConfig(block_out_channels=(64, 128), norm_num_groups=32), 384),
        "unet (96,192)": (GeneratorConfig(block_out_channels=(96, 192), norm_num_groups=32), 384),
        "unet (128,256)": (GeneratorConfig(block_out_channels=(128, 256), norm_num_groups=32), 384),
    }


def timed(fn, steps: int, repeats: int) -> float:
    fn()  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(steps):
            fn()
        best = min(best, (time.process_time() - start) / steps)
    return best


def unet_train_step(cfg, width: int, batch: int):
    from t2i.diffusion.unet import build_unet

    model = build_unet(cfg, sample_size=LATENT[1], latent_channels=LATENT[0], cross_attention_dim=width)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, t = torch.randn(batch, LATENT[0], LATENT[1], LATENT[1]), torch.randint(0, 1000, (batch,))
    emb = torch.randn(batch, TEXT_LENGTH, width)

    def step():
        model(x, t, encoder_hidden_states=emb).sample.pow(2).mean().backward()
        opt.step()
        opt.zero_grad()

    return model, step


def unet_sample_step(cfg, width: int, images: int):
    """One denoising step of `images` images with classifier-free guidance: a forward pass on 2 × images."""
    from t2i.diffusion.unet import build_unet

    model = build_unet(cfg, sample_size=LATENT[1], latent_channels=LATENT[0], cross_attention_dim=width).eval()
    x, t = torch.randn(2 * images, LATENT[0], LATENT[1], LATENT[1]), torch.full((2 * images,), 500)
    emb = torch.randn(2 * images, TEXT_LENGTH, width)

    @torch.inference_mode()
    def step():
        model(x, t, encoder_hidden_states=emb)

    return step


def autoencoder_step(batch: int):
    from t2i.autoencoder.model import build_autoencoder
    from t2i.autoencoder import AUTOENCODER_PRESETS

    model = build_autoencoder(AUTOENCODER_PRESETS["medium"](32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, 32, 32)

    def step():
        posterior = model.encode(x).latent_dist
        ((model.decode(posterior.sample()).sample - x).pow(2).mean() + posterior.kl().mean() * 1e-5).backward()
        opt.step()
        opt.zero_grad()

    return step


def clip_step(batch: int):
    from transformers import AutoTokenizer

    from t2i.evaluation.clip import CLIP_PRESETS, build_clip
    from t2i.text import minilm_path

    cfg = CLIP_PRESETS["small"](32)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = build_clip(cfg, tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = tokenizer(["grinning face with big eyes, noto style"] * batch, padding="max_length",
                       max_length=cfg.max_length, truncation=True, return_tensors="pt")
    pixels = torch.randn(batch, 3, 32, 32)

    def step():
        model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels,
              return_loss=True).loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def encode_step(source: str, batch: int):
    from t2i.text.encoder import load_text_encoder

    encoder = load_text_encoder(source, max_length=TEXT_LENGTH).eval()
    prompts = [f"face with tears of joy {i}, happy, laugh, noto style" for i in range(batch)]

    @torch.inference_mode()
    def step():
        encoder.encode(prompts)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--repeats", type=int, default=2, help="measurements per candidate (the fastest counts)")
    p.add_argument("--no-mpnet", action="store_true", help="skip mpnet (not installed)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = {}
    for name, (cfg, width) in unets().items():
        model, step = unet_train_step(cfg, width, 64)
        rows[f"train {name}, batch 64"] = {"params": sum(q.numel() for q in model.parameters()),
                                           "cpu_s": timed(step, args.steps, args.repeats)}
        del model, step
        if name.endswith("scratch") or name.endswith("mpnet"):
            continue
        rows[f"sample {name}, 64 images (CFG: 128 rows)"] = {"cpu_s": timed(unet_sample_step(cfg, width, 64),
                                                                             args.steps, args.repeats)}
    rows["train autoencoder medium, batch 32"] = {"cpu_s": timed(autoencoder_step(32), args.steps, args.repeats)}
    rows["train clip small, batch 128"] = {"cpu_s": timed(clip_step(128), args.steps, args.repeats)}
    for source in ("minilm", *(() if args.no_mpnet else ("mpnet",))):
        rows[f"encode 128 captions, {source}"] = {"cpu_s": timed(encode_step(source, 128), args.steps, args.repeats)}
    for name, row in rows.items():
        print(f"{name:52s} {row.get('params', 0) / 1e6:7.2f} M  {row['cpu_s']:8.4f} CPU s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

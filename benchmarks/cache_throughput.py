"""Generator training speed with cached latents + text embeddings, against encoding every batch on the fly.

Both modes train the same U-Net with the same loss, batch and trainer, in one process, alternating
(cached, on the fly, cached, ...) so that a change in machine load hits both. "On the fly" decodes the
batch's images, runs the frozen VAE encoder and the frozen text encoder on every step, as a trainer
without a cache would; "cached" reads rows of the memory-mapped cache shards (`t2i train generator`'s
path; building the cache is timed separately, once). Absolute steps/s need a quiet machine; the ratio
is what to read on a busy one.

    python benchmarks/cache_throughput.py --data outputs/demo/data --autoencoder outputs/demo/autoencoder
    python benchmarks/cache_throughput.py            # makes 512 shapes and a small autoencoder first
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def _make_inputs(folder: Path) -> tuple[Path, Path]:
    from t2i.autoencoder import AUTOENCODER_PRESETS, AutoencoderTrainConfig, train_autoencoder
    from t2i.data import ShapesConfig, write_shapes
    from t2i.training.trainer import TrainConfig

    data, ae = folder / "data", folder / "autoencoder"
    write_shapes(data, ShapesConfig(n=512, size=32, seed=0))
    train_autoencoder(data, ae, AutoencoderTrainConfig(model=AUTOENCODER_PRESETS["small"](32),
                                                       train=TrainConfig(steps=20, batch_size=16, warmup_steps=2)))
    return data, ae


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="dataset (default: 512 shapes made here)")
    p.add_argument("--autoencoder", type=Path, default=None, help="autoencoder component (default: made here)")
    p.add_argument("--preset", choices=["tiny", "small", "base"], default="small", help="U-Net size")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed training steps per measurement")
    p.add_argument("--repeats", type=int, default=2, help="alternating measurements per mode")
    p.add_argument("--threads", type=int, default=1, help="torch threads (2-core machines stall with more)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import AutoencoderKL

    from t2i.components import weights_digest
    from t2i.data.sources import ImageRows, open_source
    from t2i.diffusion.unet import GENERATOR_PRESETS
    from t2i.training.cache import latent_rows, sharded_cache, text_rows
    from t2i.diffusion.unet import build_unet
    from t2i.latent.train import generator_loss
    from t2i.sampling import Denoiser, alphas_cumprod
    from t2i.text import TextEncoderConfig, build_text_encoder
    from t2i.training.trainer import TrainConfig, random_batches, train

    work = Path(tempfile.mkdtemp(prefix="cache_throughput-"))
    data, ae = (args.data, args.autoencoder) if args.data and args.autoencoder else _make_inputs(work)
    vae = AutoencoderKL.from_pretrained(ae, use_safetensors=True).eval().requires_grad_(False)
    text_encoder = build_text_encoder(TextEncoderConfig(max_length=16)).requires_grad_(False).eval()
    source = open_source(data)
    size = int(json.loads((ae / "t2i_component.json").read_text())["image_size"])
    images = ImageRows(source, size)
    distinct = sorted(set(source.captions))
    position = {c: i for i, c in enumerate(distinct)}

    start = time.perf_counter()
    latents = sharded_cache(work / "cache", "latents", {"vae": weights_digest(ae)}, len(source),
                            latent_rows(vae, images))
    text = sharded_cache(work / "cache", "text", {"n": len(distinct)}, len(distinct), text_rows(text_encoder, distinct),
                         small=lambda: {"caption_index": torch.tensor([position[c] for c in source.captions]),
                                        "uncond": text_encoder.encode([""])[0].float()})
    cache_seconds = time.perf_counter() - start

    cfg = GENERATOR_PRESETS[args.preset]()
    sf = float(vae.config.scaling_factor)
    latent_shape = latents["latent_mean"].shape  # (N, c, h, w)
    unet = build_unet(cfg, sample_size=latent_shape[-1], latent_channels=latent_shape[1],
                      cross_attention_dim=text_encoder.hidden_size)
    denoiser = Denoiser(unet, alphas_cumprod(cfg.schedule), cfg.prediction_type)
    uncond = text["uncond"]
    cached_loss = generator_loss(denoiser, cfg, sf, uncond, text["text_table"])

    def on_the_fly_loss(model, batch, generator):
        with torch.no_grad():
            posterior = vae.encode(batch["pixel_values"]).latent_dist  # (B, c, h, w)
            emb = text_encoder.encode([source.captions[i] for i in batch["index"].tolist()])[0].float()  # (B, L, D)
        encoded = {"latent_mean": posterior.mean, "latent_std": posterior.std, "caption_index": torch.arange(len(emb))}
        return generator_loss(denoiser, cfg, sf, uncond, emb)(model, encoded, generator)

    modes = {
        "cached": (cached_loss, lambda: random_batches({**latents, "caption_index": text["caption_index"]},
                                                       args.batch_size, seed=0)),
        "on the fly": (on_the_fly_loss, lambda: random_batches({"pixel_values": images,
                                                                "index": torch.arange(len(source))},
                                                               args.batch_size, seed=0)),
    }
    train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, warmup_steps=1, log_every=args.steps)
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for name, (loss_fn, batches) in modes.items():
            result = train(unet, loss_fn, batches(), train_cfg, desc=name)
            seconds[name].append(result.seconds)

    rate = {m: args.steps / min(s) for m, s in seconds.items()}  # best of the repeats: least disturbed by load
    print(f"data {data} ({len(source)} images, {size} px), U-Net {args.preset}, batch {args.batch_size}, "
          f"{args.steps} steps × {args.repeats}, {args.threads} thread(s); cache built once in {cache_seconds:.1f} s")
    print(f"{'mode':<12}{'steps/s':>9}{'s/step':>9}")
    for m in modes:
        print(f"{m:<12}{rate[m]:>9.2f}{1 / rate[m]:>9.3f}")
    ratio = rate["cached"] / rate["on the fly"]
    print(f"cached / on the fly: {ratio:.2f}×")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "seconds": seconds,
                                         "steps_per_second": rate, "ratio": ratio,
                                         "cache_seconds": cache_seconds}, indent=2) + "\n")


if __name__ == "__main__":
    main()

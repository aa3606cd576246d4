"""Cost of one training step of candidate autoencoder and U-Net sizes, relative to the demo's, and their weights.

Used to size the emoji recipe (recipes/emoji.sh): each candidate runs forward + backward + AdamW on random
tensors of the recipe's shapes, in one process, alternating candidates so that a change in machine load
hits all of them. Reported per candidate: parameters, safetensors megabytes (float32), process CPU seconds
and wall seconds per step, and the CPU-time ratio to the first candidate of its kind (the demo's size,
whose wall time on a quiet machine the README gives). With one thread, process CPU time is close to what
the step costs alone; wall time on a shared machine is not.

    OMP_NUM_THREADS=1 python benchmarks/model_step_cost.py --steps 5 --json cost.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def autoencoder_candidates():
    from t2i.autoencoder.model import AutoencoderConfig

    return {  # name -> config at 32 px; the first is the demo's ("small")
        "ae small (16,32,32)": AutoencoderConfig(image_size=32),
        "ae (32,64,64)": AutoencoderConfig(image_size=32, block_out_channels=(32, 64, 64)),
        "ae (32,64,64) 2 layers": AutoencoderConfig(image_size=32, block_out_channels=(32, 64, 64), layers_per_block=2),
        "ae (64,128,128)": AutoencoderConfig(image_size=32, block_out_channels=(64, 128, 128), norm_num_groups=32),
    }


def unet_candidates():
    from t2i.diffusion.unet import GeneratorConfig

    return {  # name -> config for 8×8×4 latents; the first is the demo's ("small")
        "unet small (32,64)": GeneratorConfig(),
        "unet (64,128)": GeneratorConfig(block_out_channels=(64, 128), norm_num_groups=32),
        "unet (64,128) 2 layers": GeneratorConfig(block_out_channels=(64, 128), layers_per_block=2, norm_num_groups=32),
        "unet (64,128,256)": GeneratorConfig(block_out_channels=(64, 128, 256), attention_levels=(False, True, True),
                                             norm_num_groups=32),
        "unet (96,192) attn both": GeneratorConfig(block_out_channels=(96, 192), attention_levels=(True, True),
                                                   norm_num_groups=32, attention_heads=4),
        "unet base (64,128,128)": GeneratorConfig(block_out_channels=(64, 128, 128), attention_levels=(False, True, True),
                                                  layers_per_block=2, norm_num_groups=32),
    }


def _step_fn(kind: str, model, batch_size: int, text_length: int, text_width: int):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if kind == "ae":
        x = torch.randn(batch_size, 3, 32, 32, generator=g)

        def step():
            posterior = model.encode(x).latent_dist
            loss = (model.decode(posterior.sample(generator=g)).sample - x).pow(2).mean() + posterior.kl().mean() * 1e-6
            loss.backward()
            opt.step()
            opt.zero_grad()
    else:
        x = torch.randn(batch_size, 4, 8, 8, generator=g)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        emb = torch.randn(batch_size, text_length, text_width, generator=g)

        def step():
            loss = model(x, t, encoder_hidden_states=emb).sample.pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--repeats", type=int, default=2, help="alternating measurements per candidate")
    p.add_argument("--ae-batch", type=int, default=32, help="autoencoder batch size")
    p.add_argument("--unet-batch", type=int, default=64, help="U-Net batch size")
    p.add_argument("--text-length", type=int, default=24, help="prompt tokens (MiniLM width 384)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (2-core machines stall with more)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from t2i.autoencoder.model import build_autoencoder
    from t2i.diffusion.unet import build_unet

    torch.manual_seed(0)
    models = {}
    for name, cfg in autoencoder_candidates().items():
        models[name] = ("ae", build_autoencoder(cfg), args.ae_batch)
    for name, cfg in unet_candidates().items():
        models[name] = ("unet", build_unet(cfg, sample_size=8, latent_channels=4, cross_attention_dim=384),
                        args.unet_batch)
    steps = {name: _step_fn(kind, m, b, args.text_length, 384) for name, (kind, m, b) in models.items()}
    for step in steps.values():
        step()  # warm-up: allocations, kernel selection
    cpu = {name: [] for name in models}
    wall = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, step in steps.items():
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(args.steps):
                step()
            cpu[name].append((time.process_time() - c0) / args.steps)
            wall[name].append((time.perf_counter() - w0) / args.steps)
    rows, first = [], {}
    for name, (kind, model, batch) in models.items():
        params = sum(p.numel() for p in model.parameters())
        c, w = min(cpu[name]), min(wall[name])
        first.setdefault(kind, c)
        rows.append({"candidate": name, "batch": batch, "params": params, "megabytes_fp32": round(params * 4 / 1e6, 2),
                     "cpu_s_per_step": round(c, 4), "wall_s_per_step": round(w, 4),
                     "cpu_ratio_to_demo_size": round(c / first[kind], 2)})
    print(f"{'candidate':28s} {'batch':>5s} {'params':>10s} {'MB':>7s} {'cpu s/step':>10s} {'wall s/step':>11s} "
          f"{'× demo':>7s}")
    for r in rows:
        print(f"{r['candidate']:28s} {r['batch']:5d} {r['params']:10,d} {r['megabytes_fp32']:7.2f} "
              f"{r['cpu_s_per_step']:10.3f} {r['wall_s_per_step']:11.3f} {r['cpu_ratio_to_demo_size']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

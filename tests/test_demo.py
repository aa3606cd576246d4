"""`t2i demo`'s outputs, on the quick preset the session already ran (`demo_run`): a grid per prompt holding the
pipeline's images, the preview GIF, and a summary whose colour accuracy is the pixel count on those images."""

import json

import numpy as np
from PIL import Image

import t2i
from t2i.demo import COMPOSITIONAL_PROMPTS, DEMO_PRESETS, SINGLE_PROMPTS
from t2i.evaluation.colour import dominant_colour
from t2i.images import slug


def test_the_demo_writes_grids_a_preview_gif_and_a_summary(demo_run, tmp_path):
    out, summary = demo_run
    cfg = DEMO_PRESETS["quick"](out)
    n, scale, pad = cfg.images_per_prompt, 4, 2
    pipe = t2i.load(out / "pipeline")
    side = pipe.image_size * scale
    singles, colours = [], []
    for prompt in SINGLE_PROMPTS + COMPOSITIONAL_PROMPTS:
        sheet = np.asarray(Image.open(out / "grids" / f"{slug(prompt)}.png").convert("RGB"))
        assert sheet.shape == (side + 2 * pad, n * side + (n + 1) * pad, 3)
        images = pipe(prompt, num_images=n, seed=0, steps=cfg.steps, guidance=cfg.guidance, sampler=cfg.sampler)
        for k, img in enumerate(images):  # tile k is image k (seed k), enlarged by pixel repetition
            x = pad + k * (side + pad)
            tile = sheet[pad : pad + side, x : x + side].astype(int)
            enlarged = np.asarray(img).repeat(scale, 0).repeat(scale, 1).astype(int)
            assert np.abs(tile - enlarged).max() <= 1, prompt  # batched float sums: at most a level apart
        if prompt in SINGLE_PROMPTS:
            singles += images
            colours += [prompt.split()[1]] * n
    assert sorted(p.name for p in (out / "grids").iterdir()) == sorted(
        f"{slug(p)}.png" for p in SINGLE_PROMPTS + COMPOSITIONAL_PROMPTS)

    with Image.open(out / "preview.gif") as gif:  # a frame per sampling step, then the result
        assert gif.n_frames == cfg.steps + 1 and gif.size == (4 * side + 5 * pad, side + 2 * pad)

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["colour_accuracy_single_prompts"] == summary["colour_accuracy_single_prompts"]
    hits = sum(dominant_colour(img) == c for img, c in zip(singles, colours))
    assert summary["colour_accuracy_single_prompts"] == hits / len(singles)
    assert on_disk["settings"] == {"steps": cfg.steps, "guidance": cfg.guidance, "sampler": cfg.sampler,
                                   "images_per_prompt": n}
    assert set(on_disk["seconds"]) == {"data", "text encoder", "autoencoder", "generator", "compose", "images"}
    assert on_disk["autoencoder"]["psnr_held_out_db"] == summary["autoencoder"]["psnr_held_out_db"]

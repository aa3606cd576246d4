"""recipes/emoji64.sh end to end at a tiny size with both variants (and a text-conditioned upsampler): its three
lanes, the judging, the choice, the grid, and a rerun that skips what finished (the shipped model's recipe, run for real on a small corpus from
the fetched packages)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2i.data.emoji_sets import DEFAULT_SETS, EMOJI_SETS
from t2i.data.npm_packages import default_cache_dir, tarball_name

RECIPE = Path(__file__).parents[1] / "recipes" / "emoji64.sh"
TINY = {"DATA_ARGS": "--limit 20 --offline", "AE_PRESET": "tiny", "AE_STEPS": "4", "GEN_PRESET": "tiny",
        "GEN_STEPS": "4", "BASE_PRESET": "tiny", "BASE_STEPS": "4", "UP_PRESET": "tiny", "UP_STEPS": "4",
        "CLIP_PRESET": "tiny", "CLIP_STEPS": "4", "EVAL_N": "16", "SEEN_N": "8", "PROGRESS_EVERY": "1",
        "JUDGE_THREADS": "1", "VARIANTS": "latent cascade", "UP_TEXT": "minilm", "UP_GUIDANCE": "2"}


def _run(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **TINY, "T2I": f"{sys.executable} -m t2i.cli", "PYTHON": sys.executable}
    return subprocess.run(["bash", str(RECIPE), str(out)], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.system_package("npm, and the emoji set packages `make emoji-sets` fetches with it")
def test_the_recipe_trains_judges_chooses_and_resumes(tmp_path):
    missing = [s for s in DEFAULT_SETS if not (default_cache_dir() / tarball_name(EMOJI_SETS[s].package,
                                                                                  EMOJI_SETS[s].version)).is_file()]
    if missing:
        pytest.skip(f"emoji set packages not fetched ({', '.join(missing)}): run make emoji-sets")
    out = tmp_path / "emoji64"
    first = _run(out)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "recipe: ~" in first.stdout and "min left" in first.stdout  # the progress lines
    result = json.loads((out / "compare" / "compare.json").read_text())
    fids = {Path(k).name: v["held_out"]["fid"] for k, v in result["models"].items()}
    assert set(fids) == {"latent", "cascade"}
    best = min(fids, key=fids.get)
    assert f"the better variant by held-out FID: {best}" in first.stdout
    assert json.loads((out / "pipeline" / "t2i.json").read_text())["variant"] == best
    assert (out / "grid.png").is_file()
    cascade = json.loads((out / "cascade" / "t2i.json").read_text())
    assert cascade["defaults"]["steps"] == 20  # BASE_SAMPLE_STEPS's default, as shipped
    assert cascade["components"]["base"]["config"]["random_flip"] == 0.5  # BASE_FLIP's default, as shipped
    assert cascade["upsamplers"][0]["text_conditioned"] and cascade["defaults"]["upsampler_guidance"] == 2  # UP_TEXT
    stages = [line.split("\t")[0] for line in (out / "times.tsv").read_text().splitlines()[1:]]
    assert {"data", "autoencoder", "generator", "clip", "base", "upsampler", "judge", "grid"} <= set(stages)
    # A rerun trains nothing again: every finished stage is skipped, the result stays.
    second = _run(out)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    logs = "".join((out / "logs" / f"{lane}.log").read_text() for lane in ("latent", "base", "clip"))
    assert logs.count("== autoencoder:") == 1 and logs.count("== base:") == 1 and logs.count("== clip:") == 1
    assert "== judge" not in second.stdout and json.loads((out / "compare" / "compare.json").read_text()) == result

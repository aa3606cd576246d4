"""`t2i experiment`: both experiments end to end at the tiny preset (one shared folder: one data set, autoencoder,
evaluators and reference statistics), the held-out synonyms, the encoders they compare, equal compute."""

import json
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from t2i.cli import main
from t2i.experiments import synonyms


@pytest.fixture(scope="session")
def experiments(tmp_path_factory):
    """Both tiny experiments in one folder; the second reuses the first's shared assets."""
    root = tmp_path_factory.mktemp("experiments")
    common = ["--preset", "tiny", "--out", str(root), "--threads", "1"]
    assert main(["experiment", "text-encoders", *common]) == 0
    shared_before = sorted(p.name for p in (root / "shared").iterdir())
    assert main(["experiment", "unet-sizes", *common]) == 0
    return root, shared_before


def _results(folder):
    return json.loads((folder / "results.json").read_text())


@pytest.mark.slow
def test_text_encoder_experiment_writes_its_figure_and_tables(experiments):
    root, _ = experiments
    folder = root / "text-encoders"
    results = _results(folder)
    names = [m["name"] for m in results["models"]]
    assert names == ["scratch", "minilm-random", "minilm-1l", "minilm-2l", "minilm-3l", "minilm-6l"]
    for model in results["models"]:
        assert [p["guidance"] for p in model["curve"]] == [1.0, 3.0]
        for point in model["curve"]:
            assert point["fid"]["mean"] > 0 and 0 <= point["clip_score"]["mean"] <= 100
        assert 0 <= model["headline"]["colour_synonyms"]["mean"] <= 1
    # The scratch encoder is narrower (128 wide), so its U-Net's cross-attention has fewer parameters.
    params = {m["name"]: m["unet_parameters"] for m in results["models"]}
    assert params["scratch"] < params["minilm-6l"] == params["minilm-1l"]
    with Image.open(folder / "figure.png") as figure:
        assert figure.size[0] > 800
    table = (folder / "results.md").read_text()
    assert "| MiniLM, 2 of 6 layers (frozen) |" in table and "crimson" in table
    for run in results["runs"]:  # each run: its own folder, a done-marker, its report, no leftover copies
        run_dir = root / "text-encoders" / "runs" / run["name"] / f"seed-{run['seed']}"
        assert (run_dir / "result.json").is_file() and (run_dir / "eval" / "report.html").is_file()
        assert not (run_dir / "pipeline").exists() and not (run_dir / "generator" / "checkpoints").exists()


@pytest.mark.slow
def test_held_out_synonyms_never_occur_in_the_training_captions_used(experiments):
    root, _ = experiments
    results = _results(root / "text-encoders")
    held_out = results["held_out"]
    words = {*held_out["colour_synonyms"], *held_out["shape_synonyms"]}
    assert {"crimson", "scarlet", "azure", "navy", "ball", "box"} <= words
    data = root / "shared" / "data"
    captions = [json.loads(line)["text"] for line in (data / "metadata.jsonl").read_text().splitlines()]
    assert held_out["captions_checked"] == len(captions) == 96
    used = {w for c in captions for w in re.split(r"[^a-z]+", c.lower()) if w}
    assert used and not (used & words)
    assert {"red", "circle", "square"} <= used  # the words the synonyms stand for are the trained ones
    assert all(p["kind"] != "colour" or p["prompt"].split()[1] in words for p in held_out["prompts"])


@pytest.mark.slow
def test_unet_experiment_compares_equal_steps_and_equal_compute(experiments):
    root, shared_before = experiments
    folder = root / "unet-sizes"
    results = _results(folder)
    costs = json.loads((folder / "compute.json").read_text())["costs"]
    groups = {(m["group"], m["name"]): m for m in results["models"]}
    assert set(groups) == {(g, n) for g in ("equal steps", "equal compute") for n in ("unet-8-16", "unet-16-32")}
    recipe_steps = groups[("equal steps", "unet-8-16")]["train_steps"]
    for (group, name), model in groups.items():
        expected = recipe_steps if group == "equal steps" else costs[name]["equal_compute_steps"]
        assert model["train_steps"] == expected, (group, name)
    # The recipe's U-Net is the reference: its equal-compute run is its equal-steps run, and with MiniLM it is the
    # text-encoder experiment's minilm-6l run: trained once, in that experiment.
    assert costs["unet-16-32"]["equal_compute_steps"] == recipe_steps
    assert costs["unet-8-16"]["flops_per_step"] < costs["unet-16-32"]["flops_per_step"]
    reference = [r["run"] for r in results["runs"] if r["name"] == "unet-16-32"]
    assert reference == [str(root / "text-encoders" / "runs" / "minilm-6l" / "seed-0")] * 2
    assert not (folder / "runs" / "unet-16-32").exists() and (folder / "runs" / "unet-8-16").is_dir()
    assert (folder / "figure.png").is_file() and "equal compute: U-Net" in (folder / "results.md").read_text()
    # Shared assets were built once, by the first experiment.
    shared = json.loads((folder / "experiment.json").read_text())["shared"]
    assert shared["autoencoder"] == str(root / "shared" / "autoencoder")
    assert sorted(p.name for p in (root / "shared").iterdir()) == shared_before


@pytest.mark.slow
def test_a_second_run_reads_finished_runs_back_and_another_preset_is_refused(experiments, capsys):
    root, _ = experiments
    folder = root / "text-encoders"
    before = (folder / "results.json").read_text()
    stamp = (folder / "runs" / "minilm-2l" / "seed-0" / "result.json").stat().st_mtime_ns
    assert main(["experiment", "text-encoders", "--preset", "tiny", "--out", str(root), "--threads", "1"]) == 0
    assert (folder / "runs" / "minilm-2l" / "seed-0" / "result.json").stat().st_mtime_ns == stamp
    assert json.loads((folder / "results.json").read_text())["runs"] == json.loads(before)["runs"]
    capsys.readouterr()
    assert main(["experiment", "unet-sizes", "--preset", "quick", "--out", str(root)]) == 1
    assert "was built with other settings" in capsys.readouterr().err


def test_synonym_scores_follow_what_the_classifier_reads():
    prompts = synonyms.synonym_prompts()
    assert {p.kind for p in prompts} == {"colour", "shape", "control"}
    assert sum(p.kind == "control" for p in prompts) == 24
    for p in prompts:
        if p.kind == "colour":
            assert synonyms.COLOUR_SYNONYMS[p.word] == p.spec.objects[0].colour and p.spec.objects[0].colour not in p.text
        if p.kind == "shape":
            assert synonyms.SHAPE_SYNONYMS[p.word] == p.spec.objects[0].shape and p.spec.objects[0].shape not in p.text

    def reading(p, colour=None):
        o = p.spec.objects[0]
        return [{"colour": colour or o.colour, "shape": o.shape, "size": "small", "cx": 8.0, "cy": 8.0}]

    right = synonyms.score([reading(p) for p in prompts], prompts)
    assert right["colour_synonyms"]["colour"]["accuracy"] == right["shape_synonyms"]["shape"]["accuracy"] == 1.0
    # Every colour-synonym image drawn in the wrong colour: only those prompts' colour accuracy drops.
    wrong = synonyms.score([reading(p, "green" if p.spec.objects[0].colour != "green" else "red")
                            if p.kind == "colour" else reading(p) for p in prompts], prompts)
    assert wrong["colour_synonyms"]["colour"]["accuracy"] == 0.0 and wrong["per_word"]["crimson"]["accuracy"] == 0.0
    assert wrong["trained_words"]["colour"]["accuracy"] == 1.0 and wrong["shape_synonyms"]["exact"]["accuracy"] == 1.0


def test_data_that_uses_a_held_out_word_is_refused():
    with pytest.raises(ValueError, match="held-out words \\(crimson\\)"):
        synonyms.check_held_out(["a red circle on the left", "a crimson square at the top"])


def test_truncated_minilm_is_minilms_first_layers_and_random_minilm_its_architecture(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from t2i.experiments.encoder_ladder import random_minilm, truncated_minilm
    from t2i.text import minilm_path

    full = AutoModel.from_pretrained(minilm_path()).eval()
    two = AutoModel.from_pretrained(truncated_minilm(2, tmp_path / "two")).eval()
    tokens = AutoTokenizer.from_pretrained(minilm_path())(["a small red circle on the left"], return_tensors="pt")
    with torch.no_grad():
        reference = full(**tokens, output_hidden_states=True).hidden_states[2]  # after 2 of 6 layers
        assert torch.allclose(two(**tokens).last_hidden_state, reference, atol=1e-5)
    # Asked for another depth, an existing folder is rebuilt, not reused.
    assert AutoModel.from_pretrained(truncated_minilm(3, tmp_path / "two")).config.num_hidden_layers == 3
    random_a = AutoModel.from_pretrained(random_minilm(0, tmp_path / "r0"))
    random_b = AutoModel.from_pretrained(random_minilm(0, tmp_path / "r0-again"))
    assert random_a.config.num_hidden_layers == 6 and random_a.config.hidden_size == 384
    emb = random_a.embeddings.word_embeddings.weight
    assert torch.equal(emb, random_b.embeddings.word_embeddings.weight)  # seeded
    assert not torch.allclose(emb, full.embeddings.word_embeddings.weight, atol=1e-2)  # not pretrained


def test_experiment_help_imports_no_torch():
    code = ("import sys\nfrom t2i.cli import main\n"
            "try:\n    main(['experiment', 'unet-sizes', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--compute" in r.stdout, r.stderr


def test_learning_rate_scaling_divides_by_how_much_wider_the_unet_is():
    from t2i.experiments.presets import EXPERIMENT_PRESETS
    from t2i.experiments.unet_sizes import UNetSizesConfig, scaled_lr

    assert scaled_lr(2e-3, (32, 64), (128, 256), "width") == pytest.approx(5e-4)
    assert scaled_lr(2e-3, (32, 64), (16, 32), "width") == pytest.approx(4e-3)
    assert scaled_lr(2e-3, (32, 64), (128, 256), "none") == 2e-3
    with pytest.raises(ValueError, match="learning-rate scaling 'sqrt'"):
        UNetSizesConfig(EXPERIMENT_PRESETS["tiny"](), ((16, 32),), lr_scaling="sqrt")


def test_runs_without_repa_keep_the_settings_key_they_had_before_repa_existed():
    from dataclasses import replace

    from t2i.experiments.presets import EXPERIMENT_PRESETS
    from t2i.experiments.runner import settings_key

    cfg = EXPERIMENT_PRESETS["corpus"]()
    assert cfg.generator.repa_weight == 0.5  # the recipe's, followed by the experiments
    with_repa = settings_key(cfg, cfg.generator)
    assert with_repa["generator"]["repa_weight"] == 0.5 and with_repa["generator"]["repa_target"] == "autoencoder"
    without = settings_key(cfg, replace(cfg.generator, repa_weight=0.0))
    assert "repa_weight" not in without["generator"] and "repa_target" not in without["generator"]
    assert {k: v for k, v in with_repa["generator"].items() if not k.startswith("repa_")} == without["generator"]


def test_runs_without_patch_masking_keep_the_model_fields_recorded_before_it_existed():
    from dataclasses import replace

    from t2i.experiments.presets import EXPERIMENT_PRESETS
    from t2i.experiments.runner import settings_key

    # The model fields of the keys of runs recorded before patch masking (read from such a run's result.json):
    # a new GeneratorConfig field must stay out of the key while it is off, or every finished run would retrain.
    recorded = {"attention_heads", "attention_levels", "backbone", "block_out_channels", "caption_dropout",
                "flow_logit_mean", "flow_logit_std", "layers_per_block", "min_snr_gamma", "norm_num_groups",
                "objective", "patch_size", "pooled_text_heads", "prediction_type", "schedule",
                "transformer_head_dim", "transformer_heads", "transformer_layers"}
    cfg = EXPERIMENT_PRESETS["corpus"]()
    assert set(settings_key(cfg, cfg.generator)["generator"]["model"]) == recorded
    masked = replace(cfg.generator, model=replace(cfg.generator.model, backbone="transformer", patch_mask_ratio=0.5))
    model = settings_key(cfg, masked)["generator"]["model"]
    assert set(model) == recorded | {"patch_mask_ratio", "patch_mixer_layers"} and model["patch_mask_ratio"] == 0.5


def test_a_folder_holding_a_run_from_before_repa_says_how_to_read_it_back(tmp_path):
    from dataclasses import replace

    from t2i.experiments.presets import EXPERIMENT_PRESETS
    from t2i.experiments.runner import RESULT_FILE, run_one, settings_key

    cfg = EXPERIMENT_PRESETS["tiny"]()
    plain = replace(cfg.generator, repa_weight=0.0)
    (tmp_path / RESULT_FILE).write_text(json.dumps({"settings_key": settings_key(cfg, plain)}))
    with pytest.raises(ValueError, match="trained without REPA: add --repa-weight 0 to read it back"):
        run_one(tmp_path, None, cfg, cfg.generator, describe={})
    assert run_one(tmp_path, None, cfg, plain, describe={"name": "x"})["name"] == "x"  # read back
    with pytest.raises(ValueError, match=r"other settings; use another --out"):  # other changes: no REPA hint
        run_one(tmp_path, None, cfg, replace(plain, eval_images=99), describe={})
    with pytest.raises(ValueError, match=r"other settings; use another --out"):  # REPA and more: no hint either
        run_one(tmp_path, None, cfg, replace(cfg.generator, eval_images=99), describe={})

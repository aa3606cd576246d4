"""The tokens variant: VQ autoencoder, GPT-2 token generator, sampling (KV cache, top-k/p, guidance, seeds),
re-ranking, previews, composition checks. Tiny real components trained once per session."""

import json

import numpy as np
import pytest
import torch

import t2i
from t2i.autoencoder.model import psnr
from t2i.data import ShapesConfig, load_tensors, scan_folder, write_shapes
from t2i.pipeline import CompositionError
from t2i.variants import compose_pipeline
from t2i.text import TextEncoderConfig
from t2i.tokens.model import TokenGeneratorConfig
from t2i.tokens.rerank import clip_scorer, palette_scorer
from t2i.tokens.sampling import (
    best_of,
    check_sampling_settings,
    filter_logits,
    guided_logits,
    sample_tokens,
    transformer_logits,
)
from t2i.tokens.train import TokensTrainConfig, train_tokens
from t2i.tokens.vq import VQConfig, codebook_usage, decode_indices, encode_indices
from t2i.tokens.vq_train import VQTrainConfig, train_vq
from t2i.training.trainer import TrainConfig

TINY_VQ = VQConfig(image_size=16, block_out_channels=(16, 32), codebook_size=64)  # 16 px → 8×8 tokens


def _vq_config(**kw):
    return VQTrainConfig(model=TINY_VQ, train=TrainConfig(steps=150, batch_size=16, lr=3e-3, warmup_steps=10),
                         held_out=32, **kw)


@pytest.fixture(scope="session")
def tokens_run(tmp_path_factory):
    """Shapes (16 px) → VQ (64 codes, 8×8 grid) → token generator (width 64, 2 layers) → tokens pipeline."""
    out = tmp_path_factory.mktemp("tokens")
    write_shapes(out / "data", ShapesConfig(n=256, size=16, seed=0))
    vq = train_vq(out / "data", out / "vq", _vq_config())
    cfg = TokensTrainConfig(model=TokenGeneratorConfig(width=64, layers=2, heads=2),
                            text=TextEncoderConfig(max_length=16),
                            train=TrainConfig(steps=80, batch_size=32, lr=3e-3, warmup_steps=10, ema_decay=0.99,
                                              log_every=10))
    gen = train_tokens(out / "data", out / "vq", out / "tokens", cfg)
    compose_pipeline(out / "tokens", out / "pipe")
    return out, vq, gen


@pytest.fixture(scope="session")
def tpipe(tokens_run):
    return t2i.load(tokens_run[0] / "pipe")


def _arr(images):
    return np.stack([np.asarray(i, dtype=np.int16) for i in images])


# -- VQ autoencoder -------------------------------------------------------------------------------


def test_vq_round_trip_is_close_and_uses_most_codes(tokens_run):
    out, vq_info, _ = tokens_run
    from diffusers import VQModel

    vq = VQModel.from_pretrained(out / "vq")
    held = vq_info["metrics"]["held_out_images"]  # the first images of the set, never trained on
    images = load_tensors(scan_folder(out / "data")[0][:held], 16)
    grids = encode_indices(vq, images)
    assert grids.shape == (held, 8, 8) and grids.dtype == torch.long
    db = psnr(decode_indices(vq, grids), images).mean().item()
    # Against the trivial reconstruction, every image replaced by the mean image (measured: 20.8 dB against
    # about 11): 5 dB above it is a margin no luck of a seed or a CPU's float order closes.
    mean_image = psnr(images.mean(0, keepdim=True).expand_as(images), images).mean().item()
    assert db > mean_image + 5, (db, mean_image)
    assert db == pytest.approx(vq_info["metrics"]["psnr_held_out"], abs=1e-3)
    usage = vq_info["metrics"]["codebook_usage_train"]
    assert usage["used_share"] > 0.8  # measured 0.97
    assert usage["perplexity"] > 20  # measured 29 of 64
    assert 0 <= vq_info["fill_code"] < 64


def test_dead_code_restarts_keep_more_codes_alive(tokens_run, tmp_path):
    out, with_restarts, _ = tokens_run
    without = train_vq(out / "data", tmp_path / "vq", _vq_config(reinit_every=0))
    a, b = with_restarts["metrics"]["codebook_usage_train"], without["metrics"]["codebook_usage_train"]
    assert a["perplexity"] > 1.5 * b["perplexity"]  # measured 29 vs 11
    assert without["metrics"]["codes_restarted"] == 0 and with_restarts["metrics"]["codes_restarted"] >= 64


def test_codebook_usage_counts_codes_and_perplexity():
    grids = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])
    usage = codebook_usage(grids, 8)
    assert usage["used_share"] == 0.5 and usage["codes_used"] == 4
    assert usage["perplexity"] == pytest.approx(4.0)  # four equally frequent codes


# -- token generator ------------------------------------------------------------------------------


def test_token_loss_falls_and_the_cache_is_reused(tokens_run):
    out, _, gen = tokens_run
    assert gen["losses"][-1] < gen["losses"][0] - 1.0  # measured 4.2 → 2.1 (uniform over 64 codes: 4.16)
    assert sorted(p.name.split("-")[0] for p in (out / "tokens" / "cache").iterdir()) == ["text", "tokens"]
    assert gen["vq"]["codebook_size"] == 64 and gen["grid_size"] == 8


# -- sampling: pure functions --------------------------------------------------------------------


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # top-p: the smallest set of most likely tokens whose mass reaches p
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.8)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.81)).tolist() == [[False, False, False, True]]
    assert not torch.isinf(filter_logits(logits, top_p=1.0)).any()
    shuffled = logits[:, [2, 0, 3, 1]]  # order in the vocabulary does not matter
    assert torch.isinf(filter_logits(shuffled, top_p=0.8)).tolist() == [[True, False, True, False]]


def test_sampling_draws_from_the_softmax():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    generators = [torch.Generator().manual_seed(s) for s in range(3000)]
    tokens = sample_tokens(lambda t: logits.expand(len(t), -1), 1, generators=generators)
    freq = torch.bincount(tokens.flatten(), minlength=3) / 3000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.03)  # 3 σ of a binomial at n = 3000
    hot = sample_tokens(lambda t: logits.expand(len(t), -1), 1, generators=generators, temperature=0.25)
    assert (hot == 0).float().mean() > 0.9  # p ∝ p^4: 0.94 for the first


def test_bad_sampling_settings_are_refused():
    for kwargs, message in (({"top_k": 0}, "top-k must be at least 1, got 0"),
                            ({"top_p": 0.0}, r"top-p must be in \(0, 1\], got 0.0"),
                            ({"top_p": 1.5}, r"top-p must be in \(0, 1\], got 1.5"),
                            ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
                            ({"temperature": -1.0}, "temperature must be > 0, got -1.0")):
        settings = {"temperature": 1.0, "top_k": None, "top_p": 1.0, **kwargs}
        with pytest.raises(ValueError, match=message):
            check_sampling_settings(**settings)


def test_guidance_formula_and_best_of():
    cond, uncond = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert torch.equal(guided_logits(cond, uncond, 1.0), cond)
    assert torch.allclose(guided_logits(cond, uncond, 3.0), uncond + 3 * (cond - uncond))
    assert best_of(torch.tensor([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]]), 2).tolist() == [[1, 2], [0, 2]]


# -- sampling on the trained model -----------------------------------------------------------------


def _tokens(tpipe, prompts, seeds, **kw):
    s = tpipe.request_tokens(prompts, None, 1, None, kw.pop("guidance", 3.0), seeds, None, None, None,
                        kw.pop("temperature", None), kw.pop("top_k", None), kw.pop("top_p", None), None)
    return tpipe.sample_tokens(s, **kw)


def test_kv_cache_gives_the_same_tokens_as_recomputing(tpipe):
    prompts = ["a red circle", "a blue square", "a small green triangle on the left", "a purple diamond"]
    cached = _tokens(tpipe, prompts, [0, 1, 2, 3], kv_cache=True)
    uncached = _tokens(tpipe, prompts, [0, 1, 2, 3], kv_cache=False)
    assert cached.shape == (4, 64)
    assert torch.equal(cached, uncached)
    assert len(set(map(tuple, cached.tolist()))) == 4  # and the four are different images


def test_top_k_one_is_greedy_and_deterministic(tpipe):
    a = _tokens(tpipe, ["a red circle"] * 2, [0, 1], top_k=1)
    b = _tokens(tpipe, ["a red circle"], [7], top_k=1)
    assert torch.equal(a[0], a[1]) and torch.equal(a[:1], b)  # seeds no longer matter
    # Independent greedy decoding: argmax of the full-prefix logits, guided, one token at a time.
    model, text = tpipe.transformer, tpipe.encode_prompts(["a red circle"])
    uncond = tpipe.encode_prompts([""])
    tokens = torch.empty(1, 0, dtype=torch.long)
    with torch.no_grad():
        for _ in range(64):
            inputs = torch.cat([torch.full((2, 1), model.bos), tokens.expand(2, -1)], dim=1)
            logits = model(inputs, torch.cat([uncond, text]))[:, -1, :64]
            guided = logits[0] + 3.0 * (logits[1] - logits[0])
            tokens = torch.cat([tokens, guided.argmax()[None, None]], dim=1)
    assert torch.equal(b, tokens)


def test_guidance_scale_one_equals_no_guidance(tpipe):
    prompts, seeds = ["a red circle", "a blue square"], [3, 4]
    text = tpipe.encode_prompts(prompts)
    generators = lambda: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    plain = sample_tokens(transformer_logits(tpipe.transformer, text), 64, generators=generators())
    # The guided path: one batched forward over [unconditional; conditional], combined at scale 1.
    guided = sample_tokens(transformer_logits(tpipe.transformer, text, uncond_text=tpipe.unconditional(("", "")),
                                              guidance=1.0), 64, generators=generators())
    assert torch.equal(plain, guided)
    strong = sample_tokens(transformer_logits(tpipe.transformer, text, uncond_text=tpipe.unconditional(("", "")),
                                              guidance=5.0), 64, generators=generators())
    assert not torch.equal(plain, strong)


def test_same_seed_same_image_at_any_batch_position(tpipe):
    alone = tpipe("a blue square", seed=[7])
    batch = tpipe(["a red circle", "a green diamond", "a blue square"], seed=[1, 2, 7])
    assert np.array_equal(_arr(alone), _arr(batch[2:]))
    assert np.abs(_arr(batch[:1]) - _arr(batch[2:])).max() > 10
    assert alone[0].size == (16, 16) and "Seed: 7," in alone[0].info["parameters"]


def test_reranking_keeps_the_best_scoring_candidates(tpipe):
    score = palette_scorer()
    kept = tpipe(["a red circle", "a blue square"], num_images=2, candidates=6, seed=10, scorer=score)
    drawn = tpipe(["a red circle", "a blue square"], num_images=6, seed=10)  # the same 12 candidates
    scores = score(drawn, ["a red circle"] * 6 + ["a blue square"] * 6).view(2, 6)
    assert len(kept) == 4
    for p in range(2):
        got = score(kept[2 * p : 2 * p + 2], [["a red circle", "a blue square"][p]] * 2)
        expected = scores[p].sort(descending=True).values[:2]
        assert torch.allclose(got, expected)  # the two best, best first
    assert scores.max(1).values.gt(scores.min(1).values).all()  # there was something to choose
    # Each kept image carries its own seed and is reproduced by it alone.
    seed = int(kept[0].info["parameters"].split("Seed: ")[1].split(",")[0])
    assert np.array_equal(_arr(kept[:1]), _arr(tpipe("a red circle", seed=[seed])))
    with pytest.raises(ValueError, match="needs a scoring function"):
        tpipe("a red circle", num_images=1, candidates=4, seed=0)


def test_clip_scorer_matches_clipmodel(tmp_path, tpipe):
    model, tokenizer = _tiny_clip(tmp_path / "clip")
    images = tpipe(["a red circle", "a blue square"], seed=0)
    prompts = ["a red circle", "a blue square"]
    scores = clip_scorer(tmp_path / "clip")(images, prompts)
    pixels = torch.from_numpy(_arr(images).astype(np.float32)).permute(0, 3, 1, 2) / 255  # 16 px: no resize
    mean, std = torch.tensor([0.48145466, 0.4578275, 0.40821073]), torch.tensor([0.26862954, 0.26130258, 0.27577711])
    text = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**text, pixel_values=(pixels - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    expected = out.logits_per_image.diagonal() / model.logit_scale.exp() * 100
    assert torch.allclose(scores, expected, atol=1e-4)


def test_stream_previews_the_grid_row_by_row(tpipe):
    events = list(tpipe.stream("a yellow triangle", seed=5, num_images=2))
    previews, final = events[:-1], events[-1]
    assert [e.step for e in previews] == list(range(1, 9)) and all(e.total == 8 for e in previews)
    assert final.final and len(final.images) == 2
    assert np.array_equal(_arr(previews[-1].images), _arr(final.images))  # the full grid is the result
    assert np.abs(_arr(previews[0].images) - _arr(final.images)).max() > 0  # one row written of eight


def test_bad_pipeline_settings_are_refused(tpipe):
    for kwargs, message in (({"top_k": 0}, "top-k must be at least 1"), ({"top_p": 2.0}, "top-p must be in"),
                            ({"temperature": 0}, "temperature must be > 0"),
                            ({"steps": 20}, "writes all 64 tokens of its 8×8 grid"),
                            ({"height": 32}, "height 32 is not 16"), ({"sampler": "ddim"}, "unknown sampler 'ddim'"),
                            ({"num_images": 3, "candidates": 2}, "cannot keep 3 images of 2 candidates")):
        with pytest.raises(ValueError, match=message):
            tpipe("a red circle", **kwargs)


# -- composition ----------------------------------------------------------------------------------


def test_compose_refuses_a_vq_of_another_vocabulary_or_grid(tokens_run, tmp_path):
    out, _, _ = tokens_run
    other = VQTrainConfig(model=VQConfig(image_size=16, block_out_channels=(16, 32, 32), codebook_size=32),
                          train=TrainConfig(steps=1, batch_size=8, warmup_steps=1), held_out=8)
    train_vq(out / "data", tmp_path / "vq", other)
    with pytest.raises(CompositionError) as e:
        compose_pipeline(out / "tokens", tmp_path / "pipe", autoencoder_dir=tmp_path / "vq")
    message = str(e.value)
    assert "writes 64 codes (vocabulary 64 + BOS), but the VQ autoencoder's codebook has 32" in message
    assert "writes a grid of 64 tokens (8×8), but the VQ autoencoder's grid is 4×4 = 16 tokens" in message
    assert "VQ autoencoder is not the one the token generator was trained with" in message
    assert not (tmp_path / "pipe").exists()


def test_tokens_pipeline_folder_describes_itself(tokens_run):
    folder = tokens_run[0] / "pipe"
    info = json.loads((folder / "t2i.json").read_text())
    assert info["variant"] == "tokens" and info["image_size"] == 16
    assert json.loads((folder / "transformer" / "config.json").read_text())["add_cross_attention"] is True
    assert json.loads((folder / "vqvae" / "config.json").read_text())["_class_name"] == "VQModel"
    assert not (folder / "model_index.json").exists()


# -- command line ---------------------------------------------------------------------------------


def _tiny_clip(folder):
    """A CLIPModel with random weights and MiniLM's tokenizer: real code paths, meaningless scores."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from t2i.text import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = CLIPConfig(text_config={"vocab_size": tokenizer.vocab_size, "hidden_size": 32, "intermediate_size": 64,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32},
                        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 16, "patch_size": 4},
                        projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def test_cli_trains_composes_and_generates_tokens(tokens_run, tmp_path, capsys):
    from PIL import Image

    from t2i.cli import main

    data = tokens_run[0] / "data"
    vq, tok, pipe, out = tmp_path / "vq", tmp_path / "tok", tmp_path / "pipe", tmp_path / "images"
    assert main(["train", "vq", "--data", str(data), "--out", str(vq), "--preset", "tiny", "--size", "16",
                 "--steps", "3", "--batch-size", "8"]) == 0
    assert "8×8 tokens of 64 codes" in capsys.readouterr().out
    assert main(["train", "tokens", "--data", str(data), "--vq", str(vq), "--out", str(tok), "--preset", "tiny",
                 "--steps", "3", "--batch-size", "8", "--pipeline-out", str(pipe)]) == 0
    assert main(["compose", "--generator", str(tok), "--out", str(tmp_path / "pipe2"), "--guidance", "2",
                 "--temperature", "0.8", "--top-k", "10"]) == 0
    defaults = json.loads((tmp_path / "pipe2" / "t2i.json").read_text())["defaults"]
    assert (defaults["guidance"], defaults["temperature"], defaults["top_k"]) == (2.0, 0.8, 10)
    assert main(["generate", "a red circle", "--model", str(pipe), "--n", "2", "--seed", "3", "--out", str(out),
                 "--preview", str(tmp_path / "p.gif"), "--top-p", "0.9"]) == 0
    params = Image.open(out / "a_red_circle_1.png").text["parameters"]
    assert "Seed: 4," in params and "Top-p: 0.9" in params and "Sampler: autoregressive" in params
    # a frame per row of tokens, then the result; PIL merges identical consecutive frames (last row = result)
    assert 2 <= Image.open(tmp_path / "p.gif").n_frames <= 9
    _tiny_clip(tmp_path / "clip")
    assert main(["generate", "a blue square", "--model", str(pipe), "--n", "1", "--candidates", "3", "--clip",
                 str(tmp_path / "clip"), "--seed", "0", "--out", str(tmp_path / "ranked")]) == 0
    assert len(list((tmp_path / "ranked").glob("a_blue_square_*.png"))) == 1

    capsys.readouterr()
    for args, message in (
        (["generate", "x", "--model", str(pipe), "--top-p", "1.5"], "top-p must be in (0, 1], got 1.5"),
        (["generate", "x", "--model", str(pipe), "--temperature", "0"], "temperature must be > 0, got 0.0"),
        (["generate", "x", "--model", str(pipe), "--candidates", "4"], "--candidates needs --clip DIR"),
        (["compose", "--generator", str(tok), "--out", str(tmp_path / "p3"), "--steps", "20"],
         "a tokens pipeline writes one token per step"),
        (["compose", "--generator", str(tok), "--out", str(tmp_path / "p3"), "--autoencoder",
          str(tokens_run[0] / "vq")], "VQ autoencoder is not the one the token generator was trained with"),
        (["train", "tokens", "--data", str(data), "--vq", str(tok), "--out", str(tmp_path / "t2")],
         "holds a 'generator' component, not 'vq'"),
    ):
        assert main(args) == 1, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "p3").exists() and not (tmp_path / "t2").exists()


def test_token_flags_are_refused_for_a_latent_pipeline(pipeline_dir, tmp_path, capsys):
    from t2i.cli import main

    assert main(["generate", "x", "--model", str(pipeline_dir), "--top-k", "5", "--out", str(tmp_path)]) == 1
    assert "--top-k apply to tokens pipelines; " in capsys.readouterr().err


def test_stopped_and_resumed_runs_end_with_the_same_weights(tokens_run, tmp_path):
    """Checkpoints hold the dead-code bookkeeping (restarts every 2 passes here) and the tied GPT-2 weights."""
    from safetensors.torch import load_file

    out = tokens_run[0]

    def vq_cfg(stop_at=0):
        return VQTrainConfig(model=TINY_VQ, reinit_every=2, held_out=8,
                             train=TrainConfig(steps=6, batch_size=8, warmup_steps=1, checkpoint_every=2, stop_at=stop_at))

    def tok_cfg(stop_at=0):
        return TokensTrainConfig(model=TokenGeneratorConfig(width=32, layers=1, heads=2), text=TextEncoderConfig(max_length=16),
                                 train=TrainConfig(steps=4, batch_size=8, warmup_steps=1, ema_decay=0.9,
                                                   checkpoint_every=2, stop_at=stop_at))

    whole = train_vq(out / "data", tmp_path / "vq1", vq_cfg())
    assert train_vq(out / "data", tmp_path / "vq2", vq_cfg(stop_at=4))["stopped"] == "stop_at=4"
    again = train_vq(out / "data", tmp_path / "vq2", vq_cfg(), resume=True)
    assert whole["metrics"]["codes_restarted"] == again["metrics"]["codes_restarted"] > 64  # restarts after the start
    a, b = load_file(tmp_path / "vq1" / "diffusion_pytorch_model.safetensors"), load_file(
        tmp_path / "vq2" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    cache = out / "tokens" / "cache"
    train_tokens(out / "data", out / "vq", tmp_path / "t1", tok_cfg(), cache_dir=cache)
    assert "stopped" in train_tokens(out / "data", out / "vq", tmp_path / "t2", tok_cfg(stop_at=2), cache_dir=cache)
    train_tokens(out / "data", out / "vq", tmp_path / "t2", tok_cfg(), cache_dir=cache, resume=True)
    a, b = load_file(tmp_path / "t1" / "model.safetensors"), load_file(tmp_path / "t2" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

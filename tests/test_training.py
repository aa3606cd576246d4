"""The trainer's promises: checkpoints survive SIGKILL and full disks, resume is exact, faults are handled,
and nothing pickled runs code. Tiny real models on CPU; the trainer and checkpoint code are never mocked."""

import json
import multiprocessing
import os
import pickle
import random
import resource
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from t2i.training.batches import RandomBatches, random_batches, sample_randn
from t2i.training.checkpoint import CheckpointError, latest_checkpoint, load_torch_state, save_checkpoint
from t2i.training.faults import TrainingDiverged
from t2i.training.trainer import TrainConfig, train


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))


def denoising_loss(model, batch, generator):
    x = batch["x"]
    return (model(x + 0.1 * sample_randn(x.shape, generator)) - x).pow(2).mean()


DATA = {"x": torch.randn(40, 4, generator=torch.Generator().manual_seed(1))}


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# -- batches ---------------------------------------------------------------------------------------------

def test_random_batches_resume_mid_epoch_and_split_across_ranks():
    full = random_batches({"i": torch.arange(20)}, 6, seed=3)
    expected = [next(full)["i"] for _ in range(9)]  # 3 batches per epoch (the ragged tail is dropped): 3 epochs
    assert all(len(set(torch.cat(expected[e * 3 : e * 3 + 3]).tolist())) == 18 for e in range(3))  # no repeats
    first = random_batches({"i": torch.arange(20)}, 6, seed=3)
    for _ in range(4):
        next(first)
    resumed = random_batches({"i": torch.arange(20)}, 6, seed=3)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert all(torch.equal(next(resumed)["i"], e) for e in expected[4:])
    ranks = [random_batches({"i": torch.arange(20)}, 6, seed=3).shard(r, 2) for r in range(2)]
    for e in expected[:5]:  # each rank takes its half of every global batch
        assert torch.equal(torch.cat([next(r)["i"] for r in ranks]), e)


# -- checkpoints -----------------------------------------------------------------------------------------

def _write_forever(root: str, first_step: int) -> None:
    """Child process: checkpoints with weights all equal to the step number, as fast as the disk allows."""
    torch.set_num_threads(1)
    model = nn.Linear(256, 256)
    for step in range(first_step, first_step + 10_000):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(step)
        files = {"model.safetensors": lambda p: save_model(model, str(p)),
                 "state.json": lambda p, s=step: p.write_text(json.dumps({"step": s}))}
        save_checkpoint(root, step, files, keep=2)


def test_sigkill_at_random_moments_during_checkpoint_writes_always_leaves_a_loadable_latest(tmp_path):
    fork = multiprocessing.get_context("fork")  # torch is already imported: a fork starts in milliseconds
    rng = random.Random(0)
    step, partial_seen, kills = 1, 0, 0
    # At least 20 kills, and on until 5 of them landed in the middle of a write (the share that does depends on
    # the disk and the load: 4 of the first 20 on one run); 200 kills without 5 such would say writes are not
    # being interrupted at all.
    while kills < 20 or (partial_seen < 5 and kills < 200):
        kills += 1
        child = fork.Process(target=_write_forever, args=(str(tmp_path), step))
        child.start()
        deadline = time.monotonic() + 60
        while latest_checkpoint(tmp_path) is None:  # the first child: wait for its first checkpoint
            assert child.is_alive() and time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.1))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        partial_seen += any(p.name.startswith(".partial-") for p in tmp_path.iterdir())
        latest = latest_checkpoint(tmp_path)
        saved = json.loads((latest / "state.json").read_text())["step"]
        model = nn.Linear(256, 256)
        load_model(model, str(latest / "model.safetensors"))
        assert torch.all(model.weight == saved) and torch.all(model.bias == saved)  # complete and consistent
        assert saved >= step - 1
        step = saved + 1
    assert partial_seen >= 5  # the kills did land in the middle of writes
    # Checkpoints renamed into place just before a kill, and never pointed to, go at the next complete save.
    save_checkpoint(tmp_path, step, {"state.json": lambda p: p.write_text(json.dumps({"step": step}))}, keep=2)
    assert len(list(tmp_path.glob("step-*"))) == 2 and not list(tmp_path.glob(".*"))


def test_a_failed_write_keeps_the_previous_checkpoint_and_says_what_happened(tmp_path):
    small = nn.Linear(2, 2)
    save_checkpoint(tmp_path, 1, {"model.safetensors": lambda p: save_model(small, str(p))})
    big = nn.Linear(512, 512)  # 1 MB of weights: over the file size limit below, as on a full disk
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    try:
        with pytest.raises(CheckpointError, match=r"could not write checkpoint for step 2 .*File too large.*"
                                                  r"step-000000001 is intact"):
            save_checkpoint(tmp_path, 2, {"model.safetensors": lambda p: save_model(big, str(p))})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert latest_checkpoint(tmp_path).name == "step-000000001"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000000001"]  # nothing half-written
    load_model(nn.Linear(2, 2), str(tmp_path / "step-000000001" / "model.safetensors"))


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file: code execution
        return (Path.touch, (self.marker,))


def test_a_pickle_that_runs_code_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Payload(marker)}, tmp_path / "optimizer.pt")
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"scheduler": _Payload(marker)}, protocol=2))
    for name in ("optimizer.pt", "legacy.pt"):
        with pytest.raises(CheckpointError, match="is not a plain training state"):
            load_torch_state(tmp_path / name)
    assert not marker.exists()

    # The same file inside a real checkpoint: resuming refuses it, and the payload still never runs.
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2)
    train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path / "run")
    latest = latest_checkpoint(tmp_path / "run" / "checkpoints")
    torch.save({"optimizer": _Payload(marker)}, latest / "optimizer.pt")
    with pytest.raises(CheckpointError, match="optimizer.pt is not a plain training state"):
        train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path / "run", resume=True)
    assert not marker.exists()
    (latest / "model.safetensors").write_bytes(b"\x00" * 64)  # a weights file that is not what it claims
    with pytest.raises(CheckpointError, match="cannot load weights from .*model.safetensors"):
        train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path / "run", resume=True)


# -- resume and faults in the trainer ----------------------------------------------------------------------

def test_stop_and_resume_equals_an_uninterrupted_run_with_accumulation_and_ema(tmp_path):
    cfg = TrainConfig(steps=10, batch_size=8, grad_accum=2, lr=1e-2, warmup_steps=2, ema_decay=0.9, log_every=2,
                      checkpoint_every=3)
    whole = tiny_model()
    r_whole = train(whole, denoising_loss, random_batches(DATA, 4, seed=1), cfg, log_dir=tmp_path / "whole")
    part = tiny_model()
    stop_at_5 = TrainConfig(**{**cfg.__dict__, "stop_at": 5})
    stopped = train(part, denoising_loss, random_batches(DATA, 4, seed=1), stop_at_5, log_dir=tmp_path / "part")
    assert stopped.stopped == "stop_at=5" and stopped.checkpoint.name == "step-000000005"
    part = tiny_model()  # a fresh process would start from fresh weights: the checkpoint must hold everything
    r_part = train(part, denoising_loss, random_batches(DATA, 4, seed=1), cfg, log_dir=tmp_path / "part", resume=True)
    assert r_part.start_step == 5
    assert state_equal(whole, part) and state_equal(r_whole.ema, r_part.ema)  # bitwise
    assert r_part.losses == r_whole.losses and r_part.final_loss == r_whole.final_loss

    def rows(name):  # the log of the resumed run, without wall-clock seconds
        return [line.rsplit(",", 1)[0] for line in (tmp_path / name / "log.csv").read_text().splitlines()]

    assert rows("part") == rows("whole")


def test_a_nan_batch_is_skipped_without_update_and_logged_with_its_sample_names(tmp_path):
    data = {"x": DATA["x"].clone()}
    data["x"][13] = float("nan")
    names = [f"sample-{i}" for i in range(40)]
    batches = random_batches(data, 8, seed=0, names=names)
    snapshots = []
    model = tiny_model()
    cfg = TrainConfig(steps=10, batch_size=8, warmup_steps=1, log_every=1)
    result = train(model, denoising_loss, batches, cfg, log_dir=tmp_path,
                   on_log=lambda step, loss: snapshots.append((loss, [p.clone() for p in model.parameters()])))
    faults = [json.loads(line) for line in (tmp_path / "faults.jsonl").read_text().splitlines()]
    assert result.skipped_steps == len(faults) == 2  # 10 batches of 8 from 40 rows: row 13 is in two of them
    for fault in faults:
        assert "sample-13" in fault["samples"] and len(fault["samples"]) == 8
        i = fault["step"] - 1
        assert snapshots[i][0] != snapshots[i][0]  # the skipped step logged no finite loss
        assert all(torch.equal(a, b) for a, b in zip(snapshots[i][1], snapshots[i - 1][1]))  # and changed nothing
    assert all(torch.isfinite(p).all() for p in model.parameters())


def nan_from_call(first: int):
    """`denoising_loss`, but NaN from its `first`-th call on (every later step diverges)."""
    calls = {"n": 0}

    def diverging_loss(model, batch, generator):
        calls["n"] += 1
        loss = denoising_loss(model, batch, generator)
        return loss * float("nan") if calls["n"] >= first else loss

    return diverging_loss


def test_nan_losses_in_a_row_roll_back_then_stop_with_a_clear_error(tmp_path):
    diverging_loss = nan_from_call(5)

    cfg = TrainConfig(steps=20, batch_size=8, warmup_steps=1, checkpoint_every=2, max_nonfinite_in_row=2,
                      max_rollbacks=2)
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+: 2 non-finite losses in a row, after 2 rollback"):
        train(tiny_model(), diverging_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path)
    events = [json.loads(line)["event"] for line in (tmp_path / "faults.jsonl").read_text().splitlines()]
    assert events.count("rolled back") == 2
    assert events.count("non-finite loss: step skipped, no update") == 6
    with pytest.raises(TrainingDiverged, match="no checkpoint to roll back to"):
        train(tiny_model(), diverging_loss, random_batches(DATA, 8, seed=0),
              TrainConfig(steps=20, batch_size=8, warmup_steps=1, max_nonfinite_in_row=2))


def test_resume_refuses_changed_data_and_batch_size_unless_the_data_position_is_reset(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2)
    run = tmp_path / "run"
    train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), TrainConfig(**{**cfg.__dict__, "stop_at": 2}),
          log_dir=run, data_fingerprint="aaaa")
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=run, data_fingerprint="aaaa")
    with pytest.raises(ValueError, match=r"data_fingerprint aaaa → bbbb.*--reset-data-position"):
        train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=run, resume=True,
              data_fingerprint="bbbb")
    with pytest.raises(ValueError, match=r"batch_size 8 → 4"):
        train(tiny_model(), denoising_loss, random_batches(DATA, 4, seed=0),
              TrainConfig(**{**cfg.__dict__, "batch_size": 4}), log_dir=run, resume=True, data_fingerprint="aaaa")
    result = train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=run, resume=True,
                   data_fingerprint="bbbb", reset_data_position=True)
    assert result.start_step == 2 and result.last_step == 4
    assert json.loads((result.checkpoint / "state.json").read_text())["data_fingerprint"] == "bbbb"


def test_batches_must_be_resumable_to_be_split():
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        RandomBatches(DATA, 8, seed=0).shard(0, 3)


def test_resume_from_an_older_checkpoint_replays_the_same_steps(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2, keep_checkpoints=3)
    first = tiny_model()
    train(first, denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path)
    again = tiny_model()
    result = train(again, denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path,
                   resume=tmp_path / "checkpoints" / "step-000000002")
    assert result.start_step == 2 and state_equal(first, again)
    assert result.checkpoint.name == "step-000000004-1"  # the original step-4 checkpoint is not overwritten
    assert latest_checkpoint(tmp_path / "checkpoints") == result.checkpoint


# -- stop signals, resume edge cases, default limits, bf16 ---------------------------------------------------

@pytest.fixture
def interactive_sigint():
    """Ctrl-C as an interactive shell delivers it (Python's default handler), whatever this process inherited: a
    job started in the background by a non-interactive shell (`cmd &`, as some CI runners do) ignores SIGINT."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def _signal_at(step: int, *signals):
    """An on_log callback that sends this process `signals` when step `step` is logged (as a shell's Ctrl-C or
    a scheduler's SIGTERM would); the handler runs in the main thread right after os.kill returns."""
    def on_log(s, loss):
        if s == step:
            for sig in signals:
                os.kill(os.getpid(), sig)
    return on_log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_checkpoints_the_step_and_resume_equals_an_uninterrupted_run_bitwise(tmp_path, sig,
                                                                                           interactive_sigint):
    cfg = TrainConfig(steps=8, batch_size=8, lr=1e-2, warmup_steps=2, ema_decay=0.9, log_every=1, checkpoint_every=100)
    whole = tiny_model()
    r_whole = train(whole, denoising_loss, random_batches(DATA, 8, seed=1), cfg, log_dir=tmp_path / "whole")
    stopped = train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=1), cfg, log_dir=tmp_path / "part",
                    on_log=_signal_at(3, sig))
    assert stopped.stopped == sig.name and stopped.last_step == 3
    assert stopped.checkpoint.name == "step-000000003"  # written on the signal (none was due before step 100)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are given back
    part = tiny_model()
    r_part = train(part, denoising_loss, random_batches(DATA, 8, seed=1), cfg, log_dir=tmp_path / "part", resume=True)
    assert r_part.start_step == 3
    assert state_equal(whole, part) and state_equal(r_whole.ema, r_part.ema)
    assert r_part.losses == r_whole.losses


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path, interactive_sigint):
    cfg = TrainConfig(steps=8, batch_size=8, warmup_steps=1, log_every=1, checkpoint_every=100)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=1), cfg, log_dir=tmp_path,
              on_log=_signal_at(3, signal.SIGINT, signal.SIGINT))
    assert latest_checkpoint(tmp_path / "checkpoints") is None  # not the step-3 checkpoint a single Ctrl-C writes
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_with_no_checkpoint_yet_starts_at_step_0_like_a_fresh_run(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2)
    fresh, resumed = tiny_model(), tiny_model()
    r_fresh = train(fresh, denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path / "fresh")
    r_resumed = train(resumed, denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path / "new",
                      resume=True)
    assert r_resumed.start_step == 0 and r_resumed.last_step == 4
    assert state_equal(fresh, resumed) and r_resumed.losses == r_fresh.losses


def test_resume_refuses_a_changed_accumulation_or_process_count(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2)
    train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), TrainConfig(**{**cfg.__dict__, "stop_at": 2}),
          log_dir=tmp_path)
    with pytest.raises(ValueError, match=r"cannot resume from .*grad_accum 1 → 2.*--reset-data-position"):
        train(tiny_model(), denoising_loss, random_batches(DATA, 4, seed=0),
              TrainConfig(**{**cfg.__dict__, "grad_accum": 2}), log_dir=tmp_path, resume=True)
    # A checkpoint written by 2 processes, resumed by 1 (test_resume.py does it for real under torchrun).
    state = tmp_path / "checkpoints" / "step-000000002" / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "world_size": 2}))
    with pytest.raises(ValueError, match=r"world_size 2 → 1"):
        train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path, resume=True)


def test_the_default_fault_limits_roll_back_after_5_nonfinite_losses_and_stop_after_3_rollbacks(tmp_path):
    diverging_loss = nan_from_call(5)

    cfg = TrainConfig(steps=100, batch_size=8, warmup_steps=1, checkpoint_every=2)  # the default limits
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+: 5 non-finite losses in a row, after 3 rollbacks"):
        train(tiny_model(), diverging_loss, random_batches(DATA, 8, seed=0), cfg, log_dir=tmp_path)
    events = [json.loads(line) for line in (tmp_path / "faults.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == (["non-finite loss: step skipped, no update"] * 5 + ["rolled back"]) * 3 \
        + ["non-finite loss: step skipped, no update"] * 5


def test_bf16_training_autocasts_the_forward_and_keeps_float32_weights(tmp_path):
    """mixed_precision="bf16" on the CPU: step 1's loss is the loss computed under torch.autocast(bfloat16)
    by hand (and not the float32 one), the weights stay float32 and finite, the loss falls, and the run is
    reproducible bitwise."""
    cfg = TrainConfig(steps=30, batch_size=8, lr=1e-2, warmup_steps=2, log_every=1, mixed_precision="bf16")
    logged = []
    model = tiny_model()
    result = train(model, denoising_loss, random_batches(DATA, 8, seed=0), cfg,
                   on_log=lambda step, loss: logged.append(loss))
    batch = next(random_batches(DATA, 8, seed=0))
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            by_hand = denoising_loss(tiny_model(), batch, torch.Generator().manual_seed(cfg.seed)).float().item()
        in_float32 = denoising_loss(tiny_model(), batch, torch.Generator().manual_seed(cfg.seed)).item()
    assert logged[0] == pytest.approx(by_hand, rel=1e-6) and logged[0] != pytest.approx(in_float32, rel=1e-4)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert sum(logged[-5:]) < 0.5 * sum(logged[:5])
    again = tiny_model()
    train(again, denoising_loss, random_batches(DATA, 8, seed=0), cfg)
    assert state_equal(model, again) and result.steps == 30


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_trains_in_bf16_only_where_the_cpu_computes_it(monkeypatch, native):
    """mixed_precision="auto" (what library callers may pass, as the CLI's --mixed-precision auto): step 1's loss
    is the bfloat16 autocast one on a CPU with native bfloat16, the float32 one elsewhere; an unknown setting is
    refused before anything trains."""
    import t2i.hardware

    monkeypatch.setattr(t2i.hardware, "native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = TrainConfig(steps=1, batch_size=8, lr=1e-2, warmup_steps=1, log_every=1, mixed_precision="auto")
    logged = []
    train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0), cfg,
          on_log=lambda step, loss: logged.append(loss))
    batch = next(random_batches(DATA, 8, seed=0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=native):
        wanted = denoising_loss(tiny_model(), batch, torch.Generator().manual_seed(cfg.seed)).float().item()
    assert logged[0] == pytest.approx(wanted, rel=1e-6)
    with pytest.raises(ValueError, match="unknown mixed precision 'bf32'"):
        train(tiny_model(), denoising_loss, random_batches(DATA, 8, seed=0),
              TrainConfig(steps=1, batch_size=8, mixed_precision="bf32"))

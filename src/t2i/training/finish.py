"""The end of every component's training, in one place: a stopped run writes nothing and says where to resume;
in a multi-process run only rank 0 saves; the saved component gets its `t2i_component.json`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from t2i.components import write_component_info
from t2i.training.trainer import TrainResult


def finish_training(result: TrainResult, component: str, out_dir: str | Path, save: Callable[[], dict]) -> dict:
    """After `train`: {"stopped", "step", "checkpoint"} for a run stopped by a signal (resume from there);
    {"component", "is_main_process": False} on ranks > 0; else `save()`, which writes the weights and returns
    the component's record, written as its t2i_component.json and returned."""
    if result.stopped:
        return {"stopped": result.stopped, "step": result.last_step, "checkpoint": str(result.checkpoint)}
    if not result.is_main_process:
        return {"component": component, "is_main_process": False}
    info = save()
    write_component_info(out_dir, info)
    return info

"""Samplers for a flow-matching (rectified flow) generator: pure functions with one signature.

    sample_flow_X(denoise, x, sigmas, *, generators=None, callback=None) -> x0

- `denoise(x_t (B, C, H, W), t (B,) float in [0, 1]) -> x0_hat` (a `FlowDenoiser`, or `guided(...)` around one);
- `x` is x_1, unit Gaussian (see `per_image_randn`): on the path x_t = (1−t)·x0 + t·ε, t = 1 is pure noise;
- `sigmas` are the times visited, strictly decreasing from ≤ 1, ending at 0 (`flow_sigmas`);
- `generators`: accepted for the common signature; these samplers are deterministic and draw no noise;
- `callback(step_index, x_t, x0_hat)` is called once per step (for previews).

The ODE is dx/dt = v(x, t) = (x − x0_hat)/t. No object keeps a step counter between calls.
"""

from typing import Callable, Sequence

import numpy as np
import torch

from t2i.sampling.samplers import Callback, Denoise

FLOW_SCHEDULER = "FlowMatchEulerDiscreteScheduler"  # the diffusers scheduler class a flow pipeline folder names


def flow_sigmas(steps: int, num_train_timesteps: int = 1000, shift: float = 1.0) -> torch.Tensor:
    """The `steps` times a flow sampler visits, then 0: float64 (steps + 1,), decreasing.

    As diffusers' `FlowMatchEulerDiscreteScheduler.set_timesteps` defines them (so its pipeline and ours walk the
    same grid): t = linspace(1, 1/N, steps), shifted t' = shift·t / (1 + (shift − 1)·t) (SD3's resolution shift,
    Esser et al. 2024, eq. 23; 1 = none), then 0.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    t = np.linspace(1.0, 1.0 / num_train_timesteps, steps)
    t = shift * t / (1 + (shift - 1) * t)
    return torch.from_numpy(np.append(t, 0.0))


def flow_scheduler_config(num_train_timesteps: int = 1000, shift: float = 1.0) -> dict:
    """scheduler_config.json for diffusers' `FlowMatchEulerDiscreteScheduler` walking `flow_sigmas`."""
    return {"_class_name": FLOW_SCHEDULER, "num_train_timesteps": num_train_timesteps, "shift": shift,
            "use_dynamic_shifting": False, "use_karras_sigmas": False, "use_exponential_sigmas": False,
            "use_beta_sigmas": False, "invert_sigmas": False, "shift_terminal": None, "stochastic_sampling": False}


def _check(x: torch.Tensor, sigmas, generators) -> list[float]:
    ts = [float(t) for t in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)]
    if len(ts) < 2:
        raise ValueError(f"sigmas must hold at least one step and the final 0, got {ts}")
    if any(a <= b for a, b in zip(ts, ts[1:])) or ts[0] > 1 or ts[-1] != 0:
        raise ValueError(f"sigmas must strictly decrease from at most 1 to 0, got {ts}")
    if generators is not None and len(generators) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} samples, but {len(generators)} generators")
    return ts


def _t(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.float32, device=x.device)  # (B,)


def sample_flow_euler(denoise: Denoise, x: torch.Tensor, sigmas, *,
                      generators: Sequence[torch.Generator] | None = None,
                      callback: Callback | None = None) -> torch.Tensor:
    """Euler steps on the rectified-flow ODE dx/dt = v (Liu et al. 2022, "Flow Straight and Fast"; the sampler of
    Esser et al. 2024, SD3), as diffusers' `FlowMatchEulerDiscreteScheduler` takes them: x_s = x_t + (s − t)·v.

    With v = (x_t − x0_hat)/t this is x_s = x0_hat + (s/t)·(x_t − x0_hat), written so to avoid dividing by a
    small t; the last step (s = 0) returns x0_hat.
    """
    ts = _check(x, sigmas, generators)
    for i, (t, s) in enumerate(zip(ts, ts[1:])):
        x0 = denoise(x, _t(x, t))
        if callback is not None:
            callback(i, x, x0)
        x = x0 + (s / t) * (x - x0)
    return x


def sample_flow_heun(denoise: Denoise, x: torch.Tensor, sigmas, *,
                     generators: Sequence[torch.Generator] | None = None,
                     callback: Callback | None = None) -> torch.Tensor:
    """Implements Algorithm 1 (Heun's 2nd-order method, deterministic) of Karras et al. (2022), "Elucidating the
    Design Space", on the rectified-flow ODE dx/dt = v = (x − x0_hat)/t.

    Each step t → s takes an Euler step, re-evaluates v there and averages the two slopes; the last step (to
    s = 0) is plain Euler (v at t = 0 is undefined), so `len(sigmas) − 1` steps cost 2·steps − 1 evaluations.
    The callback sees each step's first evaluation.
    """
    ts = _check(x, sigmas, generators)
    for i, (t, s) in enumerate(zip(ts, ts[1:])):
        x0 = denoise(x, _t(x, t))
        if callback is not None:
            callback(i, x, x0)
        v = (x - x0) / t
        x_euler = x0 + (s / t) * (x - x0)  # = x + (s − t)·v
        if s == 0:
            x = x_euler
            continue
        v_s = (x_euler - denoise(x_euler, _t(x, s))) / s
        x = x + (s - t) * 0.5 * (v + v_s)
    return x


FLOW_SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "flow_euler": sample_flow_euler,
    "flow_heun": sample_flow_heun,
}


def get_flow_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler called `name` in `FLOW_SAMPLERS`."""
    if name not in FLOW_SAMPLERS:
        raise ValueError(f"unknown flow sampler {name!r}; choose from {', '.join(FLOW_SAMPLERS)}")
    return FLOW_SAMPLERS[name]

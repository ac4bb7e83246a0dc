"""Device, precision, seeding and signal plumbing shared by training and evaluation."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import torch

from engine.errors import ConfigError
from engine.stop import StopRequest, install_stop_handlers, restore_stop_handlers  # noqa: F401 - their old home


def pick_device(name: str) -> torch.device:
    """`auto` picks CUDA when available; an unavailable CUDA request is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"train.device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available on this machine")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision on a device; CPU runs in fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """An autocast context, or a no-op when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed python, torch (CPU and CUDA) and set the cuDNN / determinism flags."""
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # also off again for the next run; set only on a change: the call imports torch._inductor (~5 s per start)
    if (torch.are_deterministic_algorithms_enabled() != deterministic
            or (deterministic and not torch.is_deterministic_algorithms_warn_only_enabled())):
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def configure_cpu_threads(threads: int | None, device: torch.device) -> None:
    """Torch's CPU thread count for a CPU run. One core is left free by default: with every core in use, a busy
    neighbour process stalls each parallel region (tiny models then ran 30x slower on 2 cores)."""
    if device.type != "cpu":
        return
    torch.set_num_threads(threads if threads and threads > 0 else max(1, (os.cpu_count() or 1) - 1))


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every global RNG state, as tensors/ints (loadable with weights_only=True)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": repr(random.getstate())}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        import ast

        random.setstate(_to_tuple(ast.literal_eval(state["python"])))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_to_tuple(v) for v in value)
    return value


def gpu_memory_mb(device: torch.device) -> float | None:
    """Peak allocated GPU memory in MiB since the last reset, or None on CPU."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)

"""Multi-process data parallel training (DDP through torchrun): process group, rank facts, collectives.

`torchrun --nproc_per_node N -m console.cli train EXP` (or `imgcls-console train EXP --nproc N`) starts N
processes; rank 0 owns the run folder, events, checkpoints and status; every rank trains on its shard.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from engine.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def from_environment() -> Dist:
    """The rank facts torchrun puts in the environment (a single process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: Dist, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    if not info.enabled:
        return device
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"{info.world_size} processes on CUDA need a GPU each; this machine has "
                              f"{torch.cuda.device_count()} (use --set train.device=cpu for gloo on the CPU)")
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown(info: Dist) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(batch_size: int, info: Dist) -> int:
    """`train.batch_size` is global: each of N ranks takes batch_size / N."""
    if batch_size % info.world_size:
        raise ConfigError(f"train.batch_size: {batch_size} does not split evenly over {info.world_size} processes")
    return batch_size // info.world_size


def all_sum(tensor: torch.Tensor, info: Dist) -> torch.Tensor:
    """Sum a tensor over ranks (in place); identity for one process."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, info: Dist, device: torch.device) -> bool:
    """True when the flag is set on any rank (all ranks get the same answer)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast(value: Any, info: Dist) -> Any:
    """Rank 0's value on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, info: Dist) -> list[Any]:
    """Every rank's value, on every rank, in rank order."""
    if not info.enabled:
        return [value]
    values: list[Any] = [None] * info.world_size
    dist.all_gather_object(values, value)
    return values


def wrap(model: torch.nn.Module, info: Dist, device: torch.device, *, partly_frozen: bool = False) -> torch.nn.Module:
    """DistributedDataParallel around the model when running in a group; `partly_frozen` when some parameters
    get no gradient in some epochs (backbone freezing), which DDP must be told."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=partly_frozen)

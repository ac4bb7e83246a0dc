"""Multi-process data parallel training (DDP through torchrun): process group, rank facts, collectives.

`torchrun --nproc_per_node N -m console.cli train EXP` (or `imgcls-console train EXP --nproc N`) starts N
processes; rank 0 owns the run folder, events, checkpoints and status; every rank trains on its shard. Across
machines (`--nnodes M --node-rank R --rdzv-endpoint HOST:PORT` on each), torchrun's static rendezvous numbers the
ranks node by node, so global rank 0, the run folder's owner, is always on the node with `--node-rank 0`.
"""

from __future__ import annotations

import os
import sys
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


@dataclass(frozen=True)
class Nodes:
    """The machines of one job as torchrun is told them: how many, this one's rank, where they meet."""

    count: int = 1
    rank: int = 0
    endpoint: str | None = None  # HOST:PORT of the node with rank 0 (its torchrun listens there)


ONE_NODE = Nodes()


def check_nodes(count: int, rank: int, endpoint: str | None) -> Nodes:
    """The multi-node options checked together; a ConfigError names the option that does not fit."""
    if count < 1:
        raise ConfigError(f"--nnodes {count}: expected 1 or more machines")
    if count == 1 and (rank or endpoint):
        given = f"--node-rank {rank}" if rank else f"--rdzv-endpoint {endpoint}"
        raise ConfigError(f"{given} is for a run across machines; add --nnodes N (N > 1) on every machine")
    if not 0 <= rank < count:
        raise ConfigError(f"--node-rank {rank}: expected 0 to {count - 1} for --nnodes {count} (0 on the machine "
                          "at --rdzv-endpoint)")
    if count > 1 and not endpoint:
        raise ConfigError(f"--nnodes {count} needs --rdzv-endpoint HOST:PORT: the address of the machine with "
                          "--node-rank 0 and a free port on it, the same on every machine")
    if endpoint is not None:
        host, colon, port = endpoint.rpartition(":")
        if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"--rdzv-endpoint {endpoint!r}: expected HOST:PORT, e.g. node01:29500")
    return Nodes(count, rank, endpoint)


def torchrun_command(nproc: int, nodes: Nodes, module_args: list[str]) -> list[str]:
    """The torchrun command line that runs `python -m <module_args>` in `nproc` processes on this machine: one
    machine alone (`--standalone`), or this machine's part of a job across `nodes` (static rendezvous: the ranks
    follow the node ranks, and global rank 0 is on node 0)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nodes.count == 1:
        command.append("--standalone")
    else:
        command += [f"--nnodes={nodes.count}", f"--node-rank={nodes.rank}", "--rdzv-backend=static",
                    f"--rdzv-endpoint={nodes.endpoint}"]
    return [*command, "-m", *module_args]


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


def finish_together(info: Dist) -> None:
    """Wait until every rank has finished its run (rank 0 tests and writes the status while the others wait), so
    no rank leaves the group while another still uses it: a rank that left early aborted in gloo and took the
    whole job down with it."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


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

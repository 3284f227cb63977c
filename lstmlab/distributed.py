"""Training in several processes with torch's DistributedDataParallel: the process group and
what the trainer (`lstmlab.train.Trainer`) exchanges through it.

    world = join("cpu")                     # under torchrun: RANK, WORLD_SIZE, MASTER_ADDR, ... set
    trainer = Trainer(config, "runs/a", world=world)

A `World` is this process's place in the run: its rank, the number of processes and the
torch.distributed backend (gloo on the CPU, nccl on CUDA, one device per process). A run
of one process is `World()` and exchanges nothing.

How a run of N processes equals one process with the same (global) batch:
- every process makes the whole batch of a step and takes its share (`Batch.shard`: a
  contiguous block of B/N sequences; for charlm, a block of the B streams, whose carried
  state it keeps: `shard_state`);
- each process's loss is the mean over its shard, weighed by the shard's share of the
  loss's terms (`Task.loss_terms`); DDP averages the gradients, so that they are the
  whole batch's, identical in every process, and so are the clipped update and the
  parameters;
- rank 0 alone evaluates, writes the run directory and decides when to stop; the other
  processes receive its evaluation, and every step all processes agree on the batch's
  loss, on a Ctrl-C noted by any of them and on rank 0's clock (`agree_on_step`).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from lstmlab.errors import InvalidArgument, LstmlabError

_T = TypeVar("_T")


@dataclass(frozen=True)
class World:
    """This process's place in a run: `rank` of `size` processes, joined over `backend`
    ("gloo" or "nccl"; None for a run of one process)."""

    rank: int = 0
    size: int = 1
    backend: str | None = None

    def wrap(self, model: nn.Module) -> nn.Module | None:
        """`model` in DistributedDataParallel (on its device), or None in a run of one process."""
        if self.size == 1:
            return None
        device = next(model.parameters()).device
        ids = [device] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def agree_on_step(self, loss: float, interrupted: bool, seconds: float) -> tuple[float, bool, float]:
        """(the mean of the processes' `loss`, whether any was `interrupted`, rank 0's `seconds`)."""
        device = "cuda" if self.backend == "nccl" else "cpu"
        values = torch.tensor([loss, float(interrupted), seconds if self.rank == 0 else 0.0], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(values)
        loss_sum, interrupts, rank0_seconds = values.tolist()
        return loss_sum / self.size, interrupts > 0, rank0_seconds

    def from_rank0(self, value: _T) -> _T:
        """Rank 0's `value` (any picklable object), in every process."""
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def all_ok(self, ok: bool) -> bool:
        """Whether every process is `ok`."""
        return min(self.gather(ok)) is True

    def gather(self, value: _T) -> list[_T]:
        """Every process's `value`, by rank."""
        values: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(values, value)
        return values

    def together(self, build: Callable[[], _T], close: Callable[[_T], None]) -> _T:
        """build() (making a trainer, writing a checkpoint), done in every process or in none,
        and in none before all are: a process whose build raises says so to the others,
        which close what they built and raise an error that points to it."""
        if self.size == 1:
            return build()
        try:
            built = build()
        except BaseException:
            self.all_ok(False)
            raise
        failed = [rank for rank, ok in enumerate(self.gather(True)) if not ok]
        if failed:
            close(built)
            which = ", ".join(map(str, failed))
            raise LstmlabError("train", "", f"stopped with the process(es) of rank {which}, which failed (see their error)")
        return built

    def shard_state(self, state: Any) -> Any:
        """This process's block of a recurrent state of the whole batch (batch dimension 1)."""
        if state is None or self.size == 1:
            return state
        if isinstance(state, torch.Tensor):
            n = state.shape[1] // self.size
            return state[:, self.rank * n : (self.rank + 1) * n].contiguous()
        return tuple(self.shard_state(s) for s in state)

    def gather_state(self, state: Any) -> Any:
        """The recurrent state of the whole batch from every process's block (`shard_state`'s inverse)."""
        if state is None or self.size == 1:
            return state
        if isinstance(state, torch.Tensor):
            blocks = [torch.empty_like(state) for _ in range(self.size)]
            torch.distributed.all_gather(blocks, state.contiguous())
            return torch.cat(blocks, dim=1)
        return tuple(self.gather_state(s) for s in state)


def launched() -> bool:
    """Whether this process is one of several that a launcher (torchrun) started: WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str, *, init_method: str = "env://", rank: int | None = None, world_size: int | None = None) -> World:
    """Join the process group: gloo when `device` is the CPU, nccl on CUDA (each process on
    `cuda:LOCAL_RANK`, made the current device). Rank and size come from the environment
    torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or are given with
    an `init_method` such as `file:///tmp/store`. A size of 1 joins nothing: `World()`."""
    if not torch.distributed.is_available():
        raise InvalidArgument("train", "world_size", "needs torch.distributed, which this build of torch lacks")
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    if world_size == 1:
        return World()
    backend = "gloo"
    if torch.device(device).type == "cuda":
        if torch.device(device).index is not None:
            detail = f"must be cuda (each process takes cuda:LOCAL_RANK) in a run of {world_size} processes; got {device!r}"
            raise InvalidArgument("train", "device", detail)
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        backend = "nccl"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    return World(rank=rank, size=world_size, backend=backend)


def leave(world: World) -> None:
    """Leave the process group `join` made (nothing for a run of one process), once what
    refers to it (the DistributedDataParallel of closed trainers) is collected."""
    if world.size > 1 and torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.destroy_process_group()


def check_batch(batch_size: int | None, world: World) -> None:
    """InvalidArgument (about `batch_size`, the global batch) unless the processes can take equal shares of it."""
    if batch_size is not None and world.size > 1 and batch_size % world.size != 0:
        rule = f"must be divisible by the number of processes, {world.size} (each takes an equal share); got {batch_size}"
        raise InvalidArgument("train", "batch_size", rule)


def check_resume(run_dir: str | os.PathLike, trained_by: int, world: World) -> None:
    """InvalidArgument (about `world_size`) unless `world` has as many processes as the run in `run_dir` was `trained_by`."""
    if trained_by != world.size:
        sizes = f"{str(run_dir)!r} was trained by {trained_by}, this run has {world.size}"
        raise InvalidArgument("train", "world_size", f"must be the run's number of processes; {sizes}")

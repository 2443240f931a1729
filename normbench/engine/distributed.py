"""One run on several processes: torch.distributed under torchrun (DistributedDataParallel).

``torchrun --nproc_per_node=P -m normbench train ...`` starts P processes, each with the
environment variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Each process
runs the same Hydra application and the same run directory; :class:`Distributed` joins them in
one process group (gloo on CPU, nccl on GPU, one GPU per process: ``cuda:LOCAL_RANK``).

Division of the work:

- every rank builds the same model (same seed; DDP also broadcasts rank 0's parameters) and its
  own slice of each global batch (:class:`~normbench.data.memory.InMemoryLoader` ``shard``);
- DDP averages the gradients, so the update is that of the global batch;
- rank 0 alone evaluates (on the plain module, with its own running statistics, which DDP
  broadcasts to the other ranks before every forward) and writes the run directory; the other
  ranks wait at a barrier;
- a stop request (SIGINT/SIGTERM on any rank) is all-reduced (on the host) at every step boundary, so every
  rank stops after the same step and rank 0 checkpoints it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from normbench.errors import ConfigError

if TYPE_CHECKING:
    from normbench.engine.fastpath import FastPath

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def adopt_submitit_tasks() -> None:
    """In a submitit job of several tasks (``hydra/launcher=slurm`` or ``slurm_local`` with
    ``hydra.launcher.tasks_per_node=P``), set the variables torchrun
    would: RANK, WORLD_SIZE, LOCAL_RANK from the job's tasks, MASTER_ADDR its first host and
    MASTER_PORT a port derived from the job id. Nothing when torchrun set them, or outside
    submitit."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    try:
        import submitit

        job = submitit.JobEnvironment()
    except Exception:  # noqa: BLE001 - not a submitit job after all
        return
    if job.num_tasks <= 1:
        return
    digits = "".join(ch for ch in str(job.raw_job_id) if ch.isdigit()) or "0"
    os.environ.update(
        RANK=str(job.global_rank),
        WORLD_SIZE=str(job.num_tasks),
        LOCAL_RANK=str(job.local_rank),
        MASTER_ADDR=job.hostnames[0],
        MASTER_PORT=str(20000 + int(digits) % 20000),
    )


def launched_rank() -> int:
    """This process's rank as torchrun (or a submitit job of several tasks) set it; else 0."""
    adopt_submitit_tasks()
    return int(os.environ.get("RANK", "0") or 0)


def launched_world_size() -> int:
    """The number of processes torchrun (or a submitit job's tasks) started; else 1."""
    adopt_submitit_tasks()
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@dataclass
class Distributed:
    """The process group of a run (world_size 1: a plain single-process run, no group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"
    host_group: Any = None  # a gloo group for CPU flags under nccl (None: the default group)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: torch.device, timeout_minutes: float = 30.0) -> Distributed:
        """Join the process group torchrun describes in the environment (none if WORLD_SIZE is 1).

        ``device`` is the run's device type: CUDA ranks take ``cuda:LOCAL_RANK`` and nccl, CPU
        ranks gloo.
        """
        world = launched_world_size()
        if world <= 1:
            return cls()
        missing = [k for k in (*ENV, "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigError(
                f"WORLD_SIZE={world} but {', '.join(missing)} not set: start distributed runs with "
                "torchrun (torchrun --nproc_per_node=P -m normbench train ...)."
            )
        rank, local = launched_rank(), int(os.environ["LOCAL_RANK"])
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            if local >= torch.cuda.device_count():
                raise ConfigError(
                    f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} GPU(s): "
                    "use --nproc_per_node at most the GPU count, or trainer.device=cpu."
                )
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(
                backend, timeout=dt.timedelta(minutes=timeout_minutes), rank=rank, world_size=world
            )
        host_group = dist.new_group(backend="gloo") if backend == "nccl" else None
        return cls(rank, world, local, backend, host_group)

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` on GPU."""
        if device.type == "cuda" and self.enabled:
            return torch.device("cuda", self.local_rank)
        return device

    def training_module(
        self, model: torch.nn.Module, fast: FastPath, device: torch.device
    ) -> torch.nn.Module:
        """What the training step calls: ``model`` prepared by ``fast`` (channels_last,
        compiled), inside DistributedDataParallel when there are several processes."""
        if not self.enabled:
            return fast.prepare_model(model)
        from torch.nn.parallel import DistributedDataParallel

        replace(fast, compile=False).prepare_model(model)  # channels_last, in place
        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(wrapped) if fast.compile else wrapped

    def max_int(self, value: int) -> int:
        """The largest of ``value`` over the ranks: a host-side all-reduce (gloo), so a check
        made every step never waits for the GPU."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.long)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.host_group)
        return int(t.item())

    def mean(self, total: torch.Tensor) -> torch.Tensor:
        """A per-process sum (e.g. of losses) averaged over the processes: the global batch's.
        In one process, ``total`` itself."""
        if not self.enabled:
            return total
        total = total.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def as_dict(self) -> dict[str, object]:
        """What summary.json records."""
        return {"world_size": self.world_size, "backend": self.backend}

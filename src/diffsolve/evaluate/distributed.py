"""Scale-out for ``diffsolve eval``: under ``torchrun`` (``WORLD_SIZE`` > 1) join the process group, gloo on CPU and
nccl on CUDA (one device per local rank: ``cuda`` becomes ``cuda:LOCAL_RANK``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["Dist", "RankDeviceError", "setup_distributed"]

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized: bool = False

    def barrier(self, device: torch.device) -> None:
        if self.initialized:
            import torch.distributed as td

            if device.type == "cuda":
                td.barrier(device_ids=[device.index or 0])
            else:
                td.barrier()

    def close(self) -> None:
        if self.initialized:
            import torch.distributed as td

            td.destroy_process_group()


class RankDeviceError(ValueError):
    """A rank under torchrun has no CUDA device of its own (:func:`setup_distributed`)."""


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA); the rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda" and world > 1:
        if dev.index is not None:  # nccl cannot run two ranks on one GPU
            raise RankDeviceError(f"--device {device} under torchrun would put all {world} ranks on GPU "
                                  f"{dev.index}; pass --device cuda (rank r then takes cuda:LOCAL_RANK)")
        count = torch.cuda.device_count()
        if local >= count:
            raise RankDeviceError(f"--device cuda under torchrun: local rank {local} has no GPU of its own ({count} "
                                  f"visible); start at most {count} processes per node (torchrun --nproc-per-node "
                                  f"{count})")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local if world > 1 else 0)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return Dist(), dev
    import datetime

    import torch.distributed as td

    backend = "nccl" if dev.type == "cuda" else "gloo"
    # ranks wait for the slowest at the end: a long timeout (a full evaluation can take hours)
    td.init_process_group(backend, timeout=datetime.timedelta(hours=48))
    return Dist(rank=rank, world=world, local_rank=local, initialized=True), dev

"""Data-parallel training through torchrun: torch.distributed's process group and DDP, nothing more.

``torchrun --nproc_per_node N`` sets RANK / WORLD_SIZE / MASTER_ADDR in each worker's environment;
``setup`` joins that group (gloo on CPU, nccl on CUDA). Without those variables everything runs
as a single process.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup() -> tuple[int, int]:
    """Join torchrun's process group when there is one; returns (rank, world size)."""
    import torch
    import torch.distributed as dist

    if world_size() > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank(), world_size()


def wrap(module, probe=None):
    """DistributedDataParallel over ``module`` when running under torchrun, else the module itself.

    ``probe(module)`` returns a loss on one batch: parameters it leaves without a gradient (a
    BERT pooler that a sentence embedding never reads, a head the loss ignores) are frozen first,
    as they cannot learn anyway and DDP would otherwise wait for their gradients."""
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if probe is not None:
        probe(module).backward()
        for p in module.parameters():
            if p.requires_grad and p.grad is None:
                p.requires_grad_(False)
        module.zero_grad(set_to_none=True)
    return DistributedDataParallel(module)


def barrier() -> None:
    import torch.distributed as dist

    if world_size() > 1 and dist.is_initialized():
        dist.barrier()


def gather(obj) -> list:
    """Every rank's ``obj``, in rank order (a one-item list without torchrun)."""
    import torch.distributed as dist

    if world_size() == 1 or not dist.is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    if world_size() == 1 or not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()

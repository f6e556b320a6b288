"""``--nproc-per-node N``: relaunch the same distill command as N data-parallel workers through
torchrun's launcher (``torch.distributed.run``, standalone rendezvous on this machine). The
parent waits and exits with rank 0's exit code (else that of the first worker that exited by
itself); the workers print their own messages."""

from __future__ import annotations

import logging
import os
import sys

from edgeopt.errors import UsageError


def relaunch(argv: list[str], nproc: int) -> int:
    """Run ``python -m edgeopt.cli <argv>`` under torchrun with ``nproc`` processes; the exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc < 1:
        raise UsageError(f"--nproc-per-node must be >= 1, got {nproc}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--nproc-per-node inside a torchrun worker; use one or the other")
    args = get_args_parser().parse_args(["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
                                         "--module", "edgeopt.cli", *argv])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # the workers say what went wrong; the launcher's own log of a failed worker would repeat it
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as e:
        # a worker stopped by the launcher after another failed has a negative code (its signal)
        codes = {rank: f.exitcode for rank, f in e.failures.items()}
        own = [codes.get(0)] + [c for r, c in sorted(codes.items()) if r != 0]
        return next((c for c in own if c is not None and c > 0), 1)
    return 0


def strip_nproc(argv: list[str]) -> list[str]:
    """argv without --nproc-per-node N / --nproc-per-node=N."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc-per-node":
            skip = True
        elif not a.startswith("--nproc-per-node="):
            out.append(a)
    return out


def current_argv() -> list[str]:
    """The distill command's own arguments as typed (after the program and 'distill')."""
    argv = sys.argv[1:]
    return argv[argv.index("distill"):] if "distill" in argv else argv

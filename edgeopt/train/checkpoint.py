"""Training checkpoints: one file per run folder, written atomically, refused when it belongs to
another run (the fingerprint: teacher, student, data and settings)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgeopt.errors import UsageError

LAST = "last.pt"


def save(folder: Path, state: dict) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{LAST}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, folder / LAST)


def load(folder: Path, fingerprint: dict) -> dict:
    import torch

    path = folder / LAST
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path}; run without --resume to start training")
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: optimizer state needs pickle
    if state.get("fingerprint") != fingerprint:
        old, new = state.get("fingerprint") or {}, fingerprint
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise UsageError(f"--resume: the checkpoint in {folder} is from a different run (differs in "
                         f"{', '.join(diff) or 'everything'}); repeat the original command or drop --resume")
    return state


def interrupted_message(out: Path) -> str:
    """What to tell a user who pressed Ctrl-C: resume only when an epoch finished and left a
    checkpoint (OUT.checkpoint/last.pt); before that there is nothing to resume from."""
    folder = out.parent / (out.name + ".checkpoint")
    if folder.is_dir() and any(folder.rglob(LAST)):  # update keeps one per candidate strength
        return (f"edgeopt: interrupted; nothing written to {out}. Continue with the same command plus --resume "
                f"(checkpoint: {folder})")
    return (f"edgeopt: interrupted before the first epoch ended; nothing written to {out} and no checkpoint to "
            "resume from. Start again with the same command")


def fingerprint(**items) -> dict:
    """A JSON-comparable record of what a run trains on."""
    return json.loads(json.dumps(items, sort_keys=True, default=str))

"""Pruning with recovery and a speedup proven on the exported runtime (``edgeopt prune``)."""

from edgeopt.prune.run import PruneResult, prune

__all__ = ["PruneResult", "prune"]

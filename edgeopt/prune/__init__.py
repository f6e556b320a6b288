"""``edgeopt prune``: pruning with recovery and a speedup proven on the exported runtime (run.py).

``edgeopt.prune(...)`` is run.prune: this package is callable (edgeopt.commands); ``from
edgeopt.prune import prune`` imports the function, lazily, so importing the package stays cheap.
"""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.prune.run", "prune")

_LAZY = {"prune", "PruneResult"}


def __getattr__(name: str):
    if name in _LAZY:
        from edgeopt.prune import run

        return getattr(run, name)
    raise AttributeError(f"module 'edgeopt.prune' has no attribute {name!r}")

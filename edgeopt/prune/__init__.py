"""``edgeopt prune``: pruning with recovery and a speedup proven on the exported runtime (run.py).

``edgeopt.prune(...)`` is run.prune, and ``from edgeopt.prune import prune`` imports it on first
use: this package is callable (edgeopt.commands), so importing it stays cheap.
"""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.prune.run", "prune")

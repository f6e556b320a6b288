"""Benchmarks: cold start in fresh processes, warm latency / throughput / memory, a regression gate.

Importing this package is cheap (no numpy, no runtime): the cold-start child process imports
``edgeopt.bench.child`` and must pay only for numpy and the one runtime it measures.

Layout: ``profiles`` (targets cpu / mobile / gpu), ``cases`` (what ARTIFACT expands to),
``child`` + ``warm`` (run inside the measured process), ``driver`` (spawns and interleaves
children), ``stats`` + ``regression`` (noise-robust regression gate), ``records`` (the JSON of
DESIGN.md and pytest-benchmark JSON), ``env``, ``report`` (HTML + PNG), ``run`` (measurements),
``api`` (``edgeopt.bench(...)``: this package is callable, edgeopt.commands).
"""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.bench.api", "bench")
